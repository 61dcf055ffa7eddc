//! Writes to the movement ledger, and restocks (counters, ledger and events together).

use super::*;
use crate::error::position_index;

impl PgInventory {
    pub(super) async fn write_movements(
        &self,
        conn: &mut PgConnection,
        at: Timestamp,
        movs: &[LedgerRow],
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
            self.db.qualified("stock_movements")
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
    pub(super) async fn restock_items(&self, items: &[Restock]) -> Result<Vec<StockLevel>> {
        let now = self.db.now();
        let skus: Vec<&str> = items.iter().map(|i| i.sku.as_str()).collect();
        let locations: Vec<&str> = items.iter().map(|i| i.location.as_str()).collect();
        let quantities: Vec<i64> = items.iter().map(|i| i64::from(i.quantity)).collect();
        let mut tx = self.db.pool.begin().await.db()?;
        let rows = sqlx::query(sql!(
            "SELECT * FROM {}($1, $2, $3)",
            self.db.qualified("restock_levels")
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
            let slot = &mut applied[position_index(position, items.len(), "restock_levels")?];
            let level = StockLevel {
                sku: Sku::new(row.try_get::<String, _>("o_sku").db()?)?,
                location: LocationId::new(row.try_get::<String, _>("o_location").db()?)?,
                received: counter(row, "o_received")?,
                adjusted: row.try_get("o_adjusted").db()?,
                available: counter(row, "o_available")?,
                reserved: counter(row, "o_reserved")?,
                sold: counter(row, "o_sold")?,
            };
            *slot = Some((level, row.try_get("o_filled").db()?));
        }
        let mut levels = Vec::with_capacity(items.len());
        let mut movs = Vec::with_capacity(items.len());
        let mut events = Vec::with_capacity(items.len());
        for (item, applied) in items.iter().zip(applied) {
            let (level, fill) = applied.ok_or_else(|| corrupt("restock_levels skipped an item"))?;
            let q = i64::from(item.quantity);
            let mov = |kind, quantity| LedgerRow {
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
}
