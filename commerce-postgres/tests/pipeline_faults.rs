//! Faults on the order path as a host runs it (relay, queue, workers, the fused steps):
//! a connection killed inside a batched step writes nothing and the retry succeeds; an
//! order whose step fails for an unplanned reason inside a batch fails alone; a reserve
//! batch and a confirm batch that take the same stock rows queue instead of
//! deadlocking;
//! orders processed while every connection of the shop is killed again and again all
//! settle, each charged once, with nothing oversold or lost.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use commerce_core::catalog::{CategoryPath, NewProduct, ProductStatus};
use commerce_core::id::{EventId, LocationId, ProductId, SellerId, Sku};
use commerce_core::order::OrderStatus;
use commerce_core::service::{
    MemoryFulfillment, MemoryNotifier, MemoryPaymentGateway, OrderPipeline, OrderRelay,
    OrderWorkers, PipelineConfig, WorkerConfig,
};
use commerce_core::store::{
    CatalogStoreExt, EventLog, InventoryStore, OrderQueue, OrderSteps, OrderStore, RetryPolicy,
};
use commerce_postgres::sqlx::{self, Connection, PgConnection, PgPool};
use commerce_postgres::{PgCommerce, PgConfig};
use futures::StreamExt;

fn sku(s: &str) -> Sku {
    Sku::new(s).unwrap()
}

async fn engine(prefix: &str) -> (PgCommerce, common::SchemaGuard) {
    let schema = common::fresh_schema(prefix);
    let guard = common::SchemaGuard(schema.clone());
    let pg = PgCommerce::connect(
        &common::database_url(),
        PgConfig::new().schema(schema).unwrap(),
    )
    .await
    .expect("PostgreSQL must run (bash scripts/test.sh)");
    pg.migrate().await.unwrap();
    (pg, guard)
}

/// Terminates every other backend whose current or last statement names `schema`.
async fn kill_schema_backends(admin: &PgPool, schema: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
          WHERE pid <> pg_backend_pid() AND query LIKE '%' || $1 || '%'",
    )
    .bind(schema)
    .fetch_one(admin)
    .await
    .unwrap_or(0)
}

/// A session of its own holding `SELECT 1 FROM <rows> FOR UPDATE` (with `$1` = `key`)
/// in an open transaction, until it is rolled back or dropped.
async fn hold(rows: &str, key: &str) -> PgConnection {
    let mut holder = PgConnection::connect(&common::database_url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM {rows} FOR UPDATE"
    )))
    .bind(key)
    .execute(&mut holder)
    .await
    .unwrap();
    holder
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_killed_inside_a_step_writes_nothing_and_the_retry_succeeds() {
    let (pg, guard) = engine("stepflt").await;
    let at = LocationId::new("w1").unwrap();
    for s in ["A", "Z"] {
        pg.inventory.restock(&sku(s), &at, 5, "in").await.unwrap();
    }
    let order = pg
        .orders
        .create_order(common::new_order("k1", &[("A", 2), ("Z", 1)]))
        .await
        .unwrap()
        .into_order();
    let events_before = pg.events.read(EventId(0), 1000).await.unwrap().len();
    // Another session holds Z's row: the step stops inside its transaction after A.
    let mut holder = hold(&format!("\"{}\".stock_levels WHERE sku = $1", guard.0), "Z").await;
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    let steps = pg.steps.clone();
    let o = order.clone();
    let step = tokio::spawn(async move { steps.reserve_order(&o, Duration::from_secs(600)).await });
    let admin = PgPool::connect(&common::database_url()).await.unwrap();
    let started = Instant::now();
    let victim = loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) LIMIT 1",
        )
        .bind(holder_pid)
        .fetch_optional(&admin)
        .await
        .unwrap();
        if let Some(pid) = pid {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the step never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let _: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(victim)
        .fetch_one(&admin)
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), step)
        .await
        .expect("the caller is answered")
        .unwrap()
        .expect_err("the killed step fails");
    assert!(
        err.is_retryable(),
        "a killed connection is retryable: {err:?}"
    );
    drop(holder);
    // Nothing of the step was written.
    let stored = pg.orders.get_order(&order.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.version), (OrderStatus::Created, 1));
    assert!(pg.inventory.reservation(&order.id).await.unwrap().is_none());
    assert_eq!(pg.inventory.stock(&sku("A")).await.unwrap().available(), 5);
    assert_eq!(
        pg.events.read(EventId(0), 1000).await.unwrap().len(),
        events_before
    );
    // The retry goes through.
    let out = pg
        .steps
        .reserve_order(&order, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(out.order.status, OrderStatus::PaymentPending);
    assert!(pg.inventory.audit().await.unwrap().is_empty());
    drop(guard);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_that_breaks_its_batch_fails_alone() {
    let (pg, guard) = engine("stepiso").await;
    let at = LocationId::new("w1").unwrap();
    pg.inventory
        .restock(&sku("A"), &at, 100, "in")
        .await
        .unwrap();
    let mut pending = Vec::new();
    for k in 0..24 {
        let order = pg
            .orders
            .create_order(common::new_order(&format!("k{k}"), &[("A", 1)]))
            .await
            .unwrap()
            .into_order();
        let out = pg
            .steps
            .reserve_order(&order, Duration::from_secs(600))
            .await
            .unwrap();
        assert_eq!(out.order.status, OrderStatus::PaymentPending);
        pending.push(out.order);
    }
    // One reservation the confirmation cannot read: its step fails with a server error
    // (22P02), not with one of the refusals the step function answers with.
    let bad = pending[7].id.clone();
    let table = format!("\"{}\".reservations", guard.0);
    let admin = PgPool::connect(&common::database_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET allocations = jsonb_set(allocations, '{{0,quantity}}', '\"x\"')
          WHERE order_id = $1"
    )))
    .bind(bad.as_str())
    .execute(&admin)
    .await
    .unwrap();
    // Hold the first order's row so that its confirmation waits inside the step's one
    // lane, and the other 23 gather into the next batch behind it.
    let mut holder = hold(
        &format!("\"{}\".orders WHERE id = $1", guard.0),
        pending[0].id.as_str(),
    )
    .await;
    let confirm = |order: commerce_core::order::Order| {
        let steps = pg.steps.clone();
        tokio::spawn(async move { steps.confirm_payment(&order, "pay-1").await })
    };
    let first = confirm(pending[0].clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rest: Vec<_> = pending[1..].iter().cloned().map(confirm).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let mut answers = vec![first.await.unwrap()];
    for task in rest {
        answers.push(task.await.unwrap());
    }
    for (order, answer) in pending.iter().zip(&answers) {
        if order.id == bad {
            let err = answer
                .as_ref()
                .expect_err("the unreadable reservation fails");
            assert!(!err.is_retryable(), "a malformed row is permanent: {err:?}");
        } else {
            let out = answer.as_ref().expect("a neighbour is not failed by it");
            assert_eq!(out.order.status, OrderStatus::PaymentConfirmed);
        }
    }
    // The failed order wrote nothing; the 23 others sold their unit.
    let stored = pg.orders.get_order(&bad).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.version),
        (pending[7].status, pending[7].version)
    );
    let state: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT state FROM {table} WHERE order_id = $1"
    )))
    .bind(bad.as_str())
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(state, "ACTIVE");
    let level: (i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT available, reserved, sold FROM \"{}\".stock_levels WHERE sku = 'A'",
        guard.0
    )))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(level, (76, 1, 23));
    drop(guard);
}

/// A reserve batch [r1 (B), r2 (A)] and a confirm batch [c1 (A), c2 (B)] in flight
/// together, both waiting for stock level A while the confirm batch is first in line:
/// when the steps locked each order's stock in position order, the confirm batch took
/// A and wanted B while the reserve batch held B and wanted A (a deadlock, 40P01, one
/// batch failed). Both steps lock stock in (sku, location) order across the batch.
#[tokio::test(flavor = "multi_thread")]
async fn a_reserve_batch_and_a_confirm_batch_on_shared_skus_do_not_deadlock() {
    let (pg, guard) = engine("steplock").await;
    let at = LocationId::new("w1").unwrap();
    for s in ["A", "B", "Z"] {
        pg.inventory.restock(&sku(s), &at, 100, "in").await.unwrap();
    }
    let order = |key: &str, s: &str| {
        let orders = pg.orders.clone();
        let (key, s) = (key.to_owned(), s.to_owned());
        async move {
            orders
                .create_order(common::new_order(&key, &[(s.as_str(), 1)]))
                .await
                .unwrap()
                .into_order()
        }
    };
    let ttl = Duration::from_secs(600);
    let mut paying = Vec::new();
    for (key, s) in [("c0", "Z"), ("c1", "A"), ("c2", "B")] {
        let created = order(key, s).await;
        paying.push(pg.steps.reserve_order(&created, ttl).await.unwrap().order);
    }
    let mut creating = Vec::new();
    for (key, s) in [("r0", "Z"), ("r1", "B"), ("r2", "A")] {
        creating.push(order(key, s).await);
    }
    let orders_row = format!("\"{}\".orders WHERE id = $1", guard.0);
    let mut level_a = hold(&format!("\"{}\".stock_levels WHERE sku = $1", guard.0), "A").await;
    // The confirm lane: c0 waits on its order's row; c1 then c2 gather behind it.
    let mut c0_row = hold(&orders_row, paying[0].id.as_str()).await;
    let mut confirms = Vec::new();
    for o in paying.clone() {
        let steps = pg.steps.clone();
        confirms.push(tokio::spawn(async move {
            steps.confirm_payment(&o, "pay").await
        }));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // The reserve lane likewise: r0 held, r1 then r2 behind it.
    let mut r0_row = hold(&orders_row, creating[0].id.as_str()).await;
    let mut reserves = Vec::new();
    for o in creating.clone() {
        let steps = pg.steps.clone();
        reserves.push(tokio::spawn(
            async move { steps.reserve_order(&o, ttl).await },
        ));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // [c1, c2] runs and waits for A first, then [r1, r2] runs and waits for A too.
    sqlx::query("ROLLBACK").execute(&mut c0_row).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("ROLLBACK").execute(&mut r0_row).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("ROLLBACK").execute(&mut level_a).await.unwrap();
    for task in confirms {
        let out = task.await.unwrap().expect("no confirmation fails");
        assert_eq!(out.order.status, OrderStatus::PaymentConfirmed);
    }
    for task in reserves {
        let out = task.await.unwrap().expect("no reservation fails");
        assert_eq!(out.order.status, OrderStatus::PaymentPending);
    }
    let admin = PgPool::connect(&common::database_url()).await.unwrap();
    let levels: Vec<(String, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT sku, available, reserved, sold FROM \"{}\".stock_levels ORDER BY sku",
        guard.0
    )))
    .fetch_all(&admin)
    .await
    .unwrap();
    let expected = |s: &str| (s.to_owned(), 98, 1, 1);
    assert_eq!(levels, vec![expected("A"), expected("B"), expected("Z")]);
    drop(guard);
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_settle_while_connections_are_killed() {
    let (pg, guard) = engine("pipeflt").await;
    let stores = pg.stores();
    let at = LocationId::new("w1").unwrap();
    let units = 30u32;
    let mut product = NewProduct::new(
        SellerId::new("s1").unwrap(),
        "Hot item",
        CategoryPath::parse("Electronics > Phones").unwrap(),
        "Acme",
        sku("HOT"),
        "5.00 USD".parse().unwrap(),
    );
    product.status = ProductStatus::Active;
    pg.catalog.create_product(product).await.unwrap();
    pg.inventory
        .restock(&sku("HOT"), &at, units, "in")
        .await
        .unwrap();
    let payments = Arc::new(MemoryPaymentGateway::new());
    let pipeline = Arc::new(OrderPipeline::new(
        &stores,
        payments.clone(),
        Arc::new(MemoryFulfillment::new()),
        Arc::new(MemoryNotifier::new()),
        PipelineConfig::default(),
    ));
    let relay = OrderRelay::new(stores.events.clone(), stores.queue.clone())
        .unwrap()
        .spawn(Duration::from_millis(50));
    let workers = OrderWorkers::new(
        stores.queue.clone(),
        pipeline,
        WorkerConfig {
            concurrency: 16,
            visibility: Duration::from_secs(2),
            retry: RetryPolicy {
                max_attempts: 1000,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(200),
            },
            idle_poll: Duration::from_millis(20),
        },
    )
    .spawn();
    // A killer terminates every connection of the shop every 150 ms.
    let admin = PgPool::connect(&common::database_url()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (admin, stop, schema) = (admin.clone(), stop.clone(), guard.0.clone());
        tokio::spawn(async move {
            let mut killed = 0;
            while !stop.load(Ordering::SeqCst) {
                killed += kill_schema_backends(&admin, &schema).await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            killed
        })
    };
    // 60 buyers for 30 units, each retrying its checkout until it is answered.
    let mut ids = Vec::new();
    for i in 0..60 {
        let new = common::new_order(&format!("buyer-{i}"), &[("HOT", 1)]);
        let started = Instant::now();
        let order = loop {
            match pg.orders.create_order(new.clone()).await {
                Ok(o) => break o.into_order(),
                Err(e) if e.is_retryable() && started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("buyer {i}: {e:?}"),
            }
        };
        ids.push(order.id);
    }
    // Every order rests (PREPARING or cancelled out of stock) within a bound.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut statuses = Vec::new();
    for id in &ids {
        let status = loop {
            match pg.orders.get_order(id).await {
                Ok(Some(o))
                    if matches!(o.status, OrderStatus::Preparing | OrderStatus::Cancelled) =>
                {
                    break o.status;
                }
                _ => {
                    assert!(Instant::now() < deadline, "order {id} did not settle");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        statuses.push(status);
    }
    stop.store(true, Ordering::SeqCst);
    let killed = killer.await.unwrap();
    relay.shutdown().await.unwrap().unwrap();
    let work = workers.shutdown().await.unwrap().unwrap();
    assert!(killed > 0, "the killer never hit a connection");
    let confirmed = statuses
        .iter()
        .filter(|s| **s == OrderStatus::Preparing)
        .count();
    assert_eq!(confirmed, units as usize, "every unit sold once, no more");
    assert_eq!(work.dead_lettered, 0, "no order given up");
    for id in &ids {
        let captures = payments
            .captures()
            .iter()
            .filter(|c| &c.order_id == id && !c.refunded)
            .count();
        let status = pg.orders.get_order(id).await.unwrap().unwrap().status;
        let expected = usize::from(status == OrderStatus::Preparing);
        assert_eq!(
            captures, expected,
            "order {id} ({status}) charged {captures} times"
        );
    }
    let stock = pg.inventory.stock(&sku("HOT")).await.unwrap();
    assert_eq!(
        (stock.available(), stock.reserved(), stock.sold()),
        (0, 0, 30)
    );
    assert!(pg.inventory.audit().await.unwrap().is_empty());
    assert_eq!(pg.queue.stats().await.unwrap().dead, 0);
    eprintln!(
        "killed {killed} connections while {} orders settled",
        ids.len()
    );
    drop(guard);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_load_rides_out_killed_connections_and_writes_each_batch_once() {
    use commerce_core::catalog::Slug;
    use commerce_core::event::DomainEvent;
    use commerce_core::inventory::Restock;
    use commerce_core::service::CatalogLoader;
    use commerce_core::store::ProductQuery;

    let (pg, guard) = engine("loadflt").await;
    let stores = pg.stores();
    let loader = CatalogLoader::new(&stores).with_retry(
        RetryPolicy {
            max_attempts: u32::MAX,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(200),
        },
        Duration::from_secs(120),
    );
    let admin = PgPool::connect(&common::database_url()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (admin, stop, schema) = (admin.clone(), stop.clone(), guard.0.clone());
        tokio::spawn(async move {
            // Every 150 ms for the first 40 rounds (a failover storm), then the load
            // must finish on its own.
            let mut killed = 0;
            for _ in 0..40 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
                killed += kill_schema_backends(&admin, &schema).await;
            }
            killed
        })
    };
    let (batches, per_batch) = (30u32, 100u32);
    let at = LocationId::new("w1").unwrap();
    let loads = (0..batches).map(|b| {
        let loader = loader.clone();
        let at = at.clone();
        async move {
            let batch: Vec<(NewProduct, Slug)> = (0..per_batch)
                .map(|i| {
                    let n = b * per_batch + i;
                    let mut p = NewProduct::new(
                        SellerId::new("s1").unwrap(),
                        format!("Item {n}"),
                        CategoryPath::parse("Electronics > Phones").unwrap(),
                        "Acme",
                        sku(&format!("L{n}")),
                        "5.00 USD".parse().unwrap(),
                    );
                    p.id = Some(ProductId::new(format!("p-{n}")).unwrap());
                    (p, Slug::new(format!("item-{n}")).unwrap())
                })
                .collect();
            let stored = loader.insert_products(batch).await?;
            let items: Vec<Restock> = stored
                .iter()
                .map(|p| Restock::new(p.variants[0].sku.clone(), at.clone(), 7, "initial"))
                .collect();
            loader.stock_new_levels(&items).await?;
            Ok::<usize, commerce_core::Error>(stored.len())
        }
    });
    // Four loaders at a time, as a seeding host would run them.
    let results: Vec<_> = futures::stream::iter(loads)
        .buffer_unordered(4)
        .collect()
        .await;
    stop.store(true, Ordering::Relaxed);
    let killed = killer.await.unwrap();
    for r in &results {
        assert_eq!(
            r.as_ref().map_err(|e| e.to_string()),
            Ok(&(per_batch as usize)),
            "every batch loads"
        );
    }
    assert!(killed > 0, "the test killed no connection");
    let total = (batches * per_batch) as usize;
    let listed = stores
        .catalog
        .list_all_products(&ProductQuery::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), total, "each product stored once");
    for n in (0..batches * per_batch).step_by(97) {
        let stock = pg.inventory.stock(&sku(&format!("L{n}"))).await.unwrap();
        assert_eq!(
            (stock.levels.len(), stock.levels[0].received),
            (1, 7),
            "L{n} was received once"
        );
    }
    let mut changed = 0;
    let mut stocked = 0;
    let mut after = EventId(0);
    loop {
        let page = pg.events.read(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        for e in &page {
            match e.event {
                DomainEvent::ProductChanged { .. } => changed += 1,
                DomainEvent::StockChanged { .. } => stocked += 1,
                _ => {}
            }
        }
    }
    assert_eq!(
        (changed, stocked),
        (total, total),
        "one event per write, none twice"
    );
    assert!(pg.inventory.audit().await.unwrap().is_empty());
    eprintln!("bulk load under faults: {killed} connections killed");
    drop(guard);
}
