//! What a promotion gives: the actions and how each is checked.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::condition::LineFilter;
use crate::error::{Error, Result};
use crate::money::{Currency, Money};

/// What a discount applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    /// The whole order (every line); allocated across the lines.
    Order,
    /// The lines the filter matches; allocated across them.
    Lines {
        /// Which lines.
        filter: LineFilter,
    },
}

impl Target {
    /// The filter the target stands for.
    pub fn filter(&self) -> LineFilter {
        match self {
            Target::Order => LineFilter::all(),
            Target::Lines { filter } => filter.clone(),
        }
    }
}

/// One step of a [`Action::Tiered`] promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// The subtotal (before discounts) from which this tier applies.
    pub min_subtotal: Money,
    /// What the tier takes off the order.
    pub discount: TierDiscount,
}

/// The discount of a [`Tier`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TierDiscount {
    /// A percentage off the order.
    Percent {
        /// Above 0, at most 100.
        percent: Decimal,
    },
    /// A fixed amount off the order.
    Amount {
        /// Positive, at most the tier's `min_subtotal`.
        amount: Money,
    },
}

/// What a promotion does. Every discount is capped by what it applies to, so no line,
/// order or shipping amount ever goes below zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// `percent` % off the target, rounded half to even to minor units, then allocated.
    PercentOff {
        /// Above 0, at most 100.
        percent: Decimal,
        /// Order or matching lines.
        target: Target,
    },
    /// `amount` off the target as a whole (not per line or unit), at most the target's
    /// amount, allocated across its lines.
    AmountOff {
        /// Positive, in the promotion's currency.
        amount: Money,
        /// Order or matching lines.
        target: Target,
    },
    /// Every matching unit costs at most `unit_price`.
    FixedPrice {
        /// Zero or more, in the promotion's currency.
        unit_price: Money,
        /// Which lines.
        filter: LineFilter,
    },
    /// Of every `buy + get` matching units, the `get` cheapest are free.
    BuyXGetY {
        /// Units to pay for (at least 1).
        buy: u32,
        /// Units given free (at least 1).
        get: u32,
        /// Which lines count.
        filter: LineFilter,
    },
    /// Shipping is free.
    FreeShipping,
    /// The highest tier whose `min_subtotal` the subtotal reaches applies to the order.
    Tiered {
        /// 1 to 20 tiers with strictly increasing thresholds.
        tiers: Vec<Tier>,
    },
}

pub(crate) fn check_percent(field: &str, percent: Decimal) -> Result<()> {
    if percent <= Decimal::ZERO || percent > Decimal::ONE_HUNDRED {
        return Err(Error::validation(
            field,
            format!("{percent} % is not above 0 and at most 100"),
        ));
    }
    if percent.scale() > 6 {
        return Err(Error::validation(field, "at most 6 decimal places"));
    }
    Ok(())
}

fn check_positive(field: &str, amount: &Money, currency: Currency) -> Result<()> {
    super::check_currency(field, amount, currency)?;
    if amount.is_negative() || amount.is_zero() {
        return Err(Error::validation(
            field,
            format!("{amount} is not positive"),
        ));
    }
    Ok(())
}

impl Action {
    /// Checks amounts, percentages and tiers against the promotion's `currency`.
    pub(crate) fn validate(&self, currency: Currency) -> Result<()> {
        match self {
            Action::PercentOff { percent, target } => {
                check_percent("action.percent", *percent)?;
                target.filter().validate("action.target")
            }
            Action::AmountOff { amount, target } => {
                check_positive("action.amount", amount, currency)?;
                target.filter().validate("action.target")
            }
            Action::FixedPrice { unit_price, filter } => {
                super::check_currency("action.unit_price", unit_price, currency)?;
                if unit_price.is_negative() {
                    return Err(Error::validation(
                        "action.unit_price",
                        "must not be negative",
                    ));
                }
                filter.validate("action.filter")
            }
            Action::BuyXGetY { buy, get, filter } => {
                if *buy == 0 || *get == 0 || buy.saturating_add(*get) > 1000 {
                    return Err(Error::validation(
                        "action.buy_get",
                        "buy and get must be at least 1 and together at most 1000",
                    ));
                }
                filter.validate("action.filter")
            }
            Action::FreeShipping => Ok(()),
            Action::Tiered { tiers } => {
                if tiers.is_empty() || tiers.len() > 20 {
                    return Err(Error::validation("action.tiers", "1 to 20 tiers"));
                }
                let mut previous: Option<&Money> = None;
                for (i, tier) in tiers.iter().enumerate() {
                    let field = format!("action.tiers[{i}]");
                    super::check_currency(&field, &tier.min_subtotal, currency)?;
                    if tier.min_subtotal.is_negative() {
                        return Err(Error::validation(field, "threshold is negative"));
                    }
                    let increases = match previous {
                        Some(p) => tier.min_subtotal.try_cmp(p)? == std::cmp::Ordering::Greater,
                        None => true,
                    };
                    if !increases {
                        return Err(Error::validation(
                            field,
                            "thresholds must increase strictly",
                        ));
                    }
                    previous = Some(&tier.min_subtotal);
                    match &tier.discount {
                        TierDiscount::Percent { percent } => check_percent(&field, *percent)?,
                        TierDiscount::Amount { amount } => {
                            check_positive(&field, amount, currency)?;
                            if amount.try_cmp(&tier.min_subtotal)? == std::cmp::Ordering::Greater {
                                return Err(Error::validation(
                                    field,
                                    format!(
                                        "a discount of {amount} is larger than the orders of {} it applies to",
                                        tier.min_subtotal
                                    ),
                                ));
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }
}
