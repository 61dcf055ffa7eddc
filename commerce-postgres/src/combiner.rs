//! The hot-SKU request combiner: concurrent single-line reservations of one SKU are
//! batched into one `reserve_batch()` statement and one commit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use commerce_core::clock;
use commerce_core::event::DomainEvent;
use commerce_core::id::{OrderId, Sku};
use commerce_core::inventory::{Reservation, ReservationLine, ReservationState};
use commerce_core::{Error, Result};
use tokio::sync::oneshot;

use crate::db::Db;
use crate::error::{DbResult, corrupt};

/// Opt-in request combining for hot SKUs (flash sales).
///
/// With one row per SKU, every buyer of a hot SKU waits for the previous buyer's commit,
/// so one SKU sells at most `1 / commit latency` reservations per second. With combining
/// on, the adapter keeps one queue per SKU **in this process**: the first single-line
/// reservation of a SKU starts a batch, the ones that arrive while a batch is in flight
/// wait for the next, and each batch is **one statement and one commit** for up to
/// `max_batch` reservations (the plpgsql function `reserve_batch()`).
///
/// Consistency is unchanged: each reservation in a batch is decided under the SKU's
/// row lock, in arrival order, with the same guarded update, location policy,
/// idempotency, ledger and outbox event as an ordinary one; a caller gets `Ok` only
/// after the batch committed; a short request fails alone (`OutOfStock`) without
/// affecting the others. Other processes (without combining) stay correct too: they
/// take the same row locks. Multi-line reservations never go through the combiner.
///
/// ```
/// use commerce_postgres::{HotSkuConfig, PgConfig};
///
/// let config = PgConfig::new().combine_hot_skus(HotSkuConfig::all().max_batch(128));
/// # let _ = config;
/// ```
#[derive(Debug, Clone)]
pub struct HotSkuConfig {
    max_batch: usize,
    skus: Option<HashSet<Sku>>,
}

impl HotSkuConfig {
    /// Combine single-line reservations of every SKU (batches of up to 256).
    pub fn all() -> Self {
        HotSkuConfig {
            max_batch: 256,
            skus: None,
        }
    }

    /// Combine only these SKUs (the ones on flash sale).
    pub fn only(skus: impl IntoIterator<Item = Sku>) -> Self {
        HotSkuConfig {
            max_batch: 256,
            skus: Some(skus.into_iter().collect()),
        }
    }

    /// Largest batch (1 to 1,000).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.clamp(1, 1000);
        self
    }

    fn applies_to(&self, sku: &Sku) -> bool {
        self.skus.as_ref().is_none_or(|s| s.contains(sku))
    }
}

struct Pending {
    order_id: OrderId,
    line: ReservationLine,
    ttl: std::time::Duration,
    reply: oneshot::Sender<Result<Reservation>>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    running: bool,
}

/// The per-SKU queues.
pub(crate) struct Combiner {
    config: HotSkuConfig,
    db: Arc<Db>,
    sql: String,
    queues: Mutex<HashMap<Sku, Queue>>,
}

impl std::fmt::Debug for Combiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Combiner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Combiner {
    pub(crate) fn new(config: HotSkuConfig, db: Arc<Db>) -> Arc<Self> {
        let sql = format!(
            // No in-transaction NOTIFY channel (see `PgInventory`'s `reserve`).
            "SELECT * FROM {}($1, $2, $3, $4, $5, $6, $7, NULL)",
            db.qualified("reserve_batch")
        );
        Arc::new(Combiner {
            config,
            db,
            sql,
            queues: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn applies_to(&self, sku: &Sku) -> bool {
        self.config.applies_to(sku)
    }

    /// Queues one single-line reservation and waits for its batch.
    pub(crate) async fn reserve(
        self: &Arc<Self>,
        order_id: OrderId,
        line: ReservationLine,
        ttl: std::time::Duration,
    ) -> Result<Reservation> {
        let (tx, rx) = oneshot::channel();
        let sku = line.sku.clone();
        let start = {
            let mut queues = self
                .queues
                .lock()
                .map_err(|_| Error::backend(false, "combiner lock poisoned"))?;
            let q = queues.entry(sku.clone()).or_default();
            q.pending.push(Pending {
                order_id,
                line,
                ttl,
                reply: tx,
            });
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.drain(sku).await });
        }
        rx.await
            .map_err(|_| Error::backend(true, "the reservation batch was abandoned; retry"))?
    }

    /// Runs batches for `sku` until its queue is empty.
    async fn drain(self: Arc<Self>, sku: Sku) {
        loop {
            let batch: Vec<Pending> = {
                let Ok(mut queues) = self.queues.lock() else {
                    return;
                };
                let Some(q) = queues.get_mut(&sku) else {
                    return;
                };
                if q.pending.is_empty() {
                    queues.remove(&sku);
                    return;
                }
                let n = q.pending.len().min(self.config.max_batch);
                q.pending.drain(..n).collect()
            };
            match self.run(&sku, &batch).await {
                Ok(results) => {
                    self.db.written();
                    for (p, r) in batch.into_iter().zip(results) {
                        let _ = p.reply.send(r);
                    }
                }
                Err(e) => {
                    // Every request gets the batch's error kind, with the database
                    // error (and its SQLSTATE) as the source.
                    let fail = crate::batch::shared_failure(e);
                    for p in batch {
                        let _ = p.reply.send(Err(fail()));
                    }
                }
            }
        }
    }

    async fn run(&self, sku: &Sku, batch: &[Pending]) -> Result<Vec<Result<Reservation>>> {
        let now = self.db.now();
        let orders: Vec<&str> = batch.iter().map(|p| p.order_id.as_str()).collect();
        let qtys: Vec<i64> = batch.iter().map(|p| i64::from(p.line.quantity)).collect();
        let lines = batch
            .iter()
            .map(|p| serde_json::to_value([&p.line]).map_err(corrupt))
            .collect::<Result<Vec<_>>>()?;
        let expires: Vec<_> = batch.iter().map(|p| clock::add(now, p.ttl)).collect();
        let events = batch
            .iter()
            .map(|p| {
                serde_json::to_value(DomainEvent::ReservationChanged {
                    order_id: p.order_id.clone(),
                    state: ReservationState::Active,
                    skus: vec![sku.clone()],
                })
                .map_err(corrupt)
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(self.sql.as_str()))
            .bind(&orders)
            .bind(sku.as_str())
            .bind(&qtys)
            .bind(&lines)
            .bind(now)
            .bind(&expires)
            .bind(&events)
            .fetch_all(&self.db.pool)
            .await
            .db()?;
        if rows.len() != batch.len() {
            return Err(corrupt(
                "reserve_batch() returned a row count unlike its input",
            ));
        }
        Ok(rows
            .iter()
            .zip(batch)
            .map(|(row, p)| decode(row, p))
            .collect())
    }
}

/// One request's answer, by the protocol the plain path uses too.
fn decode(row: &sqlx::postgres::PgRow, p: &Pending) -> Result<Reservation> {
    crate::inventory::reserve_outcome(row, &p.order_id, std::slice::from_ref(&p.line))
        .map(|reserved| reserved.reservation)
}
