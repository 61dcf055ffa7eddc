//! Writing an adapter for a backend of your own, and proving it with the conformance kit.
//!
//! `file_carts.rs` is a [`CartStore`](commerce_core::store::CartStore) that keeps one
//! JSON file per cart in a directory. `main` uses it like any cart store; the test at the
//! bottom runs the kit's whole cart suite against it:
//!
//! ```sh
//! cargo run --example custom_adapter              # the demo
//! cargo test -p commerce-examples --example custom_adapter   # the conformance kit
//! ```
//!
//! See "Writing an adapter" in `commerce-core/README.md`.

mod file_carts;

use std::collections::BTreeMap;
use std::sync::Arc;

use commerce_core::cart::{CartItem, CartLimits, CartOwner};
use commerce_core::clock::{Clock, SystemClock};
use commerce_core::id::{CartId, CustomerId, ProductId, Sku};
use commerce_core::store::CartStore;

use file_carts::FileCarts;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let carts = FileCarts::open(dir.path(), clock.clone())?;
    let limits = CartLimits::default();

    // A guest fills a cart...
    let guest = CartId::new_guest();
    for (sku, quantity, price) in [("PH-1", 1, "199.00 USD"), ("CASE-1", 2, "19.99 USD")] {
        let item = CartItem {
            product_id: ProductId::new(format!("p-{sku}"))?,
            sku: Sku::new(sku)?,
            quantity,
            unit_price: price.parse()?,
            added_at: clock.now(),
        };
        carts
            .add_item(&guest, &CartOwner::Guest, item, &limits)
            .await?;
    }
    // ... signs in, and the guest cart merges into the customer's.
    let customer = CustomerId::new("cust-42")?;
    let caps = BTreeMap::from([(Sku::new("CASE-1")?, 1)]); // one case left in stock
    let (cart, report) = carts.merge_carts(&guest, &customer, &caps, &limits).await?;
    println!("cart {} (version {}):", cart.id, cart.version);
    for line in &cart.items {
        println!("  {} x {} at {}", line.quantity, line.sku, line.unit_price);
    }
    println!("subtotal {}", cart.subtotal(commerce_core::Currency::USD)?);
    println!("capped by stock: {:?}", report.capped);
    let files: Vec<_> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    println!("files in {}: {files:?}", dir.path().display());
    // A periodic job would delete abandoned carts; nothing has expired yet.
    println!("expired carts purged: {}", carts.purge_expired().await?);
    Ok(())
}

#[cfg(test)]
mod conformance {
    use std::sync::Arc;

    use async_trait::async_trait;
    use commerce_core::clock::ManualClock;
    use commerce_core::testkit::{self, StoreBuilder, StoresUnderTest};

    use super::FileCarts;

    /// Fresh stores for every case: a new directory under one temporary root, kept
    /// alive as long as the case runs.
    struct FileCartsBuilder {
        root: tempfile::TempDir,
    }

    #[async_trait]
    impl StoreBuilder for FileCartsBuilder {
        async fn build(&self, clock: Arc<ManualClock>) -> commerce_core::Result<StoresUnderTest> {
            let dir = tempfile::tempdir_in(self.root.path())
                .map_err(|e| commerce_core::Error::permanent("temp dir", e))?;
            let carts = FileCarts::open(dir.path(), clock)?;
            Ok(StoresUnderTest::new()
                .with_carts(Arc::new(carts))
                .keep_alive(dir))
        }
    }

    /// The whole cart suite of the conformance kit, from one test.
    #[test]
    fn file_carts_pass_the_cart_suite() {
        let builder = FileCartsBuilder {
            root: tempfile::tempdir().expect("temp dir"),
        };
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(testkit::carts::test_all(&builder));
    }

    /// Expired carts can be purged from the directory.
    #[test]
    fn purge_removes_only_expired_carts() {
        use commerce_core::cart::{CartItem, CartLimits, CartOwner};
        use commerce_core::clock::Clock;
        use commerce_core::id::{CartId, ProductId, Sku};
        use commerce_core::store::CartStore;
        use std::time::Duration;

        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("temp dir");
            let clock = Arc::new(ManualClock::default());
            let carts = FileCarts::open(dir.path(), clock.clone()).expect("open");
            let short = CartLimits {
                ttl: Duration::from_secs(60),
                ..CartLimits::default()
            };
            let item = CartItem {
                product_id: ProductId::new("p").expect("valid"),
                sku: Sku::new("A").expect("valid"),
                quantity: 1,
                unit_price: "1.00 USD".parse().expect("valid"),
                added_at: clock.now(),
            };
            let (old, kept) = (CartId::new_guest(), CartId::new_guest());
            carts
                .add_item(&old, &CartOwner::Guest, item.clone(), &short)
                .await
                .expect("add");
            clock.advance(Duration::from_secs(30));
            carts
                .add_item(&kept, &CartOwner::Guest, item, &short)
                .await
                .expect("add");
            clock.advance(Duration::from_secs(30));
            assert_eq!(carts.purge_expired().await.expect("purge"), 1);
            assert!(
                carts
                    .get_cart(&kept, &CartOwner::Guest)
                    .await
                    .expect("get")
                    .is_some()
            );
            assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
        });
    }
}
