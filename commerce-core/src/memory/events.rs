use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::lock;
use crate::clock::{Clock, Timestamp};
use crate::error::Result;
use crate::event::{DomainEvent, EventEnvelope};
use crate::id::{ConsumerName, EventId};
use crate::store::{EventLog, check_limit};

#[derive(Debug, Default)]
struct State {
    events: VecDeque<EventEnvelope>,
    last_id: u64,
    checkpoints: HashMap<ConsumerName, EventId>,
}

/// The in-memory [`EventLog`]. Stores append to it while holding their own lock, so an
/// event is visible exactly when the change it describes is.
#[derive(Debug)]
pub struct MemoryEventLog {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    notify: Notify,
}

impl MemoryEventLog {
    /// An empty log.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryEventLog {
            clock,
            state: Mutex::new(State::default()),
            notify: Notify::new(),
        }
    }

    /// Appends `events` now, synchronously, and returns their ids.
    ///
    /// For an in-process store that keeps its state under its own lock: call it while
    /// holding that lock, after changing the state, and the events are in the log
    /// atomically with the change (no reader of the log sees an event before its change,
    /// and events come in the order of the changes). This is how the in-memory stores
    /// append; `EventLog::append` is the same but async, so it cannot be called under a
    /// `std::sync::Mutex`.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use commerce_core::clock::SystemClock;
    /// use commerce_core::event::DomainEvent;
    /// use commerce_core::id::{LocationId, Sku};
    /// use commerce_core::memory::MemoryEventLog;
    ///
    /// let log = MemoryEventLog::new(Arc::new(SystemClock));
    /// let stock = Mutex::new(0u64);
    /// let mut units = stock.lock().unwrap();
    /// *units += 5;
    /// let ids = log.push([DomainEvent::StockChanged {
    ///     sku: Sku::new("A").unwrap(),
    ///     location: LocationId::new("w1").unwrap(),
    ///     available: *units,
    /// }]);
    /// drop(units);
    /// assert_eq!(ids.len(), 1);
    /// ```
    pub fn push(&self, events: impl IntoIterator<Item = DomainEvent>) -> Vec<EventId> {
        let at = self.clock.now();
        let mut state = lock(&self.state);
        let ids: Vec<EventId> = events
            .into_iter()
            .map(|event| {
                state.last_id += 1;
                let id = EventId(state.last_id);
                state.events.push_back(EventEnvelope { id, at, event });
                id
            })
            .collect();
        drop(state);
        if !ids.is_empty() {
            self.notify.notify_waiters();
        }
        ids
    }

    /// Number of events currently held.
    pub fn len(&self) -> usize {
        lock(&self.state).events.len()
    }

    /// Whether the log holds no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl EventLog for MemoryEventLog {
    async fn append(&self, events: Vec<DomainEvent>) -> Result<Vec<EventId>> {
        Ok(self.push(events))
    }

    async fn read(&self, after: EventId, limit: u32) -> Result<Vec<EventEnvelope>> {
        let limit = check_limit(limit)?;
        let state = lock(&self.state);
        let start = state.events.partition_point(|e| e.id <= after);
        Ok(state
            .events
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn checkpoint(&self, consumer: &ConsumerName) -> Result<EventId> {
        Ok(lock(&self.state)
            .checkpoints
            .get(consumer)
            .copied()
            .unwrap_or_default())
    }

    async fn commit(&self, consumer: &ConsumerName, up_to: EventId) -> Result<()> {
        let mut state = lock(&self.state);
        let cp = state.checkpoints.entry(consumer.clone()).or_default();
        *cp = (*cp).max(up_to);
        Ok(())
    }

    async fn wait_for_events(&self, after: EventId, timeout: Duration) -> Result<bool> {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if lock(&self.state).last_id > after.0 {
            return Ok(true);
        }
        Ok(tokio::time::timeout(timeout, notified).await.is_ok())
    }

    async fn prune(&self, before: Timestamp) -> Result<u64> {
        let mut state = lock(&self.state);
        let floor = state
            .checkpoints
            .values()
            .min()
            .copied()
            .unwrap_or(EventId(u64::MAX));
        let mut pruned = 0;
        while state
            .events
            .front()
            .is_some_and(|e| e.at < before && e.id <= floor)
        {
            state.events.pop_front();
            pruned += 1;
        }
        Ok(pruned)
    }
}
