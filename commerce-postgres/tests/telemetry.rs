//! The PostgreSQL stores count their own reservation calls by outcome (the plain path,
//! the hot-SKU combined path, the fused step and the reaper's expiries), and the queue
//! depth monitor samples the PostgreSQL queue into gauges.

mod common;

use std::sync::Arc;
use std::time::Duration;

use commerce_core::clock::{Clock, ManualClock};
use commerce_core::id::{CustomerId, IdempotencyKey, LocationId, OrderId, ProductId, Sku};
use commerce_core::inventory::ReservationRequest;
use commerce_core::order::{NewOrder, NewOrderLine};
use commerce_core::service::QueueDepthMonitor;
use commerce_core::store::{InventoryStore, OrderQueue, OrderSteps, OrderStore, RetryPolicy};
use commerce_postgres::HotSkuConfig;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Runs `f` on a current-thread runtime with a fresh recorder on this thread (tasks the
/// stores spawn run on it too); the text the recorder renders after.
fn recorded(f: impl std::future::Future<Output = ()>) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    });
    handle.render()
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing `{line}` in:\n{text}"
    );
}

fn sku(s: &str) -> Sku {
    Sku::new(s).expect("sku")
}

fn request(id: &str, s: &str, q: u32) -> ReservationRequest {
    let mut r = ReservationRequest::new(OrderId::new(id).expect("id"), [(sku(s), q)]);
    r.ttl = Duration::from_secs(60);
    r
}

#[test]
fn postgres_stores_count_reservations_by_outcome() {
    let text = recorded(async {
        // Only HOT-1 goes through the combiner (`reserve_batch()`).
        let builder = common::PgBuilder::with_hot_skus(HotSkuConfig::only([sku("HOT-1")]));
        let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
        let pg = builder.engine(clock.clone()).await.expect("engine");
        let _guard = common::SchemaGuard(pg.schema().to_owned());
        let at = LocationId::new("w").expect("loc");
        for s in ["S-1", "HOT-1"] {
            pg.inventory
                .restock(&sku(s), &at, 3, "in")
                .await
                .expect("restock");
        }
        let inv = &pg.inventory;
        inv.reserve(&request("o1", "S-1", 1))
            .await
            .expect("reserve");
        inv.reserve(&request("o2", "S-1", 1))
            .await
            .expect("reserve");
        assert!(inv.reserve(&request("o3", "S-1", 5)).await.is_err());
        assert!(inv.reserve(&request("o4", "NONE", 1)).await.is_err());
        inv.reserve(&request("h1", "HOT-1", 2)).await.expect("hot");
        assert!(inv.reserve(&request("h2", "HOT-1", 2)).await.is_err());
        inv.confirm(&OrderId::new("o1").expect("id"))
            .await
            .expect("confirm");
        inv.release(&OrderId::new("h1").expect("id"), "gone")
            .await
            .expect("release");
        clock.advance(Duration::from_secs(61));
        assert_eq!(
            inv.release_expired(clock.now(), 10)
                .await
                .expect("expire")
                .len(),
            1
        );
        // The fused step reserves in its own SQL: counted as `reserve_order`.
        let order = pg
            .orders
            .create_order(NewOrder {
                id: None,
                customer_id: CustomerId::new("c1").expect("id"),
                idempotency_key: IdempotencyKey::new("k1").expect("key"),
                lines: vec![NewOrderLine {
                    product_id: ProductId::new("p-1").expect("id"),
                    sku: sku("S-1"),
                    title: "Item".to_owned(),
                    quantity: 9,
                    unit_price: "5.00 USD".parse().expect("money"),
                    tax: None,
                }],
                shipping: "0.00 USD".parse().expect("money"),
                tax: "0.00 USD".parse().expect("money"),
                checkout: Default::default(),
                promotions: Vec::new(),
            })
            .await
            .expect("order")
            .into_order();
        let out = pg
            .steps
            .reserve_order(&order, Duration::from_secs(60))
            .await
            .expect("step");
        assert!(out.is_cancelled(), "9 units of 2 cannot be reserved");
    });
    for (op, outcome, n) in [
        ("reserve", "ok", 2),
        ("reserve", "out_of_stock", 1),
        ("reserve", "not_found", 1),
        ("reserve_batch", "ok", 1),
        ("reserve_batch", "out_of_stock", 1),
        ("confirm", "ok", 1),
        ("release", "ok", 1),
        ("expire", "ok", 1),
        ("reserve_order", "cancelled", 1),
    ] {
        has(
            &text,
            &format!(
                r#"commerce_reservations_total{{store="postgres",op="{op}",outcome="{outcome}"}} {n}"#
            ),
        );
    }
}

#[test]
fn the_queue_depth_monitor_samples_the_postgres_queue() {
    let text = recorded(async {
        let builder = common::PgBuilder::default();
        let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
        let pg = builder.engine(clock.clone()).await.expect("engine");
        let _guard = common::SchemaGuard(pg.schema().to_owned());
        let queue: Arc<dyn OrderQueue> = pg.queue.clone();
        let ids: Vec<OrderId> = (0..6)
            .map(|i| OrderId::new(format!("o{i}")).expect("id"))
            .collect();
        queue.enqueue_many(&ids).await.expect("enqueue");
        let jobs = queue
            .claim(2, Duration::from_secs(30))
            .await
            .expect("claim");
        let policy = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(60),
        };
        let outcome = queue.fail(&jobs[0], "blip", &policy).await.expect("fail");
        assert!(matches!(
            outcome,
            commerce_core::store::RetryOutcome::Retrying { at } if at > clock.now()
        ));
        let stats = QueueDepthMonitor::new(queue.clone())
            .sample()
            .await
            .expect("sample");
        assert_eq!(
            (stats.ready, stats.delayed, stats.leased, stats.dead),
            (4, 1, 1, 0)
        );
    });
    has(&text, r#"commerce_queue_jobs{state="ready"} 4"#);
    has(&text, r#"commerce_queue_jobs{state="delayed"} 1"#);
    has(&text, r#"commerce_queue_jobs{state="leased"} 1"#);
    has(&text, r#"commerce_queue_jobs{state="dead"} 0"#);
}
