use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::Result;
use crate::id::{JobId, OrderId};

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedJob {
    /// Identifier.
    pub id: JobId,
    /// The order to process.
    pub order_id: OrderId,
    /// Which claim this is (1 for the first); also the lease token for `ack`/`fail`.
    pub attempt: u32,
    /// Until when this claim holds the job.
    pub lease_until: Timestamp,
    /// When the job was enqueued.
    pub enqueued_at: Timestamp,
    /// The error of the previous attempt.
    pub last_error: Option<String>,
}

/// A job that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Identifier.
    pub id: JobId,
    /// The order.
    pub order_id: OrderId,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub last_error: String,
    /// When it was dead-lettered.
    pub at: Timestamp,
}

/// Exponential backoff with a cap, and a maximum number of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts before the job is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Delay after the first failure.
    pub base_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 100 ms doubling up to 30 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based):
    /// `base * 2^(attempt-1)`, capped at `max_delay`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use commerce_core::store::RetryPolicy;
    ///
    /// let p = RetryPolicy::default();
    /// assert_eq!(p.delay_after(1), Duration::from_millis(100));
    /// assert_eq!(p.delay_after(3), Duration::from_millis(400));
    /// assert_eq!(p.delay_after(60), Duration::from_secs(30));
    /// ```
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// What [`OrderQueue::fail`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryOutcome {
    /// The job will be claimable again at this time.
    Retrying {
        /// When.
        at: Timestamp,
    },
    /// The job ran out of attempts and moved to the dead letters.
    DeadLettered,
}

/// Counts by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Claimable now.
    pub ready: u64,
    /// Waiting for a retry time.
    pub delayed: u64,
    /// Claimed, lease not expired.
    pub leased: u64,
    /// Dead-lettered.
    pub dead: u64,
}

/// A durable queue of orders to process, for absorbing bursts.
///
/// # To ensure correctness (every method)
/// * **Nothing lost**: an enqueued job is eventually acked or dead-lettered; a worker
///   that crashes holding a job loses its lease after the visibility timeout and the
///   job becomes claimable again (that claim counts as an attempt).
/// * **One holder**: a job is held by at most one unexpired claim; concurrent `claim`
///   calls never return the same job.
/// * `ack` and `fail` take the job as claimed; if the claim is stale (the lease expired
///   and another claim was made) they are `Conflict { kind: Job }` and change nothing.
#[async_trait]
pub trait OrderQueue: Send + Sync + Debug + 'static {
    /// Adds a job for `order_id`, claimable now.
    async fn enqueue(&self, order_id: &OrderId) -> Result<JobId>;

    /// Adds one job per order, claimable now, and returns their ids in order.
    ///
    /// # To ensure correctness
    /// All or nothing: either every job is added or none is. The default enqueues one
    /// at a time (not all or nothing across a failure; a relay re-reading its events
    /// enqueues again, which the pipeline tolerates); a store with a batch write
    /// should override it (the PostgreSQL queue adds them in one statement).
    async fn enqueue_many(&self, order_ids: &[OrderId]) -> Result<Vec<JobId>> {
        let mut ids = Vec::with_capacity(order_ids.len());
        for id in order_ids {
            ids.push(self.enqueue(id).await?);
        }
        Ok(ids)
    }

    /// Waits until a job may have become claimable (an enqueue in this process) or
    /// `timeout` passed, whichever comes first; `true` if woken. Workers call it when
    /// the queue is empty instead of polling at a fixed rate.
    ///
    /// # To ensure correctness
    /// A wake-up is a hint, never a promise: callers claim afterwards either way, and an
    /// enqueue from another process may only be seen when `timeout` ends. The default
    /// sleeps for `timeout`.
    async fn wait_for_jobs(&self, timeout: Duration) -> Result<bool> {
        tokio::time::sleep(timeout).await;
        Ok(false)
    }

    /// Claims up to `limit` claimable jobs (oldest first) for `visibility`.
    async fn claim(&self, limit: u32, visibility: Duration) -> Result<Vec<QueuedJob>>;

    /// Marks a claimed job done (it is deleted).
    async fn ack(&self, job: &QueuedJob) -> Result<()>;

    /// Records a failed attempt: the job is retried after
    /// [`RetryPolicy::jittered_delay_after`]`(job.attempt)` or, once `job.attempt >=
    /// policy.max_attempts`, dead-lettered.
    ///
    /// # To ensure correctness
    /// * The retry time `at` is in `now ..= now + `[`RetryPolicy::delay_after`]`(job.attempt)`,
    ///   randomly spread (full jitter), so jobs failing together (a database blip) are
    ///   not all retried at the same instant; the job is not claimable before `at` and
    ///   is claimable from `at` on. The returned `at` is the one stored.
    async fn fail(
        &self,
        job: &QueuedJob,
        error: &str,
        policy: &RetryPolicy,
    ) -> Result<RetryOutcome>;

    /// Dead-lettered jobs, oldest first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>>;

    /// Counts by state.
    async fn stats(&self) -> Result<QueueStats>;
}
