//! The event-driven co-purchase updater: only paid orders count, each once, whatever
//! the redeliveries, crashes and concurrent updaters.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use commerce_core::event::DomainEvent;
use commerce_core::id::{ConsumerName, CustomerId, EventId, IdempotencyKey, OrderId};
use commerce_core::memory::MemoryEngine;
use commerce_core::order::{NewOrder, NewOrderLine, Order, OrderStatus, Transition};
use commerce_core::recommend::{
    Basket, CoPurchaseUpdater, InteractionKind, MemoryCoPurchase, MemoryHistory,
};
use commerce_core::store::{CoPurchaseStore, EventLog, HistoryStore, OrderStore};
use commerce_core::testkit::faults::{FaultKind, Faults, Faulty, Rule};
use common::{Model, add_product, pid};

async fn place(engine: &MemoryEngine, key: &str, customer: &str, products: &[&str]) -> Order {
    let lines = products
        .iter()
        .flat_map(|p| {
            // Two SKUs of the same product: the basket must count the product once.
            (1..=2).map(move |v| NewOrderLine {
                product_id: pid(p),
                sku: commerce_core::id::Sku::new(format!("{p}-v{v}")).unwrap(),
                title: p.to_string(),
                quantity: 1,
                unit_price: "5.00 USD".parse().unwrap(),
                tax: None,
            })
        })
        .collect();
    engine
        .orders
        .create_order(NewOrder {
            id: None,
            customer_id: CustomerId::new(customer).unwrap(),
            idempotency_key: IdempotencyKey::new(key).unwrap(),
            lines,
            shipping: "0.00 USD".parse().unwrap(),
            tax: "0.00 USD".parse().unwrap(),
            checkout: Default::default(),
            promotions: Vec::new(),
        })
        .await
        .unwrap()
        .into_order()
}

async fn pay(engine: &MemoryEngine, order: &OrderId) {
    use OrderStatus::*;
    for (from, to) in [
        (Created, PaymentPending),
        (PaymentPending, PaymentConfirmed),
    ] {
        engine
            .orders
            .transition(order, &Transition::new(from, to, "test"))
            .await
            .unwrap();
    }
}

fn updater(engine: &MemoryEngine, store: Arc<dyn CoPurchaseStore>) -> CoPurchaseUpdater {
    CoPurchaseUpdater::new(engine.events.clone(), engine.orders.clone(), store)
}

#[tokio::test]
async fn only_paid_orders_are_counted() {
    let engine = MemoryEngine::new();
    let store = Arc::new(MemoryCoPurchase::new());
    let mut model = Model::default();

    let paid = place(&engine, "k1", "c1", &["a", "b", "c"]).await;
    pay(&engine, &paid.id).await;
    model.record(&Basket::from_order(&paid));
    // Paid and then refunded: still counted (it was bought).
    let refunded = place(&engine, "k2", "c2", &["a", "c"]).await;
    pay(&engine, &refunded.id).await;
    engine
        .orders
        .transition(
            &refunded.id,
            &Transition::new(
                OrderStatus::PaymentConfirmed,
                OrderStatus::Refunded,
                "changed mind",
            ),
        )
        .await
        .unwrap();
    model.record(&Basket::from_order(&refunded));
    // Never paid, or cancelled: not counted.
    place(&engine, "k3", "c3", &["a", "d"]).await;
    let cancelled = place(&engine, "k4", "c4", &["a", "e"]).await;
    engine
        .orders
        .transition(
            &cancelled.id,
            &Transition::new(OrderStatus::Created, OrderStatus::Cancelled, "abandoned"),
        )
        .await
        .unwrap();

    let report = updater(&engine, store.clone()).catch_up().await.unwrap();
    assert_eq!(report.recorded, 2);
    assert_eq!(report.duplicates, 0);
    assert_eq!(report.events, engine.events.len() as u64);
    model.assert_store(store.as_ref()).await;
    let a = store.also_bought(&pid("a"), 10).await.unwrap();
    assert_eq!(a[0].product_id, pid("c"));
    assert_eq!(a[0].count, 2);
    assert!(
        a.iter()
            .all(|c| c.product_id != pid("d") && c.product_id != pid("e"))
    );

    // Caught up: nothing more to do, checkpoint at the end of the log.
    let again = updater(&engine, store.clone()).run_once().await.unwrap();
    assert_eq!(again.events, 0);
    assert_eq!(again.checkpoint, report.checkpoint);
}

#[tokio::test]
async fn redelivery_after_a_crash_changes_nothing() {
    let engine = MemoryEngine::new();
    let store = Arc::new(MemoryCoPurchase::new());
    let mut model = Model::default();
    for i in 0..5 {
        let o = place(
            &engine,
            &format!("k{i}"),
            "c",
            &["x", "y", &format!("z{i}")],
        )
        .await;
        pay(&engine, &o.id).await;
        model.record(&Basket::from_order(&o));
    }
    // A crash after recording and before committing: `commit` fails.
    let faults = Faults::new();
    faults.add(Rule::fail(FaultKind::Retryable).on("commit"));
    let log = Faulty::new(engine.events.clone(), faults.clone());
    let u = CoPurchaseUpdater::new(log.clone(), engine.orders.clone(), store.clone());
    assert!(u.run_once().await.is_err(), "the commit failed");
    assert_eq!(store.orders_recorded().await.unwrap(), 5, "but it recorded");

    // Restart: the same events come again.
    faults.clear();
    let report = u.catch_up().await.unwrap();
    assert_eq!(report.recorded, 0);
    assert_eq!(report.duplicates, 5);
    model.assert_store(store.as_ref()).await;

    // A consumer reading the whole log again (a reset checkpoint) changes nothing either.
    let fresh = updater(&engine, store.clone()).with_consumer(ConsumerName::new("replay").unwrap());
    let report = fresh.catch_up().await.unwrap();
    assert_eq!((report.recorded, report.duplicates), (0, 5));
    model.assert_store(store.as_ref()).await;
}

#[tokio::test]
async fn a_failure_mid_batch_commits_what_came_before_and_retries_the_rest() {
    let engine = MemoryEngine::new();
    let mut model = Model::default();
    let mut orders = Vec::new();
    for i in 0..10 {
        let o = place(&engine, &format!("k{i}"), "c", &["a", &format!("b{i}")]).await;
        pay(&engine, &o.id).await;
        model.record(&Basket::from_order(&o));
        orders.push(o);
    }
    let bad = orders[5].id.clone();
    // Reads of the bad order fail while the rule is armed.
    let faults = Faults::new();
    let flaky = Faulty::new(engine.orders.clone(), faults.clone());
    let fail_bad = Rule::fail(FaultKind::Retryable)
        .on("get_order")
        .with_arg("order", &bad);
    for concurrency in [1, 8] {
        let consumer = ConsumerName::new(format!("c{concurrency}")).unwrap();
        let store = Arc::new(MemoryCoPurchase::new());
        let u = CoPurchaseUpdater::new(engine.events.clone(), flaky.clone(), store.clone())
            .with_consumer(consumer.clone())
            .with_concurrency(concurrency);
        faults.set(fail_bad.clone());
        assert!(u.run_once().await.unwrap_err().is_retryable());
        // The checkpoint stops right before the failed order's confirmation.
        let cp = engine.events.checkpoint(&consumer).await.unwrap();
        let events = engine.events.read(cp, 1).await.unwrap();
        assert!(matches!(
            &events[0].event,
            DomainEvent::OrderStatusChanged { order_id, to: OrderStatus::PaymentConfirmed, .. }
                if order_id == &bad
        ));
        let before = store.orders_recorded().await.unwrap();
        assert!((5..=9).contains(&before), "{before}");

        faults.clear();
        let report = u.catch_up().await.unwrap();
        assert_eq!(report.recorded + before, 10);
        // Orders after the failed one that were recorded meanwhile come again.
        assert_eq!(report.duplicates, before - 5);
        model.assert_store(store.as_ref()).await;
    }
}

#[tokio::test]
async fn a_confirmed_order_that_no_longer_exists_is_skipped() {
    let engine = MemoryEngine::new();
    let store = Arc::new(MemoryCoPurchase::new());
    engine
        .events
        .append(vec![DomainEvent::OrderStatusChanged {
            order_id: OrderId::new("ghost").unwrap(),
            from: OrderStatus::PaymentPending,
            to: OrderStatus::PaymentConfirmed,
        }])
        .await
        .unwrap();
    let report = updater(&engine, store.clone()).catch_up().await.unwrap();
    assert_eq!((report.missing, report.recorded), (1, 0));
    assert_eq!(report.checkpoint, EventId(1));
}

#[tokio::test]
async fn bought_products_enter_the_buyers_history_once() {
    let engine = MemoryEngine::new();
    for id in ["a", "b"] {
        add_product(
            &engine,
            id,
            "Acme",
            "Home > Kitchen",
            common::Stock::Units(5),
        )
        .await;
    }
    let store = Arc::new(MemoryCoPurchase::new());
    let history = Arc::new(MemoryHistory::new());
    // "gone" is not in the catalog: skipped in the history, still counted.
    let o = place(&engine, "k1", "buyer", &["a", "b", "gone"]).await;
    pay(&engine, &o.id).await;
    let u = updater(&engine, store.clone()).with_history(history.clone(), engine.catalog.clone());
    u.catch_up().await.unwrap();
    let buyer = CustomerId::new("buyer").unwrap();
    let h = history.recent(&buyer, 10).await.unwrap();
    assert_eq!(h.len(), 2);
    assert!(
        h.iter()
            .all(|i| i.kind == InteractionKind::Bought && i.at == o.created_at)
    );
    // Replaying the log does not add them again.
    let replay = updater(&engine, store.clone())
        .with_history(history.clone(), engine.catalog.clone())
        .with_consumer(ConsumerName::new("replay").unwrap());
    replay.catch_up().await.unwrap();
    assert_eq!(history.recent(&buyer, 10).await.unwrap().len(), 2);
    assert_eq!(store.orders_recorded().await.unwrap(), 1);
}

/// Two followers sharing a consumer name run while 8 tasks place and pay 160 orders;
/// every paid order ends up counted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_keep_up_with_concurrent_checkouts() {
    let engine = MemoryEngine::new();
    let store = Arc::new(MemoryCoPurchase::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut followers = Vec::new();
    for _ in 0..2 {
        let u = updater(&engine, store.clone()).with_batch_size(7);
        let mut rx = stop_rx.clone();
        followers.push(tokio::spawn(async move {
            u.run(Duration::from_millis(20), async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        }));
    }
    let placed = Arc::new(AtomicU32::new(0));
    let mut shoppers = Vec::new();
    for t in 0..8u32 {
        let engine = engine.clone();
        let placed = placed.clone();
        shoppers.push(tokio::spawn(async move {
            let mut baskets = Vec::new();
            for i in 0..20u32 {
                let n = t * 20 + i;
                let products: Vec<String> = (0..(2 + n % 3))
                    .map(|k| format!("q{}", (n + k * 5) % 17))
                    .collect();
                let refs: Vec<&str> = products.iter().map(String::as_str).collect();
                let o = place(&engine, &format!("k{n}"), "c", &refs).await;
                // Every fourth order is left unpaid.
                if n % 4 != 0 {
                    pay(&engine, &o.id).await;
                    baskets.push(Basket::from_order(&o));
                }
                placed.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
            baskets
        }));
    }
    let mut model = Model::default();
    for s in shoppers {
        for b in s.await.unwrap() {
            model.record(&b);
        }
    }
    // Wait (bounded) for the followers to count every paid order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.orders_recorded().await.unwrap() < model.orders() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "followers did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).unwrap();
    for f in followers {
        tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .expect("followers stop on shutdown")
            .unwrap();
    }
    assert_eq!(model.orders(), 120);
    model.assert_store(store.as_ref()).await;
}
