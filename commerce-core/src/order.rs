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
//! | SHIPPED            | DELIVERED                                |
//! | DELIVERED          | REFUNDED                                 |
//! | CANCELLED          | (terminal)                               |
//! | REFUNDED           | (terminal)                               |
//!
//! Before payment an order is *cancelled*; once money has been taken it can only be
//! *refunded*.
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

use crate::clock::Timestamp;
use crate::error::{EntityKind, Error, Result};
use crate::id::{CustomerId, IdempotencyKey, OrderId, ProductId, PromotionId, Sku};
use crate::money::{Currency, Money};
use crate::promotion::{CouponCode, MAX_REDEMPTION_LINES};

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
}

impl OrderStatus {
    /// Every status.
    pub const ALL: [OrderStatus; 8] = [
        Self::Created,
        Self::PaymentPending,
        Self::PaymentConfirmed,
        Self::Preparing,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
        Self::Refunded,
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
                | (Delivered, Refunded)
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

    /// Whether the customer has paid (and not been refunded).
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            Self::PaymentConfirmed | Self::Preparing | Self::Shipped | Self::Delivered
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
        }
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
    /// subtotal - discount + shipping + tax, never negative.
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
            lines.push(OrderLine {
                product_id: l.product_id,
                sku: l.sku,
                title: l.title,
                quantity: l.quantity,
                unit_price: l.unit_price,
                discount: Money::zero(line_total.currency()),
                line_total,
            });
        }
        for (field, m) in [("shipping", &self.shipping), ("tax", &self.tax)] {
            if m.is_negative() {
                return Err(Error::validation(field, "must not be negative"));
            }
        }
        let subtotal = Money::try_sum(currency, lines.iter().map(|l| &l.line_total))?;
        let shipping = apply_promotions(&self.promotions, &mut lines, self.shipping, currency)?;
        let discount = Money::try_sum(currency, lines.iter().map(|l| &l.discount))?;
        let total = subtotal
            .checked_sub(&discount)?
            .checked_add(&shipping)?
            .checked_add(&self.tax)?;
        Ok(Order {
            id: self.id.unwrap_or_else(OrderId::generate),
            customer_id: self.customer_id,
            idempotency_key: self.idempotency_key,
            lines,
            totals: OrderTotals {
                subtotal,
                shipping,
                tax: self.tax,
                total,
                discount,
            },
            promotions: self.promotions,
            status: OrderStatus::Created,
            payment_ref: None,
            version: 1,
            created_at: now,
            updated_at: now,
        })
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
        assert_eq!(legal, 10);
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
        fn random_walks_respect_the_table(steps in prop::collection::vec(0usize..8, 0..30)) {
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
        fn status_names_round_trip(i in 0usize..8) {
            let s = OrderStatus::ALL[i];
            prop_assert_eq!(OrderStatus::parse(s.as_str()).unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }
}
