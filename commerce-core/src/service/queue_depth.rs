//! Sampling the order queue's depth into the `commerce_queue_jobs` gauges.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::service::task::BackgroundTask;
use crate::store::{OrderQueue, QueueStats};

/// Samples [`OrderQueue::stats`] into the [`QUEUE_JOBS`](crate::telemetry::QUEUE_JOBS)
/// gauges (`state` = `ready`, `delayed`, `leased`, `dead`).
///
/// One `stats` call per sample, never one per claim: on PostgreSQL a sample is one
/// counting statement, so a sample every few seconds costs nothing next to the claims
/// themselves, whatever the load. Works with any queue (memory, PostgreSQL, an
/// integrator's).
#[derive(Debug, Clone)]
pub struct QueueDepthMonitor {
    queue: Arc<dyn OrderQueue>,
}

impl QueueDepthMonitor {
    /// A monitor of `queue`.
    pub fn new(queue: Arc<dyn OrderQueue>) -> Self {
        QueueDepthMonitor { queue }
    }

    /// Reads the queue's counts once, sets the gauges and returns the counts.
    pub async fn sample(&self) -> Result<QueueStats> {
        let stats = self.queue.stats().await?;
        crate::telemetry::record_queue_depth(&stats);
        Ok(stats)
    }

    /// Samples every `every` in the background (the first sample at once). Returns how
    /// many samples succeeded when shut down; a failed sample is logged and skipped.
    pub fn spawn(&self, every: Duration) -> BackgroundTask<u64> {
        let this = self.clone();
        BackgroundTask::spawn(move |mut stop| async move {
            let mut samples = 0u64;
            while !stop.is_stopping() {
                match this.sample().await {
                    Ok(_) => samples += 1,
                    Err(e) => tracing::warn!(error = %e, "queue depth sample failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.stopped() => {}
                }
            }
            samples
        })
    }
}
