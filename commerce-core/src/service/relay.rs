//! The outbox relay: turns `OrderCreated` events into queue jobs.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::event::DomainEvent;
use crate::id::ConsumerName;
use crate::service::task::BackgroundTask;
use crate::store::{EventLog, EventLogExt, OrderQueue};

/// The consumer name the relay checkpoints under by default.
pub const RELAY_CONSUMER: &str = "order-pipeline";

/// What one relay pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayBatch {
    /// Events read.
    pub read: usize,
    /// Jobs enqueued.
    pub enqueued: usize,
}

/// Feeds the order queue from the event log.
///
/// The order store writes `OrderCreated` in the same atomic step as the order (a
/// transactional outbox), so relaying those events — rather than enqueueing from the
/// checkout request — means no order is ever left unprocessed by a crash between
/// "order created" and "job enqueued". Delivery is at least once: after a crash
/// between enqueueing and committing the checkpoint an order may get a second job,
/// which is harmless (the pipeline is idempotent).
#[derive(Debug, Clone)]
pub struct OrderRelay {
    events: Arc<dyn EventLog>,
    queue: Arc<dyn OrderQueue>,
    consumer: ConsumerName,
    batch: u32,
}

impl OrderRelay {
    /// A relay checkpointing as [`RELAY_CONSUMER`], reading 500 events at a time.
    pub fn new(events: Arc<dyn EventLog>, queue: Arc<dyn OrderQueue>) -> Result<Self> {
        Ok(OrderRelay {
            events,
            queue,
            consumer: ConsumerName::new(RELAY_CONSUMER)?,
            batch: 500,
        })
    }

    /// The same relay checkpointing under another name.
    pub fn with_consumer(mut self, consumer: ConsumerName) -> Self {
        self.consumer = consumer;
        self
    }

    /// Relays one batch of events after the checkpoint and commits it.
    pub async fn run_once(&self) -> Result<RelayBatch> {
        let events = self.events.poll(&self.consumer, self.batch).await?;
        let created: Vec<_> = events
            .iter()
            .filter_map(|e| match &e.event {
                DomainEvent::OrderCreated { order_id, .. } => Some(order_id.clone()),
                _ => None,
            })
            .collect();
        let enqueued = created.len();
        if !created.is_empty() {
            self.queue.enqueue_many(&created).await?;
            metrics::counter!(crate::telemetry::RELAY_ENQUEUED).increment(enqueued as u64);
            let now = chrono::Utc::now();
            for e in &events {
                if matches!(e.event, DomainEvent::OrderCreated { .. }) {
                    let lag = (now - e.at).to_std().unwrap_or_default();
                    metrics::histogram!(crate::telemetry::RELAY_LAG).record(lag.as_secs_f64());
                }
            }
        }
        if let Some(last) = events.last() {
            self.events.commit(&self.consumer, last.id).await?;
        }
        Ok(RelayBatch {
            read: events.len(),
            enqueued,
        })
    }

    /// Relays until the log has nothing more after the checkpoint.
    pub async fn run_until_caught_up(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let b = self.run_once().await?;
            total += b.enqueued;
            if b.read == 0 {
                return Ok(total);
            }
        }
    }

    /// Relays in the background, waiting on the log (up to `idle_wait` at a time)
    /// when caught up. Returns the number of jobs enqueued when shut down.
    pub fn spawn(&self, idle_wait: Duration) -> BackgroundTask<Result<u64>> {
        let this = self.clone();
        BackgroundTask::spawn(move |mut stop| async move {
            let mut total = 0u64;
            while !stop.is_stopping() {
                match this.run_once().await {
                    Ok(b) if b.read > 0 => {
                        total += b.enqueued as u64;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "order relay pass failed"),
                }
                let after = match this.events.checkpoint(&this.consumer).await {
                    Ok(c) => c,
                    Err(_) => continue,
                };
                tokio::select! {
                    _ = this.events.wait_for_events(after, idle_wait) => {}
                    _ = stop.stopped() => {}
                }
            }
            Ok(total)
        })
    }
}
