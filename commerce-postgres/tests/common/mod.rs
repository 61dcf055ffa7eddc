//! Shared test plumbing: the server URL, a shared pool and fresh schemas.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::clock::ManualClock;
use commerce_core::id::{CustomerId, IdempotencyKey, ProductId, Sku};
use commerce_core::order::{NewOrder, NewOrderLine};
use commerce_core::testkit::{StoreBuilder, StoresUnderTest};
use commerce_postgres::sqlx::{self, PgPool};
use commerce_postgres::{HotSkuConfig, PgCommerce, PgConfig};
use tokio::sync::OnceCell;

/// `DATABASE_URL` or the local default.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh, unique schema name.
pub fn fresh_schema(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Drops a schema made by a test.
pub async fn drop_schema(pool: &PgPool, schema: &str) {
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(pool)
    .await;
}

/// Makes fresh, migrated schemas on one shared pool; drops them on teardown.
#[derive(Debug, Default)]
pub struct PgBuilder {
    pool: OnceCell<PgPool>,
    made: Mutex<Vec<String>>,
    hot: Option<HotSkuConfig>,
}

impl PgBuilder {
    /// Stores with the hot-SKU request combiner on for every SKU.
    pub fn with_hot_skus(hot: HotSkuConfig) -> Self {
        PgBuilder {
            hot: Some(hot),
            ..Self::default()
        }
    }

    pub async fn pool(&self) -> PgPool {
        self.pool
            .get_or_init(|| async {
                let (opts, connect) = PgConfig::new()
                    .max_connections(24)
                    .acquire_timeout(Duration::from_secs(60))
                    .pool_for(&database_url())
                    .expect("DATABASE_URL parses");
                opts.connect_with(connect).await.unwrap_or_else(|e| {
                    panic!(
                        "cannot connect to PostgreSQL at {} ({e}); run bash scripts/test.sh",
                        database_url()
                    )
                })
            })
            .await
            .clone()
    }

    pub async fn engine(&self, clock: Arc<ManualClock>) -> commerce_core::Result<PgCommerce> {
        let schema = fresh_schema("cpt");
        self.made.lock().unwrap().push(schema.clone());
        let mut config = PgConfig::new().schema(schema)?.clock(clock);
        if let Some(hot) = &self.hot {
            config = config.combine_hot_skus(hot.clone());
        }
        let pg = PgCommerce::from_pool(self.pool().await, config);
        pg.migrate().await?;
        Ok(pg)
    }
}

#[async_trait]
impl StoreBuilder for PgBuilder {
    async fn build(&self, clock: Arc<ManualClock>) -> commerce_core::Result<StoresUnderTest> {
        let pg = self.engine(clock).await?;
        Ok(StoresUnderTest::new()
            .with_events(pg.events.clone())
            .with_catalog(pg.catalog.clone())
            .with_queue(pg.queue.clone())
            .with_carts(pg.carts.clone())
            .with_inventory(pg.inventory.clone())
            .with_orders(pg.orders.clone())
            .with_refunds(Arc::new(pg.refunds()))
            .with_steps(pg.steps.clone()))
    }

    async fn teardown(&self) -> commerce_core::Result<()> {
        let made: Vec<String> = std::mem::take(&mut *self.made.lock().unwrap());
        let pool = self.pool().await;
        for s in made {
            drop_schema(&pool, &s).await;
        }
        Ok(())
    }
}

/// Drops its schema when dropped, also when the test panics.
#[derive(Debug)]
pub struct SchemaGuard(pub String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(pool) = PgPool::connect(&database_url()).await {
                    drop_schema(&pool, &schema).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// A connected, migrated engine on a fresh schema named after `prefix`, its
/// [`PgConfig`] made by `config` from one with that schema; the guard drops the schema.
pub async fn fresh_engine(
    prefix: &str,
    config: impl FnOnce(PgConfig) -> PgConfig,
) -> (PgCommerce, SchemaGuard) {
    let schema = fresh_schema(prefix);
    let guard = SchemaGuard(schema.clone());
    let config = config(PgConfig::new().schema(schema).expect("a valid schema name"));
    let pg = PgCommerce::connect(&database_url(), config)
        .await
        .expect("PostgreSQL must run (bash scripts/test.sh)");
    pg.migrate().await.expect("migrations");
    (pg, guard)
}

/// An order of customer `c1` under `key`: one line of `quantity` units at 5.00 USD per
/// `(sku, quantity)`, product `p-{sku}`, no shipping or tax.
pub fn new_order(key: &str, lines: &[(&str, u32)]) -> NewOrder {
    NewOrder {
        id: None,
        customer_id: CustomerId::new("c1").unwrap(),
        idempotency_key: IdempotencyKey::new(key).unwrap(),
        lines: lines
            .iter()
            .map(|(s, q)| NewOrderLine {
                product_id: ProductId::new(format!("p-{s}")).unwrap(),
                sku: Sku::new(*s).unwrap(),
                title: format!("Item {s}"),
                quantity: *q,
                unit_price: "5.00 USD".parse().unwrap(),
                tax: None,
            })
            .collect(),
        shipping: "0.00 USD".parse().unwrap(),
        tax: "0.00 USD".parse().unwrap(),
        checkout: Default::default(),
        promotions: Vec::new(),
    }
}
