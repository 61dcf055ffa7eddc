//! Checkout: revalidate the cart, compute the totals, create the order under an
//! idempotency key.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::address::Address;
use crate::cart::{CartAddresses, CartLimits, CartOwner};
use crate::catalog::{AttributeValue, Product};
use crate::clock::Clock;
use crate::error::{EntityKind, Error, Result};
use crate::id::{CartId, CustomerGroupId, CustomerId, IdempotencyKey, Sku};
use crate::money::{Currency, Money};
use crate::order::{
    CheckoutDetails, LineDiscount, LineTax, NewOrder, NewOrderLine, Order, OrderPromotion,
    OrderTax, basket,
};
use crate::promotion::{
    CodeLookup, Condition, CustomerInfo, Evaluation, EvaluationInput, Offer, PriceList, PricedLine,
    RejectReason, RejectedCode, StackingPolicy, evaluate,
};
use crate::resilience::{Admission, BreakerConfig, Guard, LimitedAction, Section, UserRateLimit};
use crate::service::Stores;
use crate::service::cart::{cart_lines, check_owner};
use crate::service::client_cart::ClientCart;
use crate::service::pricing::{LineInput, ListPricing, PriceRules, Revalidation, revalidate};
use crate::shipping::{ShippingItem, ShippingOption, ShippingRates, ShippingRequest};
use crate::store::{
    CartStore, CatalogStore, InventoryStore, OrderQuery, OrderStore, PriceListStore, PromotionStore,
};
use crate::tax::{
    PriceMode, TaxBreakdown, TaxCalculator, TaxCalculatorExt, TaxClass, TaxRequest, TaxableLine,
};

/// Where the cart being checked out lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CartSource {
    /// A server-side cart; it is deleted once the order is created.
    Server {
        /// The cart.
        id: CartId,
        /// Its owner.
        owner: CartOwner,
    },
    /// A cart the client holds (its prices are ignored).
    Client(ClientCart),
}

/// A checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRequest {
    /// The buyer.
    pub customer_id: CustomerId,
    /// The cart.
    pub cart: CartSource,
    /// A key the client chose for this checkout (e.g. a UUID made when the checkout
    /// page loaded): retrying with it returns the same order.
    pub idempotency_key: IdempotencyKey,
    /// New prices the shopper agreed to, per SKU (from
    /// [`Revalidation::price_changes`]).
    #[serde(default)]
    pub accepted_prices: BTreeMap<Sku, Money>,
    /// Where the goods go: required when the service computes tax or shipping
    /// ([`CheckoutService::with_tax`], [`CheckoutService::with_shipping`]); validated
    /// when deserialized (an unknown country never gets this far). When the request
    /// carries neither this nor [`billing_address`](Self::billing_address), the
    /// addresses saved on the server cart
    /// ([`CartStore::set_addresses`](crate::store::CartStore::set_addresses)) are used,
    /// both of them; a request with either address uses only its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    /// Who pays; the shipping address when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_address: Option<Address>,
    /// The chosen shipping option's `method_id` (one of
    /// [`CheckoutService::preview`]'s options): required with
    /// [`CheckoutService::with_shipping`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_method: Option<String>,
    /// Coupon codes as the shopper typed them (at most
    /// [`MAX_CODES`](crate::promotion::MAX_CODES)); each is applied or reported in
    /// [`CheckoutOutcome::Placed::rejected_codes`].
    #[serde(default)]
    pub codes: Vec<String>,
    /// The currency to pay in, when the shop sells in several (prices then come from
    /// the price lists, see [`CheckoutService::with_price_lists`]); `None`: the
    /// variants' own currency.
    #[serde(default)]
    pub currency: Option<Currency>,
}

impl CheckoutRequest {
    /// A checkout of a server cart.
    pub fn server_cart(
        customer_id: CustomerId,
        id: CartId,
        owner: CartOwner,
        idempotency_key: IdempotencyKey,
    ) -> Self {
        CheckoutRequest {
            customer_id,
            cart: CartSource::Server { id, owner },
            idempotency_key,
            accepted_prices: BTreeMap::new(),
            shipping_address: None,
            billing_address: None,
            shipping_method: None,
            codes: Vec::new(),
            currency: None,
        }
    }

    /// A checkout of a client-held cart.
    pub fn client_cart(
        customer_id: CustomerId,
        cart: ClientCart,
        idempotency_key: IdempotencyKey,
    ) -> Self {
        CheckoutRequest {
            customer_id,
            cart: CartSource::Client(cart),
            idempotency_key,
            accepted_prices: BTreeMap::new(),
            shipping_address: None,
            billing_address: None,
            shipping_method: None,
            codes: Vec::new(),
            currency: None,
        }
    }

    /// The same request, shipping to `address` by `method` (a method id offered by
    /// [`CheckoutService::preview`], or `None` to see the options first).
    pub fn shipping_to(mut self, address: Address, method: Option<&str>) -> Self {
        self.shipping_address = Some(address);
        self.shipping_method = method.map(str::to_owned);
        self
    }

    /// The same request with these coupon codes.
    pub fn with_codes<S: Into<String>>(mut self, codes: impl IntoIterator<Item = S>) -> Self {
        self.codes = codes.into_iter().map(Into::into).collect();
        self
    }

    /// The same request, agreeing to the new prices `review` reported.
    pub fn accepting(mut self, review: &Revalidation) -> Self {
        self.accepted_prices.extend(review.price_changes());
        self
    }
}

/// `request`, taking the cart's `saved` addresses when it carries neither address of
/// its own (the two are never mixed).
fn with_saved_addresses(
    request: &CheckoutRequest,
    saved: CartAddresses,
) -> Cow<'_, CheckoutRequest> {
    if saved.is_empty() || request.shipping_address.is_some() || request.billing_address.is_some() {
        return Cow::Borrowed(request);
    }
    let mut filled = request.clone();
    filled.shipping_address = saved.shipping;
    filled.billing_address = saved.billing;
    Cow::Owned(filled)
}

/// What a checkout did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum CheckoutOutcome {
    /// The order exists in status `CREATED`, ready for the pipeline.
    Placed {
        /// The order.
        order: Order,
        /// Whether this call created it (`false`: the key's order already existed).
        created: bool,
        /// The codes of the request that were not applied, and why (empty for an
        /// order that already existed).
        rejected_codes: Vec<RejectedCode>,
    },
    /// Nothing was created: lines changed price, are out of stock or no longer sold.
    NeedsReview(Revalidation),
}

impl CheckoutOutcome {
    /// The order, if one was placed.
    pub fn order(&self) -> Option<&Order> {
        match self {
            CheckoutOutcome::Placed { order, .. } => Some(order),
            CheckoutOutcome::NeedsReview(_) => None,
        }
    }
}

/// What an order for a request would cost, without placing it
/// ([`CheckoutService::preview`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutPreview {
    /// The shipping options that apply to the cart and address, cheapest first (empty
    /// without [`CheckoutService::with_shipping`]).
    pub options: Vec<ShippingOption>,
    /// The order checkout would create: lines with their tax, shipping, tax, and
    /// the chosen (else the cheapest) option.
    pub order: NewOrder,
    /// The tax calculator's answer (without [`CheckoutService::with_tax`]: `None`).
    pub tax: Option<TaxBreakdown>,
}

/// The attribute naming a product's (or a variant's, which wins) tax class; products
/// without it are in the `standard` class.
pub const TAX_CLASS_ATTRIBUTE: &str = "tax_class";

/// Shipping, tax and price-change policy. The flat charges here apply unless the
/// service has a [`TaxCalculator`] ([`CheckoutService::with_tax`]) or
/// [`ShippingRates`] ([`CheckoutService::with_shipping`]), which replace them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutConfig {
    /// Flat shipping charge, in major units of the order's currency.
    pub flat_shipping: Decimal,
    /// Shipping is free from this subtotal on (major units), if set.
    pub free_shipping_from: Option<Decimal>,
    /// Tax rate on the subtotal (0.0825 for 8.25 %), rounded half to even.
    pub tax_rate: Decimal,
    /// Take a price drop without asking the shopper (rises always need acceptance).
    pub auto_accept_price_drops: bool,
    /// Cart limits (client carts are checked against them).
    pub limits: CartLimits,
}

impl Default for CheckoutConfig {
    /// No shipping charge, no tax, price drops accepted, default cart limits.
    fn default() -> Self {
        CheckoutConfig {
            flat_shipping: Decimal::ZERO,
            free_shipping_from: None,
            tax_rate: Decimal::ZERO,
            auto_accept_price_drops: true,
            limits: CartLimits::default(),
        }
    }
}

/// Turns carts into orders.
///
/// A checkout:
/// 1. returns the order already created under the idempotency key, if any (a retried
///    checkout never creates a second order, so the pipeline never charges twice);
/// 2. re-checks every line against the catalog and the inventory: a line whose
///    catalog price differs from the price the shopper saw is reported (unless the
///    request accepts that price, or it dropped and drops are auto-accepted), as is a
///    line that is out of stock or no longer sold — nothing is created then;
/// 3. prices every line at the **catalog** price, adds shipping and tax in [`Money`],
///    and creates the order in `CREATED` under the key (exactly one order per key,
///    even under concurrent retries);
/// 4. deletes the server cart.
///
/// The order then goes through the [`OrderPipeline`](crate::service::OrderPipeline),
/// reached via the event log ([`OrderRelay`](crate::service::OrderRelay)).
#[derive(Debug, Clone)]
pub struct CheckoutService {
    carts: Arc<dyn CartStore>,
    catalog: Arc<dyn CatalogStore>,
    inventory: Arc<dyn InventoryStore>,
    orders: Arc<dyn OrderStore>,
    clock: Arc<dyn Clock>,
    config: CheckoutConfig,
    limiter: Option<(Arc<dyn UserRateLimit>, Guard)>,
    tax: Option<(Arc<dyn TaxCalculator>, PriceMode)>,
    shipping: Option<Arc<dyn ShippingRates>>,
    promotions: Option<(Arc<dyn PromotionStore>, StackingPolicy)>,
    price_lists: Option<Arc<dyn PriceListStore>>,
}

impl CheckoutService {
    /// A checkout service.
    pub fn new(stores: &Stores, config: CheckoutConfig) -> Self {
        CheckoutService {
            carts: stores.carts.clone(),
            catalog: stores.catalog.clone(),
            inventory: stores.inventory.clone(),
            orders: stores.orders.clone(),
            clock: stores.clock.clone(),
            config,
            limiter: None,
            tax: None,
            shipping: None,
            promotions: None,
            price_lists: None,
        }
    }

    /// Computes tax with `calculator` (catalog prices being `prices`), replacing the
    /// flat [`CheckoutConfig::tax_rate`]: every checkout then needs a shipping address
    /// (the place of supply), each order line records its tax and tax class (the
    /// product's [`TAX_CLASS_ATTRIBUTE`], else `standard`), and the order its
    /// [`OrderTax`]. Discounts come off before tax.
    pub fn with_tax(mut self, calculator: Arc<dyn TaxCalculator>, prices: PriceMode) -> Self {
        self.tax = Some((calculator, prices));
        self
    }

    /// Prices shipping with `rates` (by zone, weight from the catalog's variants,
    /// price), replacing the flat [`CheckoutConfig::flat_shipping`]: every checkout
    /// then needs a shipping address and a [`CheckoutRequest::shipping_method`] among
    /// the options that apply, and the order records the chosen option.
    pub fn with_shipping(mut self, rates: Arc<dyn ShippingRates>) -> Self {
        self.shipping = Some(rates);
        self
    }

    /// Applies promotions from `store` to every checkout: its automatic promotions and
    /// the promotions of the request's codes, picked by `policy` (see the
    /// [stacking rules](crate::promotion#stacking)), on the revalidated cart. The order
    /// records what each promotion gave ([`Order::promotions`]); its limits are held
    /// when the [`OrderPipeline`](crate::service::OrderPipeline) (built
    /// [`with_promotions`](crate::service::OrderPipeline::with_promotions) on the same
    /// store) reserves the order's stock. Use the clock of `store` for the stores'.
    pub fn with_promotions(
        mut self,
        store: Arc<dyn PromotionStore>,
        policy: StackingPolicy,
    ) -> Self {
        self.promotions = Some((store, policy));
        self
    }

    /// Prices lines through the price lists of `store` (customer groups from the same
    /// store, the request's currency, the clock's now) instead of the variants' base
    /// prices; a SKU without a price in the currency is
    /// [`LineIssue::Unavailable`](crate::service::LineIssue::Unavailable).
    pub fn with_price_lists(mut self, store: Arc<dyn PriceListStore>) -> Self {
        self.price_lists = Some(store);
        self
    }

    /// Rate-limits checkouts per customer with `limiter` ([`LimitedAction::Checkout`],
    /// keyed by the customer id): a customer over their rate gets
    /// [`Error::RateLimited`] before anything is read or written. The limiter is a
    /// non-essential part: guarded by a 10 ms deadline and a circuit breaker on
    /// `clock`, and a limiter that fails or is slow lets the checkout through (checkout
    /// never depends on it).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use commerce_core::clock::SystemClock;
    /// # use commerce_core::memory::MemoryEngine;
    /// # use commerce_core::resilience::{Admission, LimitedAction, UserRateLimit};
    /// # use commerce_core::service::{CheckoutConfig, CheckoutService, Stores};
    /// #[derive(Debug)]
    /// struct NoMoreToday;
    ///
    /// #[async_trait::async_trait]
    /// impl UserRateLimit for NoMoreToday {
    ///     async fn admit(&self, _: LimitedAction, _: &str) -> commerce_core::Result<Admission> {
    ///         Ok(Admission::Limited { retry_after: std::time::Duration::from_secs(60) })
    ///     }
    /// }
    ///
    /// # fn stores() -> Stores { Stores::memory(&MemoryEngine::new()) }
    /// let checkout = CheckoutService::new(&stores(), CheckoutConfig::default())
    ///     .with_rate_limit(Arc::new(NoMoreToday), Arc::new(SystemClock));
    /// ```
    pub fn with_rate_limit(
        mut self,
        limiter: Arc<dyn UserRateLimit>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let guard = Guard::new(
            Section::RateLimit,
            Duration::from_millis(10),
            BreakerConfig::default(),
            clock,
        );
        self.limiter = Some((limiter, guard));
        self
    }

    /// Asks the limiter, if any, about the customer; fails open when it cannot answer.
    async fn admit(&self, customer: &CustomerId) -> Result<()> {
        let Some((limiter, guard)) = &self.limiter else {
            return Ok(());
        };
        match guard
            .run(limiter.admit(LimitedAction::Checkout, customer.as_str()))
            .await
        {
            Ok(Admission::Limited { retry_after }) => Err(Error::RateLimited { retry_after }),
            Ok(Admission::Admitted) => Ok(()),
            Err(omission) => {
                tracing::warn!(customer = %customer, ?omission, "rate limiter unavailable; checkout let through");
                Ok(())
            }
        }
    }

    /// Checks out (see the [type docs](CheckoutService)).
    ///
    /// Errors: a missing cart is `NotFound { kind: Cart }`, an empty one `Validation`;
    /// a key used by another customer, or for another basket (other SKUs or
    /// quantities; a retry after the server cart was cleared returns the order), is
    /// `Conflict { kind: Order }`; a customer over
    /// the rate set by [`with_rate_limit`](Self::with_rate_limit) is `RateLimited`.
    #[instrument(level = "debug", skip_all, fields(customer = %request.customer_id, key = %request.idempotency_key), err(level = "debug"))]
    pub async fn checkout(&self, request: &CheckoutRequest) -> Result<CheckoutOutcome> {
        self.admit(&request.customer_id).await?;
        let existing = self.existing(request).await?;
        let (lines, saved) = self.cart_lines(request, existing.is_some()).await?;
        let request = &*with_saved_addresses(request, saved);
        if let Some(order) = existing {
            let asked = basket(lines.iter().map(|l| (&l.sku, l.quantity)));
            if !lines.is_empty() && asked != order.basket() {
                return Err(Error::conflict(
                    EntityKind::Order,
                    "the idempotency key was used for another basket",
                ));
            }
            return Ok(CheckoutOutcome::Placed {
                order,
                created: false,
                rejected_codes: Vec::new(),
            });
        }
        if lines.is_empty() {
            return Err(Error::validation("cart", "is empty"));
        }
        if request.codes.len() > crate::promotion::MAX_CODES {
            return Err(Error::validation(
                "codes",
                format!("at most {} codes", crate::promotion::MAX_CODES),
            ));
        }
        let (groups, lists) = self.pricing_context(request).await?;
        let review = self
            .review(request, &lines, &groups, lists.as_deref())
            .await?;
        if !review.is_ok() {
            return Ok(CheckoutOutcome::NeedsReview(review));
        }
        let (new, rejected_codes, _, _) = self.new_order(request, &review, groups, false).await?;
        let outcome = self.orders.create_order(new).await?;
        let created = outcome.is_created();
        if created {
            if let CartSource::Server { id, owner } = &request.cart {
                if let Err(e) = self.carts.clear_cart(id, owner).await {
                    tracing::warn!(cart_id = %id, error = %e, "order placed but the cart was not cleared");
                }
            }
        }
        Ok(CheckoutOutcome::Placed {
            order: outcome.into_order(),
            created,
            rejected_codes: if created { rejected_codes } else { Vec::new() },
        })
    }

    /// What checking out `request` would cost now, without writing anything: the
    /// shipping options that apply to the cart and address, and the order with its
    /// per-line tax, shipping by the chosen method (the cheapest when the request names
    /// none) and totals.
    ///
    /// Errors as [`checkout`](Self::checkout), plus `Validation` on `cart` when a line
    /// needs review (price changed, out of stock, no longer sold).
    pub async fn preview(&self, request: &CheckoutRequest) -> Result<CheckoutPreview> {
        let (lines, saved) = self.cart_lines(request, false).await?;
        let request = &*with_saved_addresses(request, saved);
        if lines.is_empty() {
            return Err(Error::validation("cart", "is empty"));
        }
        let (groups, lists) = self.pricing_context(request).await?;
        let review = self
            .review(request, &lines, &groups, lists.as_deref())
            .await?;
        if !review.is_ok() {
            return Err(Error::validation(
                "cart",
                "some lines changed price, are out of stock or no longer sold",
            ));
        }
        let (order, _, options, tax) = self.new_order(request, &review, groups, true).await?;
        Ok(CheckoutPreview {
            options,
            order,
            tax,
        })
    }

    /// The cart's lines (empty for a cleared server cart when `retry`) and the
    /// addresses saved on it (none for a client cart).
    async fn cart_lines(
        &self,
        request: &CheckoutRequest,
        retry: bool,
    ) -> Result<(Vec<LineInput>, CartAddresses)> {
        Ok(match &request.cart {
            CartSource::Server { id, owner } => {
                check_owner(id, owner)?;
                if let CartOwner::Customer(c) = owner {
                    if c != &request.customer_id {
                        return Err(Error::not_found(EntityKind::Cart, id));
                    }
                }
                match self.carts.get_cart(id, owner).await? {
                    Some(cart) => (cart_lines(&cart), cart.addresses),
                    // The cart was cleared when the key's order was placed: a retry.
                    None if retry => (Vec::new(), CartAddresses::default()),
                    None => return Err(Error::not_found(EntityKind::Cart, id)),
                }
            }
            CartSource::Client(cart) => {
                (cart.lines(&self.config.limits)?, CartAddresses::default())
            }
        })
    }

    /// Revalidates `lines` (prices through the price lists `lists` when there are any).
    async fn review(
        &self,
        request: &CheckoutRequest,
        lines: &[LineInput],
        groups: &[CustomerGroupId],
        lists: Option<&[PriceList]>,
    ) -> Result<Revalidation> {
        revalidate(
            self.catalog.as_ref(),
            self.inventory.as_ref(),
            lines,
            &PriceRules {
                accepted: Some(&request.accepted_prices),
                auto_accept_drops: self.config.auto_accept_price_drops,
                lists: lists.map(|lists| ListPricing {
                    currency: request.currency,
                    groups,
                    lists,
                    now: self.clock.now(),
                }),
            },
        )
        .await
    }

    /// The customer's groups and the price lists valid now (`None` without price
    /// lists).
    async fn pricing_context(
        &self,
        request: &CheckoutRequest,
    ) -> Result<(Vec<CustomerGroupId>, Option<Vec<PriceList>>)> {
        let Some(store) = &self.price_lists else {
            return Ok((Vec::new(), None));
        };
        let groups = store.customer_groups(&request.customer_id).await?;
        let lists = store.active_price_lists(self.clock.now()).await?;
        Ok((groups, Some(lists)))
    }

    async fn existing(&self, request: &CheckoutRequest) -> Result<Option<Order>> {
        match self
            .orders
            .get_order_by_key(&request.idempotency_key)
            .await?
        {
            Some(o) if o.customer_id != request.customer_id => Err(Error::conflict(
                EntityKind::Order,
                "the idempotency key belongs to another customer's order",
            )),
            other => Ok(other),
        }
    }

    /// The order for a clean revalidation: catalog prices, shipping, promotions, tax;
    /// with the codes not applied, the shipping options offered and the tax
    /// calculator's answer. `preview` picks the cheapest option when none is chosen.
    async fn new_order(
        &self,
        request: &CheckoutRequest,
        review: &Revalidation,
        groups: Vec<CustomerGroupId>,
        preview: bool,
    ) -> Result<(
        NewOrder,
        Vec<RejectedCode>,
        Vec<ShippingOption>,
        Option<TaxBreakdown>,
    )> {
        let mut lines = Vec::with_capacity(review.lines.len());
        let mut priced = Vec::with_capacity(review.lines.len());
        for l in &review.lines {
            let (Some(product_id), Some(title), Some(unit_price), Some(category)) =
                (&l.product_id, &l.title, l.unit_price, &l.category)
            else {
                return Err(Error::not_found(EntityKind::Variant, &l.sku));
            };
            lines.push(NewOrderLine {
                product_id: product_id.clone(),
                sku: l.sku.clone(),
                title: title.clone(),
                quantity: l.quantity,
                unit_price,
                tax: None,
            });
            priced.push(PricedLine {
                sku: l.sku.clone(),
                product_id: product_id.clone(),
                category: category.clone(),
                quantity: l.quantity,
                unit_price,
            });
        }
        let subtotal = review
            .subtotal
            .ok_or_else(|| Error::validation("cart", "has no priced line"))?;
        let mut shipping = self.shipping(&subtotal)?;
        let mut checkout = CheckoutDetails {
            shipping_address: request.shipping_address.clone(),
            billing_address: request
                .billing_address
                .clone()
                .or_else(|| request.shipping_address.clone()),
            ..CheckoutDetails::default()
        };
        let mut options = Vec::new();
        let mut products = Vec::new();
        if self.tax.is_some() || self.shipping.is_some() {
            let Some(address) = &request.shipping_address else {
                return Err(Error::validation(
                    "shipping_address",
                    "is required to compute tax and shipping",
                ));
            };
            products = self.products(&lines).await?;
            if let Some(rates) = &self.shipping {
                let items = lines
                    .iter()
                    .zip(&products)
                    .map(|(l, p)| match p.variant(&l.sku) {
                        Some(v) => Ok(ShippingItem::from_variant(v, l.quantity)),
                        None => Err(Error::not_found(EntityKind::Variant, &l.sku)),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let shipping_request = ShippingRequest {
                    currency: subtotal.currency(),
                    destination: address.clone(),
                    items,
                };
                options = rates.options(&shipping_request).await?;
                let chosen = match &request.shipping_method {
                    Some(m) => options.iter().find(|o| &o.method_id == m).ok_or_else(|| {
                        Error::validation(
                            "shipping_method",
                            format!("{m:?} is not offered for this cart and address"),
                        )
                    })?,
                    None if preview => options.first().ok_or_else(|| {
                        Error::validation(
                            "shipping_address",
                            "no shipping option applies to this cart and address",
                        )
                    })?,
                    None => {
                        let offered: Vec<&str> =
                            options.iter().map(|o| o.method_id.as_str()).collect();
                        return Err(Error::validation(
                            "shipping_method",
                            format!("choose one of {offered:?}"),
                        ));
                    }
                };
                shipping = chosen.price;
                checkout.shipping_option = Some(chosen.clone());
            }
        }
        let (evaluation, rejected) = match &self.promotions {
            Some((store, policy)) => {
                let input = EvaluationInput {
                    currency: subtotal.currency(),
                    lines: priced,
                    shipping,
                    customer: CustomerInfo {
                        id: Some(request.customer_id.clone()),
                        groups,
                        first_order: false,
                    },
                    now: self.clock.now(),
                };
                let mut evaluation = self
                    .evaluate(store.as_ref(), *policy, input, &request.codes)
                    .await?;
                let rejected = std::mem::take(&mut evaluation.rejected);
                (Some(evaluation), rejected)
            }
            None => {
                // Nothing can apply a code: every code is reported, none is applied.
                let rejected = request
                    .codes
                    .iter()
                    .map(|c| RejectedCode {
                        code: c.chars().take(64).collect(),
                        reason: RejectReason::Unknown,
                    })
                    .collect();
                (None, rejected)
            }
        };
        let currency = subtotal.currency();
        let base = NewOrder {
            id: None,
            customer_id: request.customer_id.clone(),
            idempotency_key: request.idempotency_key.clone(),
            lines,
            shipping,
            tax: Money::zero(currency),
            checkout,
            promotions: Vec::new(),
        };
        let mut order = discounted_order(base, evaluation.as_ref(), self.config.tax_rate)?;
        let mut breakdown = None;
        if let (Some(address), Some((calculator, prices))) = (&request.shipping_address, &self.tax)
        {
            if products.is_empty() {
                products = self.products(&order.lines).await?;
            }
            let discounted_shipping = order
                .promotions
                .iter()
                .try_fold(order.shipping, |s, p| s.checked_sub(&p.shipping_discount))?;
            {
                let tax_request = TaxRequest {
                    currency: subtotal.currency(),
                    destination: address.clone(),
                    prices: *prices,
                    lines: order
                        .lines
                        .iter()
                        .zip(&products)
                        .map(|(l, p)| {
                            Ok(TaxableLine {
                                sku: l.sku.clone(),
                                tax_class: tax_class(p, &l.sku)?,
                                quantity: l.quantity,
                                unit_price: l.unit_price,
                                discount: line_discount(&order.promotions, &l.sku, currency)?,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?,
                    shipping: discounted_shipping,
                };
                let b = calculator.calculate_checked(&tax_request).await?;
                for (line, taxed) in order.lines.iter_mut().zip(&b.lines) {
                    line.tax = Some(LineTax {
                        tax_class: taxed.tax_class.clone(),
                        rate: taxed.amount.rate,
                        net: taxed.amount.net,
                        tax: taxed.amount.tax,
                        gross: taxed.amount.gross,
                    });
                }
                order.tax = b.tax_total;
                order.checkout.tax = Some(OrderTax {
                    prices: *prices,
                    shipping_tax: b.shipping.tax,
                    jurisdictions: b.jurisdictions.clone(),
                });
                breakdown = Some(b);
            }
        }
        Ok((order, rejected, options, breakdown))
    }

    /// The product of every line, in line order.
    async fn products(&self, lines: &[NewOrderLine]) -> Result<Vec<Product>> {
        let mut out = Vec::with_capacity(lines.len());
        for l in lines {
            let p = self
                .catalog
                .get_product_by_sku(&l.sku)
                .await?
                .ok_or_else(|| Error::not_found(EntityKind::Variant, &l.sku))?;
            out.push(p);
        }
        Ok(out)
    }

    /// Evaluates the automatic promotions and the request's codes on `input`.
    async fn evaluate(
        &self,
        store: &dyn PromotionStore,
        policy: StackingPolicy,
        mut input: EvaluationInput,
        codes: &[String],
    ) -> Result<Evaluation> {
        let automatic: Vec<Offer> = store.automatic_offers(input.now).await?;
        let found: Vec<CodeLookup> = if codes.is_empty() {
            Vec::new()
        } else {
            store.lookup_codes(codes).await?
        };
        let wants_first_order = automatic
            .iter()
            .map(|o| &o.promotion)
            .chain(found.iter().filter_map(|c| match c {
                CodeLookup::Found { promotion, .. } => Some(promotion.as_ref()),
                _ => None,
            }))
            .any(|p| p.conditions.contains(&Condition::FirstOrder));
        if wants_first_order {
            let earlier = self
                .orders
                .list_orders(&OrderQuery {
                    customer_id: input.customer.id.clone(),
                    limit: 1,
                    ..OrderQuery::default()
                })
                .await?;
            input.customer.first_order = earlier.items.is_empty();
        }
        evaluate(&input, &automatic, &found, policy)
    }

    /// Shipping and tax for `subtotal` (without promotions).
    pub fn charges(&self, subtotal: &Money) -> Result<(Money, Money)> {
        Ok((self.shipping(subtotal)?, self.tax(subtotal)?))
    }

    /// Shipping for `subtotal` (before discounts).
    fn shipping(&self, subtotal: &Money) -> Result<Money> {
        let currency = subtotal.currency();
        let free = self
            .config
            .free_shipping_from
            .is_some_and(|from| subtotal.amount() >= from);
        if free {
            Ok(Money::zero(currency))
        } else {
            Money::new(self.config.flat_shipping, currency)
        }
    }

    /// Tax on `taxable`.
    fn tax(&self, taxable: &Money) -> Result<Money> {
        taxable.mul_decimal_rounded(self.config.tax_rate)
    }
}

/// The tax class of `sku` in `product`: the variant's [`TAX_CLASS_ATTRIBUTE`], else the
/// product's, else `standard`. A value that is not a valid class name is `Validation`.
fn tax_class(product: &Product, sku: &Sku) -> Result<TaxClass> {
    let attribute = product
        .variant(sku)
        .and_then(|v| v.attributes.get(TAX_CLASS_ATTRIBUTE))
        .or_else(|| product.attributes.get(TAX_CLASS_ATTRIBUTE));
    match attribute {
        None => Ok(TaxClass::standard()),
        Some(AttributeValue::Text(t)) => TaxClass::new(t.clone()),
        Some(other) => Err(Error::validation(
            TAX_CLASS_ATTRIBUTE,
            format!("{sku}: {other:?} is not a class name"),
        )),
    }
}

/// `base` (lines and shipping; its tax and promotions are replaced) with what each
/// promotion of `evaluation` gave, and tax at `tax_rate` on the subtotal after the line
/// discounts: the order checkout creates.
pub(crate) fn discounted_order(
    mut base: NewOrder,
    evaluation: Option<&Evaluation>,
    tax_rate: Decimal,
) -> Result<NewOrder> {
    let currency = base.shipping.currency();
    let subtotal = Money::try_sum(
        currency,
        base.lines
            .iter()
            .map(|l| l.unit_price.checked_mul(u64::from(l.quantity)))
            .collect::<Result<Vec<_>>>()?
            .iter(),
    )?;
    base.promotions = match evaluation {
        Some(e) => order_promotions(e)?,
        None => Vec::new(),
    };
    let discount = Money::try_sum(
        currency,
        base.promotions
            .iter()
            .flat_map(|p| p.lines.iter().map(|l| &l.amount)),
    )?;
    base.tax = subtotal
        .checked_sub(&discount)?
        .mul_decimal_rounded(tax_rate)?;
    Ok(base)
}

/// What each applied promotion of `evaluation` gave, for the order.
fn order_promotions(evaluation: &Evaluation) -> Result<Vec<OrderPromotion>> {
    evaluation
        .applied
        .iter()
        .map(|a| {
            let lines = evaluation
                .lines
                .iter()
                .filter_map(|l| {
                    l.shares
                        .iter()
                        .find(|s| s.promotion_id == a.promotion_id && !s.amount.is_zero())
                        .map(|s| LineDiscount {
                            sku: l.sku.clone(),
                            amount: s.amount,
                        })
                })
                .collect();
            Ok(OrderPromotion {
                promotion_id: a.promotion_id.clone(),
                name: a
                    .name
                    .chars()
                    .take(200)
                    .filter(|c| !c.is_control())
                    .collect(),
                code: a.code.clone(),
                lines,
                shipping_discount: a.shipping_discount,
            })
        })
        .collect()
}

/// What the order's promotions took off `sku`'s line.
fn line_discount(promotions: &[OrderPromotion], sku: &Sku, currency: Currency) -> Result<Money> {
    Money::try_sum(
        currency,
        promotions
            .iter()
            .flat_map(|p| p.lines.iter().filter(|l| &l.sku == sku).map(|l| &l.amount)),
    )
}
