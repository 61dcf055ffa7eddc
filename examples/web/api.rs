//! The JSON API. Each handler is annotated for the OpenAPI document; every error is a
//! problem (see `problem.rs`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use commerce_core::browse::{ProductPageRequest, SearchResponse};
use commerce_core::catalog::{CategoryPath, Slug};
use commerce_core::id::{CartId, IdempotencyKey, OrderId, Sku};
use commerce_core::resilience::{Admission, LimitedAction, UserRateLimit};
use commerce_core::service::{CheckoutOutcome, CheckoutRequest, ClientCart, ClientCartItem};
use commerce_core::store::search::{FacetRequest, SearchQuery, SortOrder};
use commerce_core::store::{InventoryStoreExt, OrderQuery};
use commerce_core::{EntityKind, Error};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::{Address, App, Customer, MaybeCustomer};
use crate::problem::{ApiResult, Json, Path, Problem, Query};
use crate::views::*;

/// The API's routes, with their OpenAPI operations.
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(browse))
        .routes(routes!(search))
        .routes(routes!(autocomplete))
        .routes(routes!(product_page))
        .routes(routes!(stock))
        .routes(routes!(new_cart))
        .routes(routes!(get_cart))
        .routes(routes!(add_item))
        .routes(routes!(set_quantity, remove_item))
        .routes(routes!(sign_in))
        .routes(routes!(checkout))
        .routes(routes!(list_orders))
        .routes(routes!(get_order))
}

const MAX_QUERY_CHARS: usize = 200;

fn sort_order(sort: Option<SortParam>, default: SortOrder) -> SortOrder {
    match sort {
        None => default,
        Some(SortParam::Relevance) => SortOrder::Relevance,
        Some(SortParam::PriceAsc) => SortOrder::PriceAscending,
        Some(SortParam::PriceDesc) => SortOrder::PriceDescending,
        Some(SortParam::Newest) => SortOrder::Newest,
        Some(SortParam::Popular) => SortOrder::Popularity,
    }
}

fn page_limit(limit: Option<u32>, default: u32, max: u32) -> Result<u32, Error> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(Error::validation("limit", format!("1 to {max}"))),
    }
}

/// Runs a query through the shopper's search pages: 429 when over their rate.
async fn run_search(
    app: &App,
    customer: &MaybeCustomer,
    address: &Address,
    query: SearchQuery,
) -> ApiResult<ResultsView> {
    let key = customer.limit_key(address);
    match app
        .searches
        .search(&key, customer.0.as_ref(), query)
        .await?
    {
        SearchResponse::Served(page) => Ok(ResultsView::new(
            &page.results,
            page.personalized,
            page.omitted.iter().map(|o| o.to_string()).collect(),
        )),
        SearchResponse::Limited { retry_after } => Err(Problem::rate_limited(retry_after).into()),
    }
}

fn facets() -> FacetRequest {
    FacetRequest {
        brands: true,
        categories: true,
        ratings: true,
        ..FacetRequest::default()
    }
}

/// Browse a category subtree, with facets.
#[utoipa::path(get, path = "/api/browse", tag = "catalog",
    params(BrowseParams, ("x-customer-id" = Option<String>, Header, description = "The signed-in customer (personalises the order)", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "alice")),
    responses((status = 200, description = "Products of the subtree", body = ResultsView)))]
async fn browse(
    State(app): State<App>,
    customer: MaybeCustomer,
    address: Address,
    Query(p): Query<BrowseParams>,
) -> ApiResult<Json<ResultsView>> {
    let mut query = SearchQuery {
        limit: page_limit(p.limit, 20, 100)?,
        sort: sort_order(p.sort, SortOrder::Popularity),
        cursor: p.cursor,
        facets: facets(),
        ..SearchQuery::default()
    };
    query.filters.category = Some(CategoryPath::parse(&p.category)?);
    query.filters.brands = p.brand.into_iter().collect();
    Ok(Json(run_search(&app, &customer, &address, query).await?))
}

/// Full-text search, with facets.
#[utoipa::path(get, path = "/api/search", tag = "catalog",
    params(SearchParams, ("x-customer-id" = Option<String>, Header, description = "The signed-in customer (personalises the order)", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "alice")),
    responses((status = 200, description = "Matching products", body = ResultsView)))]
async fn search(
    State(app): State<App>,
    customer: MaybeCustomer,
    address: Address,
    Query(p): Query<SearchParams>,
) -> ApiResult<Json<ResultsView>> {
    if p.q.chars().count() > MAX_QUERY_CHARS {
        return Err(Error::validation("q", format!("at most {MAX_QUERY_CHARS} characters")).into());
    }
    let mut query = SearchQuery {
        limit: page_limit(p.limit, 20, 100)?,
        sort: sort_order(p.sort, SortOrder::Relevance),
        cursor: p.cursor,
        facets: facets(),
        ..SearchQuery::text(p.q)
    };
    query.filters.category = p.category.as_deref().map(CategoryPath::parse).transpose()?;
    query.filters.brands = p.brand.into_iter().collect();
    Ok(Json(run_search(&app, &customer, &address, query).await?))
}

/// Completions of a prefix (titles, brands, categories).
#[utoipa::path(get, path = "/api/autocomplete", tag = "catalog",
    params(AutocompleteParams),
    responses((status = 200, description = "Suggestions, best first", body = Vec<SuggestionView>)))]
async fn autocomplete(
    State(app): State<App>,
    customer: MaybeCustomer,
    address: Address,
    Query(p): Query<AutocompleteParams>,
) -> ApiResult<Json<Vec<SuggestionView>>> {
    let n = p.q.chars().count();
    if n == 0 || n > 100 {
        return Err(Error::validation("q", "1 to 100 characters").into());
    }
    let limit = page_limit(p.limit, 8, 20)?;
    let key = customer.limit_key(&address);
    if let Admission::Limited { retry_after } =
        app.user_limiter.admit(LimitedAction::Search, &key).await?
    {
        return Err(Problem::rate_limited(retry_after).into());
    }
    let suggestions = app.index.autocomplete(&p.q, limit).await?;
    Ok(Json(suggestions.iter().map(SuggestionView::from).collect()))
}

/// The product page: variants with live stock, and recommendations.
#[utoipa::path(get, path = "/api/products/{slug}", tag = "catalog",
    params(("slug" = String, Path, description = "The product's URL slug", pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 96, example = "flash-sale-headphones"),
        ("x-customer-id" = Option<String>, Header, description = "The signed-in customer (personalised recommendations, view history)", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "alice")),
    responses((status = 200, description = "The page", body = ProductPageView)))]
async fn product_page(
    State(app): State<App>,
    customer: MaybeCustomer,
    Path(slug): Path<String>,
) -> ApiResult<Json<ProductPageView>> {
    let mut request = ProductPageRequest::by_slug(Slug::new(slug)?);
    request.customer = customer.0;
    let page = app.pages.load(&request).await?;
    Ok(Json(ProductPageView::from(&page)))
}

/// Live stock of a SKU.
#[utoipa::path(get, path = "/api/stock/{sku}", tag = "catalog",
    params(("sku" = String, Path, description = "The SKU", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "FLASH-1")),
    responses((status = 200, description = "Units available, reserved and sold", body = StockView)))]
async fn stock(State(app): State<App>, Path(sku): Path<String>) -> ApiResult<Json<StockView>> {
    let sku = Sku::new(sku)?;
    if app.stores.catalog.get_product_by_sku(&sku).await?.is_none() {
        return Err(Error::not_found(EntityKind::Variant, &sku).into());
    }
    let stocks = app
        .stores
        .inventory
        .stocks_in_batches(std::slice::from_ref(&sku))
        .await?;
    let stock = stocks
        .first()
        .ok_or_else(|| Error::not_found(EntityKind::Stock, &sku))?;
    Ok(Json(StockView::from(stock)))
}

/// A new guest cart id (the cart itself is created by its first line).
#[utoipa::path(post, path = "/api/carts", tag = "cart",
    responses((status = 201, description = "A fresh guest cart id", body = NewCartView)))]
async fn new_cart() -> (StatusCode, Json<NewCartView>) {
    (
        StatusCode::CREATED,
        Json(NewCartView {
            cart_id: CartId::new_guest().to_string(),
        }),
    )
}

/// A cart: a guest's (by its secret id) or the signed-in customer's (`c-{customer}`).
#[utoipa::path(get, path = "/api/carts/{cart_id}", tag = "cart",
    params(("cart_id" = String, Path, description = "The cart id", pattern = "^[A-Za-z0-9._:-]+$", max_length = 80, example = "c-alice"),
        ("x-customer-id" = Option<String>, Header, description = "The signed-in customer (required for a customer cart)", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "alice")),
    responses((status = 200, description = "The cart", body = CartView)))]
async fn get_cart(
    State(app): State<App>,
    customer: MaybeCustomer,
    Path(cart_id): Path<String>,
) -> ApiResult<Json<CartView>> {
    let id = CartId::new(cart_id)?;
    let cart = app
        .carts
        .get(&id, &customer.owner())
        .await?
        .ok_or_else(|| Error::not_found(EntityKind::Cart, &id))?;
    Ok(Json(CartView::from(&cart)))
}

/// Adds units of a SKU at the current price (checks stock).
#[utoipa::path(post, path = "/api/carts/{cart_id}/items", tag = "cart",
    params(("cart_id" = String, Path, description = "The cart id", pattern = "^[A-Za-z0-9._:-]+$", max_length = 80, example = "c-alice"),
        ("x-customer-id" = Option<String>, Header, description = "The signed-in customer (required for a customer cart)", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "alice")),
    request_body = AddItem,
    responses((status = 200, description = "The cart", body = CartView)))]
async fn add_item(
    State(app): State<App>,
    customer: MaybeCustomer,
    Path(cart_id): Path<String>,
    Json(body): Json<AddItem>,
) -> ApiResult<Json<CartView>> {
    let id = CartId::new(cart_id)?;
    let sku = Sku::new(body.sku)?;
    let cart = app
        .carts
        .add(&id, &customer.owner(), &sku, body.quantity)
        .await?;
    Ok(Json(CartView::from(&cart)))
}

/// Sets a line's quantity (0 removes it).
#[utoipa::path(put, path = "/api/carts/{cart_id}/items/{sku}", tag = "cart",
    params(("cart_id" = String, Path, description = "The cart id", pattern = "^[A-Za-z0-9._:-]+$", max_length = 80, example = "c-alice"), ("sku" = String, Path, description = "The line's SKU", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "FLASH-1"),
        ("x-customer-id" = Option<String>, Header, description = "The signed-in customer (required for a customer cart)", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "alice")),
    request_body = SetQuantity,
    responses((status = 200, description = "The cart", body = CartView)))]
async fn set_quantity(
    State(app): State<App>,
    customer: MaybeCustomer,
    Path((cart_id, sku)): Path<(String, String)>,
    Json(body): Json<SetQuantity>,
) -> ApiResult<Json<CartView>> {
    let id = CartId::new(cart_id)?;
    let sku = Sku::new(sku)?;
    let cart = app
        .carts
        .set_quantity(&id, &customer.owner(), &sku, body.quantity)
        .await?;
    Ok(Json(CartView::from(&cart)))
}

/// Removes a line.
#[utoipa::path(delete, path = "/api/carts/{cart_id}/items/{sku}", tag = "cart",
    params(("cart_id" = String, Path, description = "The cart id", pattern = "^[A-Za-z0-9._:-]+$", max_length = 80, example = "c-alice"), ("sku" = String, Path, description = "The line's SKU", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "FLASH-1"),
        ("x-customer-id" = Option<String>, Header, description = "The signed-in customer (required for a customer cart)", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "alice")),
    responses((status = 200, description = "The cart", body = CartView)))]
async fn remove_item(
    State(app): State<App>,
    customer: MaybeCustomer,
    Path((cart_id, sku)): Path<(String, String)>,
) -> ApiResult<Json<CartView>> {
    let id = CartId::new(cart_id)?;
    let sku = Sku::new(sku)?;
    let cart = app.carts.remove(&id, &customer.owner(), &sku).await?;
    Ok(Json(CartView::from(&cart)))
}

/// Signs in: merges the guest cart into the customer's cart.
#[utoipa::path(post, path = "/api/sign-in", tag = "cart",
    params(("x-customer-id" = String, Header, description = "The customer signing in", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "alice")),
    request_body = SignIn,
    responses((status = 200, description = "The customer's cart after the merge", body = MergeView)))]
async fn sign_in(
    State(app): State<App>,
    Customer(customer): Customer,
    Json(body): Json<SignIn>,
) -> ApiResult<Json<MergeView>> {
    let guest = CartId::new(body.guest_cart_id)?;
    if !guest.is_guest() {
        return Err(Error::validation("guest_cart_id", "not a guest cart id").into());
    }
    let (cart, report) = app.carts.sign_in(&guest, &customer).await?;
    Ok(Json(MergeView::new(&cart, &report)))
}

/// The idempotency key of a request (`Idempotency-Key`, required).
fn idempotency_key(headers: &HeaderMap) -> Result<IdempotencyKey, Error> {
    let value = headers
        .get("idempotency-key")
        .ok_or_else(|| Error::validation("Idempotency-Key", "the header is required"))?;
    let text = value
        .to_str()
        .map_err(|_| Error::validation("Idempotency-Key", "must be visible ASCII"))?;
    IdempotencyKey::new(text)
}

/// Checks out the customer's cart (or a client-held cart) under an idempotency key:
/// retrying with the same key returns the same order.
#[utoipa::path(post, path = "/api/checkout", tag = "checkout",
    params(("x-customer-id" = String, Header, description = "The buyer", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "alice"),
        ("Idempotency-Key" = String, Header, description = "A key the client chose for this checkout (e.g. a UUID made when the checkout page loaded)", pattern = "^[!-~]+$", max_length = 128)),
    request_body = CheckoutBody,
    responses((status = 201, description = "The order was created", body = CheckoutView),
        (status = 200, description = "The key's order already existed; returned unchanged", body = CheckoutView)))]
async fn checkout(
    State(app): State<App>,
    Customer(customer): Customer,
    headers: HeaderMap,
    Json(body): Json<CheckoutBody>,
) -> ApiResult<(StatusCode, Json<CheckoutView>)> {
    let key = idempotency_key(&headers)?;
    // Checked before the key is looked up: a retry with a malformed body is refused,
    // not answered with the key's order.
    if let Some(items) = &body.items {
        if let Some(bad) = items.iter().find(|i| !(1..=1000).contains(&i.quantity)) {
            return Err(Error::validation(
                "items.quantity",
                format!("{} is not 1 to 1000", bad.quantity),
            )
            .into());
        }
    }
    let request = match body.items {
        None => CheckoutRequest::server_cart(
            customer.clone(),
            CartId::for_customer(&customer),
            commerce_core::cart::CartOwner::Customer(customer.clone()),
            key,
        ),
        Some(items) => {
            let items = items
                .into_iter()
                .map(|i| {
                    Ok(ClientCartItem {
                        sku: Sku::new(i.sku)?,
                        quantity: i.quantity,
                        unit_price: None,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            CheckoutRequest::client_cart(customer.clone(), ClientCart { items }, key)
        }
    };
    match app.checkout.checkout(&request).await? {
        CheckoutOutcome::Placed { order, created, .. } => Ok((
            if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            Json(CheckoutView {
                created,
                order: OrderView::from(&order),
            }),
        )),
        CheckoutOutcome::NeedsReview(review) => {
            let mut p = Problem::new(
                StatusCode::CONFLICT,
                "needs-review",
                "The cart changed",
                "some lines changed price, are out of stock or no longer sold; nothing was ordered",
            );
            p.issues = Some(review_issues(&review));
            Err(p.into())
        }
    }
}

/// The signed-in customer's orders.
#[utoipa::path(get, path = "/api/orders", tag = "orders",
    params(OrderListParams, ("x-customer-id" = String, Header, description = "The customer", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "alice")),
    responses((status = 200, description = "A page of orders", body = OrderListView)))]
async fn list_orders(
    State(app): State<App>,
    Customer(customer): Customer,
    Query(p): Query<OrderListParams>,
) -> ApiResult<Json<OrderListView>> {
    let query = OrderQuery {
        customer_id: Some(customer),
        after: p.after.map(OrderId::new).transpose()?,
        limit: page_limit(p.limit, 20, 100)?,
        ..OrderQuery::default()
    };
    let page = app.stores.orders.list_orders(&query).await?;
    Ok(Json(OrderListView {
        orders: page.items.iter().map(OrderView::from).collect(),
        next: page.next.map(|n| n.to_string()),
    }))
}

/// One of the customer's orders, with its status history.
#[utoipa::path(get, path = "/api/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path, description = "The order id", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64), ("x-customer-id" = String, Header, description = "The customer", pattern = "^[A-Za-z0-9._:-]+$", max_length = 64, example = "alice")),
    responses((status = 200, description = "The order and its history", body = OrderView)))]
async fn get_order(
    State(app): State<App>,
    Customer(customer): Customer,
    Path(order_id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    let id = OrderId::new(order_id)?;
    let order = app
        .stores
        .orders
        .get_order(&id)
        .await?
        // Another customer's order is as good as missing.
        .filter(|o| o.customer_id == customer)
        .ok_or_else(|| Error::not_found(EntityKind::Order, &id))?;
    let mut view = OrderView::from(&order);
    view.history = Some(
        app.stores
            .orders
            .history(&id)
            .await?
            .iter()
            .map(StatusChangeView::from)
            .collect(),
    );
    Ok(Json(view))
}
