//! The rule-based default calculator: jurisdictions with rates per tax class.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{
    PriceMode, Rounding, TaxBreakdown, TaxCalculator, TaxClass, TaxRequest, TaxedAmount, TaxedLine,
};
use crate::address::{Address, CountryCode};
use crate::allocate::allocate;
use crate::error::{Error, Result};
use crate::money::{Currency, Money};

/// How a jurisdiction taxes the shipping charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShippingTaxRule {
    /// Shipping is not taxed here.
    Exempt,
    /// Shipping is taxed at this jurisdiction's rate for the given class (usually
    /// `standard`: New York on shipping of taxable goods).
    AtClass(TaxClass),
    /// Shipping is split over the lines in proportion to their (discounted) amounts,
    /// with [`allocate`](crate::allocate::allocate), and each part is taxed at its
    /// line's rate: EU practice for a delivery charge ancillary to goods of several
    /// rates (Saleor's "weighted tax for shipping"). The shipping's reported rate is the
    /// weighted average, rounded to 6 decimals (informational).
    SplitOverLines,
}

/// A taxing authority and its rates: a country, optionally narrowed to a region
/// (state, province) and to postal-code prefixes (a city's local rate).
///
/// Every jurisdiction that matches a destination applies and their rates add up:
/// New York City is `US/NY` at 4 % plus `US/NY` with the city's ZIP prefixes at 4.5 %
/// plus the transportation district's 0.375 %.
///
/// Rates are fractions (19 % is `dec!(0.19)`), from 0 to 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jurisdiction {
    /// A name for receipts and audits (`"Germany"`, `"New York State"`).
    pub name: String,
    /// The country.
    pub country: CountryCode,
    /// Only this region (compared case-insensitively with the address's region).
    pub region: Option<String>,
    /// Only postal codes starting with one of these (spaces ignored, case-insensitive);
    /// empty for all.
    pub postal_prefixes: Vec<String>,
    /// The rate of the `standard` class and of every class not in `class_rates`.
    pub standard_rate: Decimal,
    /// Rates of other classes (`reduced`, `zero`, ...).
    pub class_rates: BTreeMap<TaxClass, Decimal>,
    /// How shipping is taxed.
    pub shipping: ShippingTaxRule,
}

impl Jurisdiction {
    /// A whole country at `standard_rate`, shipping taxed at the standard rate.
    pub fn country(name: impl Into<String>, country: CountryCode, standard_rate: Decimal) -> Self {
        Jurisdiction {
            name: name.into(),
            country,
            region: None,
            postal_prefixes: Vec::new(),
            standard_rate,
            class_rates: BTreeMap::new(),
            shipping: ShippingTaxRule::AtClass(TaxClass::standard()),
        }
    }

    /// Narrows to a region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Narrows to postal codes starting with one of `prefixes`.
    pub fn postal_prefixes<I, S>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.postal_prefixes = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the rate of `class`.
    pub fn class_rate(mut self, class: TaxClass, rate: Decimal) -> Self {
        self.class_rates.insert(class, rate);
        self
    }

    /// Sets how shipping is taxed.
    pub fn shipping(mut self, rule: ShippingTaxRule) -> Self {
        self.shipping = rule;
        self
    }

    /// The rate for `class`.
    pub fn rate_for(&self, class: &TaxClass) -> Decimal {
        self.class_rates
            .get(class)
            .copied()
            .unwrap_or(self.standard_rate)
    }

    /// The rate of shipping in one piece (a split jurisdiction is never asked this).
    fn shipping_rate(&self) -> Decimal {
        match &self.shipping {
            ShippingTaxRule::Exempt => Decimal::ZERO,
            ShippingTaxRule::AtClass(class) => self.rate_for(class),
            ShippingTaxRule::SplitOverLines => self.standard_rate,
        }
    }

    /// The rate of the part of shipping split off a line of `class`.
    fn shipping_rate_for_part(&self, class: &TaxClass) -> Decimal {
        match &self.shipping {
            ShippingTaxRule::SplitOverLines => self.rate_for(class),
            _ => self.shipping_rate(),
        }
    }

    fn matches(&self, address: &Address) -> bool {
        if self.country != address.country() {
            return false;
        }
        if let Some(region) = &self.region {
            if !address
                .region()
                .is_some_and(|r| r.eq_ignore_ascii_case(region))
            {
                return false;
            }
        }
        if self.postal_prefixes.is_empty() {
            return true;
        }
        let Some(postal) = address.postal_code() else {
            return false;
        };
        let postal = compact(postal);
        self.postal_prefixes
            .iter()
            .any(|p| postal.starts_with(&compact(p)))
    }

    fn validate(&self, i: usize) -> Result<()> {
        let field = |f: &str| format!("jurisdictions[{i}].{f}");
        if self.name.trim().is_empty() || self.name.chars().count() > 100 {
            return Err(Error::validation(field("name"), "1 to 100 characters"));
        }
        let rates = std::iter::once(&self.standard_rate).chain(self.class_rates.values());
        for rate in rates {
            if rate.is_sign_negative() || *rate > Decimal::ONE {
                return Err(Error::validation(
                    field("rate"),
                    format!("{rate} is not a fraction between 0 and 1"),
                ));
            }
        }
        if self.region.as_ref().is_some_and(|r| r.trim().is_empty())
            || self.postal_prefixes.iter().any(|p| compact(p).is_empty())
        {
            return Err(Error::validation(
                field("region"),
                "regions and postal prefixes must not be empty",
            ));
        }
        Ok(())
    }
}

fn compact(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect()
}

/// A validated set of [`Jurisdiction`]s and the rounding to use.
///
/// A destination no jurisdiction matches is taxed at zero (a shop only registers the
/// places it collects tax in); [`TaxBreakdown::jurisdictions`] is then empty, so a host
/// that must collect everywhere can refuse it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TaxRulesRepr", into = "TaxRulesRepr")]
pub struct TaxRules {
    jurisdictions: Vec<Jurisdiction>,
    rounding: Rounding,
}

#[derive(Serialize, Deserialize)]
struct TaxRulesRepr {
    jurisdictions: Vec<Jurisdiction>,
    rounding: Rounding,
}

impl TryFrom<TaxRulesRepr> for TaxRules {
    type Error = Error;
    fn try_from(r: TaxRulesRepr) -> Result<Self> {
        TaxRules::new(r.rounding, r.jurisdictions)
    }
}

impl From<TaxRules> for TaxRulesRepr {
    fn from(r: TaxRules) -> Self {
        TaxRulesRepr {
            jurisdictions: r.jurisdictions,
            rounding: r.rounding,
        }
    }
}

impl TaxRules {
    /// Validates the jurisdictions: names 1 to 100 characters, rates between 0 and 1,
    /// no empty region or postal prefix. `Validation` naming the jurisdiction otherwise.
    pub fn new(rounding: Rounding, jurisdictions: Vec<Jurisdiction>) -> Result<Self> {
        for (i, j) in jurisdictions.iter().enumerate() {
            j.validate(i)?;
        }
        Ok(TaxRules {
            jurisdictions,
            rounding,
        })
    }

    /// The rounding.
    pub fn rounding(&self) -> Rounding {
        self.rounding
    }

    /// The jurisdictions that apply to `address`.
    pub fn matching<'a>(&'a self, address: &'a Address) -> impl Iterator<Item = &'a Jurisdiction> {
        self.jurisdictions
            .iter()
            .filter(move |j| j.matches(address))
    }
}

/// The default [`TaxCalculator`]: computes tax from [`TaxRules`] in process (see the
/// [module docs](super) for the arithmetic).
///
/// ```
/// use commerce_core::address::{Address, AddressInput, CountryCode};
/// use commerce_core::tax::*;
/// use rust_decimal_macros::dec;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let de = CountryCode::parse("DE")?;
/// let rules = TaxRules::new(Rounding::PerLine, vec![
///     Jurisdiction::country("Germany", de, dec!(0.19)).class_rate(TaxClass::reduced(), dec!(0.07)),
/// ])?;
/// let tax = RuleBasedTax::new(rules);
/// let destination = Address::new(AddressInput {
///     name: "E. Mustermann".into(), line1: "Heidestraße 17".into(), city: "Köln".into(),
///     postal_code: Some("51147".into()), country: "DE".into(), ..Default::default()
/// })?;
/// let request = TaxRequest {
///     currency: "EUR".parse()?,
///     destination,
///     prices: PriceMode::TaxInclusive,
///     lines: vec![TaxableLine {
///         sku: "BOOK-1".parse()?, tax_class: TaxClass::reduced(), quantity: 1,
///         unit_price: "10.70 EUR".parse()?, discount: "0.00 EUR".parse()?,
///     }],
///     shipping: "0.00 EUR".parse()?,
/// };
/// let breakdown = tax.calculate_checked(&request).await?;
/// assert_eq!(breakdown.tax_total.to_string(), "0.70 EUR"); // 10.70 × 0.07 / 1.07
/// # Ok::<(), commerce_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct RuleBasedTax {
    rules: TaxRules,
}

impl RuleBasedTax {
    /// A calculator over `rules`.
    pub fn new(rules: TaxRules) -> Self {
        RuleBasedTax { rules }
    }

    /// The rules.
    pub fn rules(&self) -> &TaxRules {
        &self.rules
    }

    /// The computation, synchronous (the contract method only wraps it).
    pub fn compute(&self, request: &TaxRequest) -> Result<TaxBreakdown> {
        request.validate()?;
        let matching: Vec<&Jurisdiction> = self.rules.matching(&request.destination).collect();
        let line_rate =
            |class: &TaxClass| -> Decimal { matching.iter().map(|j| j.rate_for(class)).sum() };

        // The taxable pieces: each line, then shipping — in one piece, or split over the
        // lines in proportion to their amounts when a jurisdiction says so.
        let n = request.lines.len();
        let mut amounts = Vec::with_capacity(n + 1);
        let mut pieces: Vec<Piece> = Vec::with_capacity(2 * n + 1);
        for (i, line) in request.lines.iter().enumerate() {
            let amount = line.amount()?;
            let rate = line_rate(&line.tax_class);
            amounts.push((amount, rate));
            pieces.push(Piece {
                owner: i,
                amount,
                rate,
            });
        }
        let split = matching
            .iter()
            .any(|j| j.shipping == ShippingTaxRule::SplitOverLines);
        let shipping_rate = if split {
            let weights: Vec<Money> = amounts.iter().map(|(a, _)| *a).collect();
            let parts = allocate(&request.shipping, &weights)?;
            let mut weighted = Decimal::ZERO;
            for (part, line) in parts.into_iter().zip(&request.lines) {
                let rate: Decimal = matching
                    .iter()
                    .map(|j| j.shipping_rate_for_part(&line.tax_class))
                    .sum();
                weighted += part.amount() * rate;
                pieces.push(Piece {
                    owner: n,
                    amount: part,
                    rate,
                });
            }
            if request.shipping.is_zero() {
                Decimal::ZERO
            } else {
                weighted
                    .checked_div(request.shipping.amount())
                    .unwrap_or(Decimal::ZERO)
                    .round_dp(6)
            }
        } else {
            let rate: Decimal = matching.iter().map(|j| j.shipping_rate()).sum();
            pieces.push(Piece {
                owner: n,
                amount: request.shipping,
                rate,
            });
            rate
        };
        amounts.push((request.shipping, shipping_rate));

        let taxes = match self.rules.rounding {
            Rounding::PerLine => per_line(&pieces, n + 1, request.currency, request.prices)?,
            Rounding::PerTotal => per_total(&pieces, n + 1, request.currency, request.prices)?,
        };

        let mut taxed: Vec<TaxedAmount> = Vec::with_capacity(amounts.len());
        for ((amount, rate), tax) in amounts.iter().zip(taxes) {
            let (net, gross) = match request.prices {
                PriceMode::TaxExclusive => (*amount, amount.checked_add(&tax)?),
                PriceMode::TaxInclusive => (amount.checked_sub(&tax)?, *amount),
            };
            taxed.push(TaxedAmount {
                net,
                tax,
                gross,
                rate: rate.normalize(),
            });
        }
        let shipping = taxed
            .pop()
            .unwrap_or_else(|| TaxedAmount::zero(request.currency));
        let lines: Vec<TaxedLine> = request
            .lines
            .iter()
            .zip(taxed)
            .map(|(l, amount)| TaxedLine {
                sku: l.sku.clone(),
                tax_class: l.tax_class.clone(),
                quantity: l.quantity,
                discount: l.discount,
                amount,
            })
            .collect();
        let all = || lines.iter().map(|l| &l.amount).chain([&shipping]);
        Ok(TaxBreakdown {
            prices: request.prices,
            net_total: Money::try_sum(request.currency, all().map(|a| &a.net))?,
            tax_total: Money::try_sum(request.currency, all().map(|a| &a.tax))?,
            gross_total: Money::try_sum(request.currency, all().map(|a| &a.gross))?,
            jurisdictions: matching.iter().map(|j| j.name.clone()).collect(),
            lines,
            shipping,
        })
    }
}

/// The tax in `amount` at `rate`, rounded half to even to the minor unit.
fn tax_of(amount: &Money, rate: Decimal, prices: PriceMode) -> Result<Money> {
    let exact = exact_tax(amount.amount(), rate, prices)?;
    Money::from_decimal_rounded(exact, amount.currency())
}

fn exact_tax(amount: Decimal, rate: Decimal, prices: PriceMode) -> Result<Decimal> {
    let overflow = || Error::validation("amount", "tax computation overflows");
    let product = amount.checked_mul(rate).ok_or_else(overflow)?;
    match prices {
        PriceMode::TaxExclusive => Ok(product),
        PriceMode::TaxInclusive => product
            .checked_div(Decimal::ONE + rate)
            .ok_or_else(overflow),
    }
}

/// A taxable piece of a line or of shipping (`owner` = line index, or the number of
/// lines for shipping).
struct Piece {
    owner: usize,
    amount: Money,
    rate: Decimal,
}

/// Per-line rounding: each owner's exact tax (the sum over its pieces) rounded once.
fn per_line(
    pieces: &[Piece],
    owners: usize,
    currency: Currency,
    prices: PriceMode,
) -> Result<Vec<Money>> {
    let mut exact = vec![Decimal::ZERO; owners];
    for p in pieces {
        exact[p.owner] += exact_tax(p.amount.amount(), p.rate, prices)?;
    }
    exact
        .into_iter()
        .map(|e| Money::from_decimal_rounded(e, currency))
        .collect()
}

/// Per-total rounding: one rounded tax per rate, spread back over that rate's pieces,
/// then added up per owner.
fn per_total(
    pieces: &[Piece],
    owners: usize,
    currency: Currency,
    prices: PriceMode,
) -> Result<Vec<Money>> {
    let mut groups: BTreeMap<Decimal, Vec<usize>> = BTreeMap::new();
    for (i, p) in pieces.iter().enumerate() {
        groups.entry(p.rate.normalize()).or_default().push(i);
    }
    let mut taxes = vec![Money::zero(currency); owners];
    for (rate, members) in groups {
        let weights: Vec<Money> = members.iter().map(|&i| pieces[i].amount).collect();
        let sum = Money::try_sum(currency, &weights)?;
        let group_tax = tax_of(&sum, rate, prices)?;
        for (i, part) in members.iter().zip(allocate(&group_tax, &weights)?) {
            let owner = pieces[*i].owner;
            taxes[owner] = taxes[owner].checked_add(&part)?;
        }
    }
    Ok(taxes)
}

#[async_trait]
impl TaxCalculator for RuleBasedTax {
    async fn calculate(&self, request: &TaxRequest) -> Result<TaxBreakdown> {
        self.compute(request)
    }
}
