//! Read-replica routing against a real streaming replica (`scripts/fixtures/pg-replica.sh`
//! exports `DATABASE_PRIMARY_URL` and `DATABASE_REPLICA_URL`; `bash scripts/test.sh`
//! starts it).
//!
//! Replay on the replica is paused while the test writes: catalog reads (routed to the
//! replica) must not see the new product yet, while inventory and order reads (always
//! on the primary) see their writes at once; after replay resumes and catches up, the
//! catalog read on the replica finds the product.

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_core::catalog::{CategoryPath, NewProduct, Slug};
use commerce_core::clock::ManualClock;
use commerce_core::id::{LocationId, SellerId, Sku};
use commerce_core::store::{CatalogStore, InventoryStore, InventoryStoreExt};
use commerce_postgres::sqlx::{self, PgPool};
use commerce_postgres::{PgCommerce, PgConfig};

fn url(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the replica fixture is missing; run bash scripts/test.sh")
    })
}

async fn lsn(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn browse_reads_go_to_the_replica_and_the_rest_to_the_primary() {
    let primary = PgPool::connect(&url("DATABASE_PRIMARY_URL"))
        .await
        .expect("the fixture's primary runs");
    let replica = PgPool::connect(&url("DATABASE_REPLICA_URL"))
        .await
        .expect("the fixture's replica runs");
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&replica)
        .await
        .unwrap();
    assert!(in_recovery, "DATABASE_REPLICA_URL must be a hot standby");

    let schema = format!("rep_{}", uuid::Uuid::new_v4().simple());
    let pg = PgCommerce::from_pool(
        primary.clone(),
        PgConfig::new()
            .schema(schema.clone())
            .unwrap()
            .clock(Arc::new(ManualClock::default())),
    );
    pg.migrate().await.unwrap();
    let pg = pg.with_replica(replica.clone());

    // wait until the replica has the schema
    let target = lsn(
        &primary,
        "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
    )
    .await;
    wait_replayed(&replica, target).await;

    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&replica)
        .await
        .unwrap();
    let result = async {
        let new = NewProduct::new(
            SellerId::new("s1").unwrap(),
            "Replica Phone",
            CategoryPath::parse("Electronics > Phones").unwrap(),
            "Acme",
            Sku::new("RP-1").unwrap(),
            "99.00 USD".parse().unwrap(),
        );
        let slug = Slug::new("replica-phone").unwrap();
        let product = pg.catalog.insert_product(new, slug.clone()).await.unwrap();
        let sku = Sku::new("RP-1").unwrap();
        pg.inventory
            .restock(&sku, &LocationId::new("w1").unwrap(), 3, "in")
            .await
            .unwrap();
        // inventory reads are on the primary: the write is visible at once
        assert_eq!(pg.inventory.available(&sku).await.unwrap(), 3);
        // catalog reads are on the paused replica: not yet
        assert!(
            pg.catalog
                .get_product_by_slug(&slug)
                .await
                .unwrap()
                .is_none(),
            "a catalog read saw a write the replica has not replayed: it did not go to the replica"
        );
        let target = lsn(
            &primary,
            "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint",
        )
        .await;
        sqlx::query("SELECT pg_wal_replay_resume()")
            .execute(&replica)
            .await
            .unwrap();
        wait_replayed(&replica, target).await;
        let read = pg.catalog.get_product_by_slug(&slug).await.unwrap();
        assert_eq!(read.map(|p| p.id), Some(product.id));
    }
    .await;
    let _ = sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&replica)
        .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&primary)
    .await
    .unwrap();
    result
}

async fn wait_replayed(replica: &PgPool, target: i64) {
    let start = Instant::now();
    loop {
        let replayed = lsn(
            replica,
            "SELECT COALESCE(pg_last_wal_replay_lsn() - '0/0'::pg_lsn, 0)::bigint",
        )
        .await;
        if replayed >= target {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the replica did not replay to {target} within 30 s (at {replayed})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
