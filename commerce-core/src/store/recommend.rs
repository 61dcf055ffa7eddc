//! The recommendation contracts: co-purchase counts and shopper histories. Their types
//! are in [`crate::activity`]; the services built on them in [`crate::recommend`].

use std::fmt::Debug;

use async_trait::async_trait;

use crate::activity::{Basket, Interaction, ProductCount, RecordOutcome};
use crate::error::Result;
use crate::id::{CustomerId, ProductId};

/// "Customers who bought X also bought Y": per ordered pair of products, the number of
/// confirmed orders that held both; per product, the number that held it.
///
/// Fed by [`CoPurchaseUpdater`](crate::recommend::CoPurchaseUpdater) from the event log,
/// whose delivery is at least once, so recording is idempotent per order.
///
/// # To ensure correctness (every method)
/// * After recording a set of distinct baskets, in any order and from any number of
///   concurrent callers, the counts equal the brute-force count over them:
///   `pair(x, y)` = baskets whose [`Basket::paired`] holds both `x` and `y` (`x != y`),
///   `popularity(x)` = baskets whose [`Basket::products`] holds `x`.
/// * Rankings are by count descending, then product id ascending
///   ([`ProductCount::rank_cmp`]); counts of zero are never returned.
/// * `limit` is 1 to [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE), else `Validation`.
#[async_trait]
pub trait CoPurchaseStore: Send + Sync + Debug + 'static {
    /// Counts `basket`: popularity for each of its products and a pair increment for
    /// each of [`Basket::pairs`].
    ///
    /// # To ensure correctness
    /// * **Exactly once per order id**: the first call for an order id counts it and
    ///   returns `Recorded`; every later call (with any content) changes nothing and
    ///   returns `Duplicate`. This holds under concurrent calls for the same order (one
    ///   wins), and across restarts for a persistent store.
    /// * **Atomic**: the order id, the popularity counts and the pair counts are written
    ///   together or not at all.
    /// * An empty basket is recorded (its order id is remembered) and counts nothing.
    async fn record(&self, basket: &Basket) -> Result<RecordOutcome>;

    /// Records several baskets: the same as [`record`](Self::record) on each in turn,
    /// one outcome per basket in order (a basket repeated within the call is
    /// `Duplicate` the second time). An implementation may use one transaction and
    /// aggregate the increments (the event consumer calls this once per batch); on an
    /// error some baskets may have been recorded, and recording them again is harmless.
    async fn record_all(&self, baskets: &[Basket]) -> Result<Vec<RecordOutcome>> {
        let mut out = Vec::with_capacity(baskets.len());
        for basket in baskets {
            out.push(self.record(basket).await?);
        }
        Ok(out)
    }

    /// Up to `limit` products most often bought together with `product`, ranked.
    /// `product` itself is never returned; an unknown product gives an empty list.
    async fn also_bought(&self, product: &ProductId, limit: u32) -> Result<Vec<ProductCount>>;

    /// Up to `limit` most bought products, ranked (the cold-start fallback).
    async fn popular(&self, limit: u32) -> Result<Vec<ProductCount>>;

    /// Number of orders recorded so far (duplicates not counted).
    async fn orders_recorded(&self) -> Result<u64>;
}

/// What shoppers viewed, carted and bought, most recent first, to personalise with.
///
/// # To ensure correctness (every method)
/// * `recent` returns a shopper's interactions newest first (by `at`; equal times in
///   reverse recording order), at most `limit`, and never another shopper's.
/// * A store keeps at least the newest
///   [`HISTORY_CAPACITY`](crate::activity::HISTORY_CAPACITY) interactions per shopper
///   and may drop older ones.
/// * Recording an interaction equal to one already kept (same product, kind and
///   time) changes nothing, so replaying events does not inflate a history.
/// * `limit` is 1 to [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE), else `Validation`.
///
/// Guests can be given a history too: key it by a [`CustomerId`] derived from their
/// session (`guest-<session>`).
#[async_trait]
pub trait HistoryStore: Send + Sync + Debug + 'static {
    /// Adds an interaction to `customer`'s history.
    async fn record(&self, customer: &CustomerId, interaction: &Interaction) -> Result<()>;

    /// The newest `limit` interactions of `customer`.
    async fn recent(&self, customer: &CustomerId, limit: u32) -> Result<Vec<Interaction>>;
}
