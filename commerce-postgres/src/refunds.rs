//! The refund ledger on PostgreSQL: [`PgRefunds`] (tables from
//! `migrations/0940_refunds.sql`).

use std::sync::Arc;

use async_trait::async_trait;
use commerce_core::id::{OrderId, Sku};
use commerce_core::money::{Currency, Money};
use commerce_core::refund::{LineBalance, PaidOrder, Refund, RefundBalance, RefundRequest};
use commerce_core::store::{RefundLedger, RefundLedgerOutcome};
use commerce_core::{EntityKind, Error, Result};
use sqlx::Row;
use tracing::instrument;

use crate::db::Db;
use crate::error::{DbResult, corrupt};

/// SQLSTATE `check_violation`: a refund would pass what was paid.
const CHECK_VIOLATION: &str = "23514";

/// The [`RefundLedger`] on PostgreSQL.
///
/// * `open` is one `INSERT ... ON CONFLICT DO NOTHING` of the order and its lines; a
///   second open compares the stored body.
/// * `record` is **one statement**: insert the refund row (`ON CONFLICT (order_id,
///   refund_key) DO NOTHING`, so a replayed key adds nothing), then add it to the
///   order's totals and to each line's, all guarded by `CHECK` constraints
///   (`refunded <= paid`, `refunded_units <= quantity`, shipping and total likewise).
///   A refund that would pass what was paid violates a constraint and the statement —
///   refund row included — is rolled back; it is reported as the `Validation` error
///   [`RefundBalance::check`] gives on the balance read afterwards. The order row is
///   updated before the line rows, so concurrent refunds of one order queue on it and
///   each sees the totals the previous one committed (no read-then-write, no
///   deadlock).
/// * Amounts are stored as integers in the currency's minor units.
#[derive(Debug, Clone)]
pub struct PgRefunds {
    db: Arc<Db>,
}

impl PgRefunds {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        PgRefunds { db }
    }

    async fn stored_refund(&self, order: &OrderId, key: &str) -> Result<Option<Refund>> {
        let row = sqlx::query(sql!(
            "SELECT request, total, created_at FROM {} WHERE order_id = $1 AND refund_key = $2",
            self.db.qualified("refunds")
        ))
        .bind(order.as_str())
        .bind(key)
        .fetch_optional(&self.db.pool)
        .await
        .db()?;
        row.as_ref().map(refund_from).transpose()
    }
}

fn refund_from(row: &sqlx::postgres::PgRow) -> Result<Refund> {
    let request: RefundRequest =
        serde_json::from_value(row.try_get("request").db()?).map_err(corrupt)?;
    let total = Money::from_minor_units(row.try_get("total").db()?, request.shipping.currency())
        .map_err(corrupt)?;
    Ok(Refund {
        request,
        total,
        created_at: row.try_get("created_at").db()?,
    })
}

fn minor(m: &Money) -> i64 {
    m.to_minor_units()
}

fn money(v: i64, currency: Currency) -> Result<Money> {
    Money::from_minor_units(v, currency).map_err(corrupt)
}

fn is_check_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == CHECK_VIOLATION)
}

#[async_trait]
impl RefundLedger for PgRefunds {
    #[instrument(skip_all, fields(order = %paid.order_id))]
    async fn open(&self, paid: &PaidOrder) -> Result<RefundBalance> {
        let balance = RefundBalance::new(paid)?;
        let body =
            serde_json::to_value(paid).map_err(|e| Error::permanent("encode paid order", e))?;
        let positions: Vec<i32> = (0..paid.lines.len() as i32).collect();
        let skus: Vec<&str> = paid.lines.iter().map(|l| l.sku.as_str()).collect();
        let quantities: Vec<i32> = paid
            .lines
            .iter()
            .map(|l| i32::try_from(l.quantity).unwrap_or(i32::MAX))
            .collect();
        let amounts: Vec<i64> = paid.lines.iter().map(|l| minor(&l.paid)).collect();
        let inserted = sqlx::query(sql!(
            "WITH o AS (
                INSERT INTO {orders} (order_id, currency, body, shipping_paid, total_paid, opened_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (order_id) DO NOTHING
                RETURNING order_id
             )
             INSERT INTO {lines} (order_id, position, sku, quantity, paid)
             SELECT o.order_id, t.pos, t.sku, t.qty, t.paid
             FROM o, unnest($7::int4[], $8::text[], $9::int4[], $10::int8[]) AS t(pos, sku, qty, paid)",
            orders = self.db.qualified("refund_orders"),
            lines = self.db.qualified("refund_lines"),
        ))
        .bind(paid.order_id.as_str())
        .bind(paid.currency.code())
        .bind(&body)
        .bind(minor(&paid.shipping))
        .bind(minor(&balance.total_paid))
        .bind(self.db.now())
        .bind(&positions)
        .bind(&skus)
        .bind(&quantities)
        .bind(&amounts)
        .execute(&self.db.pool)
        .await
        .db()?
        .rows_affected()
            > 0;
        if inserted {
            return Ok(balance);
        }
        match self.paid(&paid.order_id).await? {
            Some(stored) if &stored == paid => self
                .balance(&paid.order_id)
                .await?
                .ok_or_else(|| corrupt("an opened order has no balance")),
            Some(_) => Err(Error::conflict(
                EntityKind::Refund,
                format!("order {} was opened with other amounts", paid.order_id),
            )),
            None => Err(corrupt("an order neither inserted nor stored")),
        }
    }

    #[instrument(skip_all, fields(order = %request.order_id, key = %request.key))]
    async fn record(&self, request: &RefundRequest) -> Result<RefundLedgerOutcome> {
        request.validate()?;
        // What was paid never changes once opened: checking the request against it
        // (SKUs, currency, at most what was bought) is not a read-then-write race.
        let paid = self
            .paid(&request.order_id)
            .await?
            .ok_or_else(|| Error::not_found(EntityKind::Order, &request.order_id))?;
        RefundBalance::new(&paid)?.check(request)?;
        let total = request.total(paid.currency)?;
        let body =
            serde_json::to_value(request).map_err(|e| Error::permanent("encode refund", e))?;
        let skus: Vec<&str> = request.lines.iter().map(|l| l.sku.as_str()).collect();
        let units: Vec<i32> = request
            .lines
            .iter()
            .map(|l| i32::try_from(l.quantity).unwrap_or(i32::MAX))
            .collect();
        let amounts: Vec<i64> = request.lines.iter().map(|l| minor(&l.amount)).collect();
        let now = self.db.now();
        let result = sqlx::query(sql!(
            "WITH ins AS (
                INSERT INTO {refunds} (order_id, refund_key, request, shipping, total, created_at)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (order_id, refund_key) DO NOTHING
                RETURNING order_id
             ), upd_order AS (
                UPDATE {orders} o
                SET shipping_refunded = o.shipping_refunded + $4,
                    total_refunded = o.total_refunded + $5
                FROM ins WHERE o.order_id = ins.order_id
                RETURNING o.total_refunded = o.total_paid
                      AND o.total_refunded - $5 < o.total_paid AS completes
             ), upd_lines AS (
                UPDATE {lines} l
                SET refunded_units = l.refunded_units + t.units,
                    refunded = l.refunded + t.amount
                FROM unnest($7::text[], $8::int4[], $9::int8[]) AS t(sku, units, amount)
                WHERE (SELECT count(*) FROM upd_order) = 1
                  AND l.order_id = $1 AND l.sku = t.sku
                RETURNING 1
             )
             SELECT (SELECT completes FROM upd_order) AS completes,
                    (SELECT count(*) FROM upd_lines) AS lines",
            refunds = self.db.qualified("refunds"),
            orders = self.db.qualified("refund_orders"),
            lines = self.db.qualified("refund_lines"),
        ))
        .bind(request.order_id.as_str())
        .bind(request.key.as_str())
        .bind(&body)
        .bind(minor(&request.shipping))
        .bind(minor(&total))
        .bind(now)
        .bind(&skus)
        .bind(&units)
        .bind(&amounts)
        .fetch_one(&self.db.pool)
        .await;
        let row = match result {
            Ok(row) => row,
            Err(e) if is_check_violation(&e) => {
                // Refunded totals only grow: the balance read now still refuses it.
                let balance = self
                    .balance(&request.order_id)
                    .await?
                    .ok_or_else(|| Error::not_found(EntityKind::Order, &request.order_id))?;
                balance.check(request)?;
                return Err(Error::validation(
                    "refund",
                    "exceeds what remains refundable of the order",
                ));
            }
            Err(e) => return Err(e).db(),
        };
        let completes: Option<bool> = row.try_get("completes").db()?;
        let lines: i64 = row.try_get("lines").db()?;
        if let Some(completes_order) = completes {
            if lines != request.lines.len() as i64 {
                return Err(corrupt(format!(
                    "refund {} updated {lines} of {} lines",
                    request.key,
                    request.lines.len()
                )));
            }
            return Ok(RefundLedgerOutcome {
                refund: Refund {
                    request: request.clone(),
                    total,
                    created_at: now,
                },
                created: true,
                completes_order,
            });
        }
        // The key was taken (by a committed refund): a replay or a conflict.
        let existing = self
            .stored_refund(&request.order_id, request.key.as_str())
            .await?
            .ok_or_else(|| corrupt("a refund key neither inserted nor stored"))?;
        if !existing.request.same_as(request) {
            return Err(Error::conflict(
                EntityKind::Refund,
                format!("refund key {} was used with other content", request.key),
            ));
        }
        Ok(RefundLedgerOutcome {
            refund: existing,
            created: false,
            completes_order: false,
        })
    }

    #[instrument(skip_all, fields(order = %order))]
    async fn balance(&self, order: &OrderId) -> Result<Option<RefundBalance>> {
        // One statement, one snapshot: the order's totals and its lines agree.
        let row = sqlx::query(sql!(
            "SELECT o.currency, o.shipping_paid, o.shipping_refunded, o.total_paid,
                    o.total_refunded,
                    json_agg(json_build_array(l.sku, l.quantity, l.paid, l.refunded_units,
                                              l.refunded) ORDER BY l.position) AS lines
             FROM {orders} o JOIN {lines} l USING (order_id)
             WHERE o.order_id = $1
             GROUP BY o.order_id",
            orders = self.db.qualified("refund_orders"),
            lines = self.db.qualified("refund_lines"),
        ))
        .bind(order.as_str())
        .fetch_optional(&self.db.pool)
        .await
        .db()?;
        let Some(row) = row else { return Ok(None) };
        let currency =
            Currency::parse(&row.try_get::<String, _>("currency").db()?).map_err(corrupt)?;
        let raw: Vec<(String, i64, i64, i64, i64)> =
            serde_json::from_value(row.try_get("lines").db()?).map_err(corrupt)?;
        let mut lines = Vec::with_capacity(raw.len());
        for (sku, quantity, paid, refunded_units, refunded) in raw {
            lines.push(LineBalance {
                sku: Sku::new(sku).map_err(corrupt)?,
                quantity: u32::try_from(quantity).map_err(corrupt)?,
                paid: money(paid, currency)?,
                refunded_units: u32::try_from(refunded_units).map_err(corrupt)?,
                refunded: money(refunded, currency)?,
            });
        }
        Ok(Some(RefundBalance {
            order_id: order.clone(),
            currency,
            lines,
            shipping_paid: money(row.try_get("shipping_paid").db()?, currency)?,
            shipping_refunded: money(row.try_get("shipping_refunded").db()?, currency)?,
            total_paid: money(row.try_get("total_paid").db()?, currency)?,
            total_refunded: money(row.try_get("total_refunded").db()?, currency)?,
        }))
    }

    #[instrument(skip_all, fields(order = %order))]
    async fn paid(&self, order: &OrderId) -> Result<Option<PaidOrder>> {
        let body: Option<serde_json::Value> = sqlx::query_scalar(sql!(
            "SELECT body FROM {} WHERE order_id = $1",
            self.db.qualified("refund_orders")
        ))
        .bind(order.as_str())
        .fetch_optional(&self.db.pool)
        .await
        .db()?;
        body.map(|b| serde_json::from_value(b).map_err(corrupt))
            .transpose()
    }

    #[instrument(skip_all, fields(order = %order))]
    async fn refunds(&self, order: &OrderId) -> Result<Vec<Refund>> {
        let rows = sqlx::query(sql!(
            "SELECT request, total, created_at FROM {} WHERE order_id = $1 ORDER BY seq",
            self.db.qualified("refunds")
        ))
        .bind(order.as_str())
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        rows.iter().map(refund_from).collect()
    }
}
