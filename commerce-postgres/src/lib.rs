//! PostgreSQL adapter of the commerce crates: the strongly consistent source of truth
//! for inventory, orders, the outbox and the catalog, on [`sqlx`].
//!
//! Every store implements a `commerce_core::store` contract and passes the same
//! conformance kit as the in-memory engine. All SQL is parameterised; tables live in
//! one configurable schema (default `commerce`) created and migrated by
//! [`PgCommerce::migrate`].
//!
//! * [`PgCommerce`]: one of each store on one pool and schema: [`PgEventLog`] (the
//!   outbox), [`PgInventory`], [`PgOrders`], [`PgCatalog`], [`PgQueue`], [`PgCarts`]
//!   and the order pipeline's fused steps [`PgOrderSteps`]; [`PgPromotions`] (promotions,
//!   codes and redemptions with limits that hold under concurrency).
//! * [`PgCommerce::with_replica`] routes browse reads to a replica pool.
//! * [`HotSkuConfig`] turns on the hot-SKU request combiner (flash sales).
//!
//! The README (shown on crates.io) explains how a host wires the crate in.
//!
//! ```no_run
//! use commerce_postgres::{PgCommerce, PgConfig};
//! use commerce_core::store::InventoryStore;
//! use commerce_core::id::{LocationId, Sku};
//!
//! # async fn run() -> commerce_core::Result<()> {
//! let pg = PgCommerce::connect(
//!     "postgres://postgres@127.0.0.1:5432/test",
//!     PgConfig::new().schema("shop")?,
//! )
//! .await?;
//! pg.migrate().await?;
//! let sku = Sku::new("IPH15-BLK-128")?;
//! pg.inventory.restock(&sku, &LocationId::new("wh-1")?, 10, "initial").await?;
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

/// `format!` for SQL text built only from validated identifiers and constants.
macro_rules! sql {
    ($($t:tt)*) => {
        sqlx::AssertSqlSafe(format!($($t)*))
    };
}

mod batch;
mod carts;
mod catalog;
mod combiner;
mod db;
mod error;
mod events;
mod inventory;
mod orders;
mod price_lists;
mod promotions;
mod queue;
pub mod recommend;
mod refunds;
mod steps;

use std::sync::Arc;
use std::time::Duration;

use commerce_core::clock::{Clock, SystemClock};
use commerce_core::{Error, Result};
pub use sqlx;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use carts::PgCarts;
pub use catalog::PgCatalog;
pub use combiner::HotSkuConfig;
pub use events::PgEventLog;
pub use inventory::PgInventory;
pub use orders::PgOrders;
pub use price_lists::PgPriceLists;
pub use promotions::PgPromotions;
pub use queue::PgQueue;
pub use refunds::PgRefunds;
pub use steps::{PgOrderSteps, StepBatching};

use db::Db;

/// The default schema.
pub const DEFAULT_SCHEMA: &str = "commerce";

/// How the adapter is set up: schema, clock, timeouts, notifications.
///
/// ```
/// use std::time::Duration;
/// use commerce_postgres::PgConfig;
///
/// let config = PgConfig::new()
///     .schema("shop_eu")?
///     .statement_timeout(Duration::from_secs(5));
/// assert_eq!(config.schema_name(), "shop_eu");
/// assert!(PgConfig::new().schema("bad; drop").is_err());
/// # Ok::<(), commerce_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PgConfig {
    schema: String,
    clock: Arc<dyn Clock>,
    notify: bool,
    statement_timeout: Option<Duration>,
    lock_timeout: Option<Duration>,
    max_connections: u32,
    acquire_timeout: Duration,
    hot_sku: Option<HotSkuConfig>,
    step_batching: StepBatching,
    jobs_with_orders: bool,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            schema: DEFAULT_SCHEMA.to_owned(),
            clock: Arc::new(SystemClock),
            notify: true,
            statement_timeout: Some(Duration::from_secs(30)),
            lock_timeout: Some(Duration::from_secs(10)),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            hot_sku: None,
            step_batching: StepBatching::default(),
            jobs_with_orders: false,
        }
    }
}

impl PgConfig {
    /// The defaults: schema `commerce`, system clock, NOTIFY on, 30 s statement
    /// timeout, 10 s lock timeout, 16 connections, 10 s pool acquire timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts every table in `schema`: 1 to 50 characters of lower-case ASCII letters,
    /// digits and `_`, not starting with a digit, not `pg_`-prefixed.
    pub fn schema(mut self, schema: impl Into<String>) -> Result<Self> {
        let schema = schema.into();
        validate_schema(&schema)?;
        self.schema = schema;
        Ok(self)
    }

    /// The schema name.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// Reads "now" from `clock` (a `ManualClock` in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Whether writes wake waiters of other processes with a `NOTIFY` (default on).
    /// It is sent after the commit, coalesced, outside the business transaction (a
    /// NOTIFY inside it would serialise every commit). Off, other processes' waiters
    /// notice new events by polling every 100 ms.
    pub fn notify(mut self, on: bool) -> Self {
        self.notify = on;
        self
    }

    /// `statement_timeout` of the pool's connections (only when the pool is made from a
    /// URL); `None` for the server default.
    pub fn statement_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.statement_timeout = t.into();
        self
    }

    /// `lock_timeout` of the pool's connections (only when the pool is made from a
    /// URL).
    pub fn lock_timeout(mut self, t: impl Into<Option<Duration>>) -> Self {
        self.lock_timeout = t.into();
        self
    }

    /// Pool size (only when the pool is made from a URL).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long to wait for a free connection before a retryable error (only when the
    /// pool is made from a URL).
    pub fn acquire_timeout(mut self, t: Duration) -> Self {
        self.acquire_timeout = t;
        self
    }

    /// Turns on the hot-SKU request combiner (off by default): see [`HotSkuConfig`].
    pub fn combine_hot_skus(mut self, hot: HotSkuConfig) -> Self {
        self.hot_sku = Some(hot);
        self
    }

    /// Whether [`PgOrders`] writes each new order's queue job (for [`PgQueue`], in the
    /// same schema) in the transaction that creates the order (default off).
    ///
    /// The order and its job then commit together, so no order is left without a job
    /// and none gets two, and the workers of this process are woken at the commit: the
    /// [`OrderRelay`](commerce_core::service::OrderRelay)'s hop from the outbox to the
    /// queue is not needed. Run no relay over the same queue then (it would give every
    /// order a second job: harmless, the pipeline is idempotent, but twice the work).
    /// The `OrderCreated` event is still written for other readers of the log.
    pub fn jobs_with_orders(mut self, on: bool) -> Self {
        self.jobs_with_orders = on;
        self
    }

    /// How concurrent pipeline steps ([`PgOrderSteps`]) and concurrent order creations
    /// and transitions ([`PgOrders`]) are grouped into one statement and one commit,
    /// and concurrent reads by key (orders by id or idempotency key, products and
    /// on-sale checks by SKU, stock by SKU) into one statement; the default is
    /// [`StepBatching::default`].
    pub fn step_batching(mut self, batching: StepBatching) -> Self {
        self.step_batching = StepBatching {
            lanes: batching.lanes.clamp(1, 64),
            max_batch: batching.max_batch.clamp(1, 1000),
        };
        self
    }

    /// Pool options and connect options for `url` with this config's timeouts.
    pub fn pool_for(&self, url: &str) -> Result<(PgPoolOptions, PgConnectOptions)> {
        let mut opts: PgConnectOptions = url
            .parse()
            .map_err(|e| Error::validation("database_url", format!("{e}")))?;
        let mut settings: Vec<(&str, String)> = Vec::new();
        if let Some(t) = self.statement_timeout {
            settings.push(("statement_timeout", format!("{}", t.as_millis())));
        }
        if let Some(t) = self.lock_timeout {
            settings.push(("lock_timeout", format!("{}", t.as_millis())));
        }
        opts = opts.options(settings);
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout);
        Ok((pool, opts))
    }
}

/// Checks a schema name (see [`PgConfig::schema`]).
pub fn validate_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 50
        && !schema.starts_with("pg_")
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            "schema",
            "1 to 50 of a-z, 0-9 and _, not starting with a digit or pg_",
        ))
    }
}

/// Every store of the adapter on one pool and schema, sharing one event log.
#[derive(Debug, Clone)]
pub struct PgCommerce {
    db: Arc<Db>,
    /// The outbox every store appends to.
    pub events: Arc<PgEventLog>,
    /// Stock, reservations and the ledger.
    pub inventory: Arc<PgInventory>,
    /// Orders and their history.
    pub orders: Arc<PgOrders>,
    /// Products, variants and categories (reads may go to a replica).
    pub catalog: Arc<PgCatalog>,
    /// The order pipeline's fused steps (one transaction per step, grouped across
    /// concurrent orders).
    pub steps: Arc<PgOrderSteps>,
    /// The order queue.
    pub queue: Arc<PgQueue>,
    /// Server-side carts.
    pub carts: Arc<PgCarts>,
    /// Promotions, coupon codes and redemptions.
    pub promotions: Arc<PgPromotions>,
}

impl PgCommerce {
    /// Connects a new pool to `url` with `config`'s pool settings.
    pub async fn connect(url: &str, config: PgConfig) -> Result<Self> {
        let (pool, opts) = config.pool_for(url)?;
        let pool = pool
            .connect_with(opts)
            .await
            .map_err(|e| Error::from(error::PgError::from(e)))?;
        Ok(Self::from_pool(pool, config))
    }

    /// Uses an existing pool (its own timeouts apply). Tables are always named with
    /// their schema, so the pool's `search_path` does not matter.
    pub fn from_pool(pool: PgPool, config: PgConfig) -> Self {
        let db = Arc::new(Db::new(pool, &config));
        PgCommerce {
            events: Arc::new(PgEventLog::new(db.clone())),
            inventory: Arc::new(PgInventory::new(db.clone(), config.hot_sku.clone())),
            orders: Arc::new(PgOrders::new(db.clone(), config.jobs_with_orders)),
            catalog: Arc::new(PgCatalog::new(db.clone(), None)),
            steps: Arc::new(PgOrderSteps::new(db.clone())),
            queue: Arc::new(PgQueue::new(db.clone())),
            carts: Arc::new(PgCarts::new(db.clone())),
            promotions: Arc::new(PgPromotions::new(db.clone())),
            db,
        }
    }

    /// The stores as the services take them ([`Stores`](commerce_core::service::Stores)):
    /// catalog, carts, inventory, orders, outbox, queue and the fused steps of this
    /// adapter, with the [`PgConfig`]'s clock.
    pub fn stores(&self) -> commerce_core::service::Stores {
        commerce_core::service::Stores {
            catalog: self.catalog.clone(),
            carts: self.carts.clone(),
            inventory: self.inventory.clone(),
            orders: self.orders.clone(),
            events: self.events.clone(),
            queue: self.queue.clone(),
            steps: self.steps.clone(),
            clock: self.db.clock.clone(),
        }
    }

    /// Routes reads that may lag (product pages, catalog listings, categories) to
    /// `replica`, a pool on a streaming replica of the primary. Inventory, orders, the
    /// outbox and every write always use the primary.
    pub fn with_replica(mut self, replica: PgPool) -> Self {
        self.catalog = Arc::new(PgCatalog::new(self.db.clone(), Some(replica)));
        self
    }

    /// Creates the schema if needed and applies the embedded migrations to it.
    pub async fn migrate(&self) -> Result<()> {
        self.db.migrate().await
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// The schema name.
    pub fn schema(&self) -> &str {
        &self.db.schema
    }

    /// The co-purchase counts ("also bought") in this schema.
    pub fn co_purchase(&self) -> recommend::PgCoPurchase {
        recommend::PgCoPurchase::from_db(self.db.pool.clone(), self.db.schema.clone())
    }

    /// The price lists and customer groups in this schema (tables from
    /// `migrations/0950_order_promotions.sql`).
    pub fn price_lists(&self) -> PgPriceLists {
        PgPriceLists::new(self.db.clone())
    }

    /// The refund ledger in this schema (tables from `migrations/0940_refunds.sql`).
    pub fn refunds(&self) -> PgRefunds {
        PgRefunds::new(self.db.clone())
    }

    /// The shopper histories in this schema.
    pub fn history(&self) -> recommend::PgHistory {
        recommend::PgHistory::from_db(self.db.pool.clone(), self.db.schema.clone())
    }
}

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
