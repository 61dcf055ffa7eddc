//! The one out-of-stock protocol: an outcome row of `try_reserve()` (migration 0999;
//! `reserve_batch()` answers one per request) mapped to the reservation or the typed
//! refusal. The plain path and the hot-SKU combiner both decide here.

use commerce_core::id::OrderId;
use commerce_core::inventory::{Reservation, ReservationLine};
use commerce_core::{EntityKind, Error, Result};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::rows::reservation_columns;
use crate::error::{DbResult, corrupt, non_negative};

/// A reservation that was granted: made by this call, or one the order already held.
pub(crate) struct Reserved {
    pub reservation: Reservation,
    /// Made by this call (it wrote stock, ledger and event).
    pub created: bool,
}

/// The answer to reserving `lines` (normalised) for `order_id`, from its outcome row:
/// `created` or `existing` (the same lines; other lines are a `Conflict`),
/// `out_of_stock` (`OutOfStock` with the row's `sku`, `requested` and `available`) or
/// `unknown_sku` (`NotFound` of the stock of `sku`).
pub(crate) fn reserve_outcome(
    row: &PgRow,
    order_id: &OrderId,
    lines: &[ReservationLine],
) -> Result<Reserved> {
    let outcome: String = row.try_get("outcome").db()?;
    let refused_sku = || -> Result<String> {
        row.try_get::<Option<String>, _>("sku")
            .db()?
            .ok_or_else(|| corrupt(format!("reservation outcome {outcome:?} without a sku")))
    };
    let count = |column: &str| -> Result<u64> {
        let v = row
            .try_get::<Option<i64>, _>(column)
            .db()?
            .ok_or_else(|| corrupt(format!("reservation outcome {outcome:?} without {column}")))?;
        non_negative(v, column)
    };
    match outcome.as_str() {
        "created" | "existing" => {
            let reservation = reservation_columns(row, order_id.clone(), "")?;
            if outcome == "existing" && reservation.lines.as_slice() != lines {
                return Err(Error::conflict(
                    EntityKind::Reservation,
                    format!("order {order_id} already holds a different reservation"),
                ));
            }
            Ok(Reserved {
                reservation,
                created: outcome == "created",
            })
        }
        "out_of_stock" => Err(Error::OutOfStock {
            sku: refused_sku()?,
            requested: count("requested")?,
            available: count("available")?,
        }),
        "unknown_sku" => Err(Error::not_found(EntityKind::Stock, refused_sku()?)),
        other => Err(corrupt(format!("reservation outcome {other:?}"))),
    }
}
