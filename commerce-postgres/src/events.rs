//! The transactional outbox: [`PgEventLog`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::clock::Timestamp;
use commerce_core::event::{DomainEvent, EventEnvelope};
use commerce_core::id::{ConsumerName, EventId};
use commerce_core::store::{EventLog, check_limit};
use commerce_core::{Error, Result};
use sqlx::Row;
use sqlx::postgres::PgListener;
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::error::{DbResult, corrupt};

/// Advisory-lock class shared by `append_events()` (shared) and readers (exclusive).
pub(crate) const EVENT_LOCK_CLASS: i32 = 1_668_246_881;

/// How often a waiter re-checks the table when no notification arrives.
const POLL: Duration = Duration::from_millis(100);

/// The [`EventLog`] on PostgreSQL: table `events`, ids from a sequence, checkpoints in
/// `event_checkpoints`.
///
/// * Appends made by the stores happen in the transaction of the change they describe.
/// * **No gaps**: every appender holds a shared advisory lock (keyed by the schema)
///   from before it draws its ids until it commits; [`read`](EventLog::read) takes the
///   same lock exclusively for an instant before reading, so every id below the ones it
///   returns has committed or rolled back.
/// * Waiters are woken by `LISTEN/NOTIFY` (one listening connection per log, started
///   on the first wait). The `NOTIFY` is sent **after** the writing transaction
///   commits, coalesced, in its own statement: a NOTIFY inside the business
///   transaction would make PostgreSQL serialise every commit on the notification
///   queue lock. Waiters in the same process are woken directly. They also re-check
///   every 100 ms, so a lost notification (or notifications turned off with
///   [`PgConfig::notify`](crate::PgConfig::notify)) only delays them.
#[derive(Debug)]
pub struct PgEventLog {
    db: Arc<Db>,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for PgEventLog {
    fn drop(&mut self) {
        if let Some(h) = self.listener.lock().ok().and_then(|mut l| l.take()) {
            h.abort();
        }
    }
}

impl PgEventLog {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        PgEventLog {
            db,
            listener: Mutex::new(None),
        }
    }

    fn ensure_listener(&self) {
        let Ok(mut guard) = self.listener.lock() else {
            return;
        };
        if guard.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let pool = self.db.pool.clone();
        let channel = self.db.listen_channel.clone();
        let wake = self.db.wake.clone();
        *guard = Some(tokio::spawn(async move {
            loop {
                let listener = async {
                    let mut l = PgListener::connect_with(&pool).await?;
                    l.listen(&channel).await?;
                    Ok::<_, sqlx::Error>(l)
                };
                match listener.await {
                    Ok(mut l) => {
                        // anything appended while we were not listening
                        wake.notify_waiters();
                        while l.recv().await.is_ok() {
                            wake.notify_waiters();
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "event listener cannot connect"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }

    async fn has_after(&self, after: EventId) -> Result<bool> {
        sqlx::query_scalar(sql!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE id > $1)",
            self.db.qualified("events")
        ))
        .bind(after.0 as i64)
        .fetch_one(&self.db.pool)
        .await
        .db()
    }
}

pub(crate) fn decode_envelope(row: &sqlx::postgres::PgRow) -> Result<EventEnvelope> {
    let id: i64 = row.try_get("id").db()?;
    let at: Timestamp = row.try_get("at").db()?;
    let payload: serde_json::Value = row.try_get("payload").db()?;
    let event: DomainEvent = serde_json::from_value(payload).map_err(corrupt)?;
    Ok(EventEnvelope {
        id: EventId(id as u64),
        at,
        event,
    })
}

#[async_trait]
impl EventLog for PgEventLog {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn append(&self, events: Vec<DomainEvent>) -> Result<Vec<EventId>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.pool.begin().await.db()?;
        let ids = self.db.append_in(&mut tx, self.db.now(), &events).await?;
        tx.commit().await.db()?;
        self.db.written();
        Ok(ids)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn read(&self, after: EventId, limit: u32) -> Result<Vec<EventEnvelope>> {
        let limit = check_limit(limit)?;
        let after = i64::try_from(after.0).unwrap_or(i64::MAX);
        let mut tx = self.db.pool.begin().await.db()?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(EVENT_LOCK_CLASS)
            .bind(&self.db.schema)
            .execute(&mut *tx)
            .await
            .db()?;
        let rows = sqlx::query(sql!(
            "SELECT id, at, payload FROM {} WHERE id > $1 ORDER BY id LIMIT $2",
            self.db.qualified("events")
        ))
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        rows.iter().map(decode_envelope).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn checkpoint(&self, consumer: &ConsumerName) -> Result<EventId> {
        let cp: Option<i64> = sqlx::query_scalar(sql!(
            "SELECT up_to FROM {} WHERE consumer = $1",
            self.db.qualified("event_checkpoints")
        ))
        .bind(consumer.as_str())
        .fetch_optional(&self.db.pool)
        .await
        .db()?;
        // No checkpoint yet: from the start.
        Ok(EventId(crate::error::non_negative(
            cp.unwrap_or(0),
            "event checkpoint",
        )?))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn commit(&self, consumer: &ConsumerName, up_to: EventId) -> Result<()> {
        let up_to = i64::try_from(up_to.0)
            .map_err(|_| Error::validation("up_to", "event id out of range"))?;
        sqlx::query(sql!(
            "INSERT INTO {t} (consumer, up_to) VALUES ($1, $2)
             ON CONFLICT (consumer) DO UPDATE SET up_to = GREATEST({t}.up_to, EXCLUDED.up_to)",
            t = self.db.qualified("event_checkpoints")
        ))
        .bind(consumer.as_str())
        .bind(up_to)
        .execute(&self.db.pool)
        .await
        .db()?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn wait_for_events(&self, after: EventId, timeout: Duration) -> Result<bool> {
        self.ensure_listener();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.db.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_after(after).await? {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let step = (deadline - now).min(POLL);
            // woken or not, re-check the table
            let _ = tokio::time::timeout(step, notified).await;
        }
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn prune(&self, before: Timestamp) -> Result<u64> {
        let done = sqlx::query(sql!(
            "DELETE FROM {e} WHERE at < $1
               AND id <= COALESCE((SELECT min(up_to) FROM {c}), 9223372036854775807)",
            e = self.db.qualified("events"),
            c = self.db.qualified("event_checkpoints")
        ))
        .bind(before)
        .execute(&self.db.pool)
        .await
        .db()?;
        Ok(done.rows_affected())
    }
}
