//! The conformance kit's checkout area against PostgreSQL: promotions through checkout
//! and the pipeline (with the fused steps), reapers, and a 100-use code raced by 150
//! buyers.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use commerce_core::clock::ManualClock;
use commerce_core::testkit::{self, StoreBuilder, StoresUnderTest};
use common::PgBuilder;

/// Fresh migrated schemas with the stores checkout and the pipeline use.
#[derive(Debug, Default)]
struct CheckoutBuilder(PgBuilder);

#[async_trait]
impl StoreBuilder for CheckoutBuilder {
    async fn build(&self, clock: Arc<ManualClock>) -> commerce_core::Result<StoresUnderTest> {
        let pg = self.0.engine(clock).await?;
        Ok(StoresUnderTest::new()
            .with_events(pg.events.clone())
            .with_catalog(pg.catalog.clone())
            .with_inventory(pg.inventory.clone())
            .with_orders(pg.orders.clone())
            .with_steps(pg.steps.clone())
            .with_promotions(pg.promotions.clone())
            .with_price_lists(Arc::new(pg.price_lists())))
    }

    async fn teardown(&self) -> commerce_core::Result<()> {
        self.0.teardown().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_checkout_with_promotions_passes_the_conformance_kit() {
    testkit::checkout::test_all(&CheckoutBuilder::default()).await;
}
