//! The PostgreSQL promotion store passes the conformance kit's promotions area
//! (limits, idempotency, reapers, the 100-use rush and the model-based test) against a
//! real server.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use commerce_core::clock::ManualClock;
use commerce_core::testkit::{self, Settings, StoreBuilder, StoresUnderTest};
use common::PgBuilder;

/// Fresh migrated schemas, with only the promotion store.
#[derive(Debug, Default)]
struct PromotionsBuilder(PgBuilder);

#[async_trait]
impl StoreBuilder for PromotionsBuilder {
    async fn build(&self, clock: Arc<ManualClock>) -> commerce_core::Result<StoresUnderTest> {
        let pg = self.0.engine(clock).await?;
        Ok(StoresUnderTest::new().with_promotions(pg.promotions.clone()))
    }

    async fn teardown(&self) -> commerce_core::Result<()> {
        self.0.teardown().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_promotions_pass_the_conformance_kit() {
    // A fresh schema per model-based history: 8 by default, more with
    // COMMERCE_TESTKIT_CASES.
    testkit::promotions::test_all_with(
        &PromotionsBuilder::default(),
        &Settings::from_env_with_cases(8),
    )
    .await;
}
