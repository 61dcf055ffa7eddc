use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::event::{DomainEvent, EventEnvelope};
use crate::id::{ConsumerName, EventId};

/// The event log (transactional outbox) that stores append to, read by consumers that
/// keep a checkpoint each.
///
/// Delivery is **at least once**: a consumer reads after its checkpoint, handles the
/// events, then commits the last id it handled; after a crash it reads them again and
/// dedupes on [`EventEnvelope::id`].
#[async_trait]
pub trait EventLog: Send + Sync + Debug + 'static {
    /// Appends events that are not part of a store write (a host's own events), in
    /// order, and returns their ids.
    async fn append(&self, events: Vec<DomainEvent>) -> Result<Vec<EventId>>;

    /// Up to `limit` events with ids greater than `after`, in id order.
    ///
    /// # To ensure correctness
    /// * **No gaps**: an event is returned only once every event with a smaller id is
    ///   visible too (or was rolled back), so a consumer that advances its checkpoint
    ///   past what it read never skips an event that commits later with a smaller id.
    /// * Ids are strictly increasing and never reused.
    async fn read(&self, after: EventId, limit: u32) -> Result<Vec<EventEnvelope>>;

    /// The consumer's checkpoint: the last id it committed (`EventId(0)` if none).
    async fn checkpoint(&self, consumer: &ConsumerName) -> Result<EventId>;

    /// Records that `consumer` has handled every event up to `up_to`.
    ///
    /// # To ensure correctness
    /// Monotonic: a commit below the current checkpoint is ignored.
    async fn commit(&self, consumer: &ConsumerName, up_to: EventId) -> Result<()>;

    /// Waits until events after `after` may exist or `timeout` passes; returns whether
    /// it was woken by new events. Spurious wake-ups are allowed; missing an append
    /// that happened before the call is not (check, then wait).
    async fn wait_for_events(&self, after: EventId, timeout: Duration) -> Result<bool>;

    /// Deletes events appended before `before` that every consumer with a checkpoint
    /// has committed; returns how many were deleted.
    async fn prune(&self, before: Timestamp) -> Result<u64>;
}

/// Conveniences on any [`EventLog`].
#[async_trait]
pub trait EventLogExt: EventLog {
    /// The next events for `consumer`: up to `limit` after its checkpoint.
    async fn poll(&self, consumer: &ConsumerName, limit: u32) -> Result<Vec<EventEnvelope>> {
        let after = self.checkpoint(consumer).await?;
        self.read(after, limit).await
    }
}

impl<T: EventLog + ?Sized> EventLogExt for T {}
