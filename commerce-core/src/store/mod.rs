//! The storage contracts: one object-safe async trait per area.
//!
//! Each trait is `Send + Sync + Debug` and usable as `Arc<dyn Trait>`. Each method's
//! docs have a **To ensure correctness** section: what every implementation must
//! guarantee. The in-memory engine ([`crate::memory`]) is the reference implementation,
//! and the conformance kit (`testkit` feature) checks any implementation against it.
//!
//! Convenience methods built only on a contract live in an extension trait with a
//! blanket impl (`CatalogStoreExt` for `CatalogStore`, ...), so adapters never have to
//! write them.

mod cart;
mod catalog;
mod events;
mod inventory;
mod nonce;
mod order;
mod price_list;
mod product_cache;
mod promotion;
mod queue;
mod rate_limit;
mod recommend;
mod refund;
pub mod search;
pub mod steps;

pub use cart::CartStore;
pub use catalog::{CatalogStore, CatalogStoreExt, ProductQuery, check_sku_batch};
pub use events::{EventLog, EventLogExt};
pub use inventory::{InventoryStore, InventoryStoreExt};
pub use nonce::NonceStore;
pub use order::{CreateOutcome, OrderQuery, OrderStore};
pub use price_list::{MAX_CUSTOMER_GROUPS, PriceListStore, normalized_groups};
pub use product_cache::{ProductCache, ProductKey};
pub use promotion::PromotionStore;
pub use queue::{DeadLetter, OrderQueue, QueueStats, QueuedJob, RetryOutcome, RetryPolicy};
pub use rate_limit::{Admission, LimitedAction, UserRateLimit};
pub use recommend::{CoPurchaseStore, HistoryStore};
pub use refund::{RefundLedger, RefundLedgerOutcome};
pub use search::SearchIndex;
pub use steps::{ComposedSteps, OrderSteps, StepOutcome};

use serde::{Deserialize, Serialize};

/// Most items one page may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// One page of a keyset-paginated listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T, C> {
    /// The items, in listing order.
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// An empty last page.
    pub fn empty() -> Self {
        Page {
            items: Vec::new(),
            next: None,
        }
    }
}

/// Checks a page size: 1 to [`MAX_PAGE_SIZE`].
pub fn check_limit(limit: u32) -> crate::Result<usize> {
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(crate::Error::validation(
            "limit",
            format!("{limit} is not between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    Ok(limit as usize)
}

/// Checks a batch read's keys (at most [`MAX_PAGE_SIZE`], else `Validation` on
/// `field`) and returns them without repeats, in first-seen order. For implementations
/// of the batch reads ([`CatalogStore::get_products`], [`InventoryStore::stocks`]).
///
/// ```
/// use commerce_core::store::distinct_batch;
/// assert_eq!(distinct_batch("ids", &["a", "b", "a"]).unwrap(), [&"a", &"b"]);
/// assert!(distinct_batch("ids", &vec![0u32; 1001]).is_err());
/// ```
pub fn distinct_batch<'a, T: Eq + std::hash::Hash>(
    field: &'static str,
    items: &'a [T],
) -> crate::Result<Vec<&'a T>> {
    if items.len() > MAX_PAGE_SIZE as usize {
        return Err(crate::Error::validation(
            field,
            format!("at most {MAX_PAGE_SIZE} in one call"),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    Ok(items.iter().filter(|i| seen.insert(*i)).collect())
}
