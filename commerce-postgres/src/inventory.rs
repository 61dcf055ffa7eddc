//! Stock, reservations and the movement ledger: [`PgInventory`].

use std::collections::{BTreeMap, HashMap};
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
    replay,
};
use commerce_core::store::{InventoryStore, check_limit, distinct_batch};
use commerce_core::{Error, Result};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::combiner::{Combiner, HotSkuConfig};
use crate::db::Db;
use crate::error::{DbResult, PgError, code, corrupt};

/// The [`InventoryStore`] on PostgreSQL.
///
/// * A reservation is **one round trip**: the plpgsql function `reserve()` inserts the
///   reservation row (`ON CONFLICT DO NOTHING` makes it idempotent per order), runs one
///   guarded `UPDATE ... SET available = available - q ... WHERE available >= q` per
///   SKU in SKU order (locations in id order, so concurrent reservations never
///   deadlock), writes the ledger and appends the outbox event, all in one
///   transaction; a short SKU raises and rolls everything back.
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
}

fn kind_str(kind: MovementKind) -> &'static str {
    match kind {
        MovementKind::Received => "received",
        MovementKind::Adjusted => "adjusted",
        MovementKind::Reserved => "reserved",
        MovementKind::Released => "released",
        MovementKind::Sold => "sold",
        MovementKind::Returned => "returned",
        MovementKind::WrittenOff => "written_off",
        MovementKind::BackorderFilled => "backorder_filled",
    }
}

fn parse_kind(s: &str) -> Result<MovementKind> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(corrupt)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn level_from(row: &PgRow) -> Result<StockLevel> {
    Ok(StockLevel {
        sku: Sku::new(row.try_get::<String, _>("sku").db()?)?,
        location: LocationId::new(row.try_get::<String, _>("location").db()?)?,
        received: u(row.try_get("received").db()?),
        adjusted: row.try_get("adjusted").db()?,
        available: u(row.try_get("available").db()?),
        reserved: u(row.try_get("reserved").db()?),
        sold: u(row.try_get("sold").db()?),
    })
}

pub(crate) fn reservation_from(row: &PgRow) -> Result<Reservation> {
    let lines: serde_json::Value = row.try_get("lines").db()?;
    let allocations: serde_json::Value = row.try_get("allocations").db()?;
    let state: String = row.try_get("state").db()?;
    Ok(Reservation {
        order_id: OrderId::new(row.try_get::<String, _>("order_id").db()?)?,
        lines: serde_json::from_value(lines).map_err(corrupt)?,
        allocations: serde_json::from_value(allocations).map_err(corrupt)?,
        state: ReservationState::parse(&state)?,
        created_at: row.try_get("created_at").db()?,
        expires_at: row.try_get("expires_at").db()?,
        closed_at: row.try_get("closed_at").db()?,
        reason: row.try_get("reason").db()?,
    })
}

fn reservation_event(r: &Reservation) -> DomainEvent {
    DomainEvent::ReservationChanged {
        order_id: r.order_id.clone(),
        state: r.state,
        skus: r.lines.iter().map(|l| l.sku.clone()).collect(),
    }
}

/// One ledger row to write.
struct Mov {
    sku: String,
    location: Option<String>,
    kind: MovementKind,
    quantity: i64,
    order_id: Option<String>,
    reason: Option<String>,
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

impl PgInventory {
    /// The stock of each of `skus` (distinct), in order, in one statement (so from one
    /// snapshot) and one round trip.
    async fn read_stocks(&self, skus: &[Sku]) -> Result<Vec<SkuStock>> {
        if skus.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let rows = sqlx::query(sql!(
            // LATERAL: one index lookup per SKU whatever the statistics say (a plain
            // join was planned as a hash join over every level of a fresh table).
            "SELECT k.ord, s.backorder_allowed, s.backordered, l.*
               FROM unnest($1::text[]) WITH ORDINALITY AS k(sku, ord)
               LEFT JOIN {skus} s ON s.sku = k.sku COLLATE \"C\"
               LEFT JOIN LATERAL (
                   SELECT * FROM {levels} l WHERE l.sku = k.sku COLLATE \"C\" ORDER BY l.location
               ) l ON true
              ORDER BY k.ord, l.location",
            skus = self.db.t("stock_skus"),
            levels = self.db.t("stock_levels"),
        ))
        .bind(&names)
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        let mut out: Vec<SkuStock> = skus
            .iter()
            .map(|sku| SkuStock {
                sku: sku.clone(),
                levels: Vec::new(),
                backorder_allowed: false,
                backordered: 0,
            })
            .collect();
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
            stock.backordered = u(row
                .try_get::<Option<i64>, _>("backordered")
                .db()?
                .unwrap_or(0));
            if row.try_get::<Option<String>, _>("location").db()?.is_some() {
                stock.levels.push(level_from(row)?);
            }
        }
        Ok(out)
    }

    /// Checks every level's counters against the invariant, the live reservations and
    /// a replay of the ledger, and the SKU records' backorder counts; returns the drift
    /// found (empty when all is well). The same as [`InventoryStore::audit`]; reads one
    /// consistent snapshot (`REPEATABLE READ`), meant for operations and tests.
    pub async fn verify_invariants(&self) -> Result<Vec<InvariantViolation>> {
        self.audit().await
    }

    pub(crate) fn new(db: Arc<Db>, hot: Option<HotSkuConfig>) -> Self {
        let reserve_sql = format!(
            "SELECT * FROM {}($1, $2, $3, $4, $5, $6, $7, $8)",
            db.t("reserve")
        );
        PgInventory {
            combiner: hot.map(|h| Combiner::new(h, db.clone())),
            db,
            reserve_sql,
        }
    }

    async fn write_movements(
        &self,
        conn: &mut PgConnection,
        at: Timestamp,
        movs: &[Mov],
    ) -> Result<()> {
        if movs.is_empty() {
            return Ok(());
        }
        let skus: Vec<&str> = movs.iter().map(|m| m.sku.as_str()).collect();
        let locs: Vec<Option<&str>> = movs.iter().map(|m| m.location.as_deref()).collect();
        let kinds: Vec<&str> = movs.iter().map(|m| kind_str(m.kind)).collect();
        let qs: Vec<i64> = movs.iter().map(|m| m.quantity).collect();
        let orders: Vec<Option<&str>> = movs.iter().map(|m| m.order_id.as_deref()).collect();
        let reasons: Vec<Option<&str>> = movs.iter().map(|m| m.reason.as_deref()).collect();
        sqlx::query(sql!(
            "INSERT INTO {} (sku, location, kind, quantity, order_id, reason, at)
             SELECT s, l, k, q, o, r, $7
               FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[])
                    WITH ORDINALITY AS m(s, l, k, q, o, r, n)
              ORDER BY n",
            self.db.t("stock_movements")
        ))
        .bind(skus)
        .bind(locs)
        .bind(kinds)
        .bind(qs)
        .bind(orders)
        .bind(reasons)
        .bind(at)
        .execute(&mut *conn)
        .await
        .db()?;
        Ok(())
    }

    /// Applies valid restock items in one transaction: `restock_levels` moves the
    /// counters, then one statement writes the movements and one the events.
    async fn restock_items(&self, items: &[Restock]) -> Result<Vec<StockLevel>> {
        let now = self.db.now();
        let skus: Vec<&str> = items.iter().map(|i| i.sku.as_str()).collect();
        let locations: Vec<&str> = items.iter().map(|i| i.location.as_str()).collect();
        let quantities: Vec<i64> = items.iter().map(|i| i64::from(i.quantity)).collect();
        let mut tx = self.db.pool.begin().await.db()?;
        let rows = sqlx::query(sql!(
            "SELECT * FROM {}($1, $2, $3)",
            self.db.t("restock_levels")
        ))
        .bind(skus)
        .bind(locations)
        .bind(quantities)
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let mut applied: Vec<Option<(StockLevel, i64)>> = vec![None; items.len()];
        for row in &rows {
            let position: i32 = row.try_get("o_position").db()?;
            let slot = usize::try_from(position)
                .ok()
                .and_then(|p| p.checked_sub(1))
                .and_then(|p| applied.get_mut(p))
                .ok_or_else(|| corrupt(format!("restock_levels returned position {position}")))?;
            let level = StockLevel {
                sku: Sku::new(row.try_get::<String, _>("o_sku").db()?)?,
                location: LocationId::new(row.try_get::<String, _>("o_location").db()?)?,
                received: u(row.try_get("o_received").db()?),
                adjusted: row.try_get("o_adjusted").db()?,
                available: u(row.try_get("o_available").db()?),
                reserved: u(row.try_get("o_reserved").db()?),
                sold: u(row.try_get("o_sold").db()?),
            };
            *slot = Some((level, row.try_get("o_filled").db()?));
        }
        let mut levels = Vec::with_capacity(items.len());
        let mut movs = Vec::with_capacity(items.len());
        let mut events = Vec::with_capacity(items.len());
        for (item, applied) in items.iter().zip(applied) {
            let (level, fill) = applied.ok_or_else(|| corrupt("restock_levels skipped an item"))?;
            let q = i64::from(item.quantity);
            let mov = |kind, quantity| Mov {
                sku: item.sku.to_string(),
                location: Some(item.location.to_string()),
                kind,
                quantity,
                order_id: None,
                reason: Some(item.reason.clone()),
            };
            if fill > 0 {
                movs.push(mov(MovementKind::BackorderFilled, fill));
            }
            if q > fill {
                movs.push(mov(MovementKind::Received, q - fill));
            }
            events.push(DomainEvent::StockChanged {
                sku: item.sku.clone(),
                location: item.location.clone(),
                available: level.available,
            });
            levels.push(level);
        }
        self.write_movements(&mut tx, now, &movs).await?;
        self.db.append_in(&mut tx, now, &events).await?;
        tx.commit().await.db()?;
        Ok(levels)
    }

    async fn lock_reservation(
        &self,
        conn: &mut PgConnection,
        order_id: &OrderId,
    ) -> Result<Reservation> {
        let row = sqlx::query(sql!(
            "SELECT * FROM {} WHERE order_id = $1 FOR UPDATE",
            self.db.t("reservations")
        ))
        .bind(order_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .db()?
        .ok_or_else(|| Error::not_found(EntityKind::Reservation, order_id))?;
        reservation_from(&row)
    }

    /// Moves the units of active reservations to `Released` or `Sold` and marks them
    /// closed (counters, ledger, state; no event).
    async fn close_units(
        &self,
        conn: &mut PgConnection,
        rs: &[Reservation],
        to: ReservationState,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        let release = to == ReservationState::Released;
        let all: Vec<Allocation> = rs.iter().flat_map(|r| r.allocations.clone()).collect();
        // counters: aggregate per (sku, location), in lock order
        let mut agg: BTreeMap<(String, bool, Option<String>), i64> = BTreeMap::new();
        for a in lock_order(&all) {
            *agg.entry((
                a.sku.to_string(),
                a.location.is_none(),
                a.location.as_ref().map(|l| l.to_string()),
            ))
            .or_default() += i64::from(a.quantity);
        }
        for ((sku, _, loc), q) in &agg {
            match loc {
                Some(loc) => {
                    let set = if release {
                        "reserved = reserved - $3, available = available + $3"
                    } else {
                        "reserved = reserved - $3, sold = sold + $3"
                    };
                    sqlx::query(sql!(
                        "UPDATE {} SET {set} WHERE sku = $1 AND location = $2",
                        self.db.t("stock_levels")
                    ))
                    .bind(sku)
                    .bind(loc)
                    .bind(q)
                    .execute(&mut *conn)
                    .await
                    .db()?;
                }
                None => {
                    let set = if release {
                        "backordered = backordered - $2"
                    } else {
                        "owed = owed + $2"
                    };
                    sqlx::query(sql!(
                        "UPDATE {} SET {set} WHERE sku = $1",
                        self.db.t("stock_skus")
                    ))
                    .bind(sku)
                    .bind(q)
                    .execute(&mut *conn)
                    .await
                    .db()?;
                }
            }
        }
        let kind = if release {
            MovementKind::Released
        } else {
            MovementKind::Sold
        };
        let movs: Vec<Mov> = rs
            .iter()
            .flat_map(|r| {
                r.allocations.iter().filter_map(move |a| {
                    a.location.as_ref().map(|loc| Mov {
                        sku: a.sku.to_string(),
                        location: Some(loc.to_string()),
                        kind,
                        quantity: i64::from(a.quantity),
                        order_id: Some(r.order_id.to_string()),
                        reason: reason.map(str::to_owned),
                    })
                })
            })
            .collect();
        self.write_movements(conn, now, &movs).await?;
        let ids: Vec<&str> = rs.iter().map(|r| r.order_id.as_str()).collect();
        sqlx::query(sql!(
            "UPDATE {} SET state = $2, closed_at = $3, reason = $4 WHERE order_id = ANY($1)",
            self.db.t("reservations")
        ))
        .bind(ids)
        .bind(to.as_str())
        .bind(now)
        .bind(reason)
        .execute(&mut *conn)
        .await
        .db()?;
        Ok(())
    }

    async fn close_one(
        &self,
        order_id: &OrderId,
        to: ReservationState,
        reason: Option<&str>,
    ) -> Result<Reservation> {
        let now = self.db.now();
        let mut tx = self.db.pool.begin().await.db()?;
        let mut r = self.lock_reservation(&mut tx, order_id).await?;
        match r.state {
            s if s == to => {
                // Release the row lock now, not when the pool reuses the connection.
                tx.rollback().await.db()?;
                return Ok(r);
            }
            ReservationState::Active => {}
            other => {
                tx.rollback().await.db()?;
                return Err(Error::invalid_transition(
                    EntityKind::Reservation,
                    other,
                    to,
                ));
            }
        }
        self.close_units(&mut tx, std::slice::from_ref(&r), to, reason, now)
            .await?;
        r.state = to;
        r.closed_at = Some(now);
        r.reason = reason.map(str::to_owned);
        self.db
            .append_in(&mut tx, now, &[reservation_event(&r)])
            .await?;
        tx.commit().await.db()?;
        self.db.written();
        Ok(r)
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
            self.db.t("stock_levels")
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
            self.db.t("stock_levels")
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
            &[Mov {
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
            self.db.t("stock_skus")
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
        let lines = request.normalized_lines()?;
        if let (Some(c), [line]) = (&self.combiner, lines.as_slice()) {
            if c.applies_to(&line.sku) {
                return c
                    .reserve(request.order_id.clone(), line.clone(), request.ttl)
                    .await;
            }
        }
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
        let res = sqlx::query(sqlx::AssertSqlSafe(self.reserve_sql.as_str()))
            .bind(request.order_id.as_str())
            .bind(&skus)
            .bind(&qtys)
            .bind(&lines_json)
            .bind(now)
            .bind(expires)
            .bind(&event)
            .bind(self.db.channel.as_deref())
            .fetch_one(&self.db.pool)
            .await;
        let row = match res {
            Ok(row) => row,
            Err(e) => return Err(reserve_error(e)),
        };
        let outcome: String = row.try_get("outcome").db()?;
        let r = Reservation {
            order_id: request.order_id.clone(),
            lines: serde_json::from_value(row.try_get("lines").db()?).map_err(corrupt)?,
            allocations: serde_json::from_value(row.try_get("allocations").db()?)
                .map_err(corrupt)?,
            state: ReservationState::parse(&row.try_get::<String, _>("state").db()?)?,
            created_at: row.try_get("created_at").db()?,
            expires_at: row.try_get("expires_at").db()?,
            closed_at: row.try_get("closed_at").db()?,
            reason: row.try_get("reason").db()?,
        };
        if outcome == "created" {
            self.db.written();
        }
        if outcome == "existing" && r.lines != lines {
            return Err(Error::conflict(
                EntityKind::Reservation,
                format!(
                    "order {} already holds a different reservation",
                    request.order_id
                ),
            ));
        }
        Ok(r)
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
            self.db.t("reservations")
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
        self.close_one(order_id, ReservationState::Confirmed, None)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn release(&self, order_id: &OrderId, reason: &str) -> Result<Reservation> {
        check_reason(reason)?;
        self.close_one(order_id, ReservationState::Released, Some(reason))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn return_stock(
        &self,
        order_id: &OrderId,
        restock: bool,
        reason: &str,
    ) -> Result<Reservation> {
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
                        self.db.t("stock_levels")
                    ))
                    .bind(a.sku.as_str())
                    .bind(loc.as_str())
                    .bind(q)
                    .execute(&mut *tx)
                    .await
                    .db()?;
                    movs.push(Mov {
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
                        self.db.t("stock_skus")
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
        let order_of = |m: &Mov| {
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
            self.db.t("reservations")
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

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn release_expired(&self, now: Timestamp, limit: u32) -> Result<Vec<Reservation>> {
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
            t = self.db.t("reservations")
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

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn reservation(&self, order_id: &OrderId) -> Result<Option<Reservation>> {
        let row = sqlx::query(sql!(
            "SELECT * FROM {} WHERE order_id = $1",
            self.db.t("reservations")
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
            self.db.t("stock_movements")
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
        // The isolation level in the BEGIN itself: one round trip, and nothing can run
        // in the transaction before it.
        let mut tx = self
            .db
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .db()?;
        let levels = sqlx::query(sql!(
            "SELECT * FROM {} ORDER BY sku, location",
            self.db.t("stock_levels")
        ))
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let active = sqlx::query(sql!(
            "SELECT * FROM {} WHERE state = 'ACTIVE'",
            self.db.t("reservations")
        ))
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let metas: Vec<(String, i64, i64)> = sqlx::query_as(sql!(
            "SELECT sku, backordered, owed FROM {}",
            self.db.t("stock_skus")
        ))
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let movs = sqlx::query(sql!(
            "SELECT * FROM {} ORDER BY id",
            self.db.t("stock_movements")
        ))
        .fetch_all(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        let mut ledger: HashMap<Sku, Vec<StockMovement>> = HashMap::new();
        for m in movs.iter().map(movement_from) {
            let m = m?;
            ledger.entry(m.sku.clone()).or_default().push(m);
        }
        let mut held: HashMap<(Sku, LocationId), u64> = HashMap::new();
        let mut live_backorders: HashMap<Sku, u64> = HashMap::new();
        for r in active.iter().map(reservation_from) {
            for a in r?.allocations {
                match a.location {
                    Some(loc) => *held.entry((a.sku, loc)).or_default() += u64::from(a.quantity),
                    None => *live_backorders.entry(a.sku).or_default() += u64::from(a.quantity),
                }
            }
        }
        let mut out = Vec::new();
        for level in levels.iter().map(level_from) {
            let level = level?;
            let (sku, loc) = (level.sku.clone(), level.location.clone());
            let mut problem = |message: String| {
                out.push(InvariantViolation {
                    sku: sku.clone(),
                    location: Some(loc.clone()),
                    message,
                })
            };
            if !level.is_balanced() {
                problem(format!("unbalanced counters: {level:?}"));
            }
            let live = held.get(&(sku.clone(), loc.clone())).copied().unwrap_or(0);
            if live != level.reserved {
                problem(format!(
                    "reserved is {} but live reservations hold {live}",
                    level.reserved
                ));
            }
            let empty = Vec::new();
            let rebuilt = replay(&sku, &loc, ledger.get(&sku).unwrap_or(&empty));
            if rebuilt != level {
                problem(format!(
                    "ledger replays to {rebuilt:?}, counters are {level:?}"
                ));
            }
        }
        for (sku, backordered, owed) in metas {
            let sku = Sku::new(sku)?;
            let live = live_backorders.get(&sku).copied().unwrap_or(0);
            if u(backordered) != live + u(owed) {
                out.push(InvariantViolation {
                    sku,
                    location: None,
                    message: format!(
                        "backordered is {backordered} but live backorders {live} + owed {owed}"
                    ),
                });
            }
        }
        Ok(out)
    }
}

fn movement_from(row: &PgRow) -> Result<StockMovement> {
    let loc: Option<String> = row.try_get("location").db()?;
    let order: Option<String> = row.try_get("order_id").db()?;
    Ok(StockMovement {
        sku: Sku::new(row.try_get::<String, _>("sku").db()?)?,
        location: loc.map(LocationId::new).transpose()?,
        kind: parse_kind(&row.try_get::<String, _>("kind").db()?)?,
        quantity: row.try_get("quantity").db()?,
        order_id: order.map(OrderId::new).transpose()?,
        reason: row.try_get("reason").db()?,
        at: row.try_get("at").db()?,
    })
}

/// Maps the errors `reserve()` raises by SQLSTATE.
pub(crate) fn reserve_error(e: sqlx::Error) -> Error {
    let pg = PgError::Sqlx(e);
    match pg.code().as_deref() {
        Some(code::OUT_OF_STOCK) => {
            #[derive(serde::Deserialize)]
            struct Short {
                sku: String,
                requested: u64,
                available: u64,
            }
            let detail = match &pg {
                PgError::Sqlx(sqlx::Error::Database(d)) => d
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|d| d.detail())
                    .map(str::to_owned),
                _ => None,
            };
            match detail.and_then(|d| serde_json::from_str::<Short>(&d).ok()) {
                Some(s) => Error::OutOfStock {
                    sku: s.sku,
                    requested: s.requested,
                    available: s.available,
                },
                None => corrupt("reserve() raised out of stock without details"),
            }
        }
        Some(code::UNKNOWN_SKU) => {
            let sku = match &pg {
                PgError::Sqlx(sqlx::Error::Database(d)) => d
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|d| d.detail())
                    .map(str::to_owned),
                _ => None,
            };
            Error::not_found(EntityKind::Stock, sku.unwrap_or_default())
        }
        _ => pg.into(),
    }
}
