//! Queue workers: claim orders from the [`OrderQueue`] and run them through the
//! pipeline at a bounded concurrency.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::service::pipeline::OrderPipeline;
use crate::service::task::{BackgroundTask, Shutdown};
use crate::store::{OrderQueue, QueuedJob, RetryOutcome, RetryPolicy};

/// Worker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// Most orders processed at once by this worker pool (at least 1).
    pub concurrency: usize,
    /// How long a claim hides a job from other workers; must exceed the longest
    /// processing of one order, else another worker may take the job over (which is
    /// safe, only wasteful).
    pub visibility: Duration,
    /// Backoff between attempts of a failed job, and the attempts before it is
    /// dead-lettered.
    pub retry: RetryPolicy,
    /// The longest to wait before claiming again when the queue is empty (an enqueue in
    /// this process wakes the workers at once, see [`OrderQueue::wait_for_jobs`]).
    pub idle_poll: Duration,
}

impl Default for WorkerConfig {
    /// 16 at once, 5-minute visibility, the default retry policy, 50 ms idle polls.
    fn default() -> Self {
        WorkerConfig {
            concurrency: 16,
            visibility: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            idle_poll: Duration::from_millis(50),
        }
    }
}

/// What a worker pool did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkStats {
    /// Jobs processed to rest and acknowledged.
    pub acked: u64,
    /// Jobs that failed and will be retried.
    pub retried: u64,
    /// Jobs that failed for the last time (or permanently).
    pub dead_lettered: u64,
    /// Jobs whose claim went stale while they ran (another worker took them over).
    pub stale: u64,
    /// The most jobs that ran at once.
    pub max_in_flight: usize,
}

impl WorkStats {
    fn add(&mut self, outcome: JobOutcome) {
        match outcome {
            JobOutcome::Acked => self.acked += 1,
            JobOutcome::Retried => self.retried += 1,
            JobOutcome::DeadLettered => self.dead_lettered += 1,
            JobOutcome::Stale => self.stale += 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum JobOutcome {
    Acked,
    Retried,
    DeadLettered,
    Stale,
}

/// A pool of workers over an [`OrderQueue`].
///
/// At most [`WorkerConfig::concurrency`] orders run at once; the rest of a burst waits
/// in the queue (never dropped). A job whose order reaches rest is acknowledged; a
/// failed one is handed back with [`OrderQueue::fail`], retried after the policy's
/// backoff and dead-lettered after its last attempt. A non-retryable failure is
/// dead-lettered at once. A worker that dies holding a job loses it when the
/// visibility timeout passes and another worker resumes the order from its stored
/// state.
#[derive(Debug, Clone)]
pub struct OrderWorkers {
    queue: Arc<dyn OrderQueue>,
    pipeline: Arc<OrderPipeline>,
    config: WorkerConfig,
}

impl OrderWorkers {
    /// A worker pool.
    pub fn new(
        queue: Arc<dyn OrderQueue>,
        pipeline: Arc<OrderPipeline>,
        config: WorkerConfig,
    ) -> Self {
        OrderWorkers {
            queue,
            pipeline,
            config,
        }
    }

    /// Processes jobs until none is claimable and none is running, then returns.
    /// (Jobs waiting for a retry time are left for a later call.)
    pub async fn run_until_idle(&self) -> Result<WorkStats> {
        self.run(None).await
    }

    /// Runs the pool in the background until shut down; shutting down stops claiming
    /// and waits for the jobs in progress.
    pub fn spawn(&self) -> BackgroundTask<Result<WorkStats>> {
        let this = self.clone();
        BackgroundTask::spawn(move |stop| async move { this.run(Some(stop)).await })
    }

    async fn run(&self, mut stop: Option<Shutdown>) -> Result<WorkStats> {
        let concurrency = self.config.concurrency.max(1);
        let mut running: JoinSet<JobOutcome> = JoinSet::new();
        let mut stats = WorkStats::default();
        loop {
            while let Some(done) = running.try_join_next() {
                stats.add(joined(done)?);
            }
            if stop.as_ref().is_some_and(Shutdown::is_stopping) {
                break;
            }
            let free = concurrency - running.len();
            let mut claimed = 0;
            if free > 0 {
                let limit = u32::try_from(free).unwrap_or(u32::MAX).min(1000);
                match self.queue.claim(limit, self.config.visibility).await {
                    Ok(jobs) => {
                        claimed = jobs.len();
                        let now = chrono::Utc::now();
                        for job in &jobs {
                            let age = (now - job.enqueued_at).to_std().unwrap_or_default();
                            metrics::histogram!(crate::telemetry::QUEUE_WAIT)
                                .record(age.as_secs_f64());
                        }
                        for job in jobs {
                            let this = self.clone();
                            running.spawn(async move { this.handle(job).await });
                        }
                        stats.max_in_flight = stats.max_in_flight.max(running.len());
                        metrics::gauge!(crate::telemetry::QUEUE_CLAIMED).set(running.len() as f64);
                    }
                    Err(e) if stop.is_none() => return Err(e),
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
                }
            }
            if claimed > 0 && running.len() < concurrency {
                continue;
            }
            if running.is_empty() {
                match stop.as_mut() {
                    None => break,
                    Some(s) => {
                        tokio::select! {
                            _ = self.queue.wait_for_jobs(self.config.idle_poll) => {}
                            _ = s.stopped() => {}
                        }
                    }
                }
            } else {
                let full = running.len() >= concurrency;
                tokio::select! {
                    Some(done) = running.join_next() => stats.add(joined(done)?),
                    _ = self.queue.wait_for_jobs(self.config.idle_poll), if !full => {}
                }
            }
        }
        while let Some(done) = running.join_next().await {
            stats.add(joined(done)?);
        }
        Ok(stats)
    }

    async fn handle(&self, job: QueuedJob) -> JobOutcome {
        let result = self.pipeline.process(&job.order_id).await;
        let settled = match result {
            Ok(_) => self.queue.ack(&job).await.map(|()| JobOutcome::Acked),
            Err(error) => {
                tracing::warn!(order_id = %job.order_id, attempt = job.attempt, %error, "order processing failed");
                let policy = if error.is_retryable() {
                    self.config.retry
                } else {
                    // Retrying cannot help: dead-letter now.
                    RetryPolicy {
                        max_attempts: job.attempt,
                        ..self.config.retry
                    }
                };
                self.queue
                    .fail(&job, &error.to_string(), &policy)
                    .await
                    .map(|r| match r {
                        RetryOutcome::Retrying { .. } => JobOutcome::Retried,
                        RetryOutcome::DeadLettered => JobOutcome::DeadLettered,
                    })
            }
        };
        let outcome = match settled {
            Ok(o) => o,
            Err(e) => {
                // A stale claim (someone took the job over) or a queue failure: the
                // lease runs out and the job is claimed again; the pipeline is
                // idempotent, so that is safe.
                tracing::warn!(job = %job.id, error = %e, "could not settle the job");
                JobOutcome::Stale
            }
        };
        let label = match outcome {
            JobOutcome::Acked => "acked",
            JobOutcome::Retried => "retried",
            JobOutcome::DeadLettered => "dead_lettered",
            JobOutcome::Stale => "stale",
        };
        metrics::counter!(crate::telemetry::PIPELINE_JOBS, "outcome" => label).increment(1);
        outcome
    }
}

fn joined(r: std::result::Result<JobOutcome, tokio::task::JoinError>) -> Result<JobOutcome> {
    r.map_err(|e| Error::permanent("an order worker panicked", e))
}
