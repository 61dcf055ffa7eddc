//! The commerce-core conformance kit against PostgreSQL (`DATABASE_URL`).

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    commerce_core::testkit::test_all(&common::PgBuilder::default()).await;
}
