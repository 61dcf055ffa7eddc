//! TLS (`rustls` feature): the cart and inventory kits over `sslmode=verify-full`
//! against the TLS-only PostgreSQL of `scripts/fixtures/tls.sh`; the server reports the
//! session encrypted, and a plain connection is refused.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use commerce_core::clock::ManualClock;
use commerce_core::testkit::{self, StoreBuilder, StoresUnderTest};
use commerce_postgres::sqlx::{self, PgPool};
use commerce_postgres::{PgCommerce, PgConfig};
use tokio::sync::OnceCell;

fn tls_url() -> String {
    std::env::var("TLS_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "TLS_DATABASE_URL is not set: run `bash scripts/test.sh`, or \
             `eval \"$(bash scripts/fixtures/tls.sh start)\"` first"
        )
    })
}

#[derive(Debug, Default)]
struct TlsBuilder {
    pool: OnceCell<PgPool>,
    made: Mutex<Vec<String>>,
}

impl TlsBuilder {
    async fn pool(&self) -> PgPool {
        self.pool
            .get_or_init(|| async {
                let (opts, connect) = PgConfig::new()
                    .max_connections(8)
                    .pool_for(&tls_url())
                    .expect("TLS_DATABASE_URL parses");
                opts.connect_with(connect)
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect over TLS to {}: {e}", tls_url()))
            })
            .await
            .clone()
    }
}

#[async_trait]
impl StoreBuilder for TlsBuilder {
    async fn build(&self, clock: Arc<ManualClock>) -> commerce_core::Result<StoresUnderTest> {
        let schema = common::fresh_schema("tls");
        self.made.lock().expect("lock").push(schema.clone());
        let pg = PgCommerce::from_pool(
            self.pool().await,
            PgConfig::new().schema(schema)?.clock(clock),
        );
        pg.migrate().await?;
        Ok(StoresUnderTest::new()
            .with_events(pg.events.clone())
            .with_carts(pg.carts.clone())
            .with_inventory(pg.inventory.clone()))
    }

    async fn teardown(&self) -> commerce_core::Result<()> {
        let made: Vec<String> = std::mem::take(&mut *self.made.lock().expect("lock"));
        let pool = self.pool().await;
        for s in made {
            common::drop_schema(&pool, &s).await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cart_kit_passes_over_an_encrypted_session() {
    let builder = TlsBuilder::default();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&builder.pool().await)
            .await
            .expect("pg_stat_ssl");
    assert!(encrypted, "the session must be TLS");
    testkit::carts::test_all(&builder).await;
}

#[tokio::test]
async fn the_server_refuses_a_plain_connection() {
    let plain = tls_url().split('?').next().expect("url").to_owned() + "?sslmode=disable";
    let refused = PgCommerce::connect(&plain, PgConfig::new()).await;
    assert!(refused.is_err(), "the fixture accepts TLS only");
}
