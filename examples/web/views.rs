//! The JSON bodies of the API (what the OpenAPI document describes), built from the
//! library's types.

use std::collections::BTreeMap;

use commerce_core::browse::{ProductPage, StockStatus};
use commerce_core::cart::{Cart, CartOwner, MergeReport};
use commerce_core::catalog::Attributes;
use commerce_core::inventory::SkuStock;
use commerce_core::money::Money;
use commerce_core::order::{Order, StatusChange};
use commerce_core::service::{LineIssue, Revalidation};
use commerce_core::store::search::{FacetCount, SearchHit, SearchResults, Suggestion};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An amount of money.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MoneyView {
    /// Decimal amount in major units (`"19.99"`).
    #[schema(example = "19.99")]
    pub amount: String,
    /// ISO 4217 code.
    #[schema(example = "USD")]
    pub currency: String,
}

impl From<Money> for MoneyView {
    fn from(m: Money) -> Self {
        MoneyView {
            amount: m.amount().to_string(),
            currency: m.currency().code().to_owned(),
        }
    }
}

fn attributes(a: &Attributes) -> BTreeMap<String, String> {
    a.iter().map(|(k, v)| (k.clone(), v.to_text())).collect()
}

/// One product in a result list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HitView {
    /// Product id.
    pub product_id: String,
    /// URL slug (`/api/products/{slug}`).
    pub slug: String,
    /// Title.
    pub title: String,
    /// Brand.
    pub brand: String,
    /// Category path (`A > B > C`).
    pub category: String,
    /// Lowest variant price.
    pub price: MoneyView,
    /// Stars, 0 to 5.
    pub rating: Option<f64>,
}

impl From<&SearchHit> for HitView {
    fn from(h: &SearchHit) -> Self {
        HitView {
            product_id: h.product_id.to_string(),
            slug: h.slug.as_str().to_owned(),
            title: h.title.clone(),
            brand: h.brand.clone(),
            category: h.category.to_string(),
            price: h.price.into(),
            rating: h.rating.map(|r| r.stars()),
        }
    }
}

/// A facet value and how many results have it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FacetView {
    /// The value (brand, category path, price bucket, rating).
    pub value: String,
    /// Results with it.
    pub count: u64,
}

fn facets(f: &[FacetCount]) -> Vec<FacetView> {
    f.iter()
        .map(|c| FacetView {
            value: c.value.clone(),
            count: c.count,
        })
        .collect()
}

/// Facet counts over all matching products.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FacetsView {
    /// By brand.
    pub brands: Vec<FacetView>,
    /// By category.
    pub categories: Vec<FacetView>,
    /// By price bucket.
    pub prices: Vec<FacetView>,
    /// By rating.
    pub ratings: Vec<FacetView>,
}

/// A page of search or browse results.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResultsView {
    /// Matching products in all.
    pub total: u64,
    /// This page.
    pub products: Vec<HitView>,
    /// Facet counts.
    pub facets: FacetsView,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
    /// Whether the order was personalised for the shopper.
    pub personalized: bool,
    /// Non-essential parts left out (rate limiter, personalisation), and why.
    pub omitted: Vec<String>,
}

impl ResultsView {
    /// The view of `results`.
    pub fn new(results: &SearchResults, personalized: bool, omitted: Vec<String>) -> Self {
        ResultsView {
            total: results.total,
            products: results.hits.iter().map(HitView::from).collect(),
            facets: FacetsView {
                brands: facets(&results.facets.brands),
                categories: facets(&results.facets.categories),
                prices: facets(&results.facets.prices),
                ratings: facets(&results.facets.ratings),
            },
            next_cursor: results.next_cursor.clone(),
            personalized,
            omitted,
        }
    }
}

/// Sort orders of a result list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortParam {
    /// Best match first.
    #[default]
    Relevance,
    /// Cheapest first.
    PriceAsc,
    /// Most expensive first.
    PriceDesc,
    /// Newest first.
    Newest,
    /// Most popular first.
    Popular,
}

/// Query of `GET /api/search`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// What the shopper typed (at most 200 characters).
    #[param(max_length = 200)]
    pub q: String,
    /// Only this category subtree (`A > B`).
    pub category: Option<String>,
    /// Only this brand.
    pub brand: Option<String>,
    /// Order.
    pub sort: Option<SortParam>,
    /// Results per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Query of `GET /api/browse`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BrowseParams {
    /// The category subtree (`A > B`).
    pub category: String,
    /// Only this brand.
    pub brand: Option<String>,
    /// Order (default: most popular).
    pub sort: Option<SortParam>,
    /// Results per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Query of `GET /api/autocomplete`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AutocompleteParams {
    /// The prefix typed so far (1 to 100 characters).
    #[param(min_length = 1, max_length = 100)]
    pub q: String,
    /// Suggestions, 1 to 20 (default 8).
    #[param(minimum = 1, maximum = 20)]
    pub limit: Option<u32>,
}

/// An autocomplete suggestion.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SuggestionView {
    /// The completed text.
    pub text: String,
    /// `title`, `brand` or `category`.
    pub kind: String,
    /// Higher is better.
    pub score: f32,
}

impl From<&Suggestion> for SuggestionView {
    fn from(s: &Suggestion) -> Self {
        SuggestionView {
            text: s.text.clone(),
            kind: format!("{:?}", s.kind).to_lowercase(),
            score: s.score,
        }
    }
}

/// A variant with its live stock.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VariantView {
    /// SKU.
    pub sku: String,
    /// What distinguishes it (`color`, `size`).
    pub attributes: BTreeMap<String, String>,
    /// Price.
    pub price: MoneyView,
    /// `in_stock`, `backorder`, `out_of_stock`, or `unknown` (not read in time).
    pub stock: String,
    /// Units available (when in stock).
    pub available: Option<u64>,
}

/// A recommended product.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecommendationView {
    /// Product id.
    pub product_id: String,
    /// URL slug.
    pub slug: String,
    /// Title.
    pub title: String,
    /// Price.
    pub price: MoneyView,
    /// Why (`also_bought`, `similar`, `popular`).
    pub sources: Vec<String>,
}

/// The product page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductPageView {
    /// Product id.
    pub id: String,
    /// URL slug.
    pub slug: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Brand.
    pub brand: String,
    /// Category path.
    pub category: String,
    /// Image URLs.
    pub images: Vec<String>,
    /// Stars, 0 to 5.
    pub rating: Option<f64>,
    /// Reviews behind the rating.
    pub review_count: u32,
    /// Free-form attributes.
    pub attributes: BTreeMap<String, String>,
    /// Variants with live stock.
    pub variants: Vec<VariantView>,
    /// Lowest variant price.
    pub price_from: MoneyView,
    /// Highest variant price.
    pub price_to: MoneyView,
    /// Recommendations (empty when left out).
    pub recommendations: Vec<RecommendationView>,
    /// Parts left out (availability, recommendations, cache), and why.
    pub omitted: Vec<String>,
    /// Time to assemble the page, ms.
    pub elapsed_ms: f64,
}

/// `(stock, available)` of a stock status.
pub fn stock_text(s: StockStatus) -> (&'static str, Option<u64>) {
    match s {
        StockStatus::InStock { available } => ("in_stock", Some(available)),
        StockStatus::Backorder => ("backorder", None),
        StockStatus::OutOfStock => ("out_of_stock", None),
        _ => ("unknown", None),
    }
}

impl From<&ProductPage> for ProductPageView {
    fn from(page: &ProductPage) -> Self {
        let p = &page.product;
        ProductPageView {
            id: p.id.to_string(),
            slug: p.slug.as_str().to_owned(),
            title: p.title.clone(),
            description: p.description.clone(),
            brand: p.brand.clone(),
            category: p.category.to_string(),
            images: p.images.clone(),
            rating: p.rating.map(|r| r.stars()),
            review_count: p.review_count,
            attributes: attributes(&p.attributes),
            variants: page
                .variants
                .iter()
                .map(|v| {
                    let (stock, available) = stock_text(v.stock);
                    VariantView {
                        sku: v.sku.to_string(),
                        attributes: attributes(&v.attributes),
                        price: v.price.into(),
                        stock: stock.to_owned(),
                        available,
                    }
                })
                .collect(),
            price_from: page.price_from.into(),
            price_to: page.price_to.into(),
            recommendations: page
                .recommendations
                .iter()
                .map(|r| RecommendationView {
                    product_id: r.product.product_id.to_string(),
                    slug: r.product.slug.as_str().to_owned(),
                    title: r.product.title.clone(),
                    price: r.product.price.into(),
                    sources: r.sources.iter().map(|s| snake(&format!("{s:?}"))).collect(),
                })
                .collect(),
            omitted: page.omitted.iter().map(|o| o.to_string()).collect(),
            elapsed_ms: page.elapsed.as_secs_f64() * 1000.0,
        }
    }
}

/// `AlsoBought` -> `also_bought`.
fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Live stock of a SKU.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StockView {
    /// SKU.
    pub sku: String,
    /// Units free to reserve.
    pub available: u64,
    /// Units reserved by orders in progress.
    pub reserved: u64,
    /// Units sold.
    pub sold: u64,
}

impl From<&SkuStock> for StockView {
    fn from(s: &SkuStock) -> Self {
        StockView {
            sku: s.sku.to_string(),
            available: s.available(),
            reserved: s.reserved(),
            sold: s.sold(),
        }
    }
}

/// A new guest cart's id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NewCartView {
    /// The cart id: the guest's only credential for the cart, keep it secret.
    pub cart_id: String,
}

/// A cart line.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CartLineView {
    /// SKU.
    pub sku: String,
    /// Product id.
    pub product_id: String,
    /// Units.
    pub quantity: u32,
    /// Unit price when added.
    pub unit_price: MoneyView,
}

/// A cart.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CartView {
    /// Cart id.
    pub id: String,
    /// `guest`, or the customer id.
    pub owner: String,
    /// Lines.
    pub items: Vec<CartLineView>,
    /// Units over all lines.
    pub total_quantity: u64,
    /// Bumped by every write.
    pub version: u64,
    /// When the cart expires unless written again (RFC 3339).
    pub expires_at: String,
}

impl From<&Cart> for CartView {
    fn from(c: &Cart) -> Self {
        CartView {
            id: c.id.to_string(),
            owner: match &c.owner {
                CartOwner::Guest => "guest".to_owned(),
                CartOwner::Customer(id) => id.to_string(),
            },
            items: c
                .items
                .iter()
                .map(|i| CartLineView {
                    sku: i.sku.to_string(),
                    product_id: i.product_id.to_string(),
                    quantity: i.quantity,
                    unit_price: i.unit_price.into(),
                })
                .collect(),
            total_quantity: c.items.iter().map(|i| u64::from(i.quantity)).sum(),
            version: c.version,
            expires_at: c.expires_at.to_rfc3339(),
        }
    }
}

/// `POST /api/carts/{cart_id}/items`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItem {
    /// SKU.
    #[schema(example = "FLASH-1", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64)]
    pub sku: String,
    /// Units to add, at least 1.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: u32,
}

/// `PUT /api/carts/{cart_id}/items/{sku}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantity {
    /// New quantity; 0 removes the line.
    #[schema(minimum = 0, maximum = 1000)]
    pub quantity: u32,
}

/// `POST /api/sign-in`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The guest cart to merge into the customer's cart (`g-` and 32 hex digits).
    #[schema(pattern = "^g-[0-9a-f]{32}$")]
    pub guest_cart_id: String,
}

/// The customer's cart after sign-in, and what the merge could not take.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MergeView {
    /// The customer's cart.
    pub cart: CartView,
    /// SKUs whose quantity was capped (line limit or stock).
    pub capped: Vec<String>,
    /// SKUs left out (no stock, cart full).
    pub dropped: Vec<String>,
}

impl MergeView {
    /// The view of a merge.
    pub fn new(cart: &Cart, report: &MergeReport) -> Self {
        MergeView {
            cart: cart.into(),
            capped: report.capped.iter().map(|s| s.to_string()).collect(),
            dropped: report.dropped.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// A line of a client-held cart.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientItem {
    /// SKU.
    #[schema(example = "FLASH-1", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64)]
    pub sku: String,
    /// Units, at least 1.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: u32,
}

/// `POST /api/checkout`: the customer's server cart (default), or the lines of a
/// client-held cart.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// Lines of a client-held cart; when absent the customer's server cart is bought.
    #[serde(default)]
    pub items: Option<Vec<ClientItem>>,
}

/// An order line.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderLineView {
    /// SKU.
    pub sku: String,
    /// Title at the time of the order.
    pub title: String,
    /// Units.
    pub quantity: u32,
    /// Unit price.
    pub unit_price: MoneyView,
    /// Quantity times unit price.
    pub line_total: MoneyView,
}

/// A status change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatusChangeView {
    /// Previous status (none for the first).
    pub from: Option<String>,
    /// New status.
    pub to: String,
    /// Why.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

impl From<&StatusChange> for StatusChangeView {
    fn from(c: &StatusChange) -> Self {
        StatusChangeView {
            from: c.from.map(|f| f.to_string()),
            to: c.to.to_string(),
            reason: c.reason.clone(),
            at: c.at.to_rfc3339(),
        }
    }
}

/// An order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    /// Order id.
    pub id: String,
    /// The buyer.
    pub customer_id: String,
    /// Status (`CREATED`, `PAYMENT_PENDING`, ..., `DELIVERED`, `CANCELLED`).
    pub status: String,
    /// Lines.
    pub lines: Vec<OrderLineView>,
    /// Sum of the lines.
    pub subtotal: MoneyView,
    /// Shipping.
    pub shipping: MoneyView,
    /// Tax.
    pub tax: MoneyView,
    /// Total charged.
    pub total: MoneyView,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Status history, oldest first (only on `GET /api/orders/{order_id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<StatusChangeView>>,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> Self {
        OrderView {
            id: o.id.to_string(),
            customer_id: o.customer_id.to_string(),
            status: o.status.to_string(),
            lines: o
                .lines
                .iter()
                .map(|l| OrderLineView {
                    sku: l.sku.to_string(),
                    title: l.title.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price.into(),
                    line_total: l.line_total.into(),
                })
                .collect(),
            subtotal: o.totals.subtotal.into(),
            shipping: o.totals.shipping.into(),
            tax: o.totals.tax.into(),
            total: o.totals.total.into(),
            created_at: o.created_at.to_rfc3339(),
            history: None,
        }
    }
}

/// The result of a checkout.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckoutView {
    /// Whether this call created the order (`false`: the idempotency key's order
    /// already existed and is returned unchanged).
    pub created: bool,
    /// The order.
    pub order: OrderView,
}

/// A page of the customer's orders.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderListView {
    /// Orders, oldest first.
    pub orders: Vec<OrderView>,
    /// Pass as `after` for the next page.
    pub next: Option<String>,
}

/// Query of `GET /api/orders`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderListParams {
    /// Start after this order id.
    pub after: Option<String>,
    /// Orders per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// The issues of a checkout that needs review, per SKU.
pub fn review_issues(review: &Revalidation) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (sku, issue) in review.issues() {
        let text = match issue {
            LineIssue::Unavailable => "no longer sold".to_owned(),
            LineIssue::PriceChanged { was, now } => format!("price changed from {was} to {now}"),
            LineIssue::OutOfStock {
                requested,
                available,
            } => format!("out of stock: {requested} requested, {available} available"),
            LineIssue::CurrencyMismatch { expected, found } => {
                format!("priced in {found}, the cart in {expected}")
            }
        };
        out.entry(sku.to_string()).or_default().push(text);
    }
    out
}
