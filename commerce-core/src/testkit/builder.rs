//! What an adapter implements to run the kit: a [`StoreBuilder`] that makes fresh
//! [`StoresUnderTest`] for every case.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::ManualClock;
use crate::error::Result;
use crate::memory::{
    MemoryCoPurchase, MemoryEngine, MemoryHistory, MemoryProductCache, MemoryRefunds,
    MemorySearchIndex,
};
use crate::store::ProductCache;
use crate::store::{
    CartStore, CatalogStore, CoPurchaseStore, ComposedSteps, EventLog, HistoryStore,
    InventoryStore, OrderQueue, OrderSteps, OrderStore, PromotionStore, RefundLedger, SearchIndex,
};

/// Makes fresh, empty stores for each case of the kit.
///
/// The kit calls [`build`](StoreBuilder::build) at the start of every case (a model-based
/// case calls it once per generated history) and [`teardown`](StoreBuilder::teardown)
/// after the case, whether it passed or failed. Stores must read "now" from the given
/// clock: the kit moves it to test expiry, leases and timestamps instead of sleeping.
///
/// ```
/// use std::sync::Arc;
/// use async_trait::async_trait;
/// use commerce_core::{clock::ManualClock, memory::MemoryCarts, testkit::{StoreBuilder, StoresUnderTest}};
///
/// #[derive(Debug)]
/// struct MyCartsBuilder;
///
/// #[async_trait]
/// impl StoreBuilder for MyCartsBuilder {
///     async fn build(&self, clock: Arc<ManualClock>) -> commerce_core::Result<StoresUnderTest> {
///         Ok(StoresUnderTest::new().with_carts(Arc::new(MemoryCarts::new(clock))))
///     }
/// }
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// commerce_core::testkit::carts::test_all(&MyCartsBuilder).await;
/// # });
/// ```
#[async_trait]
pub trait StoreBuilder: Send + Sync {
    /// Fresh, empty stores for one case, all reading time from `clock`.
    ///
    /// Return only the stores the adapter has; the kit tests those. Stores that append
    /// events (catalog, inventory, orders) must come with the [`EventLog`] they append
    /// to ([`StoresUnderTest::with_events`]) so the kit can check the events.
    async fn build(&self, clock: Arc<ManualClock>) -> Result<StoresUnderTest>;

    /// Releases what the `build` calls of the case just finished made (drop a schema,
    /// delete keys). Called after every case, passed or failed. Does nothing by default.
    async fn teardown(&self) -> Result<()> {
        Ok(())
    }
}

/// The stores one [`StoreBuilder::build`] call made, plus anything that must live as
/// long as they do (a temporary directory, a server handle).
///
/// ```
/// use std::sync::Arc;
/// use commerce_core::{clock::ManualClock, memory::MemoryEngine, testkit::StoresUnderTest};
///
/// let engine = MemoryEngine::with_clock(Arc::new(ManualClock::default()));
/// let stores = StoresUnderTest::new()
///     .with_inventory(engine.inventory.clone())
///     .with_events(engine.events.clone());
/// assert!(stores.inventory.is_some() && stores.carts.is_none());
/// ```
#[derive(Default)]
#[non_exhaustive]
pub struct StoresUnderTest {
    /// The catalog, if the adapter has one.
    pub catalog: Option<Arc<dyn CatalogStore>>,
    /// The carts, if the adapter has them.
    pub carts: Option<Arc<dyn CartStore>>,
    /// The inventory, if the adapter has one.
    pub inventory: Option<Arc<dyn InventoryStore>>,
    /// The orders, if the adapter has them.
    pub orders: Option<Arc<dyn OrderStore>>,
    /// The order queue, if the adapter has one.
    pub queue: Option<Arc<dyn OrderQueue>>,
    /// The event log the other stores append to; also tested on its own.
    pub events: Option<Arc<dyn EventLog>>,
    /// The order pipeline's fused steps over `inventory` and `orders`, if the adapter
    /// has its own (the kit compares them with [`ComposedSteps`] on fresh stores).
    pub steps: Option<Arc<dyn OrderSteps>>,
    /// The promotions, if the adapter has them.
    pub promotions: Option<Arc<dyn PromotionStore>>,
    /// The refund ledger, if the adapter has one.
    pub refunds: Option<Arc<dyn RefundLedger>>,
    /// The price lists, if the adapter has them.
    pub price_lists: Option<Arc<dyn crate::store::PriceListStore>>,
    /// The co-purchase counts, if the adapter has them.
    pub co_purchase: Option<Arc<dyn CoPurchaseStore>>,
    /// The shopper histories, if the adapter has them.
    pub history: Option<Arc<dyn HistoryStore>>,
    /// The product cache and how its entries expire, if the adapter has one.
    pub product_cache: Option<(Arc<dyn ProductCache>, CacheExpiry)>,
    /// The search index, if the adapter has one.
    pub search: Option<Arc<dyn SearchIndex>>,
    guards: Vec<Box<dyn Any + Send + Sync>>,
}

impl StoresUnderTest {
    /// No stores yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the catalog.
    pub fn with_catalog(mut self, store: Arc<dyn CatalogStore>) -> Self {
        self.catalog = Some(store);
        self
    }

    /// Adds the carts.
    pub fn with_carts(mut self, store: Arc<dyn CartStore>) -> Self {
        self.carts = Some(store);
        self
    }

    /// Adds the inventory.
    pub fn with_inventory(mut self, store: Arc<dyn InventoryStore>) -> Self {
        self.inventory = Some(store);
        self
    }

    /// Adds the orders.
    pub fn with_orders(mut self, store: Arc<dyn OrderStore>) -> Self {
        self.orders = Some(store);
        self
    }

    /// Adds the order queue.
    pub fn with_queue(mut self, store: Arc<dyn OrderQueue>) -> Self {
        self.queue = Some(store);
        self
    }

    /// Adds the promotions.
    pub fn with_promotions(mut self, store: Arc<dyn PromotionStore>) -> Self {
        self.promotions = Some(store);
        self
    }

    /// Adds the price lists.
    pub fn with_price_lists(mut self, store: Arc<dyn crate::store::PriceListStore>) -> Self {
        self.price_lists = Some(store);
        self
    }

    /// Adds the refund ledger.
    pub fn with_refunds(mut self, store: Arc<dyn RefundLedger>) -> Self {
        self.refunds = Some(store);
        self
    }

    /// Adds the co-purchase counts.
    pub fn with_co_purchase(mut self, store: Arc<dyn CoPurchaseStore>) -> Self {
        self.co_purchase = Some(store);
        self
    }

    /// Adds the shopper histories.
    pub fn with_history(mut self, store: Arc<dyn HistoryStore>) -> Self {
        self.history = Some(store);
        self
    }

    /// Adds the product cache; `expiry` says how long it keeps an entry and by which
    /// clock, so the kit can check expiry.
    pub fn with_product_cache(mut self, cache: Arc<dyn ProductCache>, expiry: CacheExpiry) -> Self {
        self.product_cache = Some((cache, expiry));
        self
    }

    /// Adds the search index.
    pub fn with_search(mut self, index: Arc<dyn SearchIndex>) -> Self {
        self.search = Some(index);
        self
    }

    /// Adds the event log the other stores append to.
    pub fn with_events(mut self, log: Arc<dyn EventLog>) -> Self {
        self.events = Some(log);
        self
    }

    /// Adds the fused pipeline steps (over the inventory and orders given here).
    pub fn with_steps(mut self, steps: Arc<dyn OrderSteps>) -> Self {
        self.steps = Some(steps);
        self
    }

    /// Keeps `guard` alive until the case ends (a `tempfile::TempDir`, a container).
    pub fn keep_alive(mut self, guard: impl Any + Send + Sync) -> Self {
        self.guards.push(Box::new(guard));
        self
    }

    /// Which areas these stores can be tested in.
    pub fn areas(&self) -> Vec<Area> {
        Area::ALL
            .into_iter()
            .filter(|a| match a {
                Area::Catalog => self.catalog.is_some(),
                Area::Carts => self.carts.is_some(),
                Area::Inventory => self.inventory.is_some(),
                Area::Orders => self.orders.is_some(),
                Area::Events => self.events.is_some(),
                Area::Queue => self.queue.is_some(),
                Area::Steps => {
                    self.steps.is_some() && self.inventory.is_some() && self.orders.is_some()
                }
                Area::Promotions => self.promotions.is_some(),
                Area::Refunds => self.refunds.is_some(),
                Area::Checkout => {
                    self.catalog.is_some()
                        && self.inventory.is_some()
                        && self.orders.is_some()
                        && self.promotions.is_some()
                        && self.price_lists.is_some()
                }
                Area::CoPurchase => self.co_purchase.is_some(),
                Area::History => self.history.is_some(),
                Area::ProductCache => self.product_cache.is_some(),
                Area::Search => self.search.is_some(),
            })
            .collect()
    }
}

impl fmt::Debug for StoresUnderTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoresUnderTest")
            .field("areas", &self.areas())
            .field("guards", &self.guards.len())
            .finish()
    }
}

impl From<MemoryEngine> for StoresUnderTest {
    fn from(engine: MemoryEngine) -> Self {
        StoresUnderTest::new()
            .with_catalog(engine.catalog)
            .with_carts(engine.carts)
            .with_inventory(engine.inventory.clone())
            .with_orders(engine.orders.clone())
            .with_queue(engine.queue)
            .with_steps(Arc::new(ComposedSteps::new(
                engine.inventory.clone(),
                engine.orders.clone(),
            )))
            .with_promotions(engine.promotions)
            .with_price_lists(engine.price_lists)
            .with_events(engine.events)
    }
}

/// A group of cases: one per contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    /// [`CatalogStore`] and the events it appends.
    Catalog,
    /// [`CartStore`].
    Carts,
    /// [`InventoryStore`], the events it appends, and the model-based tests.
    Inventory,
    /// [`OrderStore`] and the events it appends.
    Orders,
    /// [`EventLog`] on its own.
    Events,
    /// [`OrderQueue`].
    Queue,
    /// [`OrderSteps`], compared with [`ComposedSteps`] over the same kind of stores.
    Steps,
    /// [`PromotionStore`], with the concurrent and model-based tests.
    Promotions,
    /// [`RefundLedger`].
    Refunds,
    /// Checkout and the order pipeline with promotions and price lists, over the
    /// catalog, inventory, orders, promotions and price lists (and the steps, if any).
    Checkout,
    /// [`CoPurchaseStore`], against a brute-force count.
    CoPurchase,
    /// [`HistoryStore`].
    History,
    /// [`ProductCache`].
    ProductCache,
    /// [`SearchIndex`].
    Search,
}

impl Area {
    /// Every area, in the order `test_all` runs them.
    pub const ALL: [Area; 14] = [
        Area::Catalog,
        Area::Carts,
        Area::Inventory,
        Area::Orders,
        Area::Events,
        Area::Queue,
        Area::Steps,
        Area::Promotions,
        Area::Refunds,
        Area::Checkout,
        Area::CoPurchase,
        Area::History,
        Area::ProductCache,
        Area::Search,
    ];

    /// The module name (`inventory`), as used in case names.
    pub fn name(self) -> &'static str {
        match self {
            Area::Catalog => "catalog",
            Area::Carts => "carts",
            Area::Inventory => "inventory",
            Area::Orders => "orders",
            Area::Events => "events",
            Area::Queue => "queue",
            Area::Steps => "steps",
            Area::Promotions => "promotions",
            Area::Refunds => "refunds",
            Area::Checkout => "checkout",
            Area::CoPurchase => "co_purchase",
            Area::History => "history",
            Area::ProductCache => "product_cache",
            Area::Search => "search",
        }
    }

    /// Whether the area also needs the event log (its stores append events).
    pub fn needs_events(self) -> bool {
        matches!(
            self,
            Area::Catalog | Area::Inventory | Area::Orders | Area::Steps | Area::Checkout
        )
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a product cache under test expires its entries (see
/// [`StoresUnderTest::with_product_cache`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheExpiry {
    /// How long an entry is served after the `put` that cached it.
    pub ttl: Duration,
    /// Which clock measures it.
    pub clock: ExpiryClock,
}

/// The clock a product cache measures its time-to-live by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryClock {
    /// The [`ManualClock`] given to [`StoreBuilder::build`]: the kit moves it.
    Injected,
    /// The server's own clock (Redis `EX`): the kit waits in real time, so keep the
    /// time-to-live short (whole seconds, 1 to 3).
    Server,
}

/// The in-memory engine (with [`MemoryRefunds`], the recommendation stores, a
/// [`MemoryProductCache`] and a [`MemorySearchIndex`]) as a [`StoreBuilder`]: every
/// area, one shared event log. The reference every other adapter is compared with.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryBuilder;

#[async_trait]
impl StoreBuilder for MemoryBuilder {
    async fn build(&self, clock: Arc<ManualClock>) -> Result<StoresUnderTest> {
        let stores: StoresUnderTest = MemoryEngine::with_clock(clock.clone()).into();
        let ttl = Duration::from_secs(300);
        Ok(stores
            .with_refunds(Arc::new(MemoryRefunds::new(clock.clone())))
            .with_co_purchase(Arc::new(MemoryCoPurchase::new()))
            .with_history(Arc::new(MemoryHistory::new()))
            .with_product_cache(
                Arc::new(MemoryProductCache::new(clock, ttl, 10_000)),
                CacheExpiry {
                    ttl,
                    clock: ExpiryClock::Injected,
                },
            )
            .with_search(Arc::new(MemorySearchIndex::new())))
    }
}
