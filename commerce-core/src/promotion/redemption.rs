//! Redemptions: the promotions an order holds, reserved with a TTL like its stock,
//! then confirmed or released.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::code::CouponCode;
use super::definition::{Promotion, Trigger, WindowState};
use crate::clock::Timestamp;
use crate::error::{EntityKind, Error, Result};
use crate::id::{CustomerId, OrderId, PromotionId};
use crate::money::{Currency, Money};

/// How long a redemption is held unless the request says otherwise (as a stock
/// reservation).
pub const DEFAULT_REDEMPTION_TTL: Duration = Duration::from_secs(15 * 60);
/// The longest TTL accepted.
pub const MAX_REDEMPTION_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The most promotions one order may hold.
pub const MAX_REDEMPTION_LINES: usize = 20;

/// One promotion an order holds, with everything it gave (lines and shipping).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RedemptionLine {
    /// The promotion.
    pub promotion_id: PromotionId,
    /// The code it came with (required for code promotions).
    pub code: Option<CouponCode>,
    /// What it gave, counted against its budget.
    pub amount: Money,
}

/// A request to hold promotions for an order.
///
/// ```
/// use commerce_core::promotion::{RedemptionLine, RedemptionRequest};
/// use commerce_core::id::{OrderId, PromotionId};
///
/// let request = RedemptionRequest::new(
///     OrderId::new("o-1")?,
///     None,
///     "30.00 USD".parse()?,
///     vec![RedemptionLine {
///         promotion_id: PromotionId::new("summer")?,
///         code: None,
///         amount: "40.00 USD".parse()?,
///     }],
/// );
/// // A discount larger than the order is refused before anything is written.
/// assert!(request.normalized_lines().is_err());
/// # Ok::<(), commerce_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionRequest {
    /// The order.
    pub order_id: OrderId,
    /// The customer (required by promotions with a per-customer limit).
    pub customer_id: Option<CustomerId>,
    /// The order's total before discounts (lines and shipping): the promotions together
    /// may not give more.
    pub order_total: Money,
    /// One line per promotion.
    pub lines: Vec<RedemptionLine>,
    /// How long the redemption is held.
    pub ttl: Duration,
}

impl RedemptionRequest {
    /// A request with the [`DEFAULT_REDEMPTION_TTL`].
    pub fn new(
        order_id: OrderId,
        customer_id: Option<CustomerId>,
        order_total: Money,
        lines: Vec<RedemptionLine>,
    ) -> Self {
        RedemptionRequest {
            order_id,
            customer_id,
            order_total,
            lines,
            ttl: DEFAULT_REDEMPTION_TTL,
        }
    }

    /// The currency of the order.
    pub fn currency(&self) -> Currency {
        self.order_total.currency()
    }

    /// Checks the request and returns its lines sorted by promotion id: 1 to
    /// [`MAX_REDEMPTION_LINES`] lines, each promotion once, amounts not negative and in
    /// the order's currency, together at most `order_total`; a TTL of 1 s to
    /// [`MAX_REDEMPTION_TTL`]. `Validation` or `CurrencyMismatch`.
    pub fn normalized_lines(&self) -> Result<Vec<RedemptionLine>> {
        check_ttl(self.ttl)?;
        if self.lines.is_empty() || self.lines.len() > MAX_REDEMPTION_LINES {
            return Err(Error::validation(
                "lines",
                format!(
                    "{} lines; 1 to {MAX_REDEMPTION_LINES} allowed",
                    self.lines.len()
                ),
            ));
        }
        if self.order_total.is_negative() {
            return Err(Error::validation("order_total", "must not be negative"));
        }
        let mut lines = self.lines.clone();
        lines.sort_by(|a, b| a.promotion_id.cmp(&b.promotion_id));
        let mut sum = Money::zero(self.currency());
        for (i, l) in lines.iter().enumerate() {
            if i > 0 && lines[i - 1].promotion_id == l.promotion_id {
                return Err(Error::validation(
                    "lines",
                    format!("promotion {} appears twice", l.promotion_id),
                ));
            }
            super::check_currency("lines.amount", &l.amount, self.currency())?;
            if l.amount.is_negative() {
                return Err(Error::validation("lines.amount", "must not be negative"));
            }
            sum = sum.checked_add(&l.amount)?;
        }
        if sum.try_cmp(&self.order_total)? == std::cmp::Ordering::Greater {
            return Err(Error::validation(
                "lines.amount",
                format!(
                    "discounts of {sum} are larger than the order's {}",
                    self.order_total
                ),
            ));
        }
        Ok(lines)
    }
}

/// Checks a redemption TTL: 1 s to [`MAX_REDEMPTION_TTL`].
pub fn check_ttl(ttl: Duration) -> Result<()> {
    if ttl < Duration::from_secs(1) || ttl > MAX_REDEMPTION_TTL {
        return Err(Error::validation(
            "ttl",
            format!("{ttl:?} is not between 1 s and {MAX_REDEMPTION_TTL:?}"),
        ));
    }
    Ok(())
}

/// Checks a release reason: at most 500 characters, no NUL.
pub fn check_reason(reason: &str) -> Result<()> {
    if reason.chars().count() > 500 || reason.contains('\0') {
        return Err(Error::validation(
            "reason",
            "at most 500 characters, no NUL",
        ));
    }
    Ok(())
}

/// The lifecycle of a redemption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedemptionState {
    /// Held until `expires_at` (counts against the limits).
    Active,
    /// The order was paid (counts against the limits for good).
    Confirmed,
    /// Given back (cancellation, payment failure or expiry); counts no more.
    Released,
}

impl RedemptionState {
    /// The lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RedemptionState::Active => "active",
            RedemptionState::Confirmed => "confirmed",
            RedemptionState::Released => "released",
        }
    }

    /// Parses [`RedemptionState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(RedemptionState::Active),
            "confirmed" => Some(RedemptionState::Confirmed),
            "released" => Some(RedemptionState::Released),
            _ => None,
        }
    }
}

impl fmt::Display for RedemptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The promotions an order holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    /// The order.
    pub order_id: OrderId,
    /// The customer.
    pub customer_id: Option<CustomerId>,
    /// The order's total before discounts, as requested.
    pub order_total: Money,
    /// The promotions, sorted by id.
    pub lines: Vec<RedemptionLine>,
    /// Where it is in its lifecycle.
    pub state: RedemptionState,
    /// When an active redemption may be released by a reaper.
    pub expires_at: Timestamp,
    /// Why it was released (`"expired"` for a reaper).
    pub reason: Option<String>,
}

impl Redemption {
    /// Whether `request` asks for exactly this redemption (customer, total and lines),
    /// which makes repeating a reserve safe.
    pub fn same_request(
        &self,
        customer_id: &Option<CustomerId>,
        order_total: &Money,
        lines: &[RedemptionLine],
    ) -> bool {
        &self.customer_id == customer_id && &self.order_total == order_total && self.lines == lines
    }
}

/// Which limit refused a redemption: the reason of
/// [`Error::PromotionUnavailable`](crate::Error::PromotionUnavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Unavailable {
    /// Its total uses are all held.
    TotalUses,
    /// The customer holds it as often as allowed.
    CustomerUses,
    /// The amount would exceed its budget.
    Budget,
    /// The single-use code is held by another order.
    CodeUsed,
    /// Outside its window at the store's now.
    NotActive,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unavailable::TotalUses => "usage limit reached",
            Unavailable::CustomerUses => "per-customer limit reached",
            Unavailable::Budget => "budget spent",
            Unavailable::CodeUsed => "code already used",
            Unavailable::NotActive => "not active now",
        })
    }
}

/// How much of a promotion is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionUsage {
    /// The promotion.
    pub promotion_id: PromotionId,
    /// Orders holding it (active or confirmed).
    pub uses: u64,
    /// Orders whose redemption is confirmed.
    pub confirmed_uses: u64,
    /// The amount held (active or confirmed), in the promotion's currency.
    pub spent: Money,
    /// The amount of confirmed redemptions.
    pub confirmed_spent: Money,
}

/// The checks of [`PromotionStore::reserve`](crate::store::PromotionStore::reserve)
/// that do not depend on usage, for one line: the promotion exists (`promotion`), the
/// amount is in its currency, a code comes exactly with code promotions and belongs to
/// it (`code_owner`: the promotion the code belongs to, if the code exists), a customer
/// is given when it has a per-customer limit, and `now` is within its window. Shared by
/// every store so they refuse the same requests with the same errors.
pub fn check_line(
    promotion: Option<&Promotion>,
    line: &RedemptionLine,
    code_owner: Option<&PromotionId>,
    customer: Option<&CustomerId>,
    now: Timestamp,
) -> Result<()> {
    let p = promotion.ok_or_else(|| Error::not_found(EntityKind::Promotion, &line.promotion_id))?;
    if line.amount.currency() != p.currency {
        return Err(Error::CurrencyMismatch {
            left: line.amount.currency(),
            right: p.currency,
        });
    }
    match (p.trigger, &line.code) {
        (Trigger::Code, None) => {
            return Err(Error::validation(
                "lines.code",
                format!("promotion {} needs a code", p.id),
            ));
        }
        (Trigger::Automatic, Some(_)) => {
            return Err(Error::validation(
                "lines.code",
                format!("promotion {} is automatic and has no codes", p.id),
            ));
        }
        _ => {}
    }
    if let Some(code) = line.code.as_ref().filter(|_| code_owner != Some(&p.id)) {
        return Err(Error::not_found(EntityKind::Coupon, code));
    }
    if p.limits.uses_per_customer.is_some() && customer.is_none() {
        return Err(Error::validation(
            "customer_id",
            format!("promotion {} has a per-customer limit", p.id),
        ));
    }
    if p.window_state(now) != WindowState::Active {
        return Err(Error::PromotionUnavailable {
            promotion: p.id.to_string(),
            reason: Unavailable::NotActive,
        });
    }
    Ok(())
}
