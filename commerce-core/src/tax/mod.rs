//! Tax: the [`TaxCalculator`] contract a host implements to plug in an external tax
//! service, and [`RuleBasedTax`], the default computing tax from [`TaxRules`] (rates by
//! country, region, postal prefix and product [`TaxClass`]).
//!
//! # What is computed
//!
//! A [`TaxRequest`] lists lines (SKU, tax class, quantity, unit price, the line's share
//! of discounts) and a shipping charge for a validated destination
//! [`Address`]. Prices are either **tax-exclusive** (US style: tax is added on top) or
//! **tax-inclusive** (EU style: the price already contains it), see [`PriceMode`].
//!
//! * Discounts come off before tax: a line's taxable amount is
//!   `unit_price × quantity − discount`.
//! * Exclusive: `tax = amount × rate`, `net = amount`, `gross = amount + tax`.
//! * Inclusive: `tax = amount × rate / (1 + rate)`, `gross = amount`, `net = amount − tax`.
//! * Shipping is taxed by each jurisdiction's [`ShippingTaxRule`]: exempt, at one
//!   class's rate, or split over the lines in proportion to their amounts with each part
//!   at its line's rate (mixed-rate EU carts).
//! * Rounding is **half to even on the currency's minor unit**, either per line
//!   ([`Rounding::PerLine`]: each line's tax is rounded, the total is the sum of the
//!   rounded taxes) or per total ([`Rounding::PerTotal`]: the amounts of all lines
//!   (and shipping) with the same rate are added, that sum's tax is rounded once, and
//!   the rounded tax is spread back over those lines in proportion to their amounts
//!   with [`allocate`](crate::allocate::allocate), so every line still records its
//!   tax and the lines add up to the total).
//!
//! The result, a [`TaxBreakdown`], has the tax of every line and of shipping and the
//! totals; [`TaxBreakdown::check`] verifies that any calculator's answer is consistent
//! with its request (what [`TaxCalculatorExt::calculate_checked`] does for a host).

mod rules;

use std::fmt::Debug;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub use rules::{Jurisdiction, RuleBasedTax, ShippingTaxRule, TaxRules};

use crate::address::Address;
use crate::error::{Error, Result};
use crate::id::Sku;
use crate::money::{Currency, Money};

/// A product's tax class: 1 to 32 of `a-z`, `0-9`, `_`, `-` (`"standard"`,
/// `"reduced"`, `"zero"`, `"books"`). The host decides which class a product is in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaxClass(String);

impl TaxClass {
    /// Validates a class name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(TaxClass(name))
        } else {
            Err(Error::validation(
                "tax_class",
                format!("{name:?}: 1 to 32 of a-z, 0-9, _ and -"),
            ))
        }
    }

    /// The `standard` class: every jurisdiction's default rate.
    pub fn standard() -> Self {
        TaxClass("standard".to_owned())
    }

    /// The `reduced` class (food, books in many EU countries).
    pub fn reduced() -> Self {
        TaxClass("reduced".to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaxClass {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        TaxClass::new(s)
    }
}

impl From<TaxClass> for String {
    fn from(c: TaxClass) -> String {
        c.0
    }
}

/// Whether prices contain tax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceMode {
    /// Prices exclude tax; tax is added on top (US, Canada).
    TaxExclusive,
    /// Prices include tax; tax is the part of the price that is tax (EU, UK, AU).
    TaxInclusive,
}

/// Where rounding to the minor unit happens (always half to even).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Each line's (and shipping's) tax is rounded; totals are sums of rounded taxes.
    PerLine,
    /// The tax of all amounts sharing a rate is rounded once, then spread back over
    /// them in proportion (largest remainder), so lines add up to the total.
    PerTotal,
}

/// One line to tax.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxableLine {
    /// The variant (distinct within a request).
    pub sku: Sku,
    /// Its tax class.
    pub tax_class: TaxClass,
    /// Units, at least 1.
    pub quantity: u32,
    /// Unit price, in the request's [`PriceMode`].
    pub unit_price: Money,
    /// This line's share of discounts (taken off before tax), at most
    /// `unit_price × quantity`.
    pub discount: Money,
}

/// What to tax: lines and a shipping charge, for a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxRequest {
    /// Every amount's currency.
    pub currency: Currency,
    /// Where the goods go (the place of supply for tax).
    pub destination: Address,
    /// Whether the prices below contain tax.
    pub prices: PriceMode,
    /// The lines, 1 to [`MAX_TAX_LINES`], distinct SKUs.
    pub lines: Vec<TaxableLine>,
    /// The shipping charge (zero for none), in the same [`PriceMode`].
    pub shipping: Money,
}

/// Most lines in one [`TaxRequest`] (as in an order).
pub const MAX_TAX_LINES: usize = crate::order::MAX_ORDER_LINES;

impl TaxRequest {
    /// Checks the request: 1 to [`MAX_TAX_LINES`] lines, distinct SKUs, quantities 1 to
    /// 1,000,000, every amount in `currency` and not negative, each discount at most its
    /// line's `unit_price × quantity`. `Validation` (or `CurrencyMismatch`) otherwise.
    pub fn validate(&self) -> Result<()> {
        if self.lines.is_empty() || self.lines.len() > MAX_TAX_LINES {
            return Err(Error::validation(
                "lines",
                format!("1 to {MAX_TAX_LINES} lines"),
            ));
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
            for (name, m) in [("unit_price", &l.unit_price), ("discount", &l.discount)] {
                self.same_currency(m)?;
                if m.is_negative() {
                    return Err(Error::validation(
                        format!("lines[{i}].{name}"),
                        "must not be negative",
                    ));
                }
            }
            if l.discount.try_cmp(&l.line_amount_before_discount()?)? == std::cmp::Ordering::Greater
            {
                return Err(Error::validation(
                    format!("lines[{i}].discount"),
                    "is more than the line's amount",
                ));
            }
        }
        self.same_currency(&self.shipping)?;
        if self.shipping.is_negative() {
            return Err(Error::validation("shipping", "must not be negative"));
        }
        Ok(())
    }

    fn same_currency(&self, m: &Money) -> Result<()> {
        if m.currency() == self.currency {
            Ok(())
        } else {
            Err(Error::CurrencyMismatch {
                left: self.currency,
                right: m.currency(),
            })
        }
    }
}

impl TaxableLine {
    fn line_amount_before_discount(&self) -> Result<Money> {
        self.unit_price.checked_mul(u64::from(self.quantity))
    }

    /// `unit_price × quantity − discount`: the amount tax is computed on.
    pub fn amount(&self) -> Result<Money> {
        self.line_amount_before_discount()?
            .checked_sub(&self.discount)
    }
}

/// An amount split into net, tax and gross (`net + tax = gross`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxedAmount {
    /// Without tax.
    pub net: Money,
    /// The tax.
    pub tax: Money,
    /// With tax: what the customer pays.
    pub gross: Money,
    /// The combined rate applied (a fraction: 19 % is `0.19`).
    pub rate: Decimal,
}

impl TaxedAmount {
    /// Zero in `currency`, rate 0.
    pub fn zero(currency: Currency) -> Self {
        TaxedAmount {
            net: Money::zero(currency),
            tax: Money::zero(currency),
            gross: Money::zero(currency),
            rate: Decimal::ZERO,
        }
    }
}

/// One taxed line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxedLine {
    /// The variant.
    pub sku: Sku,
    /// Its tax class.
    pub tax_class: TaxClass,
    /// Units.
    pub quantity: u32,
    /// The discount taken off before tax.
    pub discount: Money,
    /// The line's money after the discount.
    pub amount: TaxedAmount,
}

/// A calculator's answer: every line's and shipping's tax, and the totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxBreakdown {
    /// The request's price mode.
    pub prices: PriceMode,
    /// The lines, in request order.
    pub lines: Vec<TaxedLine>,
    /// The shipping charge.
    pub shipping: TaxedAmount,
    /// Σ net.
    pub net_total: Money,
    /// Σ tax.
    pub tax_total: Money,
    /// Σ gross: what the customer pays.
    pub gross_total: Money,
    /// Names of the jurisdictions whose rates applied (empty: no tax rule matched).
    pub jurisdictions: Vec<String>,
}

impl TaxBreakdown {
    /// Checks that this answer is consistent with `request`: the same lines in the same
    /// order with the same quantities and discounts, every amount in the request's
    /// currency and not negative, `net + tax = gross` everywhere, the price-mode side
    /// (gross when inclusive, net when exclusive) equal to the request's amounts, and
    /// the totals the sums of the parts.
    ///
    /// A failure is a permanent `Backend` error: the calculator answered something that
    /// cannot be right, and charging it would be wrong.
    pub fn check(&self, request: &TaxRequest) -> Result<()> {
        let bad = |what: String| Err(Error::backend(false, format!("tax calculator: {what}")));
        if self.prices != request.prices || self.lines.len() != request.lines.len() {
            return bad("price mode or number of lines differs from the request".into());
        }
        let check_amount = |what: &str, a: &TaxedAmount, expected: &Money| -> Result<()> {
            for m in [&a.net, &a.tax, &a.gross] {
                if m.currency() != request.currency || m.is_negative() {
                    return bad(format!("{what}: {m} is negative or in another currency"));
                }
            }
            if a.net.checked_add(&a.tax)? != a.gross {
                return bad(format!("{what}: net + tax != gross"));
            }
            let side = match request.prices {
                PriceMode::TaxInclusive => &a.gross,
                PriceMode::TaxExclusive => &a.net,
            };
            if side != expected {
                return bad(format!(
                    "{what}: {side} differs from the request's {expected}"
                ));
            }
            Ok(())
        };
        for (i, (got, asked)) in self.lines.iter().zip(&request.lines).enumerate() {
            if got.sku != asked.sku
                || got.quantity != asked.quantity
                || got.discount != asked.discount
                || got.tax_class != asked.tax_class
            {
                return bad(format!("line {i} is not the request's line"));
            }
            check_amount(&format!("line {i}"), &got.amount, &asked.amount()?)?;
        }
        check_amount("shipping", &self.shipping, &request.shipping)?;
        let parts = || self.lines.iter().map(|l| &l.amount).chain([&self.shipping]);
        let sum = |f: fn(&TaxedAmount) -> &Money| -> Result<Money> {
            Money::try_sum(request.currency, parts().map(f))
        };
        if sum(|a| &a.net)? != self.net_total
            || sum(|a| &a.tax)? != self.tax_total
            || sum(|a| &a.gross)? != self.gross_total
        {
            return bad("totals are not the sums of the lines and shipping".into());
        }
        Ok(())
    }
}

/// Computes tax for a cart or an order (implemented by [`RuleBasedTax`], or by a host
/// adapter calling an external tax service).
#[async_trait]
pub trait TaxCalculator: Send + Sync + Debug + 'static {
    /// The tax of every line and of shipping in `request`.
    ///
    /// # To ensure correctness
    /// * An invalid request (see [`TaxRequest::validate`]) is `Validation` or
    ///   `CurrencyMismatch`, never a guess.
    /// * The answer passes [`TaxBreakdown::check`]: the request's lines in its order,
    ///   `net + tax = gross` for each, the request's amounts on the price-mode side,
    ///   totals equal to the sums. Amounts are in minor units of the currency.
    /// * The same request gives the same answer while the rules do not change (a
    ///   checkout recomputes tax and must see what the cart showed).
    /// * An external service that cannot be reached is a retryable `Backend` error, not
    ///   a zero tax.
    async fn calculate(&self, request: &TaxRequest) -> Result<TaxBreakdown>;
}

/// Conveniences on every [`TaxCalculator`].
#[async_trait]
pub trait TaxCalculatorExt: TaxCalculator {
    /// Validates `request`, calls [`TaxCalculator::calculate`] and checks the answer
    /// with [`TaxBreakdown::check`]: what a checkout should call, so that a faulty
    /// external service cannot put inconsistent money on an order.
    async fn calculate_checked(&self, request: &TaxRequest) -> Result<TaxBreakdown> {
        request.validate()?;
        let breakdown = self.calculate(request).await?;
        breakdown.check(request)?;
        Ok(breakdown)
    }
}

impl<T: TaxCalculator + ?Sized> TaxCalculatorExt for T {}
