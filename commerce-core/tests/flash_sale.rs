//! A flash sale on the in-memory engine: 1,000 buyers on a multi-thread runtime race
//! for the last 100 units of one SKU.

use std::sync::Arc;

use commerce_core::Error;
use commerce_core::id::{LocationId, OrderId, Sku};
use commerce_core::inventory::ReservationRequest;
use commerce_core::memory::MemoryEngine;
use commerce_core::store::{InventoryStore, InventoryStoreExt};
use tokio::sync::Barrier;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_buyers_get_exactly_the_last_hundred_units() {
    let engine = MemoryEngine::new();
    let inventory = engine.inventory.clone();
    let sku = Sku::new("HOT-1").expect("valid");
    let warehouse = LocationId::new("main").expect("valid");
    inventory
        .restock(&sku, &warehouse, 1100, "launch stock")
        .await
        .expect("restock");
    // Most of the stock is gone already: 100 units remain.
    let early = ReservationRequest::new(
        OrderId::new("early-birds").expect("valid"),
        [(sku.clone(), 1000)],
    );
    inventory.reserve(&early).await.expect("reserve");
    inventory.confirm(&early.order_id).await.expect("confirm");
    assert_eq!(inventory.available(&sku).await.expect("available"), 100);

    let buyers = 1000;
    let gate = Arc::new(Barrier::new(buyers));
    let tasks: Vec<_> = (0..buyers)
        .map(|i| {
            let inventory = inventory.clone();
            let sku = sku.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                let order = OrderId::new(format!("buyer-{i}")).expect("valid");
                gate.wait().await;
                let held = inventory
                    .reserve(&ReservationRequest::new(order.clone(), [(sku, 1)]))
                    .await?;
                inventory.confirm(&held.order_id).await
            })
        })
        .collect();
    let mut sold = 0;
    for task in tasks {
        match task.await.expect("buyer task") {
            Ok(_) => sold += 1,
            Err(Error::OutOfStock {
                sku: s,
                requested: 1,
                available: 0,
            }) if s == "HOT-1" => {}
            Err(other) => {
                panic!("a buyer got {other:?}; only OutOfStock(available 0) is acceptable")
            }
        }
    }
    assert_eq!(sold, 100, "exactly the last 100 units are sold");
    let stock = inventory.stock(&sku).await.expect("stock");
    assert_eq!(
        (stock.available(), stock.reserved(), stock.sold()),
        (0, 0, 1100)
    );
    let violations = inventory.audit().await.expect("audit");
    assert!(violations.is_empty(), "{violations:#?}");
}
