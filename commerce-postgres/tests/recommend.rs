//! The co-purchase and history contracts (commerce-core's recommend conformance checks)
//! against PostgreSQL, each check on a fresh schema.

use std::sync::Arc;

use commerce_core::recommend::conformance;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn co_purchase_contract() {
    let schemas = Schemas::default();
    conformance::co_purchase_contract(|| {
        let schemas = schemas.clone();
        async move {
            let (pool, schema) = fresh(&schemas).await;
            Arc::new(PgCoPurchase::new(pool, &schema).unwrap())
        }
    })
    .await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_contract() {
    let schemas = Schemas::default();
    let (pool, schema) = fresh(&schemas).await;
    conformance::history_contract(Arc::new(PgHistory::new(pool, &schema).unwrap())).await;
    schemas.drop_all().await;
}
