//! Partial refunds: what an order paid per line, what has been refunded, and what
//! returning some units is worth.
//!
//! * [`PaidOrder`]: what the customer paid, per line (after discounts, with tax) and for
//!   shipping, registered once per order in a
//!   [`RefundLedger`](crate::store::RefundLedger).
//! * [`RefundRequest`]: one refund: for some lines, a number of units returned (0 for a
//!   money-only adjustment) and an amount; plus some shipping. Idempotent per `key`.
//! * [`RefundBalance`]: the ledger's running totals. [`RefundBalance::check`] is **the
//!   guard**: no line is refunded more units than were bought or more money than it
//!   paid, shipping no more than was paid for it, the order no more than its total.
//! * [`quote_refund`]: what returning some units is worth, including their share of
//!   discounts (already inside what the line paid), of tax, and by a
//!   [`ShippingRefundPolicy`] of shipping.
//!
//! # How the quote rounds
//!
//! A line that paid `P` for `Q` units has refunded `r` units; returning `u` more is
//! worth `share(r + u) − share(r)` with `share(k) = P × k / Q` rounded half to even to
//! the minor unit. Returning every unit, in any number of refunds, gives back exactly
//! `P`, never a cent more or less. Tax and discount shares are computed the same way
//! (they are informational: the tax is already inside the amount).
//!
//! ```
//! use commerce_core::refund::*;
//! use commerce_core::id::{OrderId, Sku};
//!
//! let sku = Sku::new("MUG")?;
//! let paid = PaidOrder {
//!     order_id: OrderId::new("o-1")?,
//!     currency: "EUR".parse()?,
//!     lines: vec![PaidLine {
//!         sku: sku.clone(), quantity: 3,
//!         paid: "10.00 EUR".parse()?, tax: "1.60 EUR".parse()?, discount: "2.00 EUR".parse()?,
//!     }],
//!     shipping: "4.90 EUR".parse()?,
//!     shipping_tax: "0.78 EUR".parse()?,
//! };
//! let mut balance = RefundBalance::new(&paid)?;
//! // One mug of three: 10.00 × 1/3 = 3.33 (3.333… rounded), no shipping until the last.
//! let q = quote_refund(&paid, &balance, &[(sku.clone(), 1)], ShippingRefundPolicy::WithLastUnit)?;
//! assert_eq!(q.total.to_string(), "3.33 EUR");
//! balance.apply(&q.clone().into_request(paid.order_id.clone(), "r-1".parse()?, "broken"))?;
//! // The other two: 10.00 − 3.33 = 6.67, and the shipping 4.90 with the last unit.
//! let q = quote_refund(&paid, &balance, &[(sku, 2)], ShippingRefundPolicy::WithLastUnit)?;
//! assert_eq!((q.lines[0].amount.to_string(), q.shipping.to_string()), ("6.67 EUR".into(), "4.90 EUR".into()));
//! # Ok::<(), commerce_core::Error>(())
//! ```

use std::cmp::Ordering;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{IdempotencyKey, OrderId, Sku};
use crate::money::{Currency, Money};
use crate::order::Order;
use crate::tax::TaxBreakdown;

/// What one order line paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidLine {
    /// The variant (distinct within an order).
    pub sku: Sku,
    /// Units bought.
    pub quantity: u32,
    /// What the customer paid for the line: after discounts, with tax.
    pub paid: Money,
    /// The tax inside `paid`.
    pub tax: Money,
    /// The discount the line got (already taken off `paid`).
    pub discount: Money,
}

/// What an order paid, per line and for shipping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidOrder {
    /// The order.
    pub order_id: OrderId,
    /// Every amount's currency.
    pub currency: Currency,
    /// The lines, 1 to 250, distinct SKUs.
    pub lines: Vec<PaidLine>,
    /// Shipping paid, with tax.
    pub shipping: Money,
    /// The tax inside `shipping`.
    pub shipping_tax: Money,
}

fn same_currency(currency: Currency, m: &Money) -> Result<()> {
    if m.currency() == currency {
        Ok(())
    } else {
        Err(Error::CurrencyMismatch {
            left: currency,
            right: m.currency(),
        })
    }
}

fn not_above(field: String, part: &Money, whole: &Money, what: &str) -> Result<()> {
    if part.try_cmp(whole)? == Ordering::Greater {
        return Err(Error::validation(
            field,
            format!("{part} is more than {what} {whole}"),
        ));
    }
    Ok(())
}

impl PaidOrder {
    /// What the order paid as computed by a tax calculator: each line's gross, tax and
    /// discount, shipping's gross and tax.
    pub fn from_tax(order_id: OrderId, currency: Currency, tax: &TaxBreakdown) -> Result<Self> {
        let paid = PaidOrder {
            order_id,
            currency,
            lines: tax
                .lines
                .iter()
                .map(|l| PaidLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    paid: l.amount.gross,
                    tax: l.amount.tax,
                    discount: l.discount,
                })
                .collect(),
            shipping: tax.shipping.gross,
            shipping_tax: tax.shipping.tax,
        };
        paid.validate()?;
        Ok(paid)
    }

    /// What `order` paid, per line and for shipping.
    ///
    /// * An order whose checkout computed tax per line ([`crate::order::OrderTax`]):
    ///   each line paid its `gross` (after discounts, with tax), with its `tax`;
    ///   shipping paid the shipping charge plus, when prices exclude tax, its tax.
    /// * Any other order (flat tax on the totals): what the goods paid
    ///   (`total − shipping`) and the tax are split over the lines in proportion to
    ///   their line totals ([`allocate`](crate::allocate::allocate)); shipping paid
    ///   the shipping charge.
    ///
    /// A line's discount is what its line total lost on the way
    /// (`line_total + tax − paid`, not below zero). The amounts add up to the order's
    /// total, else `Validation` on `total` (what was paid is never guessed).
    pub fn from_order(order: &Order) -> Result<Self> {
        let currency = order.currency();
        let zero = Money::zero(currency);
        let t = &order.totals;
        let tax_detail = order
            .checkout
            .tax
            .as_ref()
            .filter(|_| order.lines.iter().all(|l| l.tax.is_some()));
        let (lines, shipping, shipping_tax) = match tax_detail {
            Some(detail) => {
                let mut lines = Vec::with_capacity(order.lines.len());
                for l in &order.lines {
                    let Some(lt) = &l.tax else { continue };
                    let discount = l.line_total.checked_add(&lt.tax)?.checked_sub(&lt.gross)?;
                    lines.push(PaidLine {
                        sku: l.sku.clone(),
                        quantity: l.quantity,
                        paid: lt.gross,
                        tax: lt.tax,
                        discount: if discount.is_negative() {
                            zero
                        } else {
                            discount
                        },
                    });
                }
                let shipping = if detail.prices == crate::tax::PriceMode::TaxInclusive {
                    t.shipping
                } else {
                    t.shipping.checked_add(&detail.shipping_tax)?
                };
                (lines, shipping, detail.shipping_tax)
            }
            None => {
                let weights: Vec<Money> = order.lines.iter().map(|l| l.line_total).collect();
                let goods = t.total.checked_sub(&t.shipping)?;
                if goods.is_negative() {
                    return Err(Error::validation("total", "is less than the shipping"));
                }
                let paid = crate::allocate::allocate(&goods, &weights)?;
                let tax = crate::allocate::allocate(&t.tax, &weights)?;
                let mut lines = Vec::with_capacity(order.lines.len());
                for ((l, p), x) in order.lines.iter().zip(paid).zip(tax) {
                    let discount = l.line_total.checked_add(&x)?.checked_sub(&p)?;
                    lines.push(PaidLine {
                        sku: l.sku.clone(),
                        quantity: l.quantity,
                        paid: p,
                        tax: min(x, p)?,
                        discount: if discount.is_negative() {
                            zero
                        } else {
                            discount
                        },
                    });
                }
                (lines, t.shipping, zero)
            }
        };
        let paid = PaidOrder {
            order_id: order.id.clone(),
            currency,
            lines,
            shipping,
            shipping_tax,
        };
        paid.validate()?;
        if paid.total()? != t.total {
            return Err(Error::validation(
                "total",
                format!(
                    "order {}: lines and shipping paid {}, not the total {}",
                    order.id,
                    paid.total()?,
                    t.total
                ),
            ));
        }
        Ok(paid)
    }

    /// Checks: 1 to 250 lines with distinct SKUs and quantities 1 to 1,000,000; every
    /// amount in `currency` and not negative; tax at most what it is part of.
    pub fn validate(&self) -> Result<()> {
        if self.lines.is_empty() || self.lines.len() > crate::order::MAX_ORDER_LINES {
            return Err(Error::validation("lines", "1 to 250 lines"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, l) in self.lines.iter().enumerate() {
            if !seen.insert(&l.sku) {
                return Err(Error::validation(
                    format!("lines[{i}].sku"),
                    format!("{} is repeated", l.sku),
                ));
            }
            crate::inventory::check_quantity(l.quantity).map_err(|_| {
                Error::validation(format!("lines[{i}].quantity"), "must be 1 to 1,000,000")
            })?;
            for (name, m) in [
                ("paid", &l.paid),
                ("tax", &l.tax),
                ("discount", &l.discount),
            ] {
                same_currency(self.currency, m)?;
                if m.is_negative() {
                    return Err(Error::validation(
                        format!("lines[{i}].{name}"),
                        "must not be negative",
                    ));
                }
            }
            not_above(
                format!("lines[{i}].tax"),
                &l.tax,
                &l.paid,
                "the line's paid",
            )?;
        }
        for (name, m) in [
            ("shipping", &self.shipping),
            ("shipping_tax", &self.shipping_tax),
        ] {
            same_currency(self.currency, m)?;
            if m.is_negative() {
                return Err(Error::validation(name, "must not be negative"));
            }
        }
        not_above(
            "shipping_tax".into(),
            &self.shipping_tax,
            &self.shipping,
            "shipping",
        )?;
        self.total().map(|_| ())
    }

    /// Σ lines' `paid` + `shipping`.
    pub fn total(&self) -> Result<Money> {
        Money::try_sum(self.currency, self.lines.iter().map(|l| &l.paid))?
            .checked_add(&self.shipping)
    }

    /// The line of `sku`.
    pub fn line(&self, sku: &Sku) -> Option<&PaidLine> {
        self.lines.iter().find(|l| &l.sku == sku)
    }
}

/// One line of a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLine {
    /// The order line's variant.
    pub sku: Sku,
    /// Units returned with this refund (0 for a money-only adjustment).
    pub quantity: u32,
    /// Money given back for this line.
    pub amount: Money,
}

/// A refund to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    /// The order.
    pub order_id: OrderId,
    /// Makes the refund retry-safe: unique per order. The payment gateway's refund
    /// should carry the same key.
    pub key: IdempotencyKey,
    /// Lines refunded (at most 250, distinct SKUs; may be empty for shipping only).
    pub lines: Vec<RefundLine>,
    /// Shipping refunded.
    pub shipping: Money,
    /// Why, at most 500 characters, no control characters except newlines.
    pub reason: String,
}

impl RefundRequest {
    /// Checks the shape (not the amounts against the order: that is
    /// [`RefundBalance::check`]): at most 250 distinct lines; quantities at most
    /// 1,000,000; no negative amount; every line returns units or money; something is
    /// refunded; the reason is at most 500 characters without control characters
    /// (newlines and tabs allowed).
    pub fn validate(&self) -> Result<()> {
        if self.lines.len() > crate::order::MAX_ORDER_LINES {
            return Err(Error::validation("lines", "at most 250 lines"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, l) in self.lines.iter().enumerate() {
            if !seen.insert(&l.sku) {
                return Err(Error::validation(
                    format!("lines[{i}].sku"),
                    format!("{} is repeated", l.sku),
                ));
            }
            if l.quantity > crate::inventory::MAX_QUANTITY {
                return Err(Error::validation(
                    format!("lines[{i}].quantity"),
                    "at most 1,000,000",
                ));
            }
            if l.amount.is_negative() {
                return Err(Error::validation(
                    format!("lines[{i}].amount"),
                    "must not be negative",
                ));
            }
            if l.quantity == 0 && l.amount.is_zero() {
                return Err(Error::validation(
                    format!("lines[{i}]"),
                    "returns no units and refunds no money",
                ));
            }
        }
        if self.shipping.is_negative() {
            return Err(Error::validation("shipping", "must not be negative"));
        }
        if self.lines.is_empty() && self.shipping.is_zero() {
            return Err(Error::validation("refund", "refunds nothing"));
        }
        if self.reason.chars().count() > 500
            || self
                .reason
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(Error::validation(
                "reason",
                "at most 500 characters, no control characters",
            ));
        }
        Ok(())
    }

    /// Σ line amounts + shipping, in `currency`.
    pub fn total(&self, currency: Currency) -> Result<Money> {
        Money::try_sum(currency, self.lines.iter().map(|l| &l.amount))?.checked_add(&self.shipping)
    }

    /// Whether `other` asks for the same refund (same lines, shipping and reason): a
    /// replay of the same key must.
    pub fn same_as(&self, other: &RefundRequest) -> bool {
        self.order_id == other.order_id
            && self.lines == other.lines
            && self.shipping == other.shipping
            && self.reason == other.reason
    }
}

/// A recorded refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// What was asked (and granted).
    pub request: RefundRequest,
    /// Σ line amounts + shipping.
    pub total: Money,
    /// When it was recorded (the ledger's clock).
    pub created_at: Timestamp,
}

/// A line's running totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineBalance {
    /// The variant.
    pub sku: Sku,
    /// Units bought.
    pub quantity: u32,
    /// What the line paid.
    pub paid: Money,
    /// Units returned so far.
    pub refunded_units: u32,
    /// Money refunded for the line so far.
    pub refunded: Money,
}

/// An order's refund totals: what was paid and what has been refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundBalance {
    /// The order.
    pub order_id: OrderId,
    /// The currency.
    pub currency: Currency,
    /// Per line, in the paid order's line order.
    pub lines: Vec<LineBalance>,
    /// Shipping paid.
    pub shipping_paid: Money,
    /// Shipping refunded so far.
    pub shipping_refunded: Money,
    /// Everything paid.
    pub total_paid: Money,
    /// Everything refunded so far.
    pub total_refunded: Money,
}

impl RefundBalance {
    /// Nothing refunded yet of `paid` (validated).
    pub fn new(paid: &PaidOrder) -> Result<Self> {
        paid.validate()?;
        let zero = Money::zero(paid.currency);
        Ok(RefundBalance {
            order_id: paid.order_id.clone(),
            currency: paid.currency,
            lines: paid
                .lines
                .iter()
                .map(|l| LineBalance {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    paid: l.paid,
                    refunded_units: 0,
                    refunded: zero,
                })
                .collect(),
            shipping_paid: paid.shipping,
            shipping_refunded: zero,
            total_paid: paid.total()?,
            total_refunded: zero,
        })
    }

    /// The guard: `request` is valid ([`RefundRequest::validate`]), for this order, in
    /// its currency, names only its lines, and after it no line has more units
    /// returned than bought or more money refunded than it paid, shipping no more than
    /// was paid, the order no more than its total. `Validation` (naming the first line
    /// or amount that would exceed what remains), `CurrencyMismatch` otherwise.
    pub fn check(&self, request: &RefundRequest) -> Result<()> {
        request.validate()?;
        if request.order_id != self.order_id {
            return Err(Error::validation("order_id", "another order's ledger"));
        }
        // What does not depend on earlier refunds first, so that every ledger names
        // the same problem whatever it has recorded.
        let mut found = Vec::with_capacity(request.lines.len());
        for (i, l) in request.lines.iter().enumerate() {
            same_currency(self.currency, &l.amount)?;
            let Some(line) = self.lines.iter().find(|b| b.sku == l.sku) else {
                return Err(Error::validation(
                    format!("lines[{i}].sku"),
                    format!("{} is not a line of order {}", l.sku, self.order_id),
                ));
            };
            found.push(line);
        }
        same_currency(self.currency, &request.shipping)?;
        for (i, (l, line)) in request.lines.iter().zip(found).enumerate() {
            let remaining_units = line.quantity.saturating_sub(line.refunded_units);
            if l.quantity > remaining_units {
                return Err(Error::validation(
                    format!("lines[{i}].quantity"),
                    format!(
                        "returns {} units of {} but only {remaining_units} of {} remain",
                        l.quantity, l.sku, line.quantity
                    ),
                ));
            }
            let remaining = line.paid.checked_sub(&line.refunded)?;
            not_above(
                format!("lines[{i}].amount"),
                &l.amount,
                &remaining,
                "what remains of the line's",
            )?;
        }
        let shipping_left = self.shipping_paid.checked_sub(&self.shipping_refunded)?;
        not_above(
            "shipping".into(),
            &request.shipping,
            &shipping_left,
            "the shipping that remains,",
        )?;
        let total_left = self.total_paid.checked_sub(&self.total_refunded)?;
        not_above(
            "refund".into(),
            &request.total(self.currency)?,
            &total_left,
            "what remains of the order's",
        )
    }

    /// Checks `request` ([`RefundBalance::check`]) and adds it to the totals.
    pub fn apply(&mut self, request: &RefundRequest) -> Result<()> {
        self.check(request)?;
        for l in &request.lines {
            if let Some(line) = self.lines.iter_mut().find(|b| b.sku == l.sku) {
                line.refunded_units += l.quantity;
                line.refunded = line.refunded.checked_add(&l.amount)?;
            }
        }
        self.shipping_refunded = self.shipping_refunded.checked_add(&request.shipping)?;
        self.total_refunded = self
            .total_refunded
            .checked_add(&request.total(self.currency)?)?;
        Ok(())
    }

    /// What can still be refunded.
    pub fn remaining(&self) -> Result<Money> {
        self.total_paid.checked_sub(&self.total_refunded)
    }

    /// Whether everything paid has been refunded (the order becomes `REFUNDED`).
    pub fn is_fully_refunded(&self) -> bool {
        self.total_refunded == self.total_paid
    }

    /// Whether every unit of every line has been returned.
    pub fn all_units_returned(&self) -> bool {
        self.lines.iter().all(|l| l.refunded_units == l.quantity)
    }
}

/// When shipping is refunded by [`quote_refund`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShippingRefundPolicy {
    /// Never: shipping was a service rendered (a host may still refund it by hand).
    Never,
    /// In proportion to the goods' value refunded: after refunding goods worth `G` of
    /// `G_total`, shipping `S × G / G_total` (rounded half to even) has been refunded;
    /// refunding all goods refunds all shipping.
    Proportional,
    /// All remaining shipping with the refund that returns the order's last unit
    /// (Shopify's and Saleor's default for a full return), nothing before.
    WithLastUnit,
}

/// A refund as [`quote_refund`] priced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundQuote {
    /// Per line.
    pub lines: Vec<QuotedLine>,
    /// Shipping refunded.
    pub shipping: Money,
    /// The tax inside `shipping`.
    pub shipping_tax: Money,
    /// Σ line amounts + shipping.
    pub total: Money,
}

/// One line of a [`RefundQuote`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotedLine {
    /// The variant.
    pub sku: Sku,
    /// Units returned.
    pub quantity: u32,
    /// Money back: these units' share of what the line paid.
    pub amount: Money,
    /// The tax inside `amount`.
    pub tax: Money,
    /// These units' share of the line's discount (already taken off `amount`).
    pub discount: Money,
}

impl RefundQuote {
    /// The quote as a request for the ledger.
    pub fn into_request(
        self,
        order_id: OrderId,
        key: IdempotencyKey,
        reason: impl Into<String>,
    ) -> RefundRequest {
        RefundRequest {
            order_id,
            key,
            lines: self
                .lines
                .into_iter()
                .map(|l| RefundLine {
                    sku: l.sku,
                    quantity: l.quantity,
                    amount: l.amount,
                })
                .collect(),
            shipping: self.shipping,
            reason: reason.into(),
        }
    }
}

/// `whole × k / n`, rounded half to even to the minor unit.
fn share(whole: &Money, k: u64, n: u64) -> Result<Money> {
    if n == 0 {
        return Ok(Money::zero(whole.currency()));
    }
    let exact = whole
        .amount()
        .checked_mul(Decimal::from(k))
        .and_then(|x| x.checked_div(Decimal::from(n)))
        .ok_or_else(|| Error::validation("amount", "refund share overflows"))?;
    Money::from_decimal_rounded(exact, whole.currency())
}

/// `share(done + now) − share(done)`, of `whole` over `n`.
fn increment(whole: &Money, done: u64, now: u64, n: u64) -> Result<Money> {
    share(whole, done + now, n)?.checked_sub(&share(whole, done, n)?)
}

fn min(a: Money, b: Money) -> Result<Money> {
    Ok(if a.try_cmp(&b)? == Ordering::Greater {
        b
    } else {
        a
    })
}

/// What returning `units` (`(sku, units)`, distinct SKUs) is worth, given what `paid`
/// paid and what `balance` already refunded (see the [module docs](self) for the
/// rounding), with shipping by `policy`.
///
/// Amounts are capped by what remains of each line and of shipping, so a quote made
/// after money-only adjustments never asks for more than the ledger will grant. The
/// quote is not a reservation: record it with
/// [`RefundLedger::record`](crate::store::RefundLedger::record), whose guard decides.
///
/// `Validation` for a SKU not in the order, a repeated SKU, zero units, or more units
/// than remain; nothing else is checked here.
pub fn quote_refund(
    paid: &PaidOrder,
    balance: &RefundBalance,
    units: &[(Sku, u32)],
    policy: ShippingRefundPolicy,
) -> Result<RefundQuote> {
    let currency = paid.currency;
    let mut lines = Vec::with_capacity(units.len());
    let mut seen = std::collections::HashSet::new();
    for (i, (sku, u)) in units.iter().enumerate() {
        if !seen.insert(sku) {
            return Err(Error::validation(format!("units[{i}].sku"), "is repeated"));
        }
        let (Some(line), Some(bal)) =
            (paid.line(sku), balance.lines.iter().find(|b| &b.sku == sku))
        else {
            return Err(Error::validation(
                format!("units[{i}].sku"),
                format!("{sku} is not a line of order {}", paid.order_id),
            ));
        };
        let remaining_units = line.quantity.saturating_sub(bal.refunded_units);
        if *u == 0 || *u > remaining_units {
            return Err(Error::validation(
                format!("units[{i}].quantity"),
                format!("{u} is not between 1 and the {remaining_units} units that remain"),
            ));
        }
        let (q, done, now) = (
            u64::from(line.quantity),
            u64::from(bal.refunded_units),
            u64::from(*u),
        );
        let left = line.paid.checked_sub(&bal.refunded)?;
        let amount = min(increment(&line.paid, done, now, q)?, left)?;
        lines.push(QuotedLine {
            sku: sku.clone(),
            quantity: *u,
            amount,
            tax: min(increment(&line.tax, done, now, q)?, amount)?,
            discount: increment(&line.discount, done, now, q)?,
        });
    }

    let shipping_left = balance
        .shipping_paid
        .checked_sub(&balance.shipping_refunded)?;
    let goods_now = Money::try_sum(currency, lines.iter().map(|l| &l.amount))?;
    let shipping = match policy {
        ShippingRefundPolicy::Never => Money::zero(currency),
        ShippingRefundPolicy::Proportional => {
            let goods_total = Money::try_sum(currency, paid.lines.iter().map(|l| &l.paid))?;
            let goods_done = Money::try_sum(currency, balance.lines.iter().map(|l| &l.refunded))?;
            let minor = |m: &Money| u64::try_from(m.to_minor_units()).unwrap_or(0);
            let s = if goods_total.is_zero() {
                Money::zero(currency)
            } else {
                increment(
                    &paid.shipping,
                    minor(&goods_done),
                    minor(&goods_now),
                    minor(&goods_total),
                )?
            };
            min(s, shipping_left)?
        }
        ShippingRefundPolicy::WithLastUnit => {
            let returns_the_rest = balance.lines.iter().all(|b| {
                let now = units
                    .iter()
                    .find(|(s, _)| s == &b.sku)
                    .map_or(0, |(_, u)| *u);
                b.refunded_units + now == b.quantity
            });
            if returns_the_rest {
                shipping_left
            } else {
                Money::zero(currency)
            }
        }
    };
    let shipping_tax = if paid.shipping.is_zero() {
        Money::zero(currency)
    } else {
        let exact = paid
            .shipping_tax
            .amount()
            .checked_mul(shipping.amount())
            .and_then(|x| x.checked_div(paid.shipping.amount()))
            .ok_or_else(|| Error::validation("amount", "refund share overflows"))?;
        Money::from_decimal_rounded(exact, currency)?
    };
    Ok(RefundQuote {
        total: goods_now.checked_add(&shipping)?,
        lines,
        shipping,
        shipping_tax,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        s.parse().expect("money")
    }

    fn sku(s: &str) -> Sku {
        Sku::new(s).expect("sku")
    }

    fn paid() -> PaidOrder {
        PaidOrder {
            order_id: OrderId::new("o-1").expect("id"),
            currency: Currency::EUR,
            lines: vec![
                PaidLine {
                    sku: sku("A"),
                    quantity: 3,
                    paid: m("10.00 EUR"),
                    tax: m("1.60 EUR"),
                    discount: m("1.00 EUR"),
                },
                PaidLine {
                    sku: sku("B"),
                    quantity: 7,
                    paid: m("20.01 EUR"),
                    tax: m("1.31 EUR"),
                    discount: m("0.00 EUR"),
                },
            ],
            shipping: m("4.99 EUR"),
            shipping_tax: m("0.80 EUR"),
        }
    }

    fn request(key: &str, lines: &[(&str, u32, &str)], shipping: &str) -> RefundRequest {
        RefundRequest {
            order_id: OrderId::new("o-1").expect("id"),
            key: IdempotencyKey::new(key).expect("key"),
            lines: lines
                .iter()
                .map(|(s, q, a)| RefundLine {
                    sku: sku(s),
                    quantity: *q,
                    amount: m(a),
                })
                .collect(),
            shipping: m(shipping),
            reason: "test".into(),
        }
    }

    #[test]
    fn the_guard_names_what_exceeds() {
        let b = RefundBalance::new(&paid()).expect("valid");
        let field = |r: RefundRequest| match b.check(&r) {
            Err(Error::Validation { field, .. }) => field,
            other => panic!("expected Validation, got {other:?}"),
        };
        assert_eq!(
            field(request("k", &[("A", 4, "1.00 EUR")], "0.00 EUR")),
            "lines[0].quantity"
        );
        assert_eq!(
            field(request("k", &[("A", 1, "10.01 EUR")], "0.00 EUR")),
            "lines[0].amount"
        );
        assert_eq!(
            field(request("k", &[("Z", 1, "1.00 EUR")], "0.00 EUR")),
            "lines[0].sku"
        );
        assert_eq!(field(request("k", &[], "5.00 EUR")), "shipping");
        assert_eq!(field(request("k", &[], "0.00 EUR")), "refund");
        assert_eq!(
            field(request("k", &[("A", 0, "0.00 EUR")], "0.00 EUR")),
            "lines[0]"
        );
        assert_eq!(
            field(request("k", &[("A", 1, "-1.00 EUR")], "0.00 EUR")),
            "lines[0].amount"
        );
        assert!(matches!(
            b.check(&request("k", &[("A", 1, "1.00 USD")], "0.00 EUR")),
            Err(Error::CurrencyMismatch { .. })
        ));
        assert!(
            b.check(&request("k", &[("A", 3, "10.00 EUR")], "4.99 EUR"))
                .is_ok()
        );
    }

    #[test]
    fn quotes_give_back_exactly_what_was_paid_one_unit_at_a_time() {
        for policy in [
            ShippingRefundPolicy::Proportional,
            ShippingRefundPolicy::WithLastUnit,
        ] {
            let p = paid();
            let mut b = RefundBalance::new(&p).expect("valid");
            let mut n = 0;
            // Alternate lines, one unit at a time.
            for (s, q) in [("A", 3), ("B", 7)]
                .iter()
                .flat_map(|(s, q)| (0..*q).map(move |_| (*s, 1)))
            {
                let quote = quote_refund(&p, &b, &[(sku(s), q)], policy).expect("quote");
                n += 1;
                let r = quote.into_request(
                    p.order_id.clone(),
                    IdempotencyKey::new(format!("k{n}")).expect("key"),
                    "r",
                );
                b.apply(&r).expect("within the guard");
            }
            assert_eq!(b.total_refunded, b.total_paid, "{policy:?}");
            assert!(b.is_fully_refunded() && b.all_units_returned());
            assert_eq!(b.shipping_refunded, m("4.99 EUR"));
        }
    }

    #[test]
    fn proportional_shipping_and_tax_shares() {
        let p = paid();
        let b = RefundBalance::new(&p).expect("valid");
        // Line A, 2 of 3 units: 10.00 × 2/3 = 6.666… → 6.67; tax 1.60 × 2/3 = 1.0666…
        // → 1.07; discount 1.00 × 2/3 → 0.67. Goods paid 30.01: shipping
        // 4.99 × 6.67 / 30.01 = 1.1090… → 1.11; its tax 0.80 × 1.11 / 4.99 = 0.1779… → 0.18.
        let q = quote_refund(&p, &b, &[(sku("A"), 2)], ShippingRefundPolicy::Proportional)
            .expect("quote");
        assert_eq!(q.lines[0].amount, m("6.67 EUR"));
        assert_eq!(q.lines[0].tax, m("1.07 EUR"));
        assert_eq!(q.lines[0].discount, m("0.67 EUR"));
        assert_eq!(q.shipping, m("1.11 EUR"));
        assert_eq!(q.shipping_tax, m("0.18 EUR"));
        assert_eq!(q.total, m("7.78 EUR"));
        let never =
            quote_refund(&p, &b, &[(sku("A"), 3)], ShippingRefundPolicy::Never).expect("quote");
        assert_eq!(never.shipping, m("0.00 EUR"));
        assert!(quote_refund(&p, &b, &[(sku("A"), 4)], ShippingRefundPolicy::Never).is_err());
        assert!(quote_refund(&p, &b, &[(sku("A"), 0)], ShippingRefundPolicy::Never).is_err());
        assert!(quote_refund(&p, &b, &[(sku("Z"), 1)], ShippingRefundPolicy::Never).is_err());
        assert!(
            quote_refund(
                &p,
                &b,
                &[(sku("A"), 1), (sku("A"), 1)],
                ShippingRefundPolicy::Never
            )
            .is_err()
        );
    }

    #[test]
    fn quotes_never_exceed_what_remains_after_adjustments() {
        let p = paid();
        let mut b = RefundBalance::new(&p).expect("valid");
        // A goodwill refund of 9.00 on line A without returning anything.
        b.apply(&request("goodwill", &[("A", 0, "9.00 EUR")], "0.00 EUR"))
            .expect("ok");
        let q = quote_refund(&p, &b, &[(sku("A"), 3)], ShippingRefundPolicy::Never).expect("quote");
        assert_eq!(q.lines[0].amount, m("1.00 EUR"));
        b.apply(&q.into_request(
            p.order_id.clone(),
            IdempotencyKey::new("k").expect("k"),
            "r",
        ))
        .expect("ok");
    }

    #[test]
    fn paid_orders_are_validated() {
        let mut p = paid();
        p.lines[0].tax = m("11.00 EUR");
        assert!(RefundBalance::new(&p).is_err());
        let mut p = paid();
        p.lines[1].sku = sku("A");
        assert!(p.validate().is_err());
        let mut p = paid();
        p.shipping = m("1.00 USD");
        assert!(matches!(p.validate(), Err(Error::CurrencyMismatch { .. })));
        let mut p = paid();
        p.lines.clear();
        assert!(p.validate().is_err());
    }
}
