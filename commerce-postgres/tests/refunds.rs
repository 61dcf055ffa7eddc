//! The refund-ledger cases of the conformance kit against PostgreSQL (`DATABASE_URL`),
//! each on a fresh schema: partial refunds, the guard, idempotent keys, and 48 racing
//! partial refunds that never refund more than was paid.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use commerce_core::clock::ManualClock;
use commerce_core::testkit::{StoreBuilder, StoresUnderTest};

/// Fresh schemas with only the refund ledger.
#[derive(Debug, Default)]
struct RefundsBuilder(common::PgBuilder);

#[async_trait]
impl StoreBuilder for RefundsBuilder {
    async fn build(&self, clock: Arc<ManualClock>) -> commerce_core::Result<StoresUnderTest> {
        let pg = self.0.engine(clock).await?;
        Ok(StoresUnderTest::new().with_refunds(Arc::new(pg.refunds())))
    }

    async fn teardown(&self) -> commerce_core::Result<()> {
        self.0.teardown().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refund_ledger_conformance() {
    commerce_core::testkit::refunds::test_all(&RefundsBuilder::default()).await;
}
