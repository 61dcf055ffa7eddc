//! Orders, their totals and their status machine.
//!
//! The legal transitions live in one place, [`OrderStatus::can_transition_to`]:
//!
//! | from               | to                                       |
//! |--------------------|------------------------------------------|
//! | CREATED            | PAYMENT_PENDING, CANCELLED               |
//! | PAYMENT_PENDING    | PAYMENT_CONFIRMED, CANCELLED             |
//! | PAYMENT_CONFIRMED  | PREPARING, REFUNDED                      |
//! | PREPARING          | SHIPPED, REFUNDED                        |
//! | SHIPPED            | DELIVERED, PARTIALLY_REFUNDED, REFUNDED  |
//! | DELIVERED          | PARTIALLY_REFUNDED, REFUNDED             |
//! | PARTIALLY_REFUNDED | PARTIALLY_REFUNDED, REFUNDED             |
//! | CANCELLED          | (terminal)                               |
//! | REFUNDED           | (terminal)                               |
//!
//! Before payment an order is *cancelled*; once money has been taken it can only be
//! *refunded*. Returns of shipped goods
//! ([`ReturnsService`](crate::service::ReturnsService)) move the order to
//! PARTIALLY_REFUNDED with every refund (a PARTIALLY_REFUNDED -> PARTIALLY_REFUNDED
//! entry in the history per further refund, so each one is recorded), and to REFUNDED
//! with the refund after which everything paid was given back.
//!
//! ```
//! use commerce_core::order::OrderStatus::*;
//!
//! assert!(Created.can_transition_to(PaymentPending));
//! assert!(!Shipped.can_transition_to(Cancelled));
//! assert!(Refunded.is_terminal());
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use rust_decimal::Decimal;

use crate::address::Address;
use crate::clock::Timestamp;
use crate::error::{EntityKind, Error, Result};
use crate::id::{CustomerId, IdempotencyKey, OrderId, ProductId, PromotionId, Sku};
use crate::money::{Currency, Money};
use crate::promotion::{CouponCode, MAX_REDEMPTION_LINES};
use crate::shipping::ShippingOption;
use crate::tax::{PriceMode, TaxClass};

/// The status of an order, exactly as the brief names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Created from a checkout; stock not yet held.
    Created,
    /// Stock is reserved and the payment is being taken.
    PaymentPending,
    /// Paid; the reservation became a sale.
    PaymentConfirmed,
    /// Handed to fulfilment.
    Preparing,
    /// Left the warehouse.
    Shipped,
    /// Arrived.
    Delivered,
    /// Abandoned before payment (declined, out of stock, expired, by the customer).
    Cancelled,
    /// Paid and then refunded.
    Refunded,
    /// Shipped, then part of what was paid was refunded (returns of some units);
    /// declared last so stored and serialized names of the others stay as they were.
    PartiallyRefunded,
}

impl OrderStatus {
    /// Every status.
    pub const ALL: [OrderStatus; 9] = [
        Self::Created,
        Self::PaymentPending,
        Self::PaymentConfirmed,
        Self::Preparing,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
        Self::Refunded,
        Self::PartiallyRefunded,
    ];

    /// Whether `self -> to` is legal (see the [module table](self)).
    pub fn can_transition_to(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (Created, PaymentPending)
                | (Created, Cancelled)
                | (PaymentPending, PaymentConfirmed)
                | (PaymentPending, Cancelled)
                | (PaymentConfirmed, Preparing)
                | (PaymentConfirmed, Refunded)
                | (Preparing, Shipped)
                | (Preparing, Refunded)
                | (Shipped, Delivered)
                | (Shipped, PartiallyRefunded)
                | (Shipped, Refunded)
                | (Delivered, PartiallyRefunded)
                | (Delivered, Refunded)
                | (PartiallyRefunded, PartiallyRefunded)
                | (PartiallyRefunded, Refunded)
        )
    }

    /// Checks `self -> to`.
    pub fn check_transition(self, to: OrderStatus) -> Result<()> {
        if self.can_transition_to(to) {
            Ok(())
        } else {
            Err(Error::invalid_transition(EntityKind::Order, self, to))
        }
    }

    /// Whether no transition leaves this status.
    pub fn is_terminal(self) -> bool {
        Self::ALL.iter().all(|&to| !self.can_transition_to(to))
    }

    /// Whether the customer has paid (and not been refunded in full).
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            Self::PaymentConfirmed
                | Self::Preparing
                | Self::Shipped
                | Self::Delivered
                | Self::PartiallyRefunded
        )
    }

    /// Whether the goods have left the warehouse (returns are possible).
    pub fn is_shipped(self) -> bool {
        matches!(
            self,
            Self::Shipped | Self::Delivered | Self::PartiallyRefunded
        )
    }

    /// The upper-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::PaymentPending => "PAYMENT_PENDING",
            Self::PaymentConfirmed => "PAYMENT_CONFIRMED",
            Self::Preparing => "PREPARING",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
            Self::Cancelled => "CANCELLED",
            Self::Refunded => "REFUNDED",
            Self::PartiallyRefunded => "PARTIALLY_REFUNDED",
        }
    }

    /// Parses the upper-case name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::validation("status", format!("unknown order status {s:?}")))
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an order, priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "OrderLineRepr")]
pub struct OrderLine {
    /// The product.
    pub product_id: ProductId,
    /// The variant.
    pub sku: Sku,
    /// The product title at order time.
    pub title: String,
    /// Units.
    pub quantity: u32,
    /// Unit price charged.
    pub unit_price: Money,
    /// `unit_price * quantity`.
    pub line_total: Money,
    /// What the order's promotions took off this line (zero without promotions; at
    /// most `line_total`).
    pub discount: Money,
    /// The line's tax as the checkout's tax calculator computed it (`None` for orders
    /// placed with the flat tax rate, whose tax is only on the totals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax: Option<LineTax>,
}

/// An [`OrderLine`] as stored; orders stored before discounts existed have none.
#[derive(Deserialize)]
struct OrderLineRepr {
    product_id: ProductId,
    sku: Sku,
    title: String,
    quantity: u32,
    unit_price: Money,
    line_total: Money,
    #[serde(default)]
    discount: Option<Money>,
    #[serde(default)]
    tax: Option<LineTax>,
}

impl From<OrderLineRepr> for OrderLine {
    fn from(r: OrderLineRepr) -> Self {
        OrderLine {
            discount: r
                .discount
                .unwrap_or_else(|| Money::zero(r.line_total.currency())),
            product_id: r.product_id,
            sku: r.sku,
            title: r.title,
            quantity: r.quantity,
            unit_price: r.unit_price,
            line_total: r.line_total,
            tax: r.tax,
        }
    }
}

/// The tax of one order line (from a [`TaxedLine`](crate::tax::TaxedLine)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineTax {
    /// The product's tax class.
    pub tax_class: TaxClass,
    /// The combined rate applied (a fraction: 19 % is `0.19`).
    pub rate: Decimal,
    /// The line's amount without tax, after discounts.
    pub net: Money,
    /// The tax.
    pub tax: Money,
    /// What the customer pays for the line: `net + tax`.
    pub gross: Money,
}

/// How an order's tax was computed (present when checkout used a
/// [`TaxCalculator`](crate::tax::TaxCalculator)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTax {
    /// Whether the prices (line totals and the shipping charge) contain the tax.
    pub prices: PriceMode,
    /// The tax on shipping (part of [`OrderTotals::tax`]).
    pub shipping_tax: Money,
    /// The jurisdictions whose rates applied.
    #[serde(default)]
    pub jurisdictions: Vec<String>,
}

/// Where an order goes, how it ships and how its tax was computed. Every field is
/// optional: orders placed without an address (and orders stored before these fields
/// existed) have none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutDetails {
    /// Where the goods go (validated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
    /// Who pays (validated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_address: Option<Address>,
    /// The shipping option the shopper chose, as priced at checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_option: Option<ShippingOption>,
    /// How the tax was computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax: Option<OrderTax>,
}

impl CheckoutDetails {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self == &CheckoutDetails::default()
    }

    /// Whether the order's prices contain the tax.
    pub fn prices_include_tax(&self) -> bool {
        self.tax
            .as_ref()
            .is_some_and(|t| t.prices == PriceMode::TaxInclusive)
    }
}

/// An order's money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "OrderTotalsRepr")]
pub struct OrderTotals {
    /// Sum of line totals.
    pub subtotal: Money,
    /// Shipping charged (after any shipping discount of a promotion).
    pub shipping: Money,
    /// Tax.
    pub tax: Money,
    /// subtotal - discount + shipping + tax; subtotal - discount + shipping when the
    /// prices contain the tax ([`CheckoutDetails::prices_include_tax`]). Never negative.
    pub total: Money,
    /// The sum of the lines' discounts (at most `subtotal`).
    pub discount: Money,
}

/// [`OrderTotals`] as stored; orders stored before discounts existed have none.
#[derive(Deserialize)]
struct OrderTotalsRepr {
    subtotal: Money,
    shipping: Money,
    tax: Money,
    total: Money,
    #[serde(default)]
    discount: Option<Money>,
}

impl From<OrderTotalsRepr> for OrderTotals {
    fn from(r: OrderTotalsRepr) -> Self {
        OrderTotals {
            discount: r
                .discount
                .unwrap_or_else(|| Money::zero(r.subtotal.currency())),
            subtotal: r.subtotal,
            shipping: r.shipping,
            tax: r.tax,
            total: r.total,
        }
    }
}

/// What one promotion gave an order (see [`crate::promotion`]): recorded on the order
/// and reserved as a redemption by the [`OrderPipeline`](crate::service::OrderPipeline)
/// together with its stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPromotion {
    /// The promotion.
    pub promotion_id: PromotionId,
    /// Its name at order time.
    pub name: String,
    /// The code it came with, if any.
    pub code: Option<CouponCode>,
    /// What it took off each line (lines it took nothing off are left out).
    pub lines: Vec<LineDiscount>,
    /// What it took off shipping.
    pub shipping_discount: Money,
}

impl OrderPromotion {
    /// What it took off the lines.
    pub fn line_discount(&self, currency: Currency) -> Result<Money> {
        Money::try_sum(currency, self.lines.iter().map(|l| &l.amount))
    }

    /// Everything it gave: lines and shipping (what its redemption holds).
    pub fn amount(&self) -> Result<Money> {
        self.line_discount(self.shipping_discount.currency())?
            .checked_add(&self.shipping_discount)
    }
}

/// One promotion's part of one line's discount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDiscount {
    /// The line's SKU.
    pub sku: Sku,
    /// What the promotion took off it.
    pub amount: Money,
}

impl OrderTotals {
    /// What `total` must be: `subtotal - discount + shipping`, plus `tax` unless the
    /// prices contain it.
    pub fn expected_total(&self, prices_include_tax: bool) -> Result<Money> {
        let total = self
            .subtotal
            .checked_sub(&self.discount)?
            .checked_add(&self.shipping)?;
        if prices_include_tax {
            Ok(total)
        } else {
            total.checked_add(&self.tax)
        }
    }
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Identifier.
    pub id: OrderId,
    /// The buyer.
    pub customer_id: CustomerId,
    /// The checkout's idempotency key (unique across orders).
    pub idempotency_key: IdempotencyKey,
    /// Lines.
    pub lines: Vec<OrderLine>,
    /// Money.
    pub totals: OrderTotals,
    /// The promotions applied, in the order they were applied; their line parts sum to
    /// each line's `discount`.
    #[serde(default)]
    pub promotions: Vec<OrderPromotion>,
    /// Current status.
    pub status: OrderStatus,
    /// The payment provider's reference once a charge was made.
    pub payment_ref: Option<String>,
    /// Bumped by every transition.
    pub version: u64,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Addresses, the chosen shipping option and how tax was computed.
    #[serde(default, skip_serializing_if = "CheckoutDetails::is_empty")]
    pub checkout: CheckoutDetails,
}

impl Order {
    /// The order's basket: `(sku, quantity)` per line, merged by SKU and sorted. Two
    /// checkouts under one idempotency key must have the same basket.
    ///
    /// ```
    /// # use commerce_core::order::NewOrder;
    /// # fn demo(a: &commerce_core::order::Order) {
    /// assert_eq!(a.basket(), a.basket());
    /// # }
    /// ```
    pub fn basket(&self) -> Vec<(Sku, u64)> {
        basket(self.lines.iter().map(|l| (&l.sku, l.quantity)))
    }

    /// The order's currency.
    pub fn currency(&self) -> Currency {
        self.totals.total.currency()
    }
}

/// The input of an order: lines and charges; totals are computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    /// Identifier; generated when `None`.
    pub id: Option<OrderId>,
    /// The buyer.
    pub customer_id: CustomerId,
    /// The checkout's idempotency key.
    pub idempotency_key: IdempotencyKey,
    /// Lines as `(product, sku, title, quantity, unit price)`; totals are computed.
    pub lines: Vec<NewOrderLine>,
    /// Shipping charge (before any shipping discount).
    pub shipping: Money,
    /// Tax.
    pub tax: Money,
    /// Addresses, shipping option and tax details (all optional).
    #[serde(default, skip_serializing_if = "CheckoutDetails::is_empty")]
    pub checkout: CheckoutDetails,
    /// The promotions applied (empty: none), checked and summed by
    /// [`into_order`](Self::into_order).
    #[serde(default)]
    pub promotions: Vec<OrderPromotion>,
}

/// A line of a [`NewOrder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrderLine {
    /// The product.
    pub product_id: ProductId,
    /// The variant.
    pub sku: Sku,
    /// Title shown on the order.
    pub title: String,
    /// Units, 1 to 1,000,000.
    pub quantity: u32,
    /// Unit price.
    pub unit_price: Money,
    /// The line's tax, if computed per line (requires [`CheckoutDetails::tax`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax: Option<LineTax>,
}

/// Most lines in one order.
pub const MAX_ORDER_LINES: usize = 250;

impl NewOrder {
    /// Validates the lines and computes the totals, giving the `CREATED` order at `now`.
    ///
    /// Every amount must be non-negative and in one currency; SKUs must be distinct.
    /// Promotions (at most [`MAX_REDEMPTION_LINES`], each once) may only name the
    /// order's SKUs; together they may take at most a line's total off a line and at
    /// most the shipping off shipping, else `Validation`. The line discounts are summed
    /// into each line's `discount` and the totals' `discount`; the shipping discounts
    /// come off `shipping`.
    pub fn into_order(self, now: Timestamp) -> Result<Order> {
        let Some(first) = self.lines.first() else {
            return Err(Error::validation(
                "lines",
                "an order needs at least one line",
            ));
        };
        if self.lines.len() > MAX_ORDER_LINES {
            return Err(Error::validation(
                "lines",
                format!("at most {MAX_ORDER_LINES} lines"),
            ));
        }
        let currency = first.unit_price.currency();
        let mut lines = Vec::with_capacity(self.lines.len());
        let mut seen = std::collections::HashSet::new();
        for (i, l) in self.lines.into_iter().enumerate() {
            crate::inventory::check_quantity(l.quantity).map_err(|_| {
                Error::validation(format!("lines[{i}].quantity"), "must be 1 to 1,000,000")
            })?;
            if !seen.insert(l.sku.clone()) {
                return Err(Error::validation(
                    format!("lines[{i}].sku"),
                    format!("{} is repeated", l.sku),
                ));
            }
            if l.unit_price.is_negative() {
                return Err(Error::validation(
                    format!("lines[{i}].unit_price"),
                    "must not be negative",
                ));
            }
            if l.title.chars().count() > 200 || l.title.chars().any(char::is_control) {
                return Err(Error::validation(
                    format!("lines[{i}].title"),
                    "at most 200 characters, no control characters",
                ));
            }
            let line_total = l.unit_price.checked_mul(u64::from(l.quantity))?;
            if let Some(t) = &l.tax {
                check_line_tax(i, t, &line_total, &self.checkout)?;
            }
            lines.push(OrderLine {
                product_id: l.product_id,
                sku: l.sku,
                title: l.title,
                quantity: l.quantity,
                unit_price: l.unit_price,
                discount: Money::zero(line_total.currency()),
                line_total,
                tax: l.tax,
            });
        }
        for (field, m) in [("shipping", &self.shipping), ("tax", &self.tax)] {
            if m.is_negative() {
                return Err(Error::validation(field, "must not be negative"));
            }
        }
        self.checkout
            .check(currency, &lines, &self.shipping, &self.tax)?;
        let subtotal = Money::try_sum(currency, lines.iter().map(|l| &l.line_total))?;
        let shipping = apply_promotions(&self.promotions, &mut lines, self.shipping, currency)?;
        let discount = Money::try_sum(currency, lines.iter().map(|l| &l.discount))?;
        let mut totals = OrderTotals {
            subtotal,
            shipping,
            tax: self.tax,
            total: subtotal,
            discount,
        };
        totals.total = totals.expected_total(self.checkout.prices_include_tax())?;
        Ok(Order {
            id: self.id.unwrap_or_else(OrderId::generate),
            customer_id: self.customer_id,
            idempotency_key: self.idempotency_key,
            lines,
            totals,
            promotions: self.promotions,
            status: OrderStatus::Created,
            payment_ref: None,
            version: 1,
            created_at: now,
            updated_at: now,
            checkout: self.checkout,
        })
    }
}

fn same_currency(field: &str, currency: Currency, m: &Money) -> Result<()> {
    if m.currency() != currency {
        return Err(Error::CurrencyMismatch {
            left: currency,
            right: m.currency(),
        });
    }
    if m.is_negative() {
        return Err(Error::validation(field, "must not be negative"));
    }
    Ok(())
}

/// A line's tax: in the line's currency, not negative, `net + tax = gross`, the
/// price-mode side (gross when prices contain tax, else net) at most the line total
/// (less when discounted), and only with [`CheckoutDetails::tax`] set.
fn check_line_tax(i: usize, t: &LineTax, line_total: &Money, d: &CheckoutDetails) -> Result<()> {
    let field = format!("lines[{i}].tax");
    if d.tax.is_none() {
        return Err(Error::validation(
            field,
            "a line's tax needs the order's tax details (checkout.tax)",
        ));
    }
    for m in [&t.net, &t.tax, &t.gross] {
        same_currency(&field, line_total.currency(), m)?;
    }
    if t.net.checked_add(&t.tax)? != t.gross {
        return Err(Error::validation(field, "net + tax is not gross"));
    }
    let side = if d.prices_include_tax() {
        &t.gross
    } else {
        &t.net
    };
    if side.try_cmp(line_total)? == std::cmp::Ordering::Greater {
        return Err(Error::validation(field, "is more than the line total"));
    }
    Ok(())
}

impl CheckoutDetails {
    /// Checks the details against the order's lines and charges: with tax details,
    /// every line has its tax and the lines' tax plus the shipping tax is `tax`; a
    /// chosen shipping option's price is `shipping`.
    fn check(
        &self,
        currency: Currency,
        lines: &[OrderLine],
        shipping: &Money,
        tax: &Money,
    ) -> Result<()> {
        if let Some(t) = &self.tax {
            same_currency("checkout.tax.shipping_tax", currency, &t.shipping_tax)?;
            let mut sum = t.shipping_tax;
            for (i, l) in lines.iter().enumerate() {
                let Some(lt) = &l.tax else {
                    return Err(Error::validation(
                        format!("lines[{i}].tax"),
                        "every line needs its tax when the order has tax details",
                    ));
                };
                sum = sum.checked_add(&lt.tax)?;
            }
            if &sum != tax {
                return Err(Error::validation(
                    "tax",
                    format!("{tax} is not the lines' and shipping's tax {sum}"),
                ));
            }
            if t.jurisdictions.len() > 16
                || t.jurisdictions
                    .iter()
                    .any(|j| j.chars().count() > 100 || j.chars().any(char::is_control))
            {
                return Err(Error::validation(
                    "checkout.tax.jurisdictions",
                    "at most 16 names of at most 100 characters",
                ));
            }
        }
        if let Some(o) = &self.shipping_option {
            if &o.price != shipping {
                return Err(Error::validation(
                    "shipping",
                    format!("{shipping} is not the chosen option's price {}", o.price),
                ));
            }
            if o.method_id.is_empty()
                || o.method_id.len() > 64
                || o.name.chars().count() > 200
                || o.zone.chars().count() > 200
            {
                return Err(Error::validation(
                    "checkout.shipping_option",
                    "method id 1 to 64 bytes, name and zone at most 200 characters",
                ));
            }
        }
        Ok(())
    }
}

/// Checks `promotions` against `lines` and adds their line parts to the lines'
/// discounts; returns the shipping left after their shipping discounts.
fn apply_promotions(
    promotions: &[OrderPromotion],
    lines: &mut [OrderLine],
    shipping: Money,
    currency: Currency,
) -> Result<Money> {
    if promotions.len() > MAX_REDEMPTION_LINES {
        return Err(Error::validation(
            "promotions",
            format!("at most {MAX_REDEMPTION_LINES} promotions"),
        ));
    }
    let mut shipping_left = shipping;
    let mut seen = std::collections::HashSet::new();
    for (i, p) in promotions.iter().enumerate() {
        if !seen.insert(&p.promotion_id) {
            return Err(Error::validation(
                format!("promotions[{i}]"),
                format!("promotion {} appears twice", p.promotion_id),
            ));
        }
        if p.name.chars().count() > 200 || p.name.chars().any(char::is_control) {
            return Err(Error::validation(
                format!("promotions[{i}].name"),
                "at most 200 characters, no control characters",
            ));
        }
        let field = |what: &str| format!("promotions[{i}].{what}");
        for d in &p.lines {
            if d.amount.currency() != currency {
                return Err(Error::CurrencyMismatch {
                    left: d.amount.currency(),
                    right: currency,
                });
            }
            if d.amount.is_negative() {
                return Err(Error::validation(field("lines"), "must not be negative"));
            }
            let line = lines.iter_mut().find(|l| l.sku == d.sku).ok_or_else(|| {
                Error::validation(field("lines"), format!("{} is not in the order", d.sku))
            })?;
            let discount = line.discount.checked_add(&d.amount)?;
            if discount.try_cmp(&line.line_total)? == std::cmp::Ordering::Greater {
                return Err(Error::validation(
                    field("lines"),
                    format!("the discounts of {} exceed its total", d.sku),
                ));
            }
            line.discount = discount;
        }
        if p.shipping_discount.currency() != currency {
            return Err(Error::CurrencyMismatch {
                left: p.shipping_discount.currency(),
                right: currency,
            });
        }
        if p.shipping_discount.is_negative() {
            return Err(Error::validation(
                field("shipping_discount"),
                "must not be negative",
            ));
        }
        shipping_left = shipping_left.checked_sub(&p.shipping_discount)?;
        if shipping_left.is_negative() {
            return Err(Error::validation(
                field("shipping_discount"),
                "the shipping discounts exceed the shipping",
            ));
        }
    }
    Ok(shipping_left)
}

/// A status change to apply as compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The status the caller believes the order is in.
    pub from: OrderStatus,
    /// The status to move to.
    pub to: OrderStatus,
    /// Why (recorded in the history).
    pub reason: String,
    /// A payment reference to record with the change.
    pub payment_ref: Option<String>,
}

impl Transition {
    /// A transition without a payment reference.
    pub fn new(from: OrderStatus, to: OrderStatus, reason: impl Into<String>) -> Self {
        Transition {
            from,
            to,
            reason: reason.into(),
            payment_ref: None,
        }
    }

    /// Checks the reason's length and the transition's legality.
    pub fn validate(&self) -> Result<()> {
        if self.reason.chars().count() > 500 || self.reason.contains('\0') {
            return Err(Error::validation(
                "reason",
                "at most 500 characters, no NUL",
            ));
        }
        if let Some(r) = &self.payment_ref {
            if r.is_empty() || r.len() > 200 || r.chars().any(char::is_control) {
                return Err(Error::validation(
                    "payment_ref",
                    "1 to 200 bytes, no control characters",
                ));
            }
        }
        self.from.check_transition(self.to)
    }
}

/// One entry of an order's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The previous status (`None` for the creation entry).
    pub from: Option<OrderStatus>,
    /// The new status.
    pub to: OrderStatus,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// `(sku, quantity)` pairs merged by SKU and sorted.
pub(crate) fn basket<'a>(lines: impl Iterator<Item = (&'a Sku, u32)>) -> Vec<(Sku, u64)> {
    let mut merged: std::collections::BTreeMap<&Sku, u64> = std::collections::BTreeMap::new();
    for (sku, q) in lines {
        *merged.entry(sku).or_default() += u64::from(q);
    }
    merged.into_iter().map(|(s, q)| (s.clone(), q)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exactly_the_documented_transitions() {
        let legal = OrderStatus::ALL
            .iter()
            .flat_map(|&a| OrderStatus::ALL.iter().map(move |&b| (a, b)))
            .filter(|(a, b)| a.can_transition_to(*b))
            .count();
        assert_eq!(legal, 15);
        let terminal: Vec<_> = OrderStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            vec![OrderStatus::Cancelled, OrderStatus::Refunded]
        );
    }

    proptest! {
        /// Any walk through the machine from CREATED reaches only statuses that are
        /// reachable, never leaves a terminal status, and never returns to CREATED.
        #[test]
        fn random_walks_respect_the_table(steps in prop::collection::vec(0usize..9, 0..30)) {
            let mut s = OrderStatus::Created;
            for i in steps {
                let to = OrderStatus::ALL[i];
                match s.check_transition(to) {
                    Ok(()) => { prop_assert!(!s.is_terminal()); s = to; }
                    Err(Error::InvalidTransition { .. }) => {}
                    Err(e) => prop_assert!(false, "{e}"),
                }
                prop_assert_ne!(s.can_transition_to(OrderStatus::Created), true);
            }
        }

        #[test]
        fn status_names_round_trip(i in 0usize..9) {
            let s = OrderStatus::ALL[i];
            prop_assert_eq!(OrderStatus::parse(s.as_str()).unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }
}
