//! Which stores the shop runs on: the in-memory engine by default; PostgreSQL
//! (commerce-postgres: catalog, inventory, orders, outbox, queue) when a database URL is
//! given; Redis (commerce-redis: carts, and a read-through product cache in front of
//! the catalog, invalidated from the outbox) when a Redis URL is given.
//!
//! One file for the storefront and the web example (each includes it with `#[path]`):
//! both wire their stores exactly as the README shows, and name their Redis prefix and
//! cache consumer after themselves.

use std::sync::Arc;
use std::time::Duration;

use commerce_core::Result;
use commerce_core::id::ConsumerName;
use commerce_core::memory::MemoryEngine;
use commerce_core::memory::MemoryRefunds;
use commerce_core::recommend::{MemoryCoPurchase, MemoryHistory};
use commerce_core::service::{BackgroundTask, Stores};
use commerce_core::store::{
    CatalogStore, CoPurchaseStore, EventLog, HistoryStore, PromotionStore, RefundLedger,
};
use commerce_postgres::{PgCommerce, PgConfig};
use commerce_redis::{CacheConfig, CacheInvalidator, CachedCatalog, RedisCarts, RedisConfig};

use crate::args::Args;

/// The stores, what they are, and the background loops they need.
// The web example serves neither promotions nor refunds, nor a flash-sale gate.
#[allow(dead_code)]
pub struct Backends {
    /// The stores the services run on.
    pub stores: Stores,
    /// Promotions, codes and redemptions.
    pub promotions: Arc<dyn PromotionStore>,
    /// Co-purchase counts (recommendations).
    pub co_purchase: Arc<dyn CoPurchaseStore>,
    /// Shopper histories (personalisation).
    pub history: Arc<dyn HistoryStore>,
    /// The refund ledger (what each paid order paid, and its partial refunds).
    pub refunds: Arc<dyn RefundLedger>,
    /// One line per store family: where it lives.
    pub description: Vec<String>,
    /// Redis, when configured (the flash sale's admission gate lives there).
    pub redis: Option<commerce_redis::RedisBackend>,
    /// Whether the order store writes each order's queue job with the order
    /// (PostgreSQL, `PgConfig::jobs_with_orders`): then no outbox relay runs.
    pub jobs_with_orders: bool,
    /// The cache invalidator, when the catalog is cached in Redis.
    invalidator: Option<BackgroundTask<u64>>,
}

impl Backends {
    /// Stops the background loops.
    pub fn stop(self) {
        // Dropping a background task's handle asks its loop to stop.
        drop(self.invalidator);
    }
}

/// The stores, the promotions, co-purchase counts, histories and refund ledger of one
/// backend.
type Opened = (
    Stores,
    Arc<dyn PromotionStore>,
    Arc<dyn CoPurchaseStore>,
    Arc<dyn HistoryStore>,
    Arc<dyn RefundLedger>,
);

/// Opens the stores `args` ask for.
pub async fn open(args: &Args) -> Result<Backends> {
    let mut description = Vec::new();
    // On PostgreSQL each order's queue job is written with the order: no relay hop.
    let jobs_with_orders = args.database_url.is_some();
    let (mut stores, promotions, co_purchase, history, refunds): Opened = match &args.database_url {
        None => {
            description.push(
                "catalog, inventory, orders, outbox, queue, promotions, co-purchases, histories, refunds: in-memory engine"
                    .to_owned(),
            );
            let engine = MemoryEngine::new();
            (
                Stores::memory(&engine),
                engine.promotions.clone(),
                Arc::new(MemoryCoPurchase::new()),
                Arc::new(MemoryHistory::new()),
                Arc::new(MemoryRefunds::new(engine.clock.clone())),
            )
        }
        Some(url) => {
            let config = PgConfig::new()
                .schema(args.schema.clone())?
                .jobs_with_orders(jobs_with_orders);
            let pg = PgCommerce::connect(url, config).await?;
            // The example owns its schema: it starts from an empty one on every run.
            sqlx_drop_schema(&pg).await?;
            pg.migrate().await?;
            description.push(format!(
                "catalog, inventory, orders, outbox, queue, promotions, co-purchases, histories, refunds: PostgreSQL (schema {:?}, recreated; each order's queue job written with the order)",
                pg.schema()
            ));
            let stores = pg.stores();
            (
                stores,
                pg.promotions.clone(),
                Arc::new(pg.co_purchase()),
                Arc::new(pg.history()),
                Arc::new(pg.refunds()),
            )
        }
    };
    let mut invalidator = None;
    let mut redis_backend = None;
    if let Some(url) = &args.redis_url {
        let config = RedisConfig::from_urls(url).with_prefix(format!(
            "{}-{}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        ))?;
        let redis = config.connect().await?;
        stores.carts = Arc::new(RedisCarts::new(redis.clone(), stores.clock.clone()));
        // The cache gets a connection of its own (a bulkhead): a burst of carts or
        // flash-sale admissions queued on the shared connection would otherwise time
        // out its reads and open its breaker, sending page reads to the database.
        let cache_redis = config.connect().await?;
        let (catalog, task) = cache(stores.catalog.clone(), cache_redis, stores.events.clone())?;
        stores.catalog = catalog;
        invalidator = Some(task);
        redis_backend = Some(redis.clone());
        description.push(format!(
            "carts, product cache: Redis{} (prefix {:?})",
            if redis.is_cluster() { " Cluster" } else { "" },
            redis.prefix()
        ));
    } else {
        description.push(if args.database_url.is_some() {
            "carts: PostgreSQL".to_owned()
        } else {
            "carts: in-memory engine".to_owned()
        });
    }
    description.push("search: tantivy in RAM (commerce-search)".to_owned());
    Ok(Backends {
        stores,
        promotions,
        co_purchase,
        history,
        refunds,
        description,
        redis: redis_backend,
        jobs_with_orders,
        invalidator,
    })
}

/// Wraps `catalog` in the Redis read-through cache and starts its invalidator.
fn cache(
    catalog: Arc<dyn CatalogStore>,
    redis: commerce_redis::RedisBackend,
    events: Arc<dyn EventLog>,
) -> Result<(Arc<dyn CatalogStore>, BackgroundTask<u64>)> {
    let cached = Arc::new(CachedCatalog::new(catalog, redis, CacheConfig::default()));
    let invalidator = CacheInvalidator::new(
        cached.clone(),
        events,
        ConsumerName::new(format!("{}-cache", env!("CARGO_CRATE_NAME")))?,
    )
    .spawn(Duration::from_millis(200));
    Ok((cached, invalidator))
}

async fn sqlx_drop_schema(pg: &PgCommerce) -> Result<()> {
    let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", pg.schema());
    commerce_postgres::sqlx::query(commerce_postgres::sqlx::AssertSqlSafe(sql))
        .execute(pg.pool())
        .await
        .map_err(|e| commerce_core::Error::retryable("drop the example's schema", e))?;
    Ok(())
}
