//! `audit()` proven on the in-memory engine: each invariant is corrupted in turn, in the
//! store's own state, and the audit must report exactly that kind of violation, on that
//! SKU and location, and nothing else.

use std::sync::Arc;

use super::{MemoryInventory, State};
use crate::clock::{Clock, ManualClock};
use crate::id::{LocationId, OrderId, Sku};
use crate::inventory::{
    InvariantViolation, MovementKind, ReservationRequest, ReservationState, StockMovement,
};
use crate::memory::{MemoryEventLog, lock};
use crate::store::InventoryStore;

/// The kinds of violation `audit()` distinguishes, read from its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// available + reserved + sold differs from received - adjusted.
    Unbalanced,
    /// Counters hold more reserved units than live reservations: an orphan.
    ReservedWithoutReservation,
    /// Counters hold fewer reserved units than live reservations: a double release.
    ReservationWithoutUnits,
    /// The ledger does not replay to the counters.
    LedgerMismatch,
    /// The backorder counters disagree.
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
    // "reserved is X but live reservations hold Y"
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
async fn store() -> (MemoryInventory, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
    let inv = MemoryInventory::new(clock.clone(), Arc::new(MemoryEventLog::new(clock.clone())));
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
    (inv, clock)
}

async fn kinds_after(
    corrupt: impl FnOnce(&mut State, &Arc<ManualClock>),
) -> Vec<(Kind, Sku, Option<LocationId>)> {
    let (inv, clock) = store().await;
    corrupt(&mut lock(&inv.state), &clock);
    let mut found: Vec<_> = inv
        .audit()
        .await
        .expect("audit")
        .iter()
        .map(|v| (kind(v), v.sku.clone(), v.location.clone()))
        .collect();
    found.sort();
    found
}

fn level<'a>(state: &'a mut State, s: &str) -> &'a mut crate::inventory::StockLevel {
    state.levels.get_mut(&(sku(s), wh())).expect("level")
}

#[tokio::test]
async fn counter_drift_is_reported_as_unbalanced_counters() {
    let found = kinds_after(|state, _| level(state, "A").available += 3).await;
    assert_eq!(
        found,
        vec![
            (Kind::Unbalanced, sku("A"), Some(wh())),
            (Kind::LedgerMismatch, sku("A"), Some(wh())),
        ],
        "3 units of A appeared from nowhere: unbalanced, and no ledger entry explains them"
    );
}

#[tokio::test]
async fn an_orphan_reservation_is_reported() {
    // o2 is closed without its units coming back: the counters still hold them.
    let found = kinds_after(|state, _| {
        let r = state.reservations.get_mut(&order("o2")).expect("o2");
        r.state = ReservationState::Released;
        let expires = r.expires_at;
        state.expiry.remove(&(expires, order("o2")));
    })
    .await;
    assert_eq!(
        found,
        vec![(Kind::ReservedWithoutReservation, sku("A"), Some(wh()))]
    );
}

#[tokio::test]
async fn a_double_release_is_reported() {
    // o1's 2 units are given back a second time, ledger entry and all.
    let found = kinds_after(|state, clock| {
        let l = level(state, "A");
        l.reserved -= 2;
        l.available += 2;
        state.record(StockMovement {
            sku: sku("A"),
            location: Some(wh()),
            kind: MovementKind::Released,
            quantity: 2,
            order_id: Some(order("o1")),
            reason: Some("released twice".into()),
            at: clock.now(),
        });
    })
    .await;
    assert_eq!(
        found,
        vec![(Kind::ReservationWithoutUnits, sku("A"), Some(wh()))]
    );
}

#[tokio::test]
async fn a_ledger_mismatch_is_reported() {
    let found = kinds_after(|state, clock| {
        state.record(StockMovement {
            sku: sku("A"),
            location: Some(wh()),
            kind: MovementKind::Received,
            quantity: 4,
            order_id: None,
            reason: Some("never counted".into()),
            at: clock.now(),
        })
    })
    .await;
    assert_eq!(found, vec![(Kind::LedgerMismatch, sku("A"), Some(wh()))]);
}

#[tokio::test]
async fn backorder_drift_is_reported() {
    let found = kinds_after(|state, _| {
        state.skus.entry(sku("B")).or_default().backordered += 1;
    })
    .await;
    assert_eq!(found, vec![(Kind::Backorders, sku("B"), None)]);
}
