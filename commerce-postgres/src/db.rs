//! The shared handle every store holds: pool, schema, clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use commerce_core::clock::{Clock, Timestamp};
use commerce_core::event::DomainEvent;
use commerce_core::id::EventId;
use commerce_core::{Error, Result};
use sqlx::{Connection, PgConnection, PgPool};

use crate::PgConfig;
use crate::error::{DbResult, PgError};

/// The embedded migrations.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Pool, schema and clock shared by the stores.
#[derive(Debug)]
pub(crate) struct Db {
    pub pool: PgPool,
    pub schema: String,
    pub clock: Arc<dyn Clock>,
    /// The LISTEN/NOTIFY channel.
    pub listen_channel: String,
    /// Wakes this process's waiters after a write committed.
    pub wake: Arc<Notify>,
    /// Wakes this process's queue workers after an enqueue committed.
    pub queue_wake: Arc<Notify>,
    /// How concurrent requests are grouped (the steps, the order writes and the reads
    /// by key).
    pub batching: crate::steps::StepBatching,
    notifier: Option<Arc<Notifier>>,
}

/// Sends one coalesced `NOTIFY` after commits, in its own tiny transaction, so other
/// processes' waiters wake without the business transactions ever taking the
/// notification queue lock.
#[derive(Debug, Default)]
struct Notifier {
    dirty: AtomicBool,
    started: AtomicBool,
    closed: AtomicBool,
    kick: Notify,
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(n) = &self.notifier {
            n.closed.store(true, Ordering::SeqCst);
            n.kick.notify_one();
        }
    }
}

impl Db {
    pub fn new(pool: PgPool, config: &PgConfig) -> Self {
        let listen_channel = format!("commerce_events_{}", config.schema);
        Db {
            pool,
            schema: config.schema.clone(),
            clock: config.clock.clone(),
            notifier: config.notify.then(|| Arc::new(Notifier::default())),
            listen_channel,
            wake: Arc::new(Notify::new()),
            queue_wake: Arc::new(Notify::new()),
            batching: config.step_batching,
        }
    }

    /// Called after a transaction that appended events committed.
    pub fn written(&self) {
        self.wake.notify_waiters();
        let Some(n) = &self.notifier else { return };
        n.dirty.store(true, Ordering::SeqCst);
        if !n.started.swap(true, Ordering::SeqCst) {
            let (n2, pool, channel) = (n.clone(), self.pool.clone(), self.listen_channel.clone());
            tokio::spawn(async move {
                loop {
                    n2.kick.notified().await;
                    if n2.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    if n2.dirty.swap(false, Ordering::SeqCst) {
                        let sent = sqlx::query("SELECT pg_notify($1, '')")
                            .bind(&channel)
                            .execute(&pool)
                            .await;
                        if let Err(e) = sent {
                            tracing::debug!(error = %e, "NOTIFY failed; waiters fall back to polling");
                        }
                    }
                }
            });
        }
        n.kick.notify_one();
    }

    /// `schema.name`, for SQL text (the schema is a validated identifier).
    pub fn qualified(&self, name: &str) -> String {
        format!("\"{}\".{name}", self.schema)
    }

    /// The clock's time at PostgreSQL's precision (microseconds), so what a store
    /// returns equals what it stored.
    pub fn now(&self) -> Timestamp {
        use chrono::SubsecRound;
        self.clock.now().trunc_subsecs(6)
    }

    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.db()?.detach();
        let out = migrate_on(&mut conn, &self.schema).await;
        let _ = conn.close().await;
        out
    }

    /// Appends `events` inside `tx` (same transaction as the change) and returns ids.
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        at: Timestamp,
        events: &[DomainEvent],
    ) -> Result<Vec<EventId>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let payloads = events
            .iter()
            .map(|e| serde_json::to_value(e).map_err(|e| Error::permanent("encode event", e)))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<i64> = sqlx::query_scalar(sql!(
            // No in-transaction NOTIFY channel: `written` notifies after the commit.
            "SELECT * FROM {}($1, $2, NULL)",
            self.qualified("append_events")
        ))
        .bind(at)
        .bind(payloads)
        .fetch_all(&mut *conn)
        .await
        .db()?;
        Ok(ids.into_iter().map(|i| EventId(i as u64)).collect())
    }
}

/// Creates `schema` and applies the migrations with `search_path` set to it, on a
/// connection that is closed afterwards.
pub(crate) async fn migrate_on(conn: &mut PgConnection, schema: &str) -> Result<()> {
    crate::validate_schema(schema)?;
    // Migrations wait for sqlx's migration lock and may take long locks: the pool's
    // short timeouts do not apply to them (this connection is closed afterwards).
    sqlx::query("SET lock_timeout = 0")
        .execute(&mut *conn)
        .await
        .db()?;
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut *conn)
        .await
        .db()?;
    sqlx::query(sql!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .execute(&mut *conn)
        .await
        .db()?;
    sqlx::query(sql!("SET search_path TO \"{schema}\""))
        .execute(&mut *conn)
        .await
        .db()?;
    MIGRATOR
        .run_direct(None, conn, false)
        .await
        .map_err(|e| Error::from(PgError::from(e)))
}
