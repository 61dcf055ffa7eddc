//! Closing reservations: locking one, and moving its units to released or sold with
//! their counters, ledger rows and state.

use super::*;

impl PgInventory {
    pub(super) async fn lock_reservation(
        &self,
        conn: &mut PgConnection,
        order_id: &OrderId,
    ) -> Result<Reservation> {
        let row = sqlx::query(sql!(
            "SELECT * FROM {} WHERE order_id = $1 FOR UPDATE",
            self.db.qualified("reservations")
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
    pub(super) async fn close_units(
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
                        self.db.qualified("stock_levels")
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
                        self.db.qualified("stock_skus")
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
        let movs: Vec<LedgerRow> = rs
            .iter()
            .flat_map(|r| {
                r.allocations.iter().filter_map(move |a| {
                    a.location.as_ref().map(|loc| LedgerRow {
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
            self.db.qualified("reservations")
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

    pub(super) async fn close_one(
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
