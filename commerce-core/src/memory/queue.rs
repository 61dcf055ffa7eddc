use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tracing::instrument;

use super::lock;
use crate::clock::{self, Clock, Timestamp};
use crate::error::{EntityKind, Error, Result};
use crate::id::{JobId, OrderId};
use crate::store::{
    DeadLetter, OrderQueue, QueueStats, QueuedJob, RetryOutcome, RetryPolicy, check_limit,
};

#[derive(Debug, Clone)]
struct Job {
    order_id: OrderId,
    enqueued_at: Timestamp,
    run_at: Timestamp,
    attempts: u32,
    lease_until: Option<Timestamp>,
    last_error: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    jobs: BTreeMap<JobId, Job>,
    dead: Vec<DeadLetter>,
}

impl State {
    /// The job as claimed by `claim`, if that claim is still the current one.
    fn current(&mut self, claim: &QueuedJob) -> Result<&mut Job> {
        self.jobs
            .get_mut(&claim.id)
            .filter(|j| j.attempts == claim.attempt)
            .ok_or_else(|| {
                Error::conflict(
                    EntityKind::Job,
                    format!("claim {} of job {} is stale", claim.attempt, claim.id),
                )
            })
    }
}

/// The in-memory [`OrderQueue`].
#[derive(Debug)]
pub struct MemoryQueue {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    wake: tokio::sync::Notify,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryQueue {
            clock,
            state: Mutex::new(State::default()),
            wake: tokio::sync::Notify::new(),
        }
    }
}

#[async_trait]
impl OrderQueue for MemoryQueue {
    async fn enqueue(&self, order_id: &OrderId) -> Result<JobId> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        state.next_id += 1;
        let id = JobId(state.next_id);
        state.jobs.insert(
            id,
            Job {
                order_id: order_id.clone(),
                enqueued_at: now,
                run_at: now,
                attempts: 0,
                lease_until: None,
                last_error: None,
            },
        );
        drop(state);
        self.wake.notify_waiters();
        Ok(id)
    }

    async fn wait_for_jobs(&self, timeout: Duration) -> Result<bool> {
        Ok(tokio::time::timeout(timeout, self.wake.notified())
            .await
            .is_ok())
    }

    #[instrument(level = "trace", skip(self), err(level = "debug"))]
    async fn claim(&self, limit: u32, visibility: Duration) -> Result<Vec<QueuedJob>> {
        let limit = check_limit(limit)?;
        let now = self.clock.now();
        let lease_until = clock::add(now, visibility);
        let mut state = lock(&self.state);
        let mut out = Vec::new();
        for (id, job) in state.jobs.iter_mut() {
            if out.len() == limit {
                break;
            }
            let free = job.lease_until.is_none_or(|l| l <= now);
            if free && job.run_at <= now {
                job.attempts += 1;
                job.lease_until = Some(lease_until);
                out.push(QueuedJob {
                    id: *id,
                    order_id: job.order_id.clone(),
                    attempt: job.attempts,
                    lease_until,
                    enqueued_at: job.enqueued_at,
                    last_error: job.last_error.clone(),
                });
            }
        }
        Ok(out)
    }

    async fn ack(&self, job: &QueuedJob) -> Result<()> {
        let mut state = lock(&self.state);
        state.current(job)?;
        state.jobs.remove(&job.id);
        Ok(())
    }

    async fn fail(
        &self,
        job: &QueuedJob,
        error: &str,
        policy: &RetryPolicy,
    ) -> Result<RetryOutcome> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let current = state.current(job)?;
        let error: String = error.chars().take(2000).collect();
        if job.attempt >= policy.max_attempts.max(1) {
            let dead = DeadLetter {
                id: job.id,
                order_id: current.order_id.clone(),
                attempts: current.attempts,
                last_error: error,
                at: now,
            };
            state.jobs.remove(&job.id);
            state.dead.push(dead);
            return Ok(RetryOutcome::DeadLettered);
        }
        let at = clock::add(now, policy.jittered_delay_after(job.attempt));
        current.run_at = at;
        current.lease_until = None;
        current.last_error = Some(error);
        Ok(RetryOutcome::Retrying { at })
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>> {
        let limit = check_limit(limit)?;
        Ok(lock(&self.state).dead.iter().take(limit).cloned().collect())
    }

    async fn stats(&self) -> Result<QueueStats> {
        let now = self.clock.now();
        let state = lock(&self.state);
        let mut stats = QueueStats {
            dead: state.dead.len() as u64,
            ..QueueStats::default()
        };
        for job in state.jobs.values() {
            if job.lease_until.is_some_and(|l| l > now) {
                stats.leased += 1;
            } else if job.run_at > now {
                stats.delayed += 1;
            } else {
                stats.ready += 1;
            }
        }
        Ok(stats)
    }
}
