//! Fused checkout steps: [`PgCheckout`].

use std::sync::Arc;
use std::time::Duration;

use commerce_core::clock;
use commerce_core::event::DomainEvent;
use commerce_core::id::OrderId;
use commerce_core::inventory::{ReservationRequest, ReservationState};
use commerce_core::order::{NewOrder, Order, OrderStatus, Transition};
use commerce_core::store::CreateOutcome;
use commerce_core::{EntityKind, Error, Result};
use sqlx::Row;

use crate::db::Db;
use crate::error::{DbResult, PgError, corrupt};
use crate::inventory::reserve_error;
use crate::orders::order_from;

/// The two write steps of a checkout, each **one transaction and one round trip**
/// (two commits per order instead of five), writing exactly what the separate store
/// calls write: rows, history, ledger and every outbox event.
///
/// * [`place_order`](Self::place_order) = `OrderStore::create_order` +
///   `InventoryStore::reserve` (all lines) + `transition(CREATED -> PAYMENT_PENDING)`.
///   Out of stock: the error of `reserve`, and no order is created.
/// * [`complete_payment`](Self::complete_payment) = `InventoryStore::confirm` +
///   `transition(PAYMENT_PENDING -> PAYMENT_CONFIRMED)` with the payment reference.
///
/// The order and its reservation stay readable and writable through the ordinary
/// stores (and the order pipeline) before, between and after these steps.
#[derive(Debug)]
pub struct PgCheckout {
    db: Arc<Db>,
    place_sql: String,
    pay_sql: String,
}

fn detail(e: &PgError) -> Option<String> {
    match e {
        PgError::Sqlx(sqlx::Error::Database(d)) => d
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|d| d.detail())
            .map(str::to_owned),
        _ => None,
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(corrupt)
}

impl PgCheckout {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        PgCheckout {
            place_sql: format!(
                "SELECT * FROM {}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                db.t("place_order")
            ),
            pay_sql: format!(
                "SELECT * FROM {}($1, $2, $3, $4, $5)",
                db.t("complete_payment")
            ),
            db,
        }
    }

    /// Creates the order, reserves its lines for `ttl` and moves it to
    /// `PAYMENT_PENDING` with `reason`, atomically. With an idempotency key that
    /// already has an order, returns that order unchanged (`Existing`; a key of another
    /// customer is `Conflict { Order }`).
    pub async fn place_order(
        &self,
        new: NewOrder,
        ttl: Duration,
        reason: &str,
    ) -> Result<CreateOutcome> {
        Transition::new(OrderStatus::Created, OrderStatus::PaymentPending, reason).validate()?;
        let now = self.db.now();
        let order = new.into_order(now)?;
        let request = ReservationRequest {
            order_id: order.id.clone(),
            lines: order
                .lines
                .iter()
                .map(|l| commerce_core::inventory::ReservationLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                })
                .collect(),
            ttl,
        };
        let lines = request.normalized_lines()?;
        let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
        let qtys: Vec<i64> = lines.iter().map(|l| i64::from(l.quantity)).collect();
        let created = json(&DomainEvent::OrderCreated {
            order_id: order.id.clone(),
            customer_id: order.customer_id.clone(),
        })?;
        let reserved = json(&DomainEvent::ReservationChanged {
            order_id: order.id.clone(),
            state: ReservationState::Active,
            skus: lines.iter().map(|l| l.sku.clone()).collect(),
        })?;
        let pending = json(&DomainEvent::OrderStatusChanged {
            order_id: order.id.clone(),
            from: OrderStatus::Created,
            to: OrderStatus::PaymentPending,
        })?;
        let body = json(&order)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(self.place_sql.as_str()))
            .bind(order.id.as_str())
            .bind(order.customer_id.as_str())
            .bind(order.idempotency_key.as_str())
            .bind(&body)
            .bind(now)
            .bind(&skus)
            .bind(&qtys)
            .bind(json(&lines)?)
            .bind(clock::add(now, ttl))
            .bind(created)
            .bind(reserved)
            .bind(pending)
            .bind(reason)
            .fetch_one(&self.db.pool)
            .await
            .map_err(|e| {
                let pg = PgError::from(e);
                match pg.code().as_deref() {
                    Some("CM003") => Error::conflict(
                        EntityKind::Reservation,
                        format!("order {} already holds a reservation", order.id),
                    ),
                    Some(crate::error::code::UNIQUE_VIOLATION) => {
                        Error::conflict(EntityKind::Order, format!("order {} exists", order.id))
                    }
                    _ => match pg {
                        PgError::Sqlx(e) => reserve_error(e),
                        other => other.into(),
                    },
                }
            })?;
        let outcome: String = row.try_get("outcome").db()?;
        let stored = order_from(&row)?;
        if outcome == "existing" {
            if stored.customer_id != order.customer_id {
                return Err(Error::conflict(
                    EntityKind::Order,
                    "the idempotency key belongs to another customer's order",
                ));
            }
            return Ok(CreateOutcome::Existing(stored));
        }
        self.db.written();
        Ok(CreateOutcome::Created(stored))
    }

    /// Confirms the order's reservation (units to `sold`) and moves the order from
    /// `PAYMENT_PENDING` to `PAYMENT_CONFIRMED` with `payment_ref`, atomically.
    ///
    /// Unknown order: `NotFound { Order }`; not `PAYMENT_PENDING`: `Conflict { Order }`;
    /// a reservation that was released or returned: `InvalidTransition { Reservation }`
    /// (nothing is written in these cases).
    pub async fn complete_payment(
        &self,
        order_id: &OrderId,
        payment_ref: &str,
        reason: &str,
    ) -> Result<Order> {
        let mut t = Transition::new(
            OrderStatus::PaymentPending,
            OrderStatus::PaymentConfirmed,
            reason,
        );
        t.payment_ref = Some(payment_ref.to_owned());
        t.validate()?;
        let now = self.db.now();
        let paid = json(&DomainEvent::OrderStatusChanged {
            order_id: order_id.clone(),
            from: OrderStatus::PaymentPending,
            to: OrderStatus::PaymentConfirmed,
        })?;
        let row = sqlx::query(sqlx::AssertSqlSafe(self.pay_sql.as_str()))
            .bind(order_id.as_str())
            .bind(payment_ref)
            .bind(now)
            .bind(reason)
            .bind(paid)
            .fetch_one(&self.db.pool)
            .await
            .map_err(|e| {
                let pg = PgError::from(e);
                let d = detail(&pg).unwrap_or_default();
                match pg.code().as_deref() {
                    Some("CM004") if d.is_empty() => Error::not_found(EntityKind::Order, order_id),
                    Some("CM004") => Error::conflict(
                        EntityKind::Order,
                        format!("order {order_id} is {d}, not PAYMENT_PENDING"),
                    ),
                    Some("CM005") if d.is_empty() => {
                        Error::not_found(EntityKind::Reservation, order_id)
                    }
                    Some("CM005") => Error::invalid_transition(
                        EntityKind::Reservation,
                        d,
                        ReservationState::Confirmed,
                    ),
                    _ => pg.into(),
                }
            })?;
        self.db.written();
        order_from(&row)
    }
}
