//! The in-memory engine passes the whole conformance kit.

use commerce_core::testkit::{self, MemoryBuilder};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_engine_passes_the_conformance_kit() {
    let report = testkit::run(&MemoryBuilder).await;
    assert!(
        report.not_provided.is_empty(),
        "the memory engine provides every area"
    );
    eprintln!("{report}");
    report.assert_passed();
    assert!(
        report.passed.len() >= 110,
        "{} cases ran",
        report.passed.len()
    );
}
