//! The reservation reaper, alone and on several nodes at once.

mod service_support;

use std::sync::Arc;
use std::time::Duration;

use commerce_core::id::OrderId;
use commerce_core::order::OrderStatus::*;
use commerce_core::service::*;
use service_support::*;

/// `n` orders of one unit each, stopped in PAYMENT_PENDING with their stock held (the
/// gateway is down).
async fn stuck_orders(f: &Fixture, sku: &commerce_core::id::Sku, n: usize) -> Vec<OrderId> {
    f.payments.set_default(ChargeBehavior::Fail);
    let pipeline = f.pipeline_on(
        &f.stores,
        PipelineConfig {
            step_retry: fast_retry(1),
            ..test_config()
        },
    );
    let mut ids = Vec::new();
    for i in 0..n {
        let id = f.order(&format!("c{i}"), &[(sku, 1)]).await.id;
        pipeline.process(&id).await.expect_err("gateway down");
        ids.push(id);
    }
    f.payments.set_default(ChargeBehavior::Approve);
    ids
}

#[tokio::test]
async fn the_reaper_releases_only_expired_reservations_and_cancels_their_orders() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 10).await;
    let stuck = stuck_orders(&f, &a, 3).await;
    let paid = f.order("paid", &[(&a, 2)]).await.id;
    let pipeline = f.pipeline();
    pipeline.process(&paid).await.expect("p");
    let reaper = ReservationReaper::new(&f.stores, pipeline.clone());

    assert_eq!(
        reaper.run_once().await.expect("reap"),
        ReapReport::default(),
        "nothing expired yet"
    );
    f.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        reaper.run_once().await.expect("reap"),
        ReapReport {
            released: 3,
            cancelled: 3,
            ..ReapReport::default()
        }
    );
    for id in &stuck {
        assert_eq!(f.status(id).await, Cancelled);
        let last = f.history(id).await.pop().expect("e");
        assert_eq!(last.reason, "reservation expired before payment completed");
    }
    assert_eq!(
        f.status(&paid).await,
        Preparing,
        "a sold reservation is not touched"
    );
    assert_eq!((f.available(&a).await, f.stock(&a).await.sold()), (8, 2));
    assert_eq!(f.payments.captures().len(), 1);
    f.audit_clean().await;
}

/// Four reaper "nodes" (separate pipelines and reapers over the same stores) run at
/// once over 200 expired reservations: each is released and its order cancelled
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reapers_on_several_nodes_release_each_reservation_once() {
    let f = Arc::new(Fixture::new());
    let a = f.product("A-1", "10.00 USD", 200).await;
    let stuck = stuck_orders(&f, &a, 200).await;
    assert_eq!(f.available(&a).await, 0);
    f.clock.advance(Duration::from_secs(16 * 60));

    let mut nodes = Vec::new();
    for _ in 0..4 {
        let f = f.clone();
        nodes.push(tokio::spawn(async move {
            let reaper = ReservationReaper::new(&f.stores, f.pipeline()).with_batch(7);
            let mut total = ReapReport::default();
            loop {
                let r = reaper.run_once().await.expect("reap");
                if r.released == 0 {
                    return total;
                }
                total.released += r.released;
                total.cancelled += r.cancelled;
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut released = 0;
    let mut cancelled = 0;
    let mut busy_nodes = 0;
    for n in nodes {
        let r = n.await.expect("node");
        released += r.released;
        cancelled += r.cancelled;
        busy_nodes += usize::from(r.released > 0);
    }
    assert_eq!(released, 200, "each reservation released exactly once");
    assert_eq!(cancelled, 200);
    eprintln!("{busy_nodes} of 4 nodes released something");
    for id in &stuck {
        let cancellations = f
            .history(id)
            .await
            .iter()
            .filter(|c| c.to == Cancelled)
            .count();
        assert_eq!(cancellations, 1);
    }
    let stock = f.stock(&a).await;
    assert_eq!(
        (stock.available(), stock.reserved(), stock.sold()),
        (200, 0, 0)
    );
    assert!(f.payments.captures().is_empty());
    assert_eq!(f.notifier.sent(), 200, "one cancellation notice per order");
    f.audit_clean().await;
}

/// A reaper died between releasing and cancelling: the sweep finds those orders.
#[tokio::test]
async fn the_sweep_cancels_orders_whose_reservation_was_released_without_them() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 5).await;
    let stuck = stuck_orders(&f, &a, 3).await;
    f.clock.advance(Duration::from_secs(16 * 60));
    let released = f
        .stores
        .inventory
        .release_expired(now(&f.clock), 100)
        .await
        .expect("release");
    assert_eq!(released.len(), 3);
    let reaper = ReservationReaper::new(&f.stores, f.pipeline());
    assert_eq!(
        reaper.run_once().await.expect("reap"),
        ReapReport::default()
    );
    assert_eq!(reaper.sweep(2).await.expect("sweep"), 3, "pages of 2");
    for id in &stuck {
        assert_eq!(f.status(id).await, Cancelled);
    }
    assert_eq!(reaper.sweep(2).await.expect("sweep"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_reaper_runs_until_shut_down() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 5).await;
    let stuck = stuck_orders(&f, &a, 2).await;
    let task = ReservationReaper::new(&f.stores, f.pipeline()).spawn(Duration::from_millis(5));
    f.clock.advance(Duration::from_secs(16 * 60));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while f.status(&stuck[1]).await != Cancelled {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = task.shutdown().await.expect("join");
    assert_eq!(
        total,
        ReapReport {
            released: 2,
            cancelled: 2,
            ..ReapReport::default()
        }
    );
    assert_eq!(f.available(&a).await, 5);
}
