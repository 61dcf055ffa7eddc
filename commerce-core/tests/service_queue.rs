//! Queue-based processing: the outbox relay, bounded workers under a burst, retries
//! with backoff, dead letters, and workers that die holding a job.

mod service_support;

use std::sync::Arc;
use std::time::Duration;

use commerce_core::id::OrderId;
use commerce_core::order::OrderStatus::*;
use commerce_core::service::*;
use commerce_core::store::{QueueStats, RetryPolicy};
use service_support::*;

fn workers(f: &Fixture, pipeline: Arc<OrderPipeline>, config: WorkerConfig) -> OrderWorkers {
    OrderWorkers::new(f.stores.queue.clone(), pipeline, config)
}

fn relay(f: &Fixture) -> OrderRelay {
    OrderRelay::new(f.stores.events.clone(), f.stores.queue.clone()).expect("relay")
}

/// 300 orders arrive at once for 100 units; 4 workers take them through the pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_is_buffered_and_processed_at_bounded_concurrency_without_overselling() {
    let f = Fixture::new();
    let hot = f.product("HOT-1", "99.00 USD", 100).await;
    let mut orders = Vec::new();
    for i in 0..300 {
        orders.push(f.order(&format!("buyer{i}"), &[(&hot, 1)]).await.id);
    }
    assert_eq!(relay(&f).run_until_caught_up().await.expect("relay"), 300);
    assert_eq!(
        f.stores.queue.stats().await.expect("stats").ready,
        300,
        "all buffered"
    );

    f.payments.set_latency(Duration::from_millis(1));
    let stats = workers(
        &f,
        f.pipeline(),
        WorkerConfig {
            concurrency: 4,
            idle_poll: Duration::from_millis(1),
            ..WorkerConfig::default()
        },
    )
    .run_until_idle()
    .await
    .expect("work");
    assert_eq!(stats.acked, 300);
    assert_eq!((stats.retried, stats.dead_lettered, stats.stale), (0, 0, 0));
    assert_eq!(stats.max_in_flight, 4);
    assert!(
        f.payments.max_in_flight() <= 4,
        "{}",
        f.payments.max_in_flight()
    );
    assert_eq!(
        f.stores.queue.stats().await.expect("stats"),
        QueueStats::default()
    );

    let mut confirmed = 0;
    let mut out_of_stock = 0;
    for id in &orders {
        match f.status(id).await {
            Preparing => confirmed += 1,
            Cancelled => {
                let reason = f.history(id).await.pop().expect("e").reason;
                assert!(reason.starts_with("out of stock"), "{reason}");
                assert!(f.captured_for(id).is_empty());
                out_of_stock += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!((confirmed, out_of_stock), (100, 200));
    let stock = f.stock(&hot).await;
    assert_eq!(
        (stock.available(), stock.reserved(), stock.sold()),
        (0, 0, 100)
    );
    assert_eq!(f.payments.captures().len(), 100);
    f.audit_clean().await;
}

#[tokio::test]
async fn failing_jobs_back_off_and_end_in_the_dead_letters() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 5).await;
    let order = f.order("alice", &[(&a, 1)]).await;
    relay(&f).run_until_caught_up().await.expect("relay");
    f.payments.set_default(ChargeBehavior::Fail);
    let config = PipelineConfig {
        step_retry: fast_retry(1),
        ..test_config()
    };
    let pool = workers(
        &f,
        f.pipeline_on(&f.stores, config),
        WorkerConfig {
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(60),
            },
            idle_poll: Duration::from_millis(1),
            ..WorkerConfig::default()
        },
    );
    let s = pool.run_until_idle().await.expect("work");
    assert_eq!((s.acked, s.retried, s.dead_lettered), (0, 1, 0));
    // Not claimable at once: the retry time is jittered within delay_after(1) = 1 s
    // (zero only with negligible probability).
    assert_eq!(pool.run_until_idle().await.expect("work").retried, 0);
    assert_eq!(f.stores.queue.stats().await.expect("s").delayed, 1);
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(pool.run_until_idle().await.expect("work").retried, 1);
    // The second retry comes within delay_after(2) = 2 s (the backoff doubled).
    f.clock.advance(Duration::from_secs(2));
    let s = pool.run_until_idle().await.expect("work");
    assert_eq!(s.dead_lettered, 1);
    let dead = f.stores.queue.dead_letters(10).await.expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].order_id, order.id);
    assert_eq!(dead[0].attempts, 3);
    assert!(
        dead[0].last_error.contains("payment gateway unavailable"),
        "{}",
        dead[0].last_error
    );
    assert_eq!(f.payments.calls(), 3);
    assert_eq!(
        f.status(&order.id).await,
        PaymentPending,
        "left for an operator or the reaper"
    );

    // A job that cannot succeed (its order does not exist) is dead-lettered at once.
    f.stores
        .queue
        .enqueue(&OrderId::new("o_missing").expect("id"))
        .await
        .expect("enqueue");
    let s = pool.run_until_idle().await.expect("work");
    assert_eq!((s.retried, s.dead_lettered), (0, 1));
    let dead = f.stores.queue.dead_letters(10).await.expect("dead");
    assert_eq!(dead[1].attempts, 1);
    assert!(
        dead[1].last_error.contains("not found"),
        "{}",
        dead[1].last_error
    );
}

#[tokio::test]
async fn a_job_held_by_a_dead_worker_is_taken_over_after_its_visibility_timeout() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 5).await;
    let order = f.order("alice", &[(&a, 1)]).await;
    relay(&f).run_until_caught_up().await.expect("relay");
    // A worker claims the job and dies.
    let lost = f
        .stores
        .queue
        .claim(1, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(lost.len(), 1);
    let pool = workers(&f, f.pipeline(), WorkerConfig::default());
    assert_eq!(
        pool.run_until_idle().await.expect("work").acked,
        0,
        "still leased"
    );
    assert_eq!(f.status(&order.id).await, Created);
    f.clock.advance(Duration::from_secs(30));
    assert_eq!(pool.run_until_idle().await.expect("work").acked, 1);
    assert_eq!(f.status(&order.id).await, Preparing);
    // The dead worker's claim is stale.
    assert!(f.stores.queue.ack(&lost[0]).await.is_err());
}

/// The relay is at least once: a duplicate job (a relay that died before committing
/// its checkpoint) is processed harmlessly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_jobs_for_one_order_are_harmless() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 5).await;
    let order = f.order("alice", &[(&a, 1)]).await;
    assert_eq!(relay(&f).run_until_caught_up().await.expect("relay"), 1);
    assert_eq!(
        relay(&f).run_until_caught_up().await.expect("relay"),
        0,
        "checkpointed"
    );
    let replay = relay(&f).with_consumer(commerce_core::id::ConsumerName::new("fresh").expect("n"));
    assert_eq!(
        replay.run_until_caught_up().await.expect("relay"),
        1,
        "a replay duplicates"
    );
    for _ in 0..3 {
        f.stores.queue.enqueue(&order.id).await.expect("enqueue");
    }
    f.payments.set_latency(Duration::from_millis(2));
    let s = workers(&f, f.pipeline(), WorkerConfig::default())
        .run_until_idle()
        .await
        .expect("work");
    assert_eq!(s.acked, 5);
    assert_eq!(f.captured_for(&order.id).len(), 1);
    assert_eq!(f.history(&order.id).await.len(), 4);
    assert_eq!(f.stock(&a).await.sold(), 1);
}

/// The deployment shape: relay and workers in the background, orders placed while they
/// run, a graceful shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn background_relay_and_workers_settle_orders_as_they_arrive() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 1000).await;
    let relay_task = relay(&f).spawn(Duration::from_millis(20));
    let pool = workers(
        &f,
        f.pipeline(),
        WorkerConfig {
            concurrency: 8,
            idle_poll: Duration::from_millis(2),
            ..WorkerConfig::default()
        },
    );
    let worker_task = pool.spawn();
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(f.order(&format!("c{i}"), &[(&a, 1)]).await.id);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut settled = 0;
        for id in &ids {
            if f.status(id).await == Preparing {
                settled += 1;
            }
        }
        if settled == ids.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {settled} settled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let relayed = relay_task.shutdown().await.expect("join").expect("relay");
    let stats = worker_task.shutdown().await.expect("join").expect("work");
    assert_eq!(relayed, 50);
    assert_eq!(stats.acked, 50);
    assert!(stats.max_in_flight <= 8);
    assert_eq!(f.stock(&a).await.sold(), 50);
}
