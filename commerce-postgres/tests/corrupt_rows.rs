//! A row that breaks what the schema should guarantee (a negative counter, a negative
//! version) is a typed, non-retryable backend error naming the column, never read as 0.

mod common;

use std::sync::Arc;

use commerce_core::clock::ManualClock;
use commerce_core::id::{LocationId, Sku};
use commerce_core::store::InventoryStore;
use commerce_postgres::sqlx;

#[tokio::test(flavor = "multi_thread")]
async fn a_negative_counter_is_a_corrupt_row_error() {
    let builder = common::PgBuilder::default();
    let pg = builder
        .engine(Arc::new(ManualClock::new(ManualClock::EPOCH)))
        .await
        .expect("engine");
    let _guard = common::SchemaGuard(pg.schema().to_owned());
    let sku = Sku::new("A").expect("sku");
    pg.inventory
        .restock(&sku, &LocationId::new("w").expect("loc"), 5, "in")
        .await
        .expect("restock");
    let s = pg.schema();
    for statement in [
        format!("ALTER TABLE \"{s}\".stock_levels DROP CONSTRAINT stock_levels_available_check"),
        format!("UPDATE \"{s}\".stock_levels SET available = -1 WHERE sku = 'A'"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(pg.pool())
            .await
            .expect("corrupt the row");
    }
    let err = pg.inventory.stock(&sku).await.expect_err("corrupt row");
    assert!(
        matches!(&err, commerce_core::Error::Backend { retryable: false, message, .. }
            if message.contains("corrupt row") && message.contains("available")),
        "{err:?}"
    );
}
