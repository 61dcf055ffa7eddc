//! The bundle of stores the services are built on.

use std::sync::Arc;

use crate::clock::Clock;
use crate::memory::MemoryEngine;
use crate::store::{
    CartStore, CatalogStore, ComposedSteps, EventLog, InventoryStore, OrderQueue, OrderSteps,
    OrderStore,
};

/// One handle per contract, as trait objects, plus the clock.
///
/// The services only ever see these traits, so the same service code runs on the
/// in-memory engine ([`Stores::memory`]) and on any adapter (PostgreSQL, Redis, your
/// own): build a `Stores` from whatever implements the contracts.
///
/// The clock should be the one the stores use, so that "now" agrees everywhere
/// (reservation expiry, cart expiry, queue leases).
#[derive(Debug, Clone)]
pub struct Stores {
    /// Products and categories.
    pub catalog: Arc<dyn CatalogStore>,
    /// Server-side carts.
    pub carts: Arc<dyn CartStore>,
    /// Stock and reservations.
    pub inventory: Arc<dyn InventoryStore>,
    /// Orders and their history.
    pub orders: Arc<dyn OrderStore>,
    /// The event log (transactional outbox).
    pub events: Arc<dyn EventLog>,
    /// The queue orders are processed from.
    pub queue: Arc<dyn OrderQueue>,
    /// The pipeline's fused writes over `inventory` and `orders` ([`ComposedSteps`]
    /// unless the adapter does them in one transaction).
    pub steps: Arc<dyn OrderSteps>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

impl Stores {
    /// The stores of an in-memory engine, sharing its clock.
    ///
    /// ```
    /// use commerce_core::memory::MemoryEngine;
    /// use commerce_core::service::Stores;
    ///
    /// let stores = Stores::memory(&MemoryEngine::new());
    /// # let _ = stores;
    /// ```
    pub fn memory(engine: &MemoryEngine) -> Self {
        Stores {
            catalog: engine.catalog.clone(),
            carts: engine.carts.clone(),
            inventory: engine.inventory.clone(),
            orders: engine.orders.clone(),
            events: engine.events.clone(),
            queue: engine.queue.clone(),
            steps: Arc::new(ComposedSteps::new(
                engine.inventory.clone(),
                engine.orders.clone(),
            )),
            clock: engine.clock.clone(),
        }
    }
}

impl Stores {
    /// The same stores with [`steps`](Self::steps) composed from their own `inventory`
    /// and `orders` ([`ComposedSteps`]): after replacing either (a wrapper that injects
    /// faults, counts calls, caches), so that the pipeline's fused writes go through
    /// the replacement too.
    ///
    /// ```
    /// use commerce_core::memory::MemoryEngine;
    /// use commerce_core::service::Stores;
    ///
    /// let engine = MemoryEngine::new();
    /// let other = MemoryEngine::new();
    /// let stores = Stores { orders: other.orders.clone(), ..Stores::memory(&engine) }
    ///     .with_composed_steps();
    /// # let _ = stores;
    /// ```
    pub fn with_composed_steps(mut self) -> Self {
        self.steps = Arc::new(ComposedSteps::new(
            self.inventory.clone(),
            self.orders.clone(),
        ));
        self
    }
}

impl From<&MemoryEngine> for Stores {
    fn from(engine: &MemoryEngine) -> Self {
        Stores::memory(engine)
    }
}
