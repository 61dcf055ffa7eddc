//! Promotions, coupon codes and price lists.
//!
//! * [`Promotion`]: conditions ([`Condition`]: minimum subtotal, products, SKUs, a
//!   category subtree, customer groups, first order; plus the promotion's date window
//!   and currency), one [`Action`] (percentage or fixed amount off the order or matching
//!   lines, a fixed unit price, buy X get Y, free shipping, tiered thresholds) and
//!   [`Limits`] (total uses, uses per customer, a money budget).
//! * Triggers: automatic, or by code ([`CouponCode`]; a shared code or a
//!   [`CodeBatch`] of unique generated single-use codes).
//! * [`evaluate`]: the promotions a priced cart gets, each line's discount (order-level
//!   discounts allocated by [`allocate_largest_remainder`], so the lines sum exactly to
//!   the order's discount), the shipping discount, and every rejected code with a
//!   [`RejectReason`]. Amounts are exact [`Money`]; nothing goes below zero.
//! * Redemptions ([`RedemptionRequest`], [`Redemption`]): the limits are enforced when an
//!   order reserves its promotions, with a TTL like its stock, by a
//!   [`PromotionStore`](crate::store::PromotionStore).
//! * [`PriceList`] and [`resolve_price`]: prices per currency and customer group.
//!
//! # Stacking
//! Every promotion is [`Stacking::Exclusive`] or [`Stacking::Combinable`].
//!
//! 1. The candidates are the automatic promotions and the promotions of the entered
//!    codes that are active at `now`, in the cart's currency, meet their conditions,
//!    are not used up and would take something off the cart on their own. Each
//!    promotion counts once.
//! 2. The options are: all combinable candidates together, or any one exclusive
//!    candidate alone.
//! 3. Within an option, promotions apply one after another by priority (higher first,
//!    then by id), each on what the previous ones left, so they never take a line or
//!    the shipping below zero. Conditions and tier thresholds look at the subtotal
//!    before any discount. A promotion that has nothing left to take is dropped.
//! 4. [`StackingPolicy::BestForCustomer`] (the default) picks the option that saves the
//!    most (lines plus shipping); a tie goes to the combinable set, then to the
//!    exclusive promotion of higher priority. [`StackingPolicy::Priority`] lets the
//!    highest-priority candidate decide: alone if exclusive, else the combinable set.
//! 5. Codes of candidates left out are rejected as [`RejectReason::NotCombinable`].

mod action;
mod allocate;
mod code;
mod condition;
mod definition;
mod evaluate;
mod price_list;
mod redemption;

pub use action::{Action, Target, Tier, TierDiscount};
pub use allocate::allocate_largest_remainder;
pub use code::{CodeBatch, CouponCode};
pub use condition::{Condition, LineFilter, MAX_LIST};
pub use definition::{Limits, Promotion, Stacking, Trigger, WindowState};
pub use evaluate::{
    AppliedPromotion, CodeLookup, CustomerInfo, Evaluation, EvaluationInput, LineResult, MAX_CODES,
    MAX_LINES, Offer, PricedLine, PromotionShare, RejectReason, RejectedCode, StackingPolicy,
    evaluate,
};
pub use price_list::{PriceList, PriceSource, ResolvedPrice, resolve_price};
pub use redemption::{
    DEFAULT_REDEMPTION_TTL, MAX_REDEMPTION_LINES, MAX_REDEMPTION_TTL, PromotionUsage, Redemption,
    RedemptionLine, RedemptionRequest, RedemptionState, Unavailable, check_line, check_reason,
    check_ttl,
};

use crate::error::{Error, Result};
use crate::money::{Currency, Money};

/// `CurrencyMismatch` unless `amount` is in `currency`.
fn check_currency(_field: &str, amount: &Money, currency: Currency) -> Result<()> {
    if amount.currency() == currency {
        Ok(())
    } else {
        Err(Error::CurrencyMismatch {
            left: amount.currency(),
            right: currency,
        })
    }
}

#[cfg(test)]
mod tests;
