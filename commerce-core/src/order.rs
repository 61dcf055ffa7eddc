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
use crate::id::{CustomerId, IdempotencyKey, OrderId, ProductId, Sku};
use crate::money::{Currency, Money};

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
}

/// An order's money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTotals {
    /// Sum of line totals.
    pub subtotal: Money,
    /// Shipping.
    pub shipping: Money,
    /// Tax.
    pub tax: Money,
    /// subtotal + shipping + tax.
    pub total: Money,
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
    /// Shipping charge.
    pub shipping: Money,
    /// Tax.
    pub tax: Money,
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
                line_total,
            });
        }
        for (field, m) in [("shipping", &self.shipping), ("tax", &self.tax)] {
            if m.is_negative() {
                return Err(Error::validation(field, "must not be negative"));
            }
        }
        let subtotal = Money::try_sum(currency, lines.iter().map(|l| &l.line_total))?;
        let total = subtotal
            .checked_add(&self.shipping)?
            .checked_add(&self.tax)?;
        Ok(Order {
            id: self.id.unwrap_or_else(OrderId::generate),
            customer_id: self.customer_id,
            idempotency_key: self.idempotency_key,
            lines,
            totals: OrderTotals {
                subtotal,
                shipping: self.shipping,
                tax: self.tax,
                total,
            },
            status: OrderStatus::Created,
            payment_ref: None,
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }
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
