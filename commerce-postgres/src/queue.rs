//! The order queue: [`PgQueue`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::clock::{self, Timestamp};
use commerce_core::id::{JobId, OrderId};
use commerce_core::store::{
    DeadLetter, OrderQueue, QueueStats, QueuedJob, RetryOutcome, RetryPolicy, check_limit,
};
use commerce_core::{EntityKind, Error, Result};
use sqlx::Row;

use crate::batch::{Batcher, RunBatch};
use crate::db::Db;
use crate::error::DbResult;

/// The [`OrderQueue`] on PostgreSQL: table `queue_jobs`, dead letters in
/// `queue_dead_letters`.
///
/// * `claim` is one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`:
///   concurrent claimers never wait for nor return the same job; a claim sets the
///   visibility timeout (`lease_until`) and counts an attempt.
/// * A job whose lease expired is claimable again; the attempt number is the claim's
///   token, so `ack`/`fail` with a stale claim is `Conflict { Job }`.
/// * `fail` reschedules after [`RetryPolicy::jittered_delay_after`] (whole
///   microseconds, what `timestamptz` keeps) or moves the job to the dead letters,
///   atomically.
#[derive(Debug)]
pub struct PgQueue {
    db: Arc<Db>,
    acks: Arc<Batcher<(i64, i32), bool>>,
}

fn stale(job: &QueuedJob) -> Error {
    Error::conflict(
        EntityKind::Job,
        format!("claim {} of job {} is stale", job.attempt, job.id),
    )
}

/// Text PostgreSQL can store (no NUL), at most 2,000 characters.
fn clean(error: &str) -> String {
    error
        .chars()
        .take(2000)
        .map(|c| if c == '\0' { '\u{fffd}' } else { c })
        .collect()
}

impl PgQueue {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        // Concurrent acks (one per finished order) go together: one DELETE and one
        // commit for all the jobs finished while the previous batch ran.
        let sql = format!(
            "DELETE FROM {} q USING unnest($1::bigint[], $2::int[]) AS u(id, attempts)
              WHERE q.id = u.id AND q.attempts = u.attempts RETURNING q.id",
            db.qualified("queue_jobs")
        );
        let ack_db = db.clone();
        let run: RunBatch<(i64, i32), bool> = Arc::new(move |batch| {
            let (db, sql) = (ack_db.clone(), sql.clone());
            Box::pin(async move {
                let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
                let attempts: Vec<i32> = batch.iter().map(|(_, a)| *a).collect();
                let done: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(&ids)
                    .bind(&attempts)
                    .fetch_all(&db.pool)
                    .await
                    .db()?;
                // A job acked twice in one batch was deleted once: only the first ack wins.
                let mut done: std::collections::HashSet<i64> = done.into_iter().collect();
                Ok(batch.iter().map(|(id, _)| Ok(done.remove(id))).collect())
            })
        });
        PgQueue {
            acks: Batcher::new(1, 500, run),
            db,
        }
    }
}

#[async_trait]
impl OrderQueue for PgQueue {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn enqueue(&self, order_id: &OrderId) -> Result<JobId> {
        let now = self.db.now();
        let id: i64 = sqlx::query_scalar(sql!(
            "INSERT INTO {} (order_id, enqueued_at, run_at) VALUES ($1, $2, $2) RETURNING id",
            self.db.qualified("queue_jobs")
        ))
        .bind(order_id.as_str())
        .bind(now)
        .fetch_one(&self.db.pool)
        .await
        .db()?;
        self.db.queue_wake.notify_waiters();
        Ok(JobId(id as u64))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn enqueue_many(&self, order_ids: &[OrderId]) -> Result<Vec<JobId>> {
        if order_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = order_ids.iter().map(OrderId::as_str).collect();
        let rows: Vec<i64> = sqlx::query_scalar(sql!(
            "SELECT * FROM {}($1, $2, NULL)",
            self.db.qualified("enqueue_jobs")
        ))
        .bind(&ids)
        .bind(self.db.now())
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        self.db.queue_wake.notify_waiters();
        Ok(rows.into_iter().map(|id| JobId(id as u64)).collect())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn wait_for_jobs(&self, timeout: Duration) -> Result<bool> {
        Ok(tokio::time::timeout(timeout, self.db.queue_wake.notified())
            .await
            .is_ok())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn claim(&self, limit: u32, visibility: Duration) -> Result<Vec<QueuedJob>> {
        let limit = check_limit(limit)?;
        let now = self.db.now();
        let lease = clock::add(now, visibility);
        let rows = sqlx::query(sql!(
            "UPDATE {t} SET attempts = attempts + 1, lease_until = $2
              WHERE id IN (SELECT id FROM {t}
                            WHERE run_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
                            ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
              RETURNING *",
            t = self.db.qualified("queue_jobs")
        ))
        .bind(now)
        .bind(lease)
        .bind(limit as i64)
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        let mut jobs = rows
            .iter()
            .map(|r| {
                Ok(QueuedJob {
                    id: JobId(r.try_get::<i64, _>("id").db()? as u64),
                    order_id: OrderId::new(r.try_get::<String, _>("order_id").db()?)?,
                    attempt: r.try_get::<i32, _>("attempts").db()? as u32,
                    lease_until: lease,
                    enqueued_at: r.try_get("enqueued_at").db()?,
                    last_error: r.try_get("last_error").db()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn ack(&self, job: &QueuedJob) -> Result<()> {
        let acked = self
            .acks
            .submit((job.id.0 as i64, job.attempt as i32))
            .await?;
        if !acked {
            return Err(stale(job));
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn fail(
        &self,
        job: &QueuedJob,
        error: &str,
        policy: &RetryPolicy,
    ) -> Result<RetryOutcome> {
        let now = self.db.now();
        let error = clean(error);
        let mut tx = self.db.pool.begin().await.db()?;
        let current: Option<(String, i32)> = sqlx::query_as(sql!(
            "SELECT order_id, attempts FROM {} WHERE id = $1 AND attempts = $2 FOR UPDATE",
            self.db.qualified("queue_jobs")
        ))
        .bind(job.id.0 as i64)
        .bind(job.attempt as i32)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let Some((order_id, attempts)) = current else {
            return Err(stale(job));
        };
        if job.attempt >= policy.max_attempts.max(1) {
            sqlx::query(sql!(
                "DELETE FROM {} WHERE id = $1",
                self.db.qualified("queue_jobs")
            ))
            .bind(job.id.0 as i64)
            .execute(&mut *tx)
            .await
            .db()?;
            sqlx::query(sql!(
                "INSERT INTO {} (id, order_id, attempts, last_error, at) VALUES ($1, $2, $3, $4, $5)",
                self.db.qualified("queue_dead_letters")
            ))
            .bind(job.id.0 as i64)
            .bind(order_id)
            .bind(attempts)
            .bind(&error)
            .bind(now)
            .execute(&mut *tx)
            .await
            .db()?;
            tx.commit().await.db()?;
            return Ok(RetryOutcome::DeadLettered);
        }
        // Whole microseconds: the returned time is exactly the one stored.
        let delay = policy.jittered_delay_after(job.attempt);
        let delay = Duration::from_micros(u64::try_from(delay.as_micros()).unwrap_or(u64::MAX));
        let at: Timestamp = clock::add(now, delay);
        sqlx::query(sql!(
            "UPDATE {} SET run_at = $2, lease_until = NULL, last_error = $3 WHERE id = $1",
            self.db.qualified("queue_jobs")
        ))
        .bind(job.id.0 as i64)
        .bind(at)
        .bind(&error)
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(RetryOutcome::Retrying { at })
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>> {
        let limit = check_limit(limit)?;
        let rows = sqlx::query(sql!(
            "SELECT * FROM {} ORDER BY seq LIMIT $1",
            self.db.qualified("queue_dead_letters")
        ))
        .bind(limit as i64)
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: JobId(r.try_get::<i64, _>("id").db()? as u64),
                    order_id: OrderId::new(r.try_get::<String, _>("order_id").db()?)?,
                    attempts: r.try_get::<i32, _>("attempts").db()? as u32,
                    last_error: r.try_get("last_error").db()?,
                    at: r.try_get("at").db()?,
                })
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn stats(&self) -> Result<QueueStats> {
        let now = self.db.now();
        let (ready, delayed, leased, dead): (i64, i64, i64, i64) = sqlx::query_as(sql!(
            "SELECT count(*) FILTER (WHERE NOT (lease_until IS NOT NULL AND lease_until > $1) AND run_at <= $1),
                    count(*) FILTER (WHERE NOT (lease_until IS NOT NULL AND lease_until > $1) AND run_at > $1),
                    count(*) FILTER (WHERE lease_until IS NOT NULL AND lease_until > $1),
                    (SELECT count(*) FROM {d})
               FROM {t}",
            t = self.db.qualified("queue_jobs"),
            d = self.db.qualified("queue_dead_letters")
        ))
        .bind(now)
        .fetch_one(&self.db.pool)
        .await
        .db()?;
        Ok(QueueStats {
            ready: ready as u64,
            delayed: delayed as u64,
            leased: leased as u64,
            dead: dead as u64,
        })
    }
}
