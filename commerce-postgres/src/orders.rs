//! Orders, their status machine and history: [`PgOrders`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use commerce_core::EntityKind;
use commerce_core::event::DomainEvent;
use commerce_core::id::{IdempotencyKey, OrderId};
use commerce_core::order::{NewOrder, Order, OrderStatus, StatusChange, Transition};
use commerce_core::store::{CreateOutcome, OrderQuery, OrderStore, Page, check_limit};
use commerce_core::{Error, Result};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::batch::{Batcher, FetchKeys, KeyedReads, RunBatch, fetch_rows, keyed_reads};
use crate::db::Db;
use crate::error::{DbResult, corrupt, position_index};

/// The [`OrderStore`] on PostgreSQL.
///
/// * One order per idempotency key: a unique index and `INSERT ... ON CONFLICT DO
///   NOTHING`, never a read-then-write.
/// * Transitions are a compare-and-set `UPDATE ... WHERE id = $1 AND status = $from`;
///   the history row and the `OrderStatusChanged` event are written in the same
///   transaction.
/// * Group commit: the creations (and the transitions) that arrive while a batch is in
///   flight run together as the next batch, one statement (`create_orders`,
///   `transition_orders`) and **one durable commit** for all of them; each order keeps
///   its own decision, history row and event, and one order's refusal (a taken key, a
///   lost compare-and-set) never fails its neighbours.
/// * With [`PgConfig::jobs_with_orders`](crate::PgConfig::jobs_with_orders), each new
///   order's queue job is written in the same transaction (one `enqueue_jobs`
///   statement per batch).
/// * Reads by id and by idempotency key are grouped the same way: the lookups that
///   arrive while one is in flight are read together by the next statement, which
///   starts after they were asked (so each sees every write committed before it).
#[derive(Debug)]
pub struct PgOrders {
    db: Arc<Db>,
    creates: Arc<Batcher<CreateReq, bool>>,
    transitions: Arc<Batcher<TransitionReq, Option<Order>>>,
    by_id: Arc<KeyedReads<Option<Order>>>,
    by_key: Arc<KeyedReads<Option<Order>>>,
}

/// One order to create: its row, body and `OrderCreated` event.
struct CreateReq {
    order: Order,
    body: serde_json::Value,
    event: serde_json::Value,
}

/// One compare-and-set status change with its `OrderStatusChanged` event.
struct TransitionReq {
    id: OrderId,
    change: Transition,
    event: serde_json::Value,
}

/// Splits a batch into rounds in which each key (of those `keys` gives for a request)
/// appears once: a second request on the same order id or idempotency key runs after
/// the first, in the same transaction, and sees what the first wrote.
fn rounds<'a, T>(batch: &'a [T], keys: impl Fn(&'a T) -> Vec<&'a str>) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut next: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, item) in batch.iter().enumerate() {
        let keys = keys(item);
        // the first round after every earlier request sharing one of its keys
        let round = keys
            .iter()
            .map(|k| next.get(k).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        for k in keys {
            next.insert(k, round + 1);
        }
        if rounds.len() <= round {
            rounds.resize_with(round + 1, Vec::new);
        }
        rounds[round].push(i);
    }
    rounds
}

/// Creates a batch of orders in one transaction, with their queue jobs when `with_jobs`
/// ([`PgConfig::jobs_with_orders`](crate::PgConfig::jobs_with_orders)).
fn run_creates(db: Arc<Db>, with_jobs: bool) -> RunBatch<CreateReq, bool> {
    let sql = format!(
        "SELECT o_position FROM {}($1, $2, $3, $4, $5, $6, $7, $8)",
        db.qualified("create_orders")
    );
    let enqueue = format!(
        "SELECT * FROM {}($1, $2, NULL)",
        db.qualified("enqueue_jobs")
    );
    Arc::new(move |batch: Vec<CreateReq>| {
        let (db, sql, enqueue) = (db.clone(), sql.clone(), enqueue.clone());
        Box::pin(async move {
            let mut created = vec![false; batch.len()];
            let mut tx = db.pool.begin().await.db()?;
            for round in rounds(&batch, |r| {
                vec![r.order.id.as_str(), r.order.idempotency_key.as_str()]
            }) {
                let reqs: Vec<&CreateReq> = round.iter().map(|&i| &batch[i]).collect();
                let versions = reqs
                    .iter()
                    .map(|r| i64::try_from(r.order.version).map_err(corrupt))
                    .collect::<Result<Vec<i64>>>()?;
                let positions: Vec<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(reqs.iter().map(|r| r.order.id.as_str()).collect::<Vec<_>>())
                    .bind(
                        reqs.iter()
                            .map(|r| r.order.customer_id.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        reqs.iter()
                            .map(|r| r.order.idempotency_key.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        reqs.iter()
                            .map(|r| r.order.status.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(versions)
                    .bind(reqs.iter().map(|r| &r.body).collect::<Vec<_>>())
                    .bind(reqs.iter().map(|r| r.order.created_at).collect::<Vec<_>>())
                    .bind(reqs.iter().map(|r| &r.event).collect::<Vec<_>>())
                    .fetch_all(&mut *tx)
                    .await
                    .db()?;
                for p in positions {
                    created[round[position_index(p, round.len(), "create_orders")?]] = true;
                }
            }
            // the jobs of the orders created, in the same transaction
            let made: Vec<&str> = batch
                .iter()
                .zip(&created)
                .filter(|(_, c)| with_jobs && **c)
                .map(|(r, _)| r.order.id.as_str())
                .collect();
            if !made.is_empty() {
                sqlx::query(sqlx::AssertSqlSafe(enqueue.as_str()))
                    .bind(&made)
                    .bind(db.now())
                    .fetch_all(&mut *tx)
                    .await
                    .db()?;
            }
            tx.commit().await.db()?;
            db.written();
            if !made.is_empty() {
                db.queue_wake.notify_waiters();
            }
            Ok(created.into_iter().map(Ok).collect())
        })
    })
}

fn run_transitions(db: Arc<Db>) -> RunBatch<TransitionReq, Option<Order>> {
    let sql = format!(
        "SELECT * FROM {}($1, $2, $3, $4, $5, $6, $7)",
        db.qualified("transition_orders")
    );
    Arc::new(move |batch: Vec<TransitionReq>| {
        let (db, sql) = (db.clone(), sql.clone());
        Box::pin(async move {
            let now = db.now();
            let mut moved: Vec<Option<Order>> = vec![None; batch.len()];
            let mut tx = db.pool.begin().await.db()?;
            for round in rounds(&batch, |r| vec![r.id.as_str()]) {
                let reqs: Vec<&TransitionReq> = round.iter().map(|&i| &batch[i]).collect();
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(reqs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
                    .bind(
                        reqs.iter()
                            .map(|r| r.change.from.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        reqs.iter()
                            .map(|r| r.change.to.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        reqs.iter()
                            .map(|r| r.change.payment_ref.as_deref())
                            .collect::<Vec<_>>(),
                    )
                    .bind(
                        reqs.iter()
                            .map(|r| r.change.reason.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .bind(reqs.iter().map(|r| &r.event).collect::<Vec<_>>())
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await
                    .db()?;
                for row in &rows {
                    let p: i32 = row.try_get("o_position").db()?;
                    moved[round[position_index(p, round.len(), "transition_orders")?]] =
                        Some(order_from(row)?);
                }
            }
            tx.commit().await.db()?;
            db.written();
            Ok(moved.into_iter().map(Ok).collect())
        })
    })
}

/// Reads the orders whose `column` (`id` or `idempotency_key`, both unique) is one of
/// the keys, with one statement; a row that does not decode fails only its own key.
fn fetch_orders(db: &Db, column: &'static str) -> FetchKeys<Option<Order>> {
    let sql = format!(
        "SELECT * FROM {} WHERE {column} = ANY($1)",
        db.qualified("orders")
    );
    fetch_rows(db.pool.clone(), sql, move |keys, rows| {
        let mut found: HashMap<String, std::result::Result<Order, String>> =
            HashMap::with_capacity(rows.len());
        for row in &rows {
            let key: String = row.try_get(column).db()?;
            found.insert(key, order_from(row).map_err(|e| e.to_string()));
        }
        Ok(keys
            .iter()
            .map(|k| match found.get(k) {
                None => Ok(None),
                Some(Ok(order)) => Ok(Some(order.clone())),
                Some(Err(e)) => Err(corrupt(e)),
            })
            .collect())
    })
}

pub(crate) fn order_from(row: &PgRow) -> Result<Order> {
    let body: serde_json::Value = row.try_get("body").db()?;
    let mut order: Order = serde_json::from_value(body).map_err(corrupt)?;
    order.status = OrderStatus::parse(&row.try_get::<String, _>("status").db()?)?;
    order.version = crate::error::non_negative(row.try_get::<i64, _>("version").db()?, "version")?;
    order.payment_ref = row.try_get("payment_ref").db()?;
    order.updated_at = row.try_get("updated_at").db()?;
    Ok(order)
}

impl PgOrders {
    pub(crate) fn new(db: Arc<Db>, jobs_with_orders: bool) -> Self {
        let batching = db.batching;
        PgOrders {
            creates: Batcher::new(
                batching.lanes,
                batching.max_batch,
                run_creates(db.clone(), jobs_with_orders),
            ),
            transitions: Batcher::new(
                batching.lanes,
                batching.max_batch,
                run_transitions(db.clone()),
            ),
            by_id: keyed_reads(batching, fetch_orders(&db, "id")),
            by_key: keyed_reads(batching, fetch_orders(&db, "idempotency_key")),
            db,
        }
    }

    async fn by_key(&self, key: &IdempotencyKey) -> Result<Option<Order>> {
        self.by_key.read_one(key.as_str()).await
    }
}

#[async_trait]
impl OrderStore for PgOrders {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn create_order(&self, new: NewOrder) -> Result<CreateOutcome> {
        let order = new.into_order(self.db.now())?;
        let body = serde_json::to_value(&order).map_err(corrupt)?;
        let event = serde_json::to_value(DomainEvent::OrderCreated {
            order_id: order.id.clone(),
            customer_id: order.customer_id.clone(),
        })
        .map_err(corrupt)?;
        let created = self
            .creates
            .submit(CreateReq {
                order: order.clone(),
                body,
                event,
            })
            .await?;
        if created {
            return Ok(CreateOutcome::Created(order));
        }
        // Skipped: the key (or the id) is taken.
        let Some(existing) = self.by_key(&order.idempotency_key).await? else {
            return match self.get_order(&order.id).await? {
                Some(_) => Err(Error::conflict(
                    EntityKind::Order,
                    format!("order {} exists", order.id),
                )),
                None => Err(Error::backend(
                    true,
                    "order with this idempotency key vanished; retry",
                )),
            };
        };
        if existing.customer_id != order.customer_id {
            return Err(Error::conflict(
                EntityKind::Order,
                "the idempotency key belongs to another customer's order",
            ));
        }
        if existing.basket() != order.basket() {
            return Err(Error::conflict(
                EntityKind::Order,
                "the idempotency key was used for another basket",
            ));
        }
        Ok(CreateOutcome::Existing(existing))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn get_order(&self, id: &OrderId) -> Result<Option<Order>> {
        self.by_id.read_one(id.as_str()).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn get_order_by_key(&self, key: &IdempotencyKey) -> Result<Option<Order>> {
        self.by_key(key).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn transition(&self, id: &OrderId, change: &Transition) -> Result<Order> {
        change.validate()?;
        let event = serde_json::to_value(DomainEvent::OrderStatusChanged {
            order_id: id.clone(),
            from: change.from,
            to: change.to,
        })
        .map_err(corrupt)?;
        let moved = self
            .transitions
            .submit(TransitionReq {
                id: id.clone(),
                change: change.clone(),
                event,
            })
            .await?;
        match moved {
            Some(order) => Ok(order),
            None => match self.get_order(id).await? {
                None => Err(Error::not_found(EntityKind::Order, id)),
                Some(o) => Err(Error::conflict(
                    EntityKind::Order,
                    format!("order {id} is {}, not {}", o.status, change.from),
                )),
            },
        }
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn history(&self, id: &OrderId) -> Result<Vec<StatusChange>> {
        let rows = sqlx::query(sql!(
            "SELECT from_status, to_status, reason, at FROM {} WHERE order_id = $1 ORDER BY id",
            self.db.qualified("order_history")
        ))
        .bind(id.as_str())
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        if rows.is_empty() {
            return Err(Error::not_found(EntityKind::Order, id));
        }
        rows.iter()
            .map(|r| {
                let from: Option<String> = r.try_get("from_status").db()?;
                Ok(StatusChange {
                    from: from.as_deref().map(OrderStatus::parse).transpose()?,
                    to: OrderStatus::parse(&r.try_get::<String, _>("to_status").db()?)?,
                    reason: r.try_get("reason").db()?,
                    at: r.try_get("at").db()?,
                })
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_orders(&self, query: &OrderQuery) -> Result<Page<Order, OrderId>> {
        let limit = check_limit(query.limit)?;
        let rows = sqlx::query(sql!(
            "SELECT * FROM {} WHERE ($1::text IS NULL OR status = $1)
                AND ($2::text IS NULL OR customer_id = $2)
                AND ($3::text IS NULL OR id > $3)
              ORDER BY id LIMIT $4",
            self.db.qualified("orders")
        ))
        .bind(query.status.map(OrderStatus::as_str))
        .bind(query.customer_id.as_ref().map(|c| c.as_str()))
        .bind(query.after.as_ref().map(|a| a.as_str()))
        .bind(limit as i64 + 1)
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        let mut items = rows.iter().map(order_from).collect::<Result<Vec<_>>>()?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|o| o.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::rounds;

    /// A request sharing an id or a key with an earlier one runs in a later round; the
    /// others run together in the first.
    #[test]
    fn requests_sharing_a_key_never_share_a_round() {
        let batch = [
            ("o-1", "k-1"),
            ("o-1", "k-2"), // same id as #0
            ("o-2", "k-1"), // same key as #0
            ("o-3", "k-3"),
            ("o-1", "k-3"), // same id as #0 and #1, same key as #3
        ];
        let got = rounds(&batch, |(id, key)| vec![*id, *key]);
        assert_eq!(got, vec![vec![0, 3], vec![1, 2], vec![4]]);
    }
}
