//! The in-memory engine: every contract, in process.
//!
//! It is the embedded default of the examples and the reference implementation the
//! conformance kit is checked against. Each store keeps its state behind one mutex
//! that is never held across an `.await`, so every operation is linearizable; events
//! are appended to the shared [`MemoryEventLog`] inside the same critical section as
//! the change they describe.

mod carts;
mod catalog;
mod events;
mod inventory;
mod nonces;
mod orders;
mod price_lists;
mod product_cache;
mod promotions;
mod queue;
mod recommend;
mod refunds;
mod search;

use std::sync::{Arc, Mutex, MutexGuard};

pub use carts::MemoryCarts;
pub use catalog::MemoryCatalog;
pub use events::MemoryEventLog;
pub use inventory::MemoryInventory;
pub use nonces::MemoryNonces;
pub use orders::MemoryOrders;
pub use price_lists::MemoryPriceLists;
pub use product_cache::MemoryProductCache;
pub use promotions::MemoryPromotions;
pub use queue::MemoryQueue;
pub use recommend::{MemoryCoPurchase, MemoryHistory};
pub use refunds::MemoryRefunds;
pub use search::MemorySearchIndex;

use crate::clock::{Clock, SystemClock};

/// One of each in-memory store, sharing a clock and an event log.
///
/// ```
/// use commerce_core::memory::MemoryEngine;
/// use commerce_core::store::CatalogStore;
///
/// let engine = MemoryEngine::new();
/// let catalog: std::sync::Arc<dyn CatalogStore> = engine.catalog.clone();
/// # let _ = catalog;
/// ```
#[derive(Debug, Clone)]
pub struct MemoryEngine {
    /// The clock every store uses.
    pub clock: Arc<dyn Clock>,
    /// The shared event log.
    pub events: Arc<MemoryEventLog>,
    /// Products and categories.
    pub catalog: Arc<MemoryCatalog>,
    /// Stock and reservations.
    pub inventory: Arc<MemoryInventory>,
    /// Orders.
    pub orders: Arc<MemoryOrders>,
    /// Carts.
    pub carts: Arc<MemoryCarts>,
    /// The order queue.
    pub queue: Arc<MemoryQueue>,
    /// Promotions, codes and redemptions.
    pub promotions: Arc<MemoryPromotions>,
    /// Price lists and customer groups.
    pub price_lists: Arc<MemoryPriceLists>,
}

impl MemoryEngine {
    /// An engine on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An engine on `clock` (a [`ManualClock`](crate::clock::ManualClock) in tests).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        let events = Arc::new(MemoryEventLog::new(clock.clone()));
        MemoryEngine {
            catalog: Arc::new(MemoryCatalog::new(clock.clone(), events.clone())),
            inventory: Arc::new(MemoryInventory::new(clock.clone(), events.clone())),
            orders: Arc::new(MemoryOrders::new(clock.clone(), events.clone())),
            carts: Arc::new(MemoryCarts::new(clock.clone())),
            queue: Arc::new(MemoryQueue::new(clock.clone())),
            promotions: Arc::new(MemoryPromotions::new(clock.clone())),
            price_lists: Arc::new(MemoryPriceLists::new()),
            events,
            clock,
        }
    }
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

/// Locks a mutex, recovering from poisoning: no code path panics while holding one of
/// these locks, and the state is only written after every check has passed.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
