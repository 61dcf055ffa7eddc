//! When a promotion applies: conditions on the cart and the customer, and the filter
//! that picks a promotion's matching lines.

use serde::{Deserialize, Serialize};

use super::evaluate::{EvaluationInput, PricedLine};
use crate::catalog::CategoryPath;
use crate::error::{Error, Result};
use crate::id::{CustomerGroupId, ProductId, Sku};
use crate::money::{Currency, Money};

/// The most entries one list of a condition or filter may hold.
pub const MAX_LIST: usize = 1000;

/// Which cart lines a promotion looks at. Empty lists mean "every line"; otherwise a
/// line matches when its product, its SKU or its category (a category matches its
/// whole subtree) is listed.
///
/// ```
/// use commerce_core::promotion::LineFilter;
/// use commerce_core::catalog::CategoryPath;
///
/// let shoes = LineFilter::category(CategoryPath::parse("Apparel > Shoes")?);
/// assert!(!shoes.is_all());
/// assert!(LineFilter::all().is_all());
/// # Ok::<(), commerce_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineFilter {
    /// Lines of these products.
    #[serde(default)]
    pub products: Vec<ProductId>,
    /// Lines of these SKUs.
    #[serde(default)]
    pub skus: Vec<Sku>,
    /// Lines in these categories or below.
    #[serde(default)]
    pub categories: Vec<CategoryPath>,
}

impl LineFilter {
    /// Every line.
    pub fn all() -> Self {
        Self::default()
    }

    /// Lines in `path` or below.
    pub fn category(path: CategoryPath) -> Self {
        LineFilter {
            categories: vec![path],
            ..Self::default()
        }
    }

    /// Lines of these SKUs.
    pub fn skus(skus: impl IntoIterator<Item = Sku>) -> Self {
        LineFilter {
            skus: skus.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Whether the filter takes every line.
    pub fn is_all(&self) -> bool {
        self.products.is_empty() && self.skus.is_empty() && self.categories.is_empty()
    }

    /// Whether `line` matches.
    pub fn matches(&self, line: &PricedLine) -> bool {
        self.is_all()
            || self.products.contains(&line.product_id)
            || self.skus.contains(&line.sku)
            || self.categories.iter().any(|c| c.contains(&line.category))
    }

    pub(crate) fn validate(&self, field: &str) -> Result<()> {
        for (name, len) in [
            ("products", self.products.len()),
            ("skus", self.skus.len()),
            ("categories", self.categories.len()),
        ] {
            if len > MAX_LIST {
                return Err(Error::validation(
                    format!("{field}.{name}"),
                    format!("{len} entries; at most {MAX_LIST}"),
                ));
            }
        }
        Ok(())
    }
}

/// A condition every one of a promotion's conditions must meet (they are combined with
/// AND). The date window and the currency are fields of the
/// [`Promotion`](super::Promotion) itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Condition {
    /// The cart's subtotal (before any discount) is at least `amount`.
    MinSubtotal {
        /// The threshold, in the promotion's currency.
        amount: Money,
    },
    /// The cart holds at least one line of these products.
    Products {
        /// The products.
        any_of: Vec<ProductId>,
    },
    /// The cart holds at least one line of these SKUs.
    Skus {
        /// The SKUs.
        any_of: Vec<Sku>,
    },
    /// The cart holds at least one line in this category or below.
    Category {
        /// The subtree's root.
        path: CategoryPath,
    },
    /// The customer belongs to one of these groups.
    CustomerGroups {
        /// The groups.
        any_of: Vec<CustomerGroupId>,
    },
    /// This is the customer's first order.
    FirstOrder,
}

impl Condition {
    /// Whether the condition holds for `input` (whose lines sum to `subtotal`).
    pub fn holds(&self, input: &EvaluationInput, subtotal: &Money) -> bool {
        match self {
            Condition::MinSubtotal { amount } => subtotal
                .try_cmp(amount)
                .is_ok_and(|o| o != std::cmp::Ordering::Less),
            Condition::Products { any_of } => {
                input.lines.iter().any(|l| any_of.contains(&l.product_id))
            }
            Condition::Skus { any_of } => input.lines.iter().any(|l| any_of.contains(&l.sku)),
            Condition::Category { path } => input.lines.iter().any(|l| path.contains(&l.category)),
            Condition::CustomerGroups { any_of } => {
                input.customer.groups.iter().any(|g| any_of.contains(g))
            }
            Condition::FirstOrder => input.customer.first_order,
        }
    }

    pub(crate) fn validate(&self, currency: Currency) -> Result<()> {
        let list = |name: &str, len: usize| {
            if len == 0 || len > MAX_LIST {
                Err(Error::validation(
                    format!("conditions.{name}"),
                    format!("{len} entries; 1 to {MAX_LIST} allowed"),
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Condition::MinSubtotal { amount } => {
                super::check_currency("conditions.min_subtotal", amount, currency)?;
                if amount.is_negative() {
                    return Err(Error::validation(
                        "conditions.min_subtotal",
                        "must not be negative",
                    ));
                }
                Ok(())
            }
            Condition::Products { any_of } => list("products", any_of.len()),
            Condition::Skus { any_of } => list("skus", any_of.len()),
            Condition::CustomerGroups { any_of } => list("customer_groups", any_of.len()),
            Condition::Category { .. } | Condition::FirstOrder => Ok(()),
        }
    }
}
