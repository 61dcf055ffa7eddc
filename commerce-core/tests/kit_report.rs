//! The kit's report: a failed case is reported once, in the summary, with its name and
//! seed; its panic does not also go through the panic hook.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::Result;
use commerce_core::clock::ManualClock;
use commerce_core::id::{JobId, OrderId};
use commerce_core::memory::MemoryQueue;
use commerce_core::store::{
    DeadLetter, OrderQueue, QueueStats, QueuedJob, RetryOutcome, RetryPolicy,
};
use commerce_core::testkit::{self, Settings, StoreBuilder, StoresUnderTest};

/// A queue whose `stats` always says it is empty (a seeded bug).
#[derive(Debug)]
struct BlindQueue(MemoryQueue);

#[async_trait]
impl OrderQueue for BlindQueue {
    async fn enqueue(&self, order_id: &OrderId) -> Result<JobId> {
        self.0.enqueue(order_id).await
    }
    async fn claim(&self, limit: u32, visibility: Duration) -> Result<Vec<QueuedJob>> {
        self.0.claim(limit, visibility).await
    }
    async fn ack(&self, job: &QueuedJob) -> Result<()> {
        self.0.ack(job).await
    }
    async fn fail(&self, job: &QueuedJob, error: &str, p: &RetryPolicy) -> Result<RetryOutcome> {
        self.0.fail(job, error, p).await
    }
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>> {
        self.0.dead_letters(limit).await
    }
    async fn stats(&self) -> Result<QueueStats> {
        Ok(QueueStats::default())
    }
}

struct Blind;

#[async_trait]
impl StoreBuilder for Blind {
    async fn build(&self, clock: Arc<ManualClock>) -> Result<StoresUnderTest> {
        Ok(StoresUnderTest::new().with_queue(Arc::new(BlindQueue(MemoryQueue::new(clock)))))
    }
}

static HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_is_reported_once_with_its_name_and_seed() {
    // The hook the kit finds: every panic that reaches it is counted.
    std::panic::set_hook(Box::new(|_| {
        HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
    }));
    let settings = Settings {
        seed: Some(4242),
        filter: Some("queue::".to_owned()),
        ..Settings::from_env()
    };
    let report = testkit::run_with(&Blind, &settings).await;
    assert_eq!(
        HOOK_CALLS.load(Ordering::SeqCst),
        0,
        "a case's panic is not printed by the panic hook"
    );
    let failed: Vec<(&str, u64)> = report
        .failed
        .iter()
        .map(|f| (f.case.as_str(), f.seed))
        .collect();
    assert!(
        failed.contains(&("queue::stats_count_jobs_by_state", 4242)),
        "{failed:?}"
    );
    let text = report.to_string();
    assert_eq!(
        text.matches("--- queue::stats_count_jobs_by_state (seed 4242;")
            .count(),
        1,
        "{text}"
    );
    // Other panics still reach the hook.
    let _ = std::panic::catch_unwind(|| panic!("outside the kit"));
    assert_eq!(HOOK_CALLS.load(Ordering::SeqCst), 1);
}
