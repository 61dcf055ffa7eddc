//! Faults and hostile input against the real server: a connection killed in the middle
//! of a multi-SKU reservation, a lock held too long, a statement timeout, an exhausted
//! pool, and malformed or hostile input. Each must end in a typed error within a
//! bounded time with nothing half-written.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_core::catalog::{CategoryPath, NewProduct, Slug};
use commerce_core::clock::ManualClock;
use commerce_core::id::{EventId, LocationId, OrderId, SellerId, Sku};
use commerce_core::inventory::{MAX_QUANTITY, ReservationRequest};
use commerce_core::store::{CatalogStore, EventLog, InventoryStore, InventoryStoreExt, OrderStore};
use commerce_core::{EntityKind, Error};
use commerce_postgres::sqlx::{self, Connection, PgConnection, PgPool};
use commerce_postgres::{PgCommerce, PgConfig};

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

fn loc() -> LocationId {
    LocationId::new("w1").unwrap()
}

/// A fresh schema on its own pool made from `config` (timeouts, pool size).
async fn engine(config: PgConfig) -> (PgCommerce, common::SchemaGuard) {
    let schema = common::fresh_schema("flt");
    let guard = common::SchemaGuard(schema.clone());
    let config = config
        .schema(schema.clone())
        .unwrap()
        .clock(Arc::new(ManualClock::default()));
    // the shared server may be at its connection limit for a moment: retry briefly
    let mut attempt = 0;
    let pg = loop {
        match PgCommerce::connect(&common::database_url(), config.clone()).await {
            Ok(pg) => break pg,
            Err(e) if e.is_retryable() && attempt < 40 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("PostgreSQL must run (bash scripts/test.sh): {e:?}"),
        }
    };
    pg.migrate().await.unwrap();
    (pg, guard)
}

/// Another session holding `sku`'s level row locked until it is dropped.
async fn hold_row_lock(schema: &str, sku: &str) -> PgConnection {
    let mut conn = PgConnection::connect(&common::database_url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM \"{schema}\".stock_levels WHERE sku = $1 FOR UPDATE"
    )))
    .bind(sku)
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

async fn backend_pid(conn: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

/// The pid of a backend waiting for a lock held by `holder`.
async fn waiter_of(pool: &PgPool, holder: i32) -> i32 {
    let start = Instant::now();
    loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) LIMIT 1",
        )
        .bind(holder)
        .fetch_optional(pool)
        .await
        .unwrap();
        if let Some(pid) = pid {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing ever waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn restock_all(pg: &PgCommerce, skus: &[&str], units: u32) {
    for s in skus {
        pg.inventory
            .restock(&sku(s), &loc(), units, "in")
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_killed_mid_reservation_leaves_nothing_half_reserved() {
    let (pg, guard) = engine(PgConfig::new()).await;
    restock_all(&pg, &["A", "M", "Z"], 10).await;
    let events_before = pg.events.read(EventId(0), 1000).await.unwrap().len();
    // Z is reserved last (SKU order); holding its row makes the reservation stop after
    // it has already updated A and M inside its transaction.
    let mut holder = hold_row_lock(&guard.0, "Z").await;
    let holder_pid = backend_pid(&mut holder).await;
    let inventory = pg.inventory.clone();
    let reservation = tokio::spawn(async move {
        let req = ReservationRequest::new(
            OrderId::new("killed").unwrap(),
            [(sku("A"), 2), (sku("M"), 3), (sku("Z"), 1)],
        );
        inventory.reserve(&req).await
    });
    let admin = PgPool::connect(&common::database_url()).await.unwrap();
    let victim = waiter_of(&admin, holder_pid).await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(victim)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(killed);
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(20), reservation)
        .await
        .expect("the caller is answered, not left hanging")
        .unwrap()
        .unwrap_err();
    assert!(
        err.is_retryable(),
        "a killed connection is retryable: {err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(holder);
    for s in ["A", "M", "Z"] {
        let st = pg.inventory.stock(&sku(s)).await.unwrap();
        assert_eq!(
            (st.available(), st.reserved()),
            (10, 0),
            "{s} was half-reserved"
        );
    }
    assert!(
        pg.inventory
            .reservation(&OrderId::new("killed").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        pg.events.read(EventId(0), 1000).await.unwrap().len(),
        events_before
    );
    assert!(pg.inventory.audit().await.unwrap().is_empty());
    // the pool recovers: the retry succeeds
    let req = ReservationRequest::new(
        OrderId::new("killed").unwrap(),
        [(sku("A"), 2), (sku("M"), 3), (sku("Z"), 1)],
    );
    pg.inventory.reserve(&req).await.unwrap();
    assert_eq!(pg.inventory.available(&sku("M")).await.unwrap(), 7);
    drop(guard);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_held_too_long_is_a_retryable_error_in_bounded_time() {
    let (pg, guard) = engine(
        PgConfig::new()
            .lock_timeout(Duration::from_millis(300))
            .statement_timeout(Duration::from_secs(30)),
    )
    .await;
    restock_all(&pg, &["A", "B"], 5).await;
    let holder = hold_row_lock(&guard.0, "B").await;
    let started = Instant::now();
    let err = pg
        .inventory
        .reserve(&ReservationRequest::new(
            OrderId::new("o1").unwrap(),
            [(sku("A"), 1), (sku("B"), 1)],
        ))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    drop(holder);
    assert_eq!(pg.inventory.available(&sku("A")).await.unwrap(), 5);
    assert!(pg.inventory.audit().await.unwrap().is_empty());
    drop(guard);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statement_timeout_is_a_retryable_error_in_bounded_time() {
    let (pg, guard) = engine(
        PgConfig::new()
            .lock_timeout(None)
            .statement_timeout(Duration::from_millis(300)),
    )
    .await;
    restock_all(&pg, &["A"], 5).await;
    let holder = hold_row_lock(&guard.0, "A").await;
    let started = Instant::now();
    let err = pg
        .inventory
        .adjust(&sku("A"), &loc(), -1, "shrinkage")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(holder);
    assert_eq!(pg.inventory.available(&sku("A")).await.unwrap(), 5);
    drop(guard);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_pool_is_a_retryable_error_in_bounded_time() {
    let (pg, guard) = engine(
        PgConfig::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_millis(300)),
    )
    .await;
    let held = pg.pool().acquire().await.unwrap();
    let started = Instant::now();
    let err = pg.inventory.stock(&sku("A")).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(held);
    assert!(
        pg.inventory
            .stock(&sku("A"))
            .await
            .unwrap()
            .levels
            .is_empty()
    );
    drop(guard);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_hostile_input_writes_nothing() {
    let b = common::PgBuilder::default();
    let pg = b.engine(Arc::new(ManualClock::default())).await.unwrap();
    restock_all(&pg, &["A"], 10).await;
    let count = |pg: PgCommerce| async move {
        let events = pg.events.read(EventId(0), 1000).await.unwrap().len();
        let moves = pg
            .inventory
            .movements(&sku("A"), 0, 1000)
            .await
            .unwrap()
            .len();
        (events, moves)
    };
    let before = count(pg.clone()).await;
    let inv = &pg.inventory;
    let validation = |r: Result<_, Error>| match r {
        Err(Error::Validation { .. }) => {}
        other => panic!("expected a validation error, got {other:?}"),
    };
    validation(inv.restock(&sku("A"), &loc(), 0, "x").await.map(|_| ()));
    validation(
        inv.restock(&sku("A"), &loc(), MAX_QUANTITY + 1, "x")
            .await
            .map(|_| ()),
    );
    validation(inv.adjust(&sku("A"), &loc(), 0, "x").await.map(|_| ()));
    validation(
        inv.adjust(&sku("A"), &loc(), i64::MIN, "x")
            .await
            .map(|_| ()),
    );
    validation(
        inv.restock(&sku("A"), &loc(), 1, &"r".repeat(501))
            .await
            .map(|_| ()),
    );
    validation(
        inv.restock(&sku("A"), &loc(), 1, "nul\0byte")
            .await
            .map(|_| ()),
    );
    for q in [0, MAX_QUANTITY + 1] {
        let req = ReservationRequest::new(OrderId::new("bad").unwrap(), [(sku("A"), q)]);
        validation(inv.reserve(&req).await.map(|_| ()));
    }
    let huge = ReservationRequest::new(
        OrderId::new("bad").unwrap(),
        [(sku("A"), MAX_QUANTITY), (sku("A"), MAX_QUANTITY)],
    );
    validation(inv.reserve(&huge).await.map(|_| ()));
    let unknown = ReservationRequest::new(
        OrderId::new("bad").unwrap(),
        [(sku("A"), 1), (sku("NOPE"), 1)],
    );
    assert!(matches!(
        inv.reserve(&unknown).await,
        Err(Error::NotFound {
            kind: EntityKind::Stock,
            ..
        })
    ));
    assert!(matches!(
        inv.adjust(&sku("A"), &loc(), -11, "x").await,
        Err(Error::OutOfStock {
            requested: 11,
            available: 10,
            ..
        })
    ));
    // identifiers with hostile characters cannot even be made
    assert!(Sku::new("A'; DROP TABLE stock_levels; --").is_err());
    assert!(OrderId::new("o\0").is_err());
    assert!(CategoryPath::parse("Electronics >  > Phones\0").is_err());
    assert!(commerce_postgres::validate_schema("x\"; DROP SCHEMA public; --").is_err());
    assert_eq!(
        count(pg.clone()).await,
        before,
        "a rejected call wrote something"
    );
    assert!(
        pg.inventory
            .reservation(&OrderId::new("bad").unwrap())
            .await
            .unwrap()
            .is_none()
    );

    // hostile but valid text is stored verbatim (all SQL is parameterised)
    let hostile = "Robert'); DROP TABLE stock_levels; -- \\ $1 $$ ' \" ✓";
    inv.restock(&sku("A"), &loc(), 1, hostile).await.unwrap();
    let last = inv
        .movements(&sku("A"), 0, 1000)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(last.reason.as_deref(), Some(hostile));
    let mut new = NewProduct::new(
        SellerId::new("s1").unwrap(),
        hostile,
        CategoryPath::parse("Electronics > Phones").unwrap(),
        hostile,
        sku("H-1"),
        "1.00 USD".parse().unwrap(),
    );
    new.description = hostile.into();
    let p = pg
        .catalog
        .insert_product(new, Slug::new("hostile").unwrap())
        .await
        .unwrap();
    let read = pg.catalog.get_product(&p.id).await.unwrap().unwrap();
    assert_eq!(
        (read.title.as_str(), read.brand.as_str()),
        (hostile, hostile)
    );
    // an order title with control characters is rejected before any write
    let orders_before = pg
        .orders
        .list_orders(&commerce_core::store::OrderQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items
        .len();
    // a title with a control character: the order is refused, nothing is written
    let mut bad_order = common::new_order("k-1", &[("H-1", 1)]);
    bad_order.lines[0].product_id = p.id.clone();
    bad_order.lines[0].title = "bell\u{7}".into();
    bad_order.lines[0].unit_price = "1.00 USD".parse().unwrap();
    validation(pg.orders.create_order(bad_order).await.map(|_| ()));
    let orders_after = pg
        .orders
        .list_orders(&commerce_core::store::OrderQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(orders_before, orders_after);
    assert!(pg.inventory.audit().await.unwrap().is_empty());
    use commerce_core::testkit::StoreBuilder;
    b.teardown().await.unwrap();
}
