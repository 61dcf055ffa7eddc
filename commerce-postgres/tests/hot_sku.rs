//! The hot-SKU request combiner: the inventory conformance suite with combining on,
//! and a flash sale with many concurrent buyers that must never oversell.

mod common;

use std::sync::Arc;

use commerce_core::Error;
use commerce_core::clock::ManualClock;
use commerce_core::id::{LocationId, OrderId, Sku};
use commerce_core::inventory::ReservationRequest;
use commerce_core::store::{InventoryStore, InventoryStoreExt};
use commerce_postgres::HotSkuConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventory_suite_passes_with_combining() {
    let builder = common::PgBuilder::with_hot_skus(HotSkuConfig::all().max_batch(64));
    commerce_core::testkit::inventory::test_all(&builder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn combined_flash_sale_never_oversells() {
    let builder = common::PgBuilder::with_hot_skus(HotSkuConfig::all().max_batch(32));
    let pg = builder
        .engine(Arc::new(ManualClock::default()))
        .await
        .expect("engine");
    let sku = Sku::new("FLASH-1").unwrap();
    let stock = 300u32;
    pg.inventory
        .restock(&sku, &LocationId::new("w1").unwrap(), stock - 100, "sale")
        .await
        .unwrap();
    pg.inventory
        .restock(&sku, &LocationId::new("w2").unwrap(), 100, "sale")
        .await
        .unwrap();
    let buyers = 1000;
    let mut tasks = Vec::new();
    for i in 0..buyers {
        let inv = pg.inventory.clone();
        let sku = sku.clone();
        tasks.push(tokio::spawn(async move {
            let q = 1 + (i % 2) as u32;
            let req = ReservationRequest::new(OrderId::new(format!("b-{i}")).unwrap(), [(sku, q)]);
            match inv.reserve(&req).await {
                Ok(r) => Ok(r.lines[0].quantity),
                Err(e) => Err(e),
            }
        }));
    }
    let mut sold = 0u64;
    for t in tasks {
        match t.await.unwrap() {
            Ok(q) => sold += u64::from(q),
            Err(Error::OutOfStock { .. }) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    let s = pg.inventory.stock(&sku).await.unwrap();
    assert_eq!(
        s.reserved(),
        sold,
        "reserved units equal what buyers were told"
    );
    assert!(sold <= u64::from(stock), "oversold: {sold} > {stock}");
    assert_eq!(s.available() + s.reserved(), u64::from(stock));
    assert!(
        s.available() <= 1,
        "buyers of 1 or 2 units leave at most 1 unit unsold, left {}",
        s.available()
    );
    assert!(pg.inventory.audit().await.unwrap().is_empty());
    assert_eq!(pg.inventory.available(&sku).await.unwrap(), s.available());
    builder_teardown(&builder).await;
}

async fn builder_teardown(b: &common::PgBuilder) {
    use commerce_core::testkit::StoreBuilder;
    b.teardown().await.unwrap();
}
