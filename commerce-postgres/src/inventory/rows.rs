//! Row mapping of the inventory tables: one function per kind of row.

use commerce_core::Result;
use commerce_core::event::DomainEvent;
use commerce_core::id::{LocationId, OrderId, Sku};
use commerce_core::inventory::{
    MovementKind, Reservation, ReservationState, StockLevel, StockMovement,
};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::{DbResult, corrupt};

pub(super) fn kind_str(kind: MovementKind) -> &'static str {
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

/// A counter column, which is never negative (a negative one is corrupt).
pub(super) fn counter(row: &PgRow, column: &str) -> Result<u64> {
    crate::error::non_negative(row.try_get::<i64, _>(column).db()?, column)
}

pub(super) fn level_from(row: &PgRow) -> Result<StockLevel> {
    Ok(StockLevel {
        sku: Sku::new(row.try_get::<String, _>("sku").db()?)?,
        location: LocationId::new(row.try_get::<String, _>("location").db()?)?,
        received: counter(row, "received")?,
        adjusted: row.try_get("adjusted").db()?,
        available: counter(row, "available")?,
        reserved: counter(row, "reserved")?,
        sold: counter(row, "sold")?,
    })
}

/// A reservation from a `reservations` row (the order id read from the row).
pub(crate) fn reservation_from(row: &PgRow) -> Result<Reservation> {
    let order_id = OrderId::new(row.try_get::<String, _>("order_id").db()?)?;
    reservation_columns(row, order_id, "")
}

/// A reservation of `order_id` from the columns `{prefix}lines`, `{prefix}allocations`,
/// `{prefix}state`, `{prefix}created_at`, `{prefix}expires_at`, `{prefix}closed_at` and
/// `{prefix}reason`: the one mapping of a reservation row (the table, the outcome rows
/// of `try_reserve()` and `reserve_batch()`, the pipeline steps' `r_` columns).
pub(crate) fn reservation_columns(
    row: &PgRow,
    order_id: OrderId,
    prefix: &str,
) -> Result<Reservation> {
    let col = |name: &str| format!("{prefix}{name}");
    let lines: serde_json::Value = row.try_get(col("lines").as_str()).db()?;
    let allocations: serde_json::Value = row.try_get(col("allocations").as_str()).db()?;
    let state: String = row.try_get(col("state").as_str()).db()?;
    Ok(Reservation {
        order_id,
        lines: serde_json::from_value(lines).map_err(corrupt)?,
        allocations: serde_json::from_value(allocations).map_err(corrupt)?,
        state: ReservationState::parse(&state)?,
        created_at: row.try_get(col("created_at").as_str()).db()?,
        expires_at: row.try_get(col("expires_at").as_str()).db()?,
        closed_at: row.try_get(col("closed_at").as_str()).db()?,
        reason: row.try_get(col("reason").as_str()).db()?,
    })
}

pub(super) fn reservation_event(r: &Reservation) -> DomainEvent {
    DomainEvent::ReservationChanged {
        order_id: r.order_id.clone(),
        state: r.state,
        skus: r.lines.iter().map(|l| l.sku.clone()).collect(),
    }
}

/// One ledger row to write.
pub(super) struct LedgerRow {
    pub sku: String,
    pub location: Option<String>,
    pub kind: MovementKind,
    pub quantity: i64,
    pub order_id: Option<String>,
    pub reason: Option<String>,
}

pub(super) fn movement_from(row: &PgRow) -> Result<StockMovement> {
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
