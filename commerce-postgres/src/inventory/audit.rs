//! The inventory audit: counters, live reservations and the ledger read from one
//! snapshot and checked against each other.

use std::collections::HashMap;

use commerce_core::Result;
use commerce_core::id::{LocationId, Sku};
use commerce_core::inventory::{InvariantViolation, StockMovement, replay};

use super::rows::{level_from, movement_from, reservation_from};
use crate::db::Db;
use crate::error::DbResult;

/// See [`InventoryStore::audit`](commerce_core::store::InventoryStore::audit).
pub(super) async fn audit(db: &Db) -> Result<Vec<InvariantViolation>> {
    // The isolation level in the BEGIN itself: one round trip, and nothing can run
    // in the transaction before it.
    let mut tx = db
        .pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .db()?;
    let levels = sqlx::query(sql!(
        "SELECT * FROM {} ORDER BY sku, location",
        db.qualified("stock_levels")
    ))
    .fetch_all(&mut *tx)
    .await
    .db()?;
    let active = sqlx::query(sql!(
        "SELECT * FROM {} WHERE state = 'ACTIVE'",
        db.qualified("reservations")
    ))
    .fetch_all(&mut *tx)
    .await
    .db()?;
    let metas: Vec<(String, i64, i64)> = sqlx::query_as(sql!(
        "SELECT sku, backordered, owed FROM {}",
        db.qualified("stock_skus")
    ))
    .fetch_all(&mut *tx)
    .await
    .db()?;
    let movs = sqlx::query(sql!(
        "SELECT * FROM {} ORDER BY id",
        db.qualified("stock_movements")
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
        // Compared without clamping: a negative counter is drift to report too.
        if i128::from(backordered) != i128::from(live) + i128::from(owed) {
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
