//! `audit()` proven on PostgreSQL: each invariant is corrupted in turn by direct SQL on
//! a fresh schema, and the audit must report exactly that kind of violation, on that SKU
//! and location, and nothing else.

mod common;

use std::sync::Arc;

use commerce_core::clock::ManualClock;
use commerce_core::id::{LocationId, OrderId, Sku};
use commerce_core::inventory::{InvariantViolation, ReservationRequest};
use commerce_core::store::InventoryStore;
use commerce_postgres::{PgCommerce, sqlx};
use common::{PgBuilder, SchemaGuard};

/// The kinds of violation `audit()` distinguishes, read from its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Unbalanced,
    /// More reserved units in the counters than live reservations hold: an orphan.
    ReservedWithoutReservation,
    /// Fewer reserved units than live reservations hold: a double release.
    ReservationWithoutUnits,
    LedgerMismatch,
    Backorders,
}

fn kind(v: &InvariantViolation) -> Kind {
    let m = v.message.as_str();
    if m.starts_with("unbalanced counters") {
        return Kind::Unbalanced;
    }
    if m.starts_with("ledger replays to") {
        return Kind::LedgerMismatch;
    }
    if m.starts_with("backordered is") {
        return Kind::Backorders;
    }
    let numbers: Vec<u64> = m
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers.as_slice() {
        [counted, live] if counted > live => Kind::ReservedWithoutReservation,
        [counted, live] if counted < live => Kind::ReservationWithoutUnits,
        _ => panic!("unrecognised audit message: {m}"),
    }
}

fn sku(s: &str) -> Sku {
    Sku::new(s).expect("sku")
}

fn wh() -> LocationId {
    LocationId::new("wh-1").expect("location")
}

fn order(o: &str) -> OrderId {
    OrderId::new(o).expect("order id")
}

/// A: 10 received, o1 (2 units) reserved then released, o2 (3 units) active.
/// B: 5 received (a bystander the audit must leave alone).
async fn store(builder: &PgBuilder) -> PgCommerce {
    let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
    let pg = builder.engine(clock).await.expect("engine");
    let inv = &pg.inventory;
    inv.restock(&sku("A"), &wh(), 10, "initial")
        .await
        .expect("restock A");
    inv.restock(&sku("B"), &wh(), 5, "initial")
        .await
        .expect("restock B");
    inv.reserve(&ReservationRequest::new(order("o1"), [(sku("A"), 2)]))
        .await
        .expect("reserve o1");
    inv.reserve(&ReservationRequest::new(order("o2"), [(sku("A"), 3)]))
        .await
        .expect("reserve o2");
    inv.release(&order("o1"), "test").await.expect("release o1");
    assert_eq!(
        inv.audit().await.expect("audit"),
        vec![],
        "clean before corruption"
    );
    pg
}

/// Runs `statements` (with `{s}` for the schema) on a fresh store, then the audit.
async fn kinds_after(statements: &[&str]) -> Vec<(Kind, Sku, Option<LocationId>)> {
    let builder = PgBuilder::default();
    let pg = store(&builder).await;
    let _guard = SchemaGuard(pg.schema().to_owned());
    for statement in statements {
        let sql = statement.replace("{s}", &format!("\"{}\"", pg.schema()));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pg.pool())
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let mut found: Vec<_> = pg
        .inventory
        .audit()
        .await
        .expect("audit")
        .iter()
        .map(|v| (kind(v), v.sku.clone(), v.location.clone()))
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_drift_is_reported_as_unbalanced_counters() {
    let found =
        kinds_after(&["UPDATE {s}.stock_levels SET available = available + 3 WHERE sku = 'A'"])
            .await;
    assert_eq!(
        found,
        vec![
            (Kind::Unbalanced, sku("A"), Some(wh())),
            (Kind::LedgerMismatch, sku("A"), Some(wh())),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_reservation_is_reported() {
    let found = kinds_after(&[
        "UPDATE {s}.reservations SET state = 'RELEASED', closed_at = expires_at WHERE order_id = 'o2'",
    ])
    .await;
    assert_eq!(
        found,
        vec![(Kind::ReservedWithoutReservation, sku("A"), Some(wh()))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_release_is_reported() {
    // o1's units are given back a second time: counters and a copy of its release entry.
    let found = kinds_after(&[
        "UPDATE {s}.stock_levels SET reserved = reserved - 2, available = available + 2 WHERE sku = 'A'",
        "INSERT INTO {s}.stock_movements (sku, location, kind, quantity, order_id, reason, at)
         SELECT sku, location, kind, quantity, order_id, reason, at FROM {s}.stock_movements
         WHERE order_id = 'o1' ORDER BY id DESC LIMIT 1",
    ])
    .await;
    assert_eq!(
        found,
        vec![(Kind::ReservationWithoutUnits, sku("A"), Some(wh()))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_mismatch_is_reported() {
    // A second copy of A's restock entry, with no counter change.
    let found = kinds_after(&[
        "INSERT INTO {s}.stock_movements (sku, location, kind, quantity, order_id, reason, at)
         SELECT sku, location, kind, quantity, order_id, reason, at FROM {s}.stock_movements
         WHERE sku = 'A' ORDER BY id LIMIT 1",
    ])
    .await;
    assert_eq!(found, vec![(Kind::LedgerMismatch, sku("A"), Some(wh()))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backorder_drift_is_reported() {
    let found = kinds_after(&[
        "INSERT INTO {s}.stock_skus (sku, backordered) VALUES ('B', 1)
         ON CONFLICT (sku) DO UPDATE SET backordered = {s}.stock_skus.backordered + 1",
    ])
    .await;
    assert_eq!(found, vec![(Kind::Backorders, sku("B"), None)]);
}
