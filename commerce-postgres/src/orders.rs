//! Orders, their status machine and history: [`PgOrders`].

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

use crate::db::Db;
use crate::error::{DbResult, PgError, code, corrupt};

/// The [`OrderStore`] on PostgreSQL.
///
/// * One order per idempotency key: a unique index and `INSERT ... ON CONFLICT DO
///   NOTHING`, never a read-then-write.
/// * Transitions are a compare-and-set `UPDATE ... WHERE id = $1 AND status = $from`;
///   the history row and the `OrderStatusChanged` event are written in the same
///   transaction.
#[derive(Debug)]
pub struct PgOrders {
    db: Arc<Db>,
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
    pub(crate) fn new(db: Arc<Db>) -> Self {
        PgOrders { db }
    }

    async fn by_key(&self, key: &IdempotencyKey) -> Result<Option<Order>> {
        let row = sqlx::query(sql!(
            "SELECT * FROM {} WHERE idempotency_key = $1",
            self.db.t("orders")
        ))
        .bind(key.as_str())
        .fetch_optional(&self.db.pool)
        .await
        .db()?;
        row.as_ref().map(order_from).transpose()
    }
}

#[async_trait]
impl OrderStore for PgOrders {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn create_order(&self, new: NewOrder) -> Result<CreateOutcome> {
        let order = new.into_order(self.db.now())?;
        let body = serde_json::to_value(&order).map_err(corrupt)?;
        let mut tx = self.db.pool.begin().await.db()?;
        let inserted = sqlx::query(sql!(
            "INSERT INTO {} (id, customer_id, idempotency_key, status, version, body,
                             payment_ref, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $7)
             ON CONFLICT (idempotency_key) DO NOTHING",
            self.db.t("orders")
        ))
        .bind(order.id.as_str())
        .bind(order.customer_id.as_str())
        .bind(order.idempotency_key.as_str())
        .bind(order.status.as_str())
        .bind(order.version as i64)
        .bind(&body)
        .bind(order.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            let e = PgError::from(e);
            if e.code().as_deref() == Some(code::UNIQUE_VIOLATION) {
                Error::conflict(EntityKind::Order, format!("order {} exists", order.id))
            } else {
                e.into()
            }
        })?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await.db()?;
            let existing = self.by_key(&order.idempotency_key).await?.ok_or_else(|| {
                Error::backend(true, "order with this idempotency key vanished; retry")
            })?;
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
            return Ok(CreateOutcome::Existing(existing));
        }
        sqlx::query(sql!(
            "INSERT INTO {} (order_id, from_status, to_status, reason, at)
             VALUES ($1, NULL, $2, 'created', $3)",
            self.db.t("order_history")
        ))
        .bind(order.id.as_str())
        .bind(order.status.as_str())
        .bind(order.created_at)
        .execute(&mut *tx)
        .await
        .db()?;
        self.db
            .append_in(
                &mut tx,
                order.created_at,
                &[DomainEvent::OrderCreated {
                    order_id: order.id.clone(),
                    customer_id: order.customer_id.clone(),
                }],
            )
            .await?;
        tx.commit().await.db()?;
        self.db.written();
        Ok(CreateOutcome::Created(order))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn get_order(&self, id: &OrderId) -> Result<Option<Order>> {
        let row = sqlx::query(sql!("SELECT * FROM {} WHERE id = $1", self.db.t("orders")))
            .bind(id.as_str())
            .fetch_optional(&self.db.pool)
            .await
            .db()?;
        row.as_ref().map(order_from).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn get_order_by_key(&self, key: &IdempotencyKey) -> Result<Option<Order>> {
        self.by_key(key).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn transition(&self, id: &OrderId, change: &Transition) -> Result<Order> {
        change.validate()?;
        let now = self.db.now();
        let mut tx = self.db.pool.begin().await.db()?;
        let row = sqlx::query(sql!(
            "UPDATE {} SET status = $3, version = version + 1,
                    updated_at = GREATEST(updated_at, $4),
                    payment_ref = COALESCE($5, payment_ref)
              WHERE id = $1 AND status = $2
              RETURNING *",
            self.db.t("orders")
        ))
        .bind(id.as_str())
        .bind(change.from.as_str())
        .bind(change.to.as_str())
        .bind(now)
        .bind(change.payment_ref.as_deref())
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let Some(row) = row else {
            tx.rollback().await.db()?;
            return match self.get_order(id).await? {
                None => Err(Error::not_found(EntityKind::Order, id)),
                Some(o) => Err(Error::conflict(
                    EntityKind::Order,
                    format!("order {id} is {}, not {}", o.status, change.from),
                )),
            };
        };
        let order = order_from(&row)?;
        sqlx::query(sql!(
            "INSERT INTO {} (order_id, from_status, to_status, reason, at)
             VALUES ($1, $2, $3, $4, $5)",
            self.db.t("order_history")
        ))
        .bind(id.as_str())
        .bind(change.from.as_str())
        .bind(change.to.as_str())
        .bind(&change.reason)
        .bind(order.updated_at)
        .execute(&mut *tx)
        .await
        .db()?;
        self.db
            .append_in(
                &mut tx,
                now,
                &[DomainEvent::OrderStatusChanged {
                    order_id: id.clone(),
                    from: change.from,
                    to: change.to,
                }],
            )
            .await?;
        tx.commit().await.db()?;
        self.db.written();
        Ok(order)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn history(&self, id: &OrderId) -> Result<Vec<StatusChange>> {
        let rows = sqlx::query(sql!(
            "SELECT from_status, to_status, reason, at FROM {} WHERE order_id = $1 ORDER BY id",
            self.db.t("order_history")
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
            self.db.t("orders")
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
