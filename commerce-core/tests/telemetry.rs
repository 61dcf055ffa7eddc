//! The metrics of `commerce_core::telemetry`, read back through the Prometheus exporter
//! the storefront uses: rate-limit decisions, breaker transitions, guard rejections and
//! product-cache hits and misses are counted.

use std::sync::Arc;
use std::time::Duration;

use commerce_core::browse::{MemoryProductCache, ProductCache, ProductKey};
use commerce_core::catalog::{CategoryPath, NewProduct};
use commerce_core::clock::ManualClock;
use commerce_core::id::{SellerId, Sku};
use commerce_core::memory::MemoryEngine;
use commerce_core::ratelimit::{InProcessRateLimiter, RateLimits, RateQuota};
use commerce_core::resilience::{BreakerConfig, CircuitBreaker, Guard, LimitedAction, Section};
use commerce_core::store::CatalogStoreExt;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Runs `f` with a fresh Prometheus recorder on this thread; the text it renders after.
fn recorded(f: impl FnOnce()) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, f);
    handle.render()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing `{line}` in:\n{text}"
    );
}

#[test]
fn rate_limit_decisions_are_counted() {
    let text = recorded(|| {
        let quota = RateQuota::per_period(Duration::from_secs(3600), 1).expect("quota");
        let limiter = InProcessRateLimiter::new(RateLimits::new(quota));
        limiter.check(LimitedAction::Search, "u1").expect("first");
        limiter.check(LimitedAction::Search, "u1").expect("second");
    });
    has(
        &text,
        r#"commerce_rate_limit_decisions_total{limiter="in_process",action="search",decision="admitted"} 1"#,
    );
    has(
        &text,
        r#"commerce_rate_limit_decisions_total{limiter="in_process",action="search",decision="limited"} 1"#,
    );
}

#[test]
fn breaker_transitions_are_counted() {
    let text = recorded(|| {
        let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
        let config = BreakerConfig {
            failure_threshold: 1,
            cool_down: Duration::from_secs(5),
            max_cool_down: Duration::from_secs(5),
        };
        let breaker = CircuitBreaker::new("db", config, clock.clone());
        breaker.try_acquire().expect("closed").failure();
        assert!(breaker.try_acquire().is_none(), "open");
        clock.advance(Duration::from_secs(5));
        breaker.try_acquire().expect("probe").success();
    });
    for to in ["open", "half_open", "closed"] {
        has(
            &text,
            &format!(r#"commerce_breaker_transitions_total{{breaker="db",to="{to}"}} 1"#),
        );
    }
}

#[test]
fn guard_rejections_are_counted() {
    let text = recorded(|| {
        block_on(async {
            let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
            let guard = Guard::new(
                Section::Similar,
                Duration::from_secs(1),
                BreakerConfig::default(),
                clock,
            );
            let _ = guard.run_within(Duration::ZERO, async { Ok(1) }).await;
            let _ = guard
                .run(async { Err::<u32, _>(commerce_core::Error::backend(true, "down")) })
                .await;
        })
    });
    has(
        &text,
        r#"commerce_guard_rejections_total{section="similar",reason="no_time_left"} 1"#,
    );
    has(
        &text,
        r#"commerce_guard_rejections_total{section="similar",reason="failed"} 1"#,
    );
}

#[test]
fn product_cache_hits_and_misses_are_counted() {
    let text = recorded(|| {
        block_on(async {
            let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
            let engine = MemoryEngine::with_clock(clock.clone());
            let new = NewProduct::new(
                SellerId::new("s1").expect("seller"),
                "Phone",
                CategoryPath::parse("Electronics > Phones").expect("path"),
                "Acme",
                Sku::new("PH-1").expect("sku"),
                "199.00 USD".parse().expect("price"),
            );
            let product = engine.catalog.create_product(new).await.expect("product");
            let cache = MemoryProductCache::new(clock, Duration::from_secs(60), 10);
            let key = ProductKey::Id(product.id.clone());
            assert!(cache.get(&key).await.expect("get").is_none());
            cache.put(&product).await.expect("put");
            assert!(cache.get(&key).await.expect("get").is_some());
            assert!(cache.get(&key).await.expect("get").is_some());
        })
    });
    has(
        &text,
        r#"commerce_cache_requests_total{cache="memory",result="miss"} 1"#,
    );
    has(
        &text,
        r#"commerce_cache_requests_total{cache="memory",result="hit"} 2"#,
    );
}

/// The order path counts its fused steps by outcome, the relay its enqueues, and the
/// workers their jobs.
#[test]
fn the_order_path_counts_steps_relays_and_jobs() {
    use commerce_core::catalog::ProductStatus;
    use commerce_core::id::{CustomerId, IdempotencyKey, LocationId};
    use commerce_core::service::{
        CheckoutConfig, CheckoutOutcome, CheckoutRequest, CheckoutService, ClientCart,
        ClientCartItem, MemoryFulfillment, MemoryNotifier, MemoryPaymentGateway, OrderPipeline,
        OrderRelay, OrderWorkers, PipelineConfig, Stores, WorkerConfig,
    };
    let text = recorded(|| {
        block_on(async {
            let engine = MemoryEngine::new();
            let stores = Stores::memory(&engine);
            let mut p = NewProduct::new(
                SellerId::new("s").expect("id"),
                "Thing",
                CategoryPath::parse("A > B").expect("path"),
                "Acme",
                Sku::new("T-1").expect("sku"),
                "5.00 USD".parse().expect("money"),
            );
            p.status = ProductStatus::Active;
            stores.catalog.create_product(p).await.expect("product");
            stores
                .inventory
                .restock(
                    &Sku::new("T-1").expect("sku"),
                    &LocationId::new("w").expect("loc"),
                    1,
                    "in",
                )
                .await
                .expect("restock");
            let checkout = CheckoutService::new(&stores, CheckoutConfig::default());
            for i in 0..2 {
                let cart = ClientCart {
                    items: vec![ClientCartItem {
                        sku: Sku::new("T-1").expect("sku"),
                        quantity: 1,
                        unit_price: None,
                    }],
                };
                let request = CheckoutRequest::client_cart(
                    CustomerId::new(format!("c{i}")).expect("id"),
                    cart,
                    IdempotencyKey::new(format!("k{i}")).expect("key"),
                );
                assert!(matches!(
                    checkout.checkout(&request).await.expect("checkout"),
                    CheckoutOutcome::Placed { .. }
                ));
            }
            let relay =
                OrderRelay::new(stores.events.clone(), stores.queue.clone()).expect("relay");
            assert_eq!(relay.run_until_caught_up().await.expect("relay"), 2);
            let pipeline = Arc::new(OrderPipeline::new(
                &stores,
                Arc::new(MemoryPaymentGateway::new()),
                Arc::new(MemoryFulfillment::new()),
                Arc::new(MemoryNotifier::new()),
                PipelineConfig::default(),
            ));
            let stats = OrderWorkers::new(stores.queue.clone(), pipeline, WorkerConfig::default())
                .run_until_idle()
                .await
                .expect("workers");
            assert_eq!(stats.acked, 2);
        })
    });
    has(&text, "commerce_relay_enqueued_total 2");
    has(
        &text,
        r#"commerce_pipeline_steps_total{step="reserve",outcome="advanced"} 1"#,
    );
    has(
        &text,
        r#"commerce_pipeline_steps_total{step="reserve",outcome="cancelled"} 1"#,
    );
    has(
        &text,
        r#"commerce_pipeline_steps_total{step="confirm",outcome="advanced"} 1"#,
    );
    has(&text, r#"commerce_pipeline_jobs_total{outcome="acked"} 2"#);
    has(&text, "commerce_queue_wait_seconds_count 2");
}

/// The memory inventory counts its own reservation calls by outcome: a reservation, one
/// out of stock, one for an unknown SKU, a confirm, a release, an invalid confirm and
/// two expiries.
#[test]
fn the_memory_inventory_counts_reservations_by_outcome() {
    use commerce_core::clock::Clock;
    use commerce_core::id::{LocationId, OrderId};
    use commerce_core::inventory::ReservationRequest;
    use commerce_core::store::InventoryStore;
    let text = recorded(|| {
        block_on(async {
            let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
            let engine = MemoryEngine::with_clock(clock.clone());
            let inv = engine.inventory.clone();
            let sku = Sku::new("S-1").expect("sku");
            let loc = LocationId::new("w").expect("loc");
            inv.restock(&sku, &loc, 5, "in").await.expect("restock");
            let req = |id: &str, sku: &str, q: u32| {
                let mut r = ReservationRequest::new(
                    OrderId::new(id).expect("id"),
                    [(Sku::new(sku).expect("sku"), q)],
                );
                r.ttl = Duration::from_secs(60);
                r
            };
            for id in ["o1", "o2", "o3", "o4"] {
                inv.reserve(&req(id, "S-1", 1)).await.expect("reserve");
            }
            assert!(inv.reserve(&req("o5", "S-1", 9)).await.is_err());
            assert!(inv.reserve(&req("o6", "NONE", 1)).await.is_err());
            inv.confirm(&OrderId::new("o1").expect("id"))
                .await
                .expect("confirm");
            inv.release(&OrderId::new("o2").expect("id"), "changed mind")
                .await
                .expect("release");
            assert!(inv.confirm(&OrderId::new("o2").expect("id")).await.is_err());
            clock.advance(Duration::from_secs(61));
            let expired = inv.release_expired(clock.now(), 100).await.expect("expire");
            assert_eq!(expired.len(), 2);
        })
    });
    for (op, outcome, n) in [
        ("reserve", "ok", 4),
        ("reserve", "out_of_stock", 1),
        ("reserve", "not_found", 1),
        ("confirm", "ok", 1),
        ("confirm", "invalid_transition", 1),
        ("release", "ok", 1),
        ("expire", "ok", 2),
    ] {
        has(
            &text,
            &format!(
                r#"commerce_reservations_total{{store="memory",op="{op}",outcome="{outcome}"}} {n}"#
            ),
        );
    }
}

/// The queue-depth monitor samples the queue's counts into gauges, and a second sample
/// overwrites the first (a gauge, not a counter).
#[test]
fn the_queue_depth_monitor_sets_gauges_by_state() {
    use commerce_core::id::OrderId;
    use commerce_core::service::QueueDepthMonitor;
    use commerce_core::store::{OrderQueue, RetryPolicy};
    let text = recorded(|| {
        block_on(async {
            let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
            let engine = MemoryEngine::with_clock(clock.clone());
            let queue: Arc<dyn OrderQueue> = engine.queue.clone();
            let monitor = QueueDepthMonitor::new(queue.clone());
            for i in 0..7 {
                queue
                    .enqueue(&OrderId::new(format!("o{i}")).expect("id"))
                    .await
                    .expect("enqueue");
            }
            assert_eq!(monitor.sample().await.expect("sample").ready, 7);
            let jobs = queue
                .claim(3, Duration::from_secs(30))
                .await
                .expect("claim");
            let policy = RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            };
            queue.fail(&jobs[0], "boom", &policy).await.expect("dead");
            let stats = monitor.sample().await.expect("sample");
            assert_eq!((stats.ready, stats.leased, stats.dead), (4, 2, 1));
        })
    });
    has(&text, r#"commerce_queue_jobs{state="ready"} 4"#);
    has(&text, r#"commerce_queue_jobs{state="leased"} 2"#);
    has(&text, r#"commerce_queue_jobs{state="delayed"} 0"#);
    has(&text, r#"commerce_queue_jobs{state="dead"} 1"#);
}

/// Every guard rejection reason is counted: an open circuit and a timeout too.
#[test]
fn guard_rejections_count_open_circuits_and_timeouts() {
    let text = recorded(|| {
        block_on(async {
            let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
            let guard = Guard::new(
                Section::Similar,
                Duration::from_millis(5),
                BreakerConfig {
                    failure_threshold: 1,
                    cool_down: Duration::from_secs(60),
                    max_cool_down: Duration::from_secs(60),
                },
                clock,
            );
            let _ = guard
                .run(async {
                    std::future::pending::<()>().await;
                    Ok(1)
                })
                .await;
            let _ = guard.run(async { Ok(1) }).await;
        })
    });
    has(
        &text,
        r#"commerce_guard_rejections_total{section="similar",reason="timed_out"} 1"#,
    );
    has(
        &text,
        r#"commerce_guard_rejections_total{section="similar",reason="circuit_open"} 1"#,
    );
}
