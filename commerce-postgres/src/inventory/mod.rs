//! Stock, reservations and the movement ledger: [`PgInventory`].

mod audit;
mod close;
mod ledger;
mod outcome;
mod rows;

pub(crate) use outcome::reserve_outcome;
use rows::{LedgerRow, counter, kind_str, level_from, movement_from, reservation_event};
pub(crate) use rows::{reservation_columns, reservation_from};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::EntityKind;
use commerce_core::clock::{self, Timestamp};
use commerce_core::event::DomainEvent;
use commerce_core::id::{LocationId, OrderId, Sku};
use commerce_core::inventory::{
    Allocation, InvariantViolation, MAX_QUANTITY, MovementKind, Reservation, ReservationRequest,
    ReservationState, Restock, SkuStock, StockLevel, StockMovement, check_reason, check_restocks,
};
use commerce_core::store::{InventoryStore, check_limit, distinct_batch};
use commerce_core::{Error, Result};
use sqlx::{PgConnection, Row};

use crate::batch::{FetchKeys, KeyedReads, fetch_rows, keyed_reads};
use crate::combiner::{Combiner, HotSkuConfig};
use crate::db::Db;
use crate::error::{DbResult, corrupt};

/// The [`InventoryStore`] on PostgreSQL.
///
/// * A reservation is **one round trip**: the plpgsql function `reserve()` inserts the
///   reservation row (`ON CONFLICT DO NOTHING` makes it idempotent per order), runs one
///   guarded `UPDATE ... SET available = available - q ... WHERE available >= q` per
///   SKU in SKU order (locations in id order, so concurrent reservations never
///   deadlock), writes the ledger and appends the outbox event, all in one
///   transaction; a short SKU rolls everything back. It is called through
///   `try_reserve()`, which answers with an outcome row (`out_of_stock` with the short
///   SKU's counts), the same protocol as the hot-SKU combiner's batches.
/// * `release_expired` claims due reservations with one `UPDATE ... WHERE order_id IN
///   (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`, so concurrent reapers never claim
///   the same one, then gives their units back in the same transaction.
/// * Rows are always locked SKU by SKU in byte order; within a SKU its levels in
///   location order, then its SKU record.
#[derive(Debug)]
pub struct PgInventory {
    db: Arc<Db>,
    reserve_sql: String,
    combiner: Option<Arc<Combiner>>,
    stocks: Arc<KeyedReads<SkuStock>>,
}

/// Allocations sorted in lock order: by SKU, levels by location, then the SKU record
/// (backorders).
fn lock_order(allocs: &[Allocation]) -> Vec<&Allocation> {
    let mut v: Vec<&Allocation> = allocs.iter().collect();
    v.sort_by(|a, b| {
        (&a.sku, a.location.is_none(), &a.location).cmp(&(
            &b.sku,
            b.location.is_none(),
            &b.location,
        ))
    });
    v
}

/// `read_stocks()` (migration 1003: one generic plan per connection) for all the keys
/// of a batch: each key's SKU record and levels, in key order.
fn fetch_stocks(db: &Db) -> FetchKeys<SkuStock> {
    let sql = format!(
        "SELECT * FROM {}($1::text[]) ORDER BY ord, location",
        db.qualified("read_stocks")
    );
    fetch_rows(db.pool.clone(), sql, |keys, rows| {
        let mut out: Vec<SkuStock> = keys
            .iter()
            .map(|sku| {
                Ok(SkuStock {
                    sku: Sku::new(sku.as_str())?,
                    levels: Vec::new(),
                    backorder_allowed: false,
                    backordered: 0,
                })
            })
            .collect::<Result<_>>()?;
        for row in &rows {
            let ord: i64 = row.try_get("ord").db()?;
            let stock = usize::try_from(ord - 1)
                .ok()
                .and_then(|i| out.get_mut(i))
                .ok_or_else(|| corrupt(format!("stock row for position {ord}")))?;
            stock.backorder_allowed = row
                .try_get::<Option<bool>, _>("backorder_allowed")
                .db()?
                .unwrap_or(false);
            // No SKU record: nothing backordered.
            stock.backordered = crate::error::non_negative(
                row.try_get::<Option<i64>, _>("backordered")
                    .db()?
                    .unwrap_or(0),
                "backordered",
            )?;
            if row.try_get::<Option<String>, _>("location").db()?.is_some() {
                stock.levels.push(level_from(row)?);
            }
        }
        Ok(out.into_iter().map(Ok).collect())
    })
}

impl PgInventory {
    /// The stock of each of `skus` (distinct), in order, in one statement (so from one
    /// snapshot), grouped with concurrent reads (see [`KeyedReads`]).
    async fn read_stocks(&self, skus: &[Sku]) -> Result<Vec<SkuStock>> {
        if skus.is_empty() {
            return Ok(Vec::new());
        }
        self.stocks
            .read_many(skus.iter().map(|s| s.as_str().to_owned()).collect())
            .await
    }

    /// `reserve` by the `try_reserve()` SQL function (the path without the combiner).
    async fn reserve_one(
        &self,
        request: &ReservationRequest,
        lines: Vec<commerce_core::inventory::ReservationLine>,
    ) -> Result<Reservation> {
        let now = self.db.now();
        let expires = clock::add(now, request.ttl);
        let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
        let qtys: Vec<i64> = lines.iter().map(|l| i64::from(l.quantity)).collect();
        let lines_json = serde_json::to_value(&lines).map_err(corrupt)?;
        let event = serde_json::to_value(DomainEvent::ReservationChanged {
            order_id: request.order_id.clone(),
            state: ReservationState::Active,
            skus: lines.iter().map(|l| l.sku.clone()).collect(),
        })
        .map_err(corrupt)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(self.reserve_sql.as_str()))
            .bind(request.order_id.as_str())
            .bind(&skus)
            .bind(&qtys)
            .bind(&lines_json)
            .bind(now)
            .bind(expires)
            .bind(&event)
            .fetch_one(&self.db.pool)
            .await
            .db()?;
        let reserved = reserve_outcome(&row, &request.order_id, &lines)?;
        if reserved.created {
            self.db.written();
        }
        Ok(reserved.reservation)
    }

    pub(crate) fn new(db: Arc<Db>, hot: Option<HotSkuConfig>) -> Self {
        let reserve_sql = format!(
            // The last argument, an in-transaction NOTIFY channel, is always NULL: a
            // NOTIFY inside the transaction would serialise every commit.
            "SELECT * FROM {}($1, $2, $3, $4, $5, $6, $7, NULL)",
            db.qualified("try_reserve")
        );
        PgInventory {
            combiner: hot.map(|h| Combiner::new(h, db.clone())),
            stocks: keyed_reads(db.batching, fetch_stocks(&db)),
            db,
            reserve_sql,
        }
    }
}

#[async_trait]
impl InventoryStore for PgInventory {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn restock(
        &self,
        sku: &Sku,
        location: &LocationId,
        quantity: u32,
        reason: &str,
    ) -> Result<StockLevel> {
        let item = Restock::new(sku.clone(), location.clone(), quantity, reason);
        item.validate()?;
        let mut levels = self.restock_items(std::slice::from_ref(&item)).await?;
        levels
            .pop()
            .ok_or_else(|| corrupt("restock_levels returned no row"))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(items = items.len()), err(level = "debug"))]
    async fn restock_many(&self, items: &[Restock]) -> Result<Vec<StockLevel>> {
        check_restocks(items)?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.restock_items(items).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn adjust(
        &self,
        sku: &Sku,
        location: &LocationId,
        delta: i64,
        reason: &str,
    ) -> Result<StockLevel> {
        if delta == 0 || delta.unsigned_abs() > u64::from(MAX_QUANTITY) {
            return Err(Error::validation(
                "delta",
                "must be non-zero and at most 1,000,000 units",
            ));
        }
        check_reason(reason)?;
        let now = self.db.now();
        let mut tx = self.db.pool.begin().await.db()?;
        let row = sqlx::query(sql!(
            "SELECT * FROM {} WHERE sku = $1 AND location = $2 FOR UPDATE",
            self.db.qualified("stock_levels")
        ))
        .bind(sku.as_str())
        .bind(location.as_str())
        .fetch_optional(&mut *tx)
        .await
        .db()?
        .ok_or_else(|| Error::not_found(EntityKind::Stock, format!("{sku}@{location}")))?;
        let level = level_from(&row)?;
        if delta < 0 && level.available < delta.unsigned_abs() {
            return Err(Error::OutOfStock {
                sku: sku.to_string(),
                requested: delta.unsigned_abs(),
                available: level.available,
            });
        }
        let row = sqlx::query(sql!(
            "UPDATE {} SET available = available + $3, adjusted = adjusted - $3
             WHERE sku = $1 AND location = $2 RETURNING *",
            self.db.qualified("stock_levels")
        ))
        .bind(sku.as_str())
        .bind(location.as_str())
        .bind(delta)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        let level = level_from(&row)?;
        self.write_movements(
            &mut tx,
            now,
            &[LedgerRow {
                sku: sku.to_string(),
                location: Some(location.to_string()),
                kind: MovementKind::Adjusted,
                quantity: delta,
                order_id: None,
                reason: Some(reason.to_owned()),
            }],
        )
        .await?;
        self.db
            .append_in(
                &mut tx,
                now,
                &[DomainEvent::StockChanged {
                    sku: sku.clone(),
                    location: location.clone(),
                    available: level.available,
                }],
            )
            .await?;
        tx.commit().await.db()?;
        self.db.written();
        Ok(level)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn set_backorder(&self, sku: &Sku, allowed: bool) -> Result<()> {
        sqlx::query(sql!(
            "INSERT INTO {} (sku, backorder_allowed) VALUES ($1, $2)
             ON CONFLICT (sku) DO UPDATE SET backorder_allowed = EXCLUDED.backorder_allowed",
            self.db.qualified("stock_skus")
        ))
        .bind(sku.as_str())
        .bind(allowed)
        .execute(&self.db.pool)
        .await
        .db()?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn stock(&self, sku: &Sku) -> Result<SkuStock> {
        let mut stocks = self.read_stocks(std::slice::from_ref(sku)).await?;
        stocks
            .pop()
            .ok_or_else(|| corrupt(format!("no stock row for {sku}")))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn stocks(&self, skus: &[Sku]) -> Result<Vec<SkuStock>> {
        let skus = distinct_batch("skus", skus)?;
        let skus: Vec<Sku> = skus.into_iter().cloned().collect();
        self.read_stocks(&skus).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn reserve(&self, request: &ReservationRequest) -> Result<Reservation> {
        let lines = match request.normalized_lines() {
            Ok(lines) => lines,
            Err(e) => {
                let r = Err(e);
                commerce_core::telemetry::record_reservation("postgres", "reserve", &r);
                return r;
            }
        };
        if let (Some(c), [line]) = (&self.combiner, lines.as_slice()) {
            if c.applies_to(&line.sku) {
                let r = c
                    .reserve(request.order_id.clone(), line.clone(), request.ttl)
                    .await;
                commerce_core::telemetry::record_reservation("postgres", "reserve_batch", &r);
                return r;
            }
        }
        let r = self.reserve_one(request, lines).await;
        commerce_core::telemetry::record_reservation("postgres", "reserve", &r);
        r
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn extend(&self, order_id: &OrderId, ttl: Duration) -> Result<Reservation> {
        commerce_core::inventory::check_ttl(ttl)?;
        let now = self.db.now();
        let mut tx = self.db.pool.begin().await.db()?;
        let mut r = self.lock_reservation(&mut tx, order_id).await?;
        if r.state != ReservationState::Active {
            tx.rollback().await.db()?;
            return Err(Error::invalid_transition(
                EntityKind::Reservation,
                r.state,
                "EXTENDED",
            ));
        }
        if r.expires_at <= now {
            tx.rollback().await.db()?;
            return Err(Error::invalid_transition(
                EntityKind::Reservation,
                "EXPIRED",
                "EXTENDED",
            ));
        }
        r.expires_at = clock::add(now, ttl);
        sqlx::query(sql!(
            "UPDATE {} SET expires_at = $2 WHERE order_id = $1",
            self.db.qualified("reservations")
        ))
        .bind(order_id.as_str())
        .bind(r.expires_at)
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        self.db.written();
        Ok(r)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn confirm(&self, order_id: &OrderId) -> Result<Reservation> {
        let r: Result<Reservation> = async {
            self.close_one(order_id, ReservationState::Confirmed, None)
                .await
        }
        .await;
        commerce_core::telemetry::record_reservation("postgres", "confirm", &r);
        r
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn release(&self, order_id: &OrderId, reason: &str) -> Result<Reservation> {
        let r: Result<Reservation> = async {
            check_reason(reason)?;
            self.close_one(order_id, ReservationState::Released, Some(reason))
                .await
        }
        .await;
        commerce_core::telemetry::record_reservation("postgres", "release", &r);
        r
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn return_stock(
        &self,
        order_id: &OrderId,
        restock: bool,
        reason: &str,
    ) -> Result<Reservation> {
        let r: Result<Reservation> = async {
            check_reason(reason)?;
            let now = self.db.now();
            let mut tx = self.db.pool.begin().await.db()?;
            let mut r = self.lock_reservation(&mut tx, order_id).await?;
            match r.state {
                ReservationState::Returned => {
                    // Release the row lock now, not when the pool reuses the connection.
                    tx.rollback().await.db()?;
                    return Ok(r);
                }
                ReservationState::Confirmed => {}
                other => {
                    tx.rollback().await.db()?;
                    return Err(Error::invalid_transition(
                        EntityKind::Reservation,
                        other,
                        ReservationState::Returned,
                    ));
                }
            }
            let mut movs = Vec::new();
            for a in lock_order(&r.allocations) {
                let q = i64::from(a.quantity);
                match &a.location {
                    Some(loc) => {
                        let set = if restock {
                            "sold = sold - $3, available = available + $3"
                        } else {
                            "sold = sold - $3, adjusted = adjusted + $3"
                        };
                        sqlx::query(sql!(
                            "UPDATE {} SET {set} WHERE sku = $1 AND location = $2",
                            self.db.qualified("stock_levels")
                        ))
                        .bind(a.sku.as_str())
                        .bind(loc.as_str())
                        .bind(q)
                        .execute(&mut *tx)
                        .await
                        .db()?;
                        movs.push(LedgerRow {
                            sku: a.sku.to_string(),
                            location: Some(loc.to_string()),
                            kind: if restock {
                                MovementKind::Returned
                            } else {
                                MovementKind::WrittenOff
                            },
                            quantity: q,
                            order_id: Some(order_id.to_string()),
                            reason: Some(reason.to_owned()),
                        });
                    }
                    None => {
                        sqlx::query(sql!(
                            "UPDATE {} SET owed = owed - LEAST(owed, $2),
                                           backordered = backordered - LEAST(owed, $2)
                             WHERE sku = $1",
                            self.db.qualified("stock_skus")
                        ))
                        .bind(a.sku.as_str())
                        .bind(q)
                        .execute(&mut *tx)
                        .await
                        .db()?;
                    }
                }
            }
            // ledger in allocation order, like the reference
            let order_of = |m: &LedgerRow| {
                r.allocations
                    .iter()
                    .position(|a| {
                        a.sku.as_str() == m.sku
                            && a.location.as_ref().map(|l| l.to_string()) == m.location
                    })
                    .unwrap_or(usize::MAX)
            };
            movs.sort_by_key(order_of);
            self.write_movements(&mut tx, now, &movs).await?;
            sqlx::query(sql!(
                "UPDATE {} SET state = 'RETURNED', closed_at = $2, reason = $3 WHERE order_id = $1",
                self.db.qualified("reservations")
            ))
            .bind(order_id.as_str())
            .bind(now)
            .bind(reason)
            .execute(&mut *tx)
            .await
            .db()?;
            r.state = ReservationState::Returned;
            r.closed_at = Some(now);
            r.reason = Some(reason.to_owned());
            self.db
                .append_in(&mut tx, now, &[reservation_event(&r)])
                .await?;
            tx.commit().await.db()?;
            self.db.written();
            Ok(r)
        }
        .await;
        commerce_core::telemetry::record_reservation("postgres", "return", &r);
        r
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn release_expired(&self, now: Timestamp, limit: u32) -> Result<Vec<Reservation>> {
        let r: Result<Vec<Reservation>> = async {
            let limit = check_limit(limit)?;
            let mut tx = self.db.pool.begin().await.db()?;
            // One statement claims the due reservations: rows another reaper (or a confirm)
            // holds are skipped, so no reservation is released twice.
            let rows = sqlx::query(sql!(
                "UPDATE {t} SET state = 'RELEASED', closed_at = $1, reason = 'expired'
                  WHERE order_id IN (SELECT order_id FROM {t}
                                      WHERE state = 'ACTIVE' AND expires_at <= $1
                                      ORDER BY expires_at, order_id
                                      LIMIT $2 FOR UPDATE SKIP LOCKED)
                    AND state = 'ACTIVE'
                  RETURNING *",
                t = self.db.qualified("reservations")
            ))
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await
            .db()?;
            let mut released = rows
                .iter()
                .map(reservation_from)
                .collect::<Result<Vec<_>>>()?;
            released.sort_by(|a, b| (a.expires_at, &a.order_id).cmp(&(b.expires_at, &b.order_id)));
            if released.is_empty() {
                tx.commit().await.db()?;
                return Ok(released);
            }
            self.close_units(
                &mut tx,
                &released,
                ReservationState::Released,
                Some("expired"),
                now,
            )
            .await?;
            let events: Vec<DomainEvent> = released.iter().map(reservation_event).collect();
            self.db.append_in(&mut tx, now, &events).await?;
            tx.commit().await.db()?;
            self.db.written();
            Ok(released)
        }
        .await;
        commerce_core::telemetry::record_expired("postgres", &r);
        r
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn reservation(&self, order_id: &OrderId) -> Result<Option<Reservation>> {
        let row = sqlx::query(sql!(
            "SELECT * FROM {} WHERE order_id = $1",
            self.db.qualified("reservations")
        ))
        .bind(order_id.as_str())
        .fetch_optional(&self.db.pool)
        .await
        .db()?;
        row.as_ref().map(reservation_from).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn movements(&self, sku: &Sku, offset: u64, limit: u32) -> Result<Vec<StockMovement>> {
        let limit = check_limit(limit)?;
        let rows = sqlx::query(sql!(
            "SELECT * FROM {} WHERE sku = $1 ORDER BY id OFFSET $2 LIMIT $3",
            self.db.qualified("stock_movements")
        ))
        .bind(sku.as_str())
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .bind(limit as i64)
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        rows.iter().map(movement_from).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn audit(&self) -> Result<Vec<InvariantViolation>> {
        audit::audit(&self.db).await
    }
}
