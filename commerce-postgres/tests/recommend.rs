//! The co-purchase and history contracts (commerce-core's recommend conformance checks)
//! against PostgreSQL, each check on a fresh schema.

use std::str::FromStr;
use std::sync::Arc;

use commerce_core::recommend::conformance;
use commerce_postgres::recommend::{PgCoPurchase, PgHistory};
use commerce_postgres::sqlx::PgPool;
use commerce_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};

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

/// A pool on a new schema holding the recommend tables.
async fn fresh_pool(schemas: &Schemas) -> PgPool {
    let schema = format!("t_rec_{:016x}", rand_u64());
    schemas.0.lock().unwrap().push(schema.clone());
    let admin = PgPool::connect(&database_url())
        .await
        .expect("PostgreSQL must run (bash scripts/test.sh starts it)");
    commerce_postgres::sqlx::raw_sql(commerce_postgres::sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA {schema}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let options = PgConnectOptions::from_str(&database_url())
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect_with(options)
        .await
        .unwrap();
    commerce_postgres::sqlx::raw_sql(include_str!("../migrations/0900_recommend.sql"))
        .execute(&pool)
        .await
        .unwrap();
    pool
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
        async move { Arc::new(PgCoPurchase::new(fresh_pool(&schemas).await)) }
    })
    .await;
    schemas.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_contract() {
    let schemas = Schemas::default();
    conformance::history_contract(Arc::new(PgHistory::new(fresh_pool(&schemas).await))).await;
    schemas.drop_all().await;
}
