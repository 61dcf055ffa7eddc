//! The flash-sale gate: 10,000 concurrent buyers, 100 units.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use commerce_core::id::{LocationId, OrderId, Sku};
use commerce_core::inventory::ReservationRequest;
use commerce_core::memory::MemoryEngine;
use commerce_core::store::{InventoryStore, InventoryStoreExt};
use commerce_redis::{FlashSaleGate, RedisBackend};

async fn ten_thousand_buyers_one_hundred_units(redis: RedisBackend) {
    let engine = MemoryEngine::new();
    let sku = Sku::new("HOT-1").expect("sku");
    let location = LocationId::new("wh-1").expect("loc");
    engine
        .inventory
        .restock(&sku, &location, 100, "flash sale stock")
        .await
        .expect("restock");
    let gate = Arc::new(FlashSaleGate::new(
        redis.clone(),
        sku.clone(),
        Duration::from_secs(600),
    ));
    assert_eq!(
        gate.reconcile(engine.inventory.as_ref())
            .await
            .expect("reconcile"),
        100
    );

    let attempts = Arc::new(AtomicU64::new(0));
    let orders = Arc::new(AtomicU64::new(0));
    let inventory: Arc<dyn InventoryStore> = engine.inventory.clone();
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let (gate, attempts, orders, inventory, sku) = (
                gate.clone(),
                attempts.clone(),
                orders.clone(),
                inventory.clone(),
                sku.clone(),
            );
            tokio::spawn(async move {
                let Some(ticket) = gate.admit().await.expect("admit") else {
                    return;
                };
                attempts.fetch_add(1, Ordering::SeqCst);
                let request = ReservationRequest::new(OrderId::generate(), [(sku, 1)]);
                match inventory.reserve(&request).await {
                    Ok(_) => {
                        orders.fetch_add(1, Ordering::SeqCst);
                        gate.complete(&ticket).await.expect("complete");
                    }
                    Err(_) => {
                        gate.give_back(&ticket).await.expect("give back");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("buyer");
    }
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        100,
        "reservations that reached the store"
    );
    assert_eq!(orders.load(Ordering::SeqCst), 100, "orders");
    let stock = engine.inventory.stock(&sku).await.expect("stock");
    assert_eq!(
        (stock.available(), stock.reserved()),
        (0, 100),
        "0 oversold"
    );
    assert!(engine.inventory.audit().await.expect("audit").is_empty());
    assert_eq!(gate.remaining().await.expect("remaining"), 0);
    assert!(gate.admit().await.expect("admit").is_none(), "sold out");
}

async fn give_back_and_reconcile(redis: RedisBackend) {
    let engine = MemoryEngine::new();
    let sku = Sku::new("HOT-2").expect("sku");
    let location = LocationId::new("wh-1").expect("loc");
    engine
        .inventory
        .restock(&sku, &location, 3, "stock")
        .await
        .expect("restock");
    let gate = FlashSaleGate::new(redis, sku.clone(), Duration::from_secs(600));
    gate.open(3).await.expect("open");
    let a = gate.admit().await.expect("admit").expect("a");
    let b = gate.admit().await.expect("admit").expect("b");
    let _c = gate.admit().await.expect("admit").expect("c");
    assert!(gate.admit().await.expect("admit").is_none());
    assert!(gate.give_back(&a).await.expect("give back"));
    assert!(
        !gate.give_back(&a).await.expect("again"),
        "a ticket gives back once"
    );
    assert_eq!(gate.remaining().await.expect("remaining"), 1);
    gate.complete(&b).await.expect("complete");
    assert!(
        !gate.give_back(&b).await.expect("completed"),
        "a completed ticket keeps its token"
    );
    // b reserved one unit; c is still outstanding: 2 available - 1 outstanding = 1.
    engine
        .inventory
        .reserve(&ReservationRequest::new(
            OrderId::generate(),
            [(sku.clone(), 1)],
        ))
        .await
        .expect("reserve");
    assert_eq!(
        engine.inventory.available(&sku).await.expect("available"),
        2
    );
    assert_eq!(
        gate.reconcile(engine.inventory.as_ref())
            .await
            .expect("reconcile"),
        1
    );
    // The stock was adjusted down: the gate follows, never above what is there.
    engine
        .inventory
        .adjust(&sku, &location, -2, "damaged")
        .await
        .expect("adjust");
    assert_eq!(
        gate.reconcile(engine.inventory.as_ref())
            .await
            .expect("reconcile"),
        0
    );
    assert!(gate.admit().await.expect("admit").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flash_sale_gate_on_single_redis_and_cluster() {
    for redis in [
        common::single("flash").await,
        common::cluster("flash").await,
    ] {
        ten_thousand_buyers_one_hundred_units(redis.clone()).await;
        give_back_and_reconcile(redis.clone()).await;
        redis.delete_all().await.expect("cleanup");
    }
}
