//! Reads by key are grouped (orders by id and key, products and on-sale checks by SKU,
//! stock by SKU): under real concurrency every caller still gets its own keys' answers,
//! in order, and sees every write that committed before it asked, exactly as the write
//! returned it.

mod common;

use commerce_core::catalog::{CategoryPath, NewProduct, ProductStatus};
use commerce_core::id::{IdempotencyKey, LocationId, OrderId, SellerId, Sku};
use commerce_core::order::{OrderStatus, Transition};
use commerce_core::store::{CatalogStore, CatalogStoreExt, InventoryStore, OrderStore};
use commerce_postgres::PgCommerce;

async fn engine(prefix: &str) -> (PgCommerce, common::SchemaGuard) {
    common::fresh_engine(prefix, |config| config).await
}

/// 64 tasks at once each create an order, read it back by id and by key, move it, and
/// read it again: every read answers the caller's own order as it last wrote it, and a
/// missing id or key read in the same batches answers `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_caller_reads_its_own_orders_latest_write() {
    let (pg, _guard) = engine("grd").await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let orders = pg.orders.clone();
            tokio::spawn(async move {
                let key = format!("key-{i}");
                let sku = format!("SKU-{}", i % 7);
                let made = orders
                    .create_order(common::new_order(&key, &[(sku.as_str(), 1 + i % 3)]))
                    .await
                    .unwrap()
                    .into_order();
                let by_id = orders.get_order(&made.id).await.unwrap();
                assert_eq!(by_id.as_ref(), Some(&made), "task {i}: read by id");
                let by_key = orders
                    .get_order_by_key(&IdempotencyKey::new(&key).unwrap())
                    .await
                    .unwrap();
                assert_eq!(by_key.as_ref(), Some(&made), "task {i}: read by key");
                let moved = orders
                    .transition(
                        &made.id,
                        &Transition::new(OrderStatus::Created, OrderStatus::Cancelled, "test"),
                    )
                    .await
                    .unwrap();
                let again = orders.get_order(&made.id).await.unwrap().unwrap();
                assert_eq!(again.status, OrderStatus::Cancelled, "task {i}");
                assert_eq!(again, moved, "task {i}: the read after the move");
                let missing = OrderId::new(format!("no-such-order-{i}")).unwrap();
                assert_eq!(orders.get_order(&missing).await.unwrap(), None);
                let missing = IdempotencyKey::new(format!("no-such-key-{i}")).unwrap();
                assert_eq!(orders.get_order_by_key(&missing).await.unwrap(), None);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Eight products (every third one a draft), SKU `S{n}` stocked with `10 * n` units;
/// 64 tasks at once each read a different mix of SKUs (with an unknown one and a
/// repeat across tasks): stock, on-sale flags and products come back per SKU, in the
/// order asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reads_by_sku_get_their_own_answers_in_order() {
    let (pg, _guard) = engine("grs").await;
    let at = LocationId::new("main").unwrap();
    for n in 1..=8u64 {
        let mut p = NewProduct::new(
            SellerId::new("seller").unwrap(),
            format!("Product {n}"),
            CategoryPath::parse("Electronics > Phones").unwrap(),
            "Acme",
            Sku::new(format!("S{n}")).unwrap(),
            "10.00 USD".parse().unwrap(),
        );
        p.status = if n % 3 == 0 {
            ProductStatus::Draft
        } else {
            ProductStatus::Active
        };
        pg.catalog.create_product(p).await.unwrap();
        pg.inventory
            .restock(
                &Sku::new(format!("S{n}")).unwrap(),
                &at,
                10 * n as u32,
                "seed",
            )
            .await
            .unwrap();
    }
    let catalog = pg.catalog.clone();
    let inventory = pg.inventory.clone();
    let tasks: Vec<_> = (0..64u64)
        .map(|i| {
            let (catalog, inventory) = (catalog.clone(), inventory.clone());
            tokio::spawn(async move {
                // a different mix per task: a rotation of S1..S8, cut short, plus "nope"
                let mut names: Vec<String> = (0..1 + i % 8)
                    .map(|k| format!("S{}", 1 + (i + k) % 8))
                    .collect();
                names.insert((i % 2) as usize, "nope".into());
                let skus: Vec<Sku> = names
                    .iter()
                    .map(|s| Sku::new(s.as_str()).unwrap())
                    .collect();
                let stocks = inventory.stocks(&skus).await.unwrap();
                let on_sale = catalog.skus_on_sale(&skus).await.unwrap();
                assert_eq!(stocks.len(), skus.len(), "task {i}");
                for ((sku, stock), sold) in skus.iter().zip(&stocks).zip(&on_sale) {
                    assert_eq!(&stock.sku, sku, "task {i}: stock out of order");
                    let n: Option<u64> = sku.as_str().strip_prefix('S').map(|n| n.parse().unwrap());
                    let available: u64 = stock.levels.iter().map(|l| l.available).sum();
                    assert_eq!(available, n.map_or(0, |n| 10 * n), "task {i}: {sku}");
                    assert_eq!(
                        *sold,
                        n.is_some_and(|n| n % 3 != 0),
                        "task {i}: {sku} on sale"
                    );
                    let product = catalog.get_product_by_sku(sku).await.unwrap();
                    match n {
                        None => assert!(product.is_none(), "task {i}: a product for {sku}"),
                        Some(n) => {
                            let product = product.expect("product by SKU");
                            assert_eq!(product.title, format!("Product {n}"), "task {i}");
                            assert!(product.variants.iter().any(|v| &v.sku == sku));
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}
