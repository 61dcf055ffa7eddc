//! A promotion: its trigger, stacking, window, conditions, action and limits, and the
//! checks a definition must pass before anything stores it.

use serde::{Deserialize, Serialize};

use super::action::Action;
use super::condition::Condition;
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::PromotionId;
use crate::money::{Currency, Money};

/// How a promotion is triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Applies by itself to every cart that meets its conditions.
    Automatic,
    /// Applies only when the shopper enters one of its codes.
    Code,
}

/// Whether a promotion combines with others (see [the stacking rules](super#stacking)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stacking {
    /// Applies alone: no other promotion on the same order.
    Exclusive,
    /// Applies together with every other combinable promotion.
    Combinable,
}

/// Usage limits; `None` is unlimited. Enforced by the
/// [`PromotionStore`](crate::store::PromotionStore) when an order reserves a redemption.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Orders that may hold the promotion at once (reserved or confirmed).
    pub total_uses: Option<u64>,
    /// Orders of one customer that may hold it.
    pub uses_per_customer: Option<u32>,
    /// The most money all its held redemptions may give away together.
    pub budget: Option<Money>,
}

/// A promotion. Amounts are in `currency`; carts in another currency never qualify.
///
/// ```
/// use commerce_core::promotion::{Action, Promotion, Target};
/// use commerce_core::{Currency, id::PromotionId};
/// use rust_decimal::Decimal;
///
/// let promo = Promotion::new(
///     PromotionId::new("summer-10")?,
///     "10 % off everything",
///     Currency::USD,
///     Action::PercentOff { percent: Decimal::from(10), target: Target::Order },
/// )
/// .with_code();
/// promo.validate()?;
///
/// let mut bad = promo.clone();
/// bad.action = Action::PercentOff { percent: Decimal::from(120), target: Target::Order };
/// assert!(bad.validate().is_err());
/// # Ok::<(), commerce_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    /// Its identifier.
    pub id: PromotionId,
    /// A name shown to shoppers and staff (1 to 200 characters, no control characters).
    pub name: String,
    /// The currency of its amounts and of the carts it applies to.
    pub currency: Currency,
    /// Automatic or by code.
    pub trigger: Trigger,
    /// Exclusive or combinable.
    pub stacking: Stacking,
    /// Higher first when combinable promotions are applied one after another.
    pub priority: i32,
    /// All must hold.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// What it gives.
    pub action: Action,
    /// Active from (inclusive); `None` is always.
    pub starts_at: Option<Timestamp>,
    /// Active until (exclusive); `None` is forever.
    pub ends_at: Option<Timestamp>,
    /// Usage limits.
    #[serde(default)]
    pub limits: Limits,
}

/// Where `now` lies in a promotion's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// Before `starts_at`.
    NotStarted,
    /// Within the window.
    Active,
    /// At or after `ends_at`.
    Ended,
}

impl Promotion {
    /// The most conditions one promotion may have.
    pub const MAX_CONDITIONS: usize = 20;

    /// An automatic, combinable promotion with priority 0, no conditions, no window and
    /// no limits.
    pub fn new(
        id: PromotionId,
        name: impl Into<String>,
        currency: Currency,
        action: Action,
    ) -> Self {
        Promotion {
            id,
            name: name.into(),
            currency,
            trigger: Trigger::Automatic,
            stacking: Stacking::Combinable,
            priority: 0,
            conditions: Vec::new(),
            action,
            starts_at: None,
            ends_at: None,
            limits: Limits::default(),
        }
    }

    /// Triggered by codes instead of automatically.
    pub fn with_code(mut self) -> Self {
        self.trigger = Trigger::Code;
        self
    }

    /// Exclusive instead of combinable.
    pub fn exclusive(mut self) -> Self {
        self.stacking = Stacking::Exclusive;
        self
    }

    /// With `priority`.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// With one more condition.
    pub fn with_condition(mut self, condition: Condition) -> Self {
        self.conditions.push(condition);
        self
    }

    /// Active from `starts_at` (inclusive) until `ends_at` (exclusive).
    pub fn with_window(mut self, starts_at: Option<Timestamp>, ends_at: Option<Timestamp>) -> Self {
        self.starts_at = starts_at;
        self.ends_at = ends_at;
        self
    }

    /// With these limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Where `now` lies in the window.
    pub fn window_state(&self, now: Timestamp) -> WindowState {
        if self.starts_at.is_some_and(|s| now < s) {
            WindowState::NotStarted
        } else if self.ends_at.is_some_and(|e| now >= e) {
            WindowState::Ended
        } else {
            WindowState::Active
        }
    }

    /// Checks the definition: name, percentages (above 0, at most 100), amounts
    /// (positive, in `currency`), tiers, limits (at least 1, budget positive), window
    /// (`starts_at` before `ends_at`), and that a fixed discount is not larger than the
    /// minimum subtotal the promotion requires. `Validation` or `CurrencyMismatch`.
    pub fn validate(&self) -> Result<()> {
        let name_chars = self.name.chars().count();
        if name_chars == 0 || name_chars > 200 || self.name.chars().any(char::is_control) {
            return Err(Error::validation(
                "name",
                "1 to 200 characters, no control characters",
            ));
        }
        if self.conditions.len() > Self::MAX_CONDITIONS {
            return Err(Error::validation(
                "conditions",
                format!("at most {} conditions", Self::MAX_CONDITIONS),
            ));
        }
        for c in &self.conditions {
            c.validate(self.currency)?;
        }
        self.action.validate(self.currency)?;
        if matches!((self.starts_at, self.ends_at), (Some(s), Some(e)) if s >= e) {
            return Err(Error::validation(
                "ends_at",
                "the window ends before it starts",
            ));
        }
        if self.limits.total_uses == Some(0) {
            return Err(Error::validation("limits.total_uses", "must be at least 1"));
        }
        if self.limits.uses_per_customer == Some(0) {
            return Err(Error::validation(
                "limits.uses_per_customer",
                "must be at least 1",
            ));
        }
        if let Some(budget) = &self.limits.budget {
            super::check_currency("limits.budget", budget, self.currency)?;
            if budget.is_negative() || budget.is_zero() {
                return Err(Error::validation("limits.budget", "must be positive"));
            }
        }
        if let Action::AmountOff {
            amount,
            target: super::Target::Order,
        } = &self.action
        {
            for c in &self.conditions {
                let Condition::MinSubtotal { amount: min } = c else {
                    continue;
                };
                if amount.try_cmp(min)? == std::cmp::Ordering::Greater {
                    return Err(Error::validation(
                        "action.amount",
                        format!(
                            "a discount of {amount} is larger than the orders of {min} it applies to"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// [`Promotion::validate`], and refuses a window that has already ended at `now`
    /// (a store calls this with its clock before writing).
    pub fn validate_at(&self, now: Timestamp) -> Result<()> {
        self.validate()?;
        if self.window_state(now) == WindowState::Ended {
            return Err(Error::validation(
                "ends_at",
                "the promotion's window has already ended",
            ));
        }
        Ok(())
    }
}
