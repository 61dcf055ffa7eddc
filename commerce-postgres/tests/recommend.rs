//! The conformance kit's co-purchase and history areas against PostgreSQL, each case on
//! a fresh schema.

use std::sync::Arc;

use async_trait::async_trait;
use commerce_core::clock::ManualClock;
use commerce_core::testkit::{self, StoreBuilder, StoresUnderTest};
use commerce_postgres::recommend::{PgCoPurchase, PgHistory};
use commerce_postgres::sqlx::PgPool;
use commerce_postgres::{PgCommerce, PgConfig};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Schemas a test created, dropped when it ends.
#[derive(Default, Clone)]
struct Schemas(Arc<std::sync::Mutex<Vec<String>>>);

impl Schemas {
    async fn drop_all(&self) {
        let admin = PgPool::connect(&database_url()).await.unwrap();
        let names = std::mem::take(&mut *self.0.lock().unwrap());
        for schema in names {
            commerce_postgres::sqlx::raw_sql(commerce_postgres::sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA {schema} CASCADE"
            )))
            .execute(&admin)
            .await
            .unwrap();
        }
    }
}

/// A pool and a new, migrated schema.
async fn fresh(schemas: &Schemas) -> (PgPool, String) {
    let schema = format!("t_rec_{:016x}", rand_u64());
    schemas.0.lock().unwrap().push(schema.clone());
    let pg = PgCommerce::connect(&database_url(), PgConfig::new().schema(&schema).unwrap())
        .await
        .expect("PostgreSQL must run (bash scripts/test.sh starts it)");
    pg.migrate().await.unwrap();
    (pg.pool().clone(), schema)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// [`PgCoPurchase`] and [`PgHistory`] on a fresh schema per case.
#[derive(Default)]
struct Builder {
    schemas: Schemas,
}

#[async_trait]
impl StoreBuilder for Builder {
    async fn build(&self, _clock: Arc<ManualClock>) -> commerce_core::Result<StoresUnderTest> {
        let (pool, schema) = fresh(&self.schemas).await;
        Ok(StoresUnderTest::new()
            .with_co_purchase(Arc::new(PgCoPurchase::new(pool.clone(), &schema)?))
            .with_history(Arc::new(PgHistory::new(pool, &schema)?)))
    }

    async fn teardown(&self) -> commerce_core::Result<()> {
        self.schemas.drop_all().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn co_purchase_and_history_pass_the_conformance_kit() {
    testkit::recommend::test_all(&Builder::default()).await;
}
