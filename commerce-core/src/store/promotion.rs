use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::id::{OrderId, PromotionId};
use crate::promotion::{
    CodeBatch, CodeLookup, Offer, Promotion, PromotionUsage, Redemption, RedemptionRequest,
};

/// Promotions, their codes and redemptions: the limits (total uses, uses per customer,
/// a money budget, single-use codes) hold under any number of concurrent checkouts.
///
/// A redemption is the set of promotions one order holds. It follows the order's stock
/// reservation: reserved with a TTL when the order reserves its stock, extended with the
/// stock lease while payment runs, confirmed when payment is confirmed, released on
/// cancellation, payment failure or expiry.
///
/// # To ensure correctness (every method)
/// * **Strong consistency**: every write is linearizable; a read after a write sees it.
/// * **Limits hold**: at every instant, for every promotion, the active and confirmed
///   redemptions holding it number at most `limits.total_uses`, those of one customer at
///   most `limits.uses_per_customer`, and their amounts sum to at most `limits.budget`;
///   a single-use code is held by at most one active or confirmed redemption. Released
///   redemptions count for nothing.
/// * **No read-then-write**: a limit is checked and taken in one atomic step (one
///   guarded statement, one critical section), never decided on a value read earlier.
/// * Invalid input is a `Validation` (or `CurrencyMismatch`) error and writes nothing.
/// * Promotions are immutable once created.
#[async_trait]
pub trait PromotionStore: Send + Sync + Debug + 'static {
    /// Stores a new promotion.
    ///
    /// # To ensure correctness
    /// * The promotion passes [`Promotion::validate_at`] with the store clock's now
    ///   (an already ended window is refused); otherwise the error and nothing written.
    /// * Idempotent: creating an identical promotion again returns it; a different one
    ///   with the same id is `Conflict { kind: Promotion }`.
    async fn create_promotion(&self, promotion: &Promotion) -> Result<Promotion>;

    /// The promotion, if it exists.
    async fn promotion(&self, id: &PromotionId) -> Result<Option<Promotion>>;

    /// The automatic promotions whose window contains `now`, ordered by id, each with
    /// whether its total uses or budget are used up.
    ///
    /// # To ensure correctness
    /// `exhausted` reflects some instant during the call; it is advice for the
    /// evaluator, the limits themselves are enforced by [`reserve`](Self::reserve).
    async fn automatic_offers(&self, now: Timestamp) -> Result<Vec<Offer>>;

    /// Adds codes to a code-triggered promotion; returns how many were added.
    ///
    /// # To ensure correctness
    /// * **All or nothing**: if any code of the batch already exists (for any
    ///   promotion, including from a concurrent batch), nothing is added and the error
    ///   is `Conflict { kind: Coupon }`.
    /// * An invalid batch ([`CodeBatch::validate`]) is `Validation`; an unknown
    ///   promotion `NotFound { kind: Promotion }`; an automatic promotion `Validation`.
    async fn add_codes(&self, promotion_id: &PromotionId, batch: &CodeBatch) -> Result<u64>;

    /// What each of `codes` (as the shopper typed them) is, in the same order.
    ///
    /// # To ensure correctness
    /// * A text that is not a well-formed [`CouponCode`](crate::promotion::CouponCode)
    ///   is [`CodeLookup::Malformed`] (cut to 64 characters), never an error; a
    ///   well-formed code nobody has is [`CodeLookup::Unknown`].
    /// * `exhausted` is true when the single-use code is held, or the promotion's total
    ///   uses or budget are used up, at some instant during the call.
    /// * At most [`MAX_CODES`](crate::promotion::MAX_CODES) codes, else `Validation`.
    async fn lookup_codes(&self, codes: &[String]) -> Result<Vec<CodeLookup>>;

    /// Holds the request's promotions for its order, all or nothing, for `request.ttl`
    /// from the store clock's now.
    ///
    /// # To ensure correctness
    /// * The request passes [`RedemptionRequest::normalized_lines`], else its error.
    /// * **Idempotent per order**: if the order already has a redemption (in any
    ///   state) for the same customer, total and normalised lines, return it unchanged;
    ///   otherwise `Conflict { kind: Redemption }`.
    /// * Per line, in promotion-id order, before anything is taken: an unknown
    ///   promotion is `NotFound { kind: Promotion }`; an amount in another currency
    ///   `CurrencyMismatch`; a code promotion without a code, or a code on an automatic
    ///   one, `Validation`; a code that is not this promotion's
    ///   `NotFound { kind: Coupon }`; a per-customer limit without a customer
    ///   `Validation`; a window not containing now
    ///   `PromotionUnavailable { reason: NotActive }`.
    /// * Then the limits, all-or-nothing, checked in this order: for each promotion (by
    ///   id) total uses (`TotalUses`) then budget (`Budget`); then each single-use code
    ///   (by code: `CodeUsed`); then each promotion's per-customer uses
    ///   (`CustomerUses`). The first one refused is the error
    ///   (`PromotionUnavailable`) and nothing is held.
    /// * **Never over-redeem**: under any number of concurrent calls the limits of the
    ///   trait hold; with `n` concurrent orders on a promotion limited to `k` uses,
    ///   exactly `min(n, k)` succeed.
    /// * No deadlock between concurrent reserves and releases (take locks in promotion
    ///   id, then code, then customer order).
    async fn reserve(&self, request: &RedemptionRequest) -> Result<Redemption>;

    /// Moves an active redemption's expiry to now + `ttl` (renewed with the stock lease
    /// while payment runs).
    ///
    /// # To ensure correctness
    /// Only an `Active` redemption that has not expired at now can be extended;
    /// otherwise `InvalidTransition { entity: Redemption }` (from its state, or
    /// `expired`). Unknown order: `NotFound { kind: Redemption }`. A TTL outside
    /// [`check_ttl`](crate::promotion::check_ttl) is `Validation`.
    async fn extend(&self, order_id: &OrderId, ttl: Duration) -> Result<Redemption>;

    /// Confirms an active redemption (the order was paid): it keeps counting.
    ///
    /// # To ensure correctness
    /// * Idempotent: confirming a `Confirmed` redemption returns it unchanged.
    /// * A `Released` redemption cannot be confirmed: `InvalidTransition`.
    /// * An `Active` redemption past its expiry that no reaper released yet may still be
    ///   confirmed: it still holds its uses, so no limit is exceeded.
    async fn confirm(&self, order_id: &OrderId) -> Result<Redemption>;

    /// Releases an active redemption (cancellation, payment failure): its uses, budget,
    /// codes and customer uses are given back, exactly once.
    ///
    /// # To ensure correctness
    /// Idempotent on `Released` (returned unchanged, nothing given back again); a
    /// `Confirmed` redemption is `InvalidTransition`; the reason is at most 500
    /// characters without NUL, else `Validation`.
    async fn release(&self, order_id: &OrderId, reason: &str) -> Result<Redemption>;

    /// Releases up to `limit` active redemptions whose `expires_at <= now` (reason
    /// `"expired"`), returning them as released.
    ///
    /// # To ensure correctness
    /// Each expired redemption is released **exactly once** even when several reapers
    /// run this concurrently: no redemption is returned by two calls, and what it held
    /// is given back once.
    async fn release_expired(&self, now: Timestamp, limit: u32) -> Result<Vec<Redemption>>;

    /// The order's redemption, in whatever state.
    async fn redemption(&self, order_id: &OrderId) -> Result<Option<Redemption>>;

    /// How much of the promotion is held. Unknown: `NotFound { kind: Promotion }`.
    async fn usage(&self, promotion_id: &PromotionId) -> Result<PromotionUsage>;
}
