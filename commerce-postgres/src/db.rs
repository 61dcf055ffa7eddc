//! The shared handle every store holds: pool, schema, clock.

use std::sync::Arc;

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
    /// The NOTIFY channel, when notifications are on.
    pub channel: Option<String>,
    /// The LISTEN channel (always known, for waiters).
    pub listen_channel: String,
}

impl Db {
    pub fn new(pool: PgPool, config: &PgConfig) -> Self {
        let listen_channel = format!("commerce_events_{}", config.schema);
        Db {
            pool,
            schema: config.schema.clone(),
            clock: config.clock.clone(),
            channel: config.notify.then(|| listen_channel.clone()),
            listen_channel,
        }
    }

    /// `schema.name`, for SQL text (the schema is a validated identifier).
    pub fn t(&self, name: &str) -> String {
        format!("\"{}\".{name}", self.schema)
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
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
            "SELECT * FROM {}($1, $2, $3)",
            self.t("append_events")
        ))
        .bind(at)
        .bind(payloads)
        .bind(self.channel.as_deref())
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
