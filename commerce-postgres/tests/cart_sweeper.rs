//! The expired-cart sweeper: concurrent sweepers delete every expired cart exactly once,
//! never a live one (also one expiring within the same microsecond), and skip carts a
//! writer holds locked.

mod common;

use std::sync::Arc;
use std::time::Duration;

use commerce_core::cart::{CartItem, CartLimits, CartOwner};
use commerce_core::clock::{Clock, ManualClock};
use commerce_core::id::{CartId, ProductId, Sku};
use commerce_core::money::Money;
use commerce_core::store::CartStore;
use commerce_postgres::sqlx;
use common::{PgBuilder, SchemaGuard};

fn item(now: commerce_core::clock::Timestamp) -> CartItem {
    CartItem {
        product_id: ProductId::new("p-1").expect("id"),
        sku: Sku::new("SKU-1").expect("sku"),
        quantity: 1,
        unit_price: "1.00 USD".parse::<Money>().expect("money"),
        added_at: now,
    }
}

async fn count(pg: &commerce_postgres::PgCommerce) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\".carts",
        pg.schema()
    )))
    .fetch_one(pg.pool())
    .await
    .expect("count carts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sweepers_delete_each_expired_cart_once_and_no_live_cart() {
    let builder = PgBuilder::default();
    let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
    let pg = builder.engine(clock.clone()).await.expect("engine");
    let _guard = SchemaGuard(pg.schema().to_owned());
    let short = CartLimits {
        ttl: Duration::from_secs(3600),
        ..CartLimits::default()
    };
    let long = CartLimits::default();
    for _ in 0..300 {
        pg.carts
            .add_item(
                &CartId::new_guest(),
                &CartOwner::Guest,
                item(clock.now()),
                &short,
            )
            .await
            .expect("short-lived cart");
    }
    let mut live = Vec::new();
    for _ in 0..20 {
        let id = CartId::new_guest();
        pg.carts
            .add_item(&id, &CartOwner::Guest, item(clock.now()), &long)
            .await
            .expect("long-lived cart");
        live.push(id);
    }
    // A cart expiring 700 ns into a microsecond, checked 200 ns before that.
    clock.advance(Duration::from_secs(10) + Duration::from_nanos(700));
    let edge = CartId::new_guest();
    let edge_cart = pg
        .carts
        .add_item(&edge, &CartOwner::Guest, item(clock.now()), &short)
        .await
        .expect("edge cart");
    clock.set(edge_cart.expires_at - chrono::Duration::nanoseconds(200));
    assert_eq!(count(&pg).await, 321);

    let sweep = |carts: Arc<commerce_postgres::PgCarts>| async move {
        let mut total = 0;
        loop {
            let n = carts.delete_expired(37).await.expect("delete_expired");
            if n == 0 {
                return total;
            }
            total += n;
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(sweep(pg.carts.clone())),
        tokio::spawn(sweep(pg.carts.clone()))
    );
    let (a, b) = (a.expect("sweeper a"), b.expect("sweeper b"));
    assert_eq!(
        a + b,
        300,
        "two sweepers deleted {a} + {b} carts; 300 had expired"
    );
    assert_eq!(
        count(&pg).await,
        21,
        "the 20 live carts and the edge cart remain"
    );
    for id in &live {
        assert!(
            pg.carts
                .get_cart(id, &CartOwner::Guest)
                .await
                .expect("get")
                .is_some(),
            "live cart {id} kept"
        );
    }
    assert!(
        pg.carts
            .get_cart(&edge, &CartOwner::Guest)
            .await
            .expect("get")
            .is_some(),
        "a cart 200 ns before its expiry is live and kept"
    );

    // Once the edge cart has expired, the sweeper takes it (a microsecond later).
    clock.set(edge_cart.expires_at + chrono::Duration::microseconds(1));
    assert_eq!(pg.carts.delete_expired(10).await.expect("sweep"), 1);
    assert_err_validation(&pg).await;
    builder_teardown(builder).await;
}

async fn assert_err_validation(pg: &commerce_postgres::PgCommerce) {
    for batch in [0, 10_001] {
        assert!(
            matches!(
                pg.carts.delete_expired(batch).await,
                Err(commerce_core::Error::Validation { .. })
            ),
            "batch {batch} is rejected"
        );
    }
}

async fn builder_teardown(builder: PgBuilder) {
    use commerce_core::testkit::StoreBuilder;
    builder.teardown().await.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sweeper_skips_a_cart_locked_by_a_writer_and_takes_it_later() {
    let builder = PgBuilder::default();
    let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
    let pg = builder.engine(clock.clone()).await.expect("engine");
    let _guard = SchemaGuard(pg.schema().to_owned());
    let short = CartLimits {
        ttl: Duration::from_secs(60),
        ..CartLimits::default()
    };
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = CartId::new_guest();
        pg.carts
            .add_item(&id, &CartOwner::Guest, item(clock.now()), &short)
            .await
            .expect("cart");
        ids.push(id);
    }
    clock.advance(Duration::from_secs(61));
    let mut writer = pg.pool().begin().await.expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM \"{}\".carts WHERE id = $1 FOR UPDATE",
        pg.schema()
    )))
    .bind(ids[0].as_str())
    .execute(&mut *writer)
    .await
    .expect("lock one cart");
    assert_eq!(
        pg.carts.delete_expired(100).await.expect("sweep"),
        4,
        "the locked cart is skipped, not waited for"
    );
    writer.commit().await.expect("commit");
    assert_eq!(pg.carts.delete_expired(100).await.expect("sweep"), 1);

    // The periodic loop: one round, then the stop signal.
    for _ in 0..3 {
        pg.carts
            .add_item(
                &CartId::new_guest(),
                &CartOwner::Guest,
                item(clock.now()),
                &short,
            )
            .await
            .expect("cart");
    }
    clock.advance(Duration::from_secs(61));
    let deleted = pg
        .carts
        .sweep_expired(Duration::from_secs(3600), 2, async {})
        .await;
    assert_eq!(
        deleted, 3,
        "one round deletes in batches until a batch comes back short"
    );
    assert_eq!(count(&pg).await, 0);
    builder_teardown(builder).await;
}
