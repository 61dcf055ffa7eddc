//! The model-based tests of the inventory: a pure, sequential model of
//! [`InventoryStore`](crate::store::InventoryStore) written from the contract and the
//! [`crate::inventory`] docs, and two proptest-driven tests that compare a store with it.
//!
//! * **Sequential**: a random history of restock / adjust / reserve / confirm / release /
//!   return / extend / release_expired / clock moves runs one operation at a time
//!   against a fresh store and the model. Every outcome (value or error kind and
//!   payload), every event and the whole observable state (levels, backorders, every
//!   reservation) must match after every step; at the end `audit()` is empty and the
//!   ledger replays to the counters. Where the contract leaves a choice (which due
//!   reservations one `release_expired` call with a small limit picks), the model
//!   checks the store's choice is allowed and follows it.
//! * **Concurrent**: several tasks run random programs at once against one store. The
//!   interleaving is the runtime's, so the check is what must hold for *every*
//!   interleaving: `audit()` is empty; the ledger replays to the counters; for SKUs
//!   without backorders every counter equals what the successful operations and the
//!   final reservation states imply (units are conserved exactly); every outcome is
//!   explainable by the final state (a confirmed order is not released, a reaped order
//!   was reaped once and never confirmed, an `InvalidTransition` names a state the order
//!   really reached, out-of-stock answers ask for more than they saw); and each state
//!   change appended exactly one event.
//!
//! A failure panics with the seed (`COMMERCE_TESTKIT_SEED` reproduces the generated
//! histories) and the shrunk history with each step's outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use super::check::concurrently;
use super::fixtures::{loc, oid, sku};
use super::inventory::reservations_of;
use super::runner::{Ctx, Env, read_all_after};
use crate::clock::{self, Timestamp};
use crate::error::{EntityKind, Error, Result};
use crate::event::DomainEvent;
use crate::id::{LocationId, OrderId, Sku};
use crate::inventory::{
    Allocation, MAX_QUANTITY, Reservation, ReservationLine, ReservationRequest, ReservationState,
    SkuStock, StockLevel, check_quantity, replay,
};
use crate::store::InventoryStore;

/// The SKUs of the histories; the last one allows backorders.
const SKUS: [&str; 3] = ["m-a", "m-b", "m-bo"];
const BACKORDER_SKU: usize = 2;
/// Locations, in id order.
const LOCATIONS: [&str; 3] = ["l-1", "l-2", "l-3"];
/// Orders the operations pick from (few, so they collide).
const ORDERS: usize = 6;

fn order_name(i: usize) -> String {
    format!("m-o{i}")
}

/// One operation of a history.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Restock {
        sku: usize,
        loc: usize,
        qty: u32,
    },
    Adjust {
        sku: usize,
        loc: usize,
        delta: i64,
    },
    Reserve {
        order: usize,
        lines: Vec<(usize, u32)>,
        ttl_secs: u64,
    },
    Extend {
        order: usize,
        ttl_secs: u64,
    },
    Confirm {
        order: usize,
    },
    Release {
        order: usize,
    },
    Return {
        order: usize,
        restock: bool,
    },
    ReleaseExpired {
        limit: u32,
    },
    Advance {
        secs: u64,
    },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Restock { sku, loc, qty } => {
                write!(f, "restock {}@{} +{qty}", SKUS[*sku], LOCATIONS[*loc])
            }
            Op::Adjust { sku, loc, delta } => {
                write!(f, "adjust {}@{} {delta:+}", SKUS[*sku], LOCATIONS[*loc])
            }
            Op::Reserve {
                order,
                lines,
                ttl_secs,
            } => {
                let lines: Vec<String> = lines
                    .iter()
                    .map(|(s, q)| format!("{}x{q}", SKUS[*s]))
                    .collect();
                write!(
                    f,
                    "reserve {} [{}] ttl {ttl_secs}s",
                    order_name(*order),
                    lines.join(", ")
                )
            }
            Op::Extend { order, ttl_secs } => {
                write!(f, "extend {} {ttl_secs}s", order_name(*order))
            }
            Op::Confirm { order } => write!(f, "confirm {}", order_name(*order)),
            Op::Release { order } => write!(f, "release {}", order_name(*order)),
            Op::Return { order, restock } => write!(
                f,
                "return {} ({})",
                order_name(*order),
                if *restock { "restock" } else { "write off" }
            ),
            Op::ReleaseExpired { limit } => write!(f, "release_expired(now, {limit})"),
            Op::Advance { secs } => write!(f, "clock +{secs}s"),
        }
    }
}

impl Op {
    fn order(&self) -> Option<usize> {
        match self {
            Op::Reserve { order, .. }
            | Op::Extend { order, .. }
            | Op::Confirm { order }
            | Op::Release { order }
            | Op::Return { order, .. } => Some(*order),
            _ => None,
        }
    }

    fn request(order: usize, lines: &[(usize, u32)], ttl_secs: u64) -> ReservationRequest {
        let mut r = ReservationRequest::new(
            oid(&order_name(order)),
            lines.iter().map(|(s, q)| (sku(SKUS[*s]), *q)),
        );
        r.ttl = Duration::from_secs(ttl_secs);
        r
    }
}

fn op_strategy(concurrent: bool) -> impl Strategy<Value = Op> {
    let sku_i = 0..SKUS.len();
    let loc_i = 0..LOCATIONS.len();
    let order_i = 0..ORDERS;
    let lines = prop::collection::vec((0..SKUS.len(), 1..8u32), 1..4);
    prop_oneof![
        3 => (sku_i.clone(), loc_i.clone(), 1..20u32)
            .prop_map(|(sku, loc, qty)| Op::Restock { sku, loc, qty }),
        1 => (sku_i, loc_i, -8..6i64).prop_map(|(sku, loc, delta)| Op::Adjust { sku, loc, delta }),
        6 => (order_i.clone(), lines, 0..600u64)
            .prop_map(|(order, lines, ttl_secs)| Op::Reserve { order, lines, ttl_secs }),
        1 => (order_i.clone(), 1..900u64).prop_map(|(order, ttl_secs)| Op::Extend { order, ttl_secs }),
        3 => order_i.clone().prop_map(|order| Op::Confirm { order }),
        2 => order_i.clone().prop_map(|order| Op::Release { order }),
        // In concurrent programs the restock flag is a function of the order, so the
        // final counters do not depend on which of two returns ran first.
        1 => (order_i, any::<bool>()).prop_map(move |(order, restock)| Op::Return {
            order,
            restock: if concurrent { order % 2 == 0 } else { restock },
        }),
        1 => (1..4u32).prop_map(|limit| Op::ReleaseExpired { limit }),
        2 => (1..400u64).prop_map(|secs| Op::Advance { secs }),
    ]
}

/// What an operation gave, comparable between the store and the model.
#[derive(Clone, PartialEq)]
enum Outcome {
    Level(StockLevel),
    Reservation(Reservation),
    Reaped(Vec<Reservation>),
    Done,
    Failed(ErrorShape),
}

/// The parts of an error the contract fixes.
#[derive(Clone, PartialEq, Eq, Debug)]
enum ErrorShape {
    NotFound(EntityKind),
    Conflict(EntityKind),
    OutOfStock {
        sku: String,
        requested: u64,
        available: u64,
    },
    InvalidTransition {
        entity: EntityKind,
        from: String,
    },
    Validation,
    Other(String),
}

impl From<&Error> for ErrorShape {
    fn from(e: &Error) -> Self {
        match e {
            Error::NotFound { kind, .. } => ErrorShape::NotFound(*kind),
            Error::Conflict { kind, .. } => ErrorShape::Conflict(*kind),
            Error::OutOfStock {
                sku,
                requested,
                available,
            } => ErrorShape::OutOfStock {
                sku: sku.clone(),
                requested: *requested,
                available: *available,
            },
            Error::InvalidTransition { entity, from, .. } => ErrorShape::InvalidTransition {
                entity: *entity,
                from: from.clone(),
            },
            Error::Validation { .. } => ErrorShape::Validation,
            other => ErrorShape::Other(other.to_string()),
        }
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |r: &Reservation| {
            let allocs: Vec<String> = r
                .allocations
                .iter()
                .map(|a| {
                    format!(
                        "{}x{}@{}",
                        a.sku,
                        a.quantity,
                        a.location.as_ref().map_or("backorder", |l| l.as_str())
                    )
                })
                .collect();
            format!(
                "{} {} [{}] expires {}",
                r.order_id,
                r.state,
                allocs.join(", "),
                r.expires_at.format("%H:%M:%S")
            )
        };
        match self {
            Outcome::Level(l) => write!(
                f,
                "level {}@{} recv {} adj {} avail {} resv {} sold {}",
                l.sku, l.location, l.received, l.adjusted, l.available, l.reserved, l.sold
            ),
            Outcome::Reservation(r) => write!(f, "{}", short(r)),
            Outcome::Reaped(rs) => {
                let ids: Vec<&str> = rs.iter().map(|r| r.order_id.as_str()).collect();
                write!(f, "reaped [{}]", ids.join(", "))
            }
            Outcome::Done => write!(f, "ok"),
            Outcome::Failed(e) => write!(f, "ERR {e:?}"),
        }
    }
}

fn outcome<T>(r: Result<T>, wrap: impl FnOnce(T) -> Outcome) -> Outcome {
    match r {
        Ok(v) => wrap(v),
        Err(e) => Outcome::Failed(ErrorShape::from(&e)),
    }
}

#[derive(Debug, Clone, Default)]
struct Meta {
    backorder_allowed: bool,
    backordered: u64,
    owed: u64,
}

/// The sequential model of an inventory store.
#[derive(Debug, Clone, Default)]
pub(crate) struct Model {
    levels: BTreeMap<(Sku, LocationId), StockLevel>,
    meta: BTreeMap<Sku, Meta>,
    reservations: BTreeMap<OrderId, Reservation>,
}

impl Model {
    fn set_backorder(&mut self, s: &Sku, allowed: bool) {
        self.meta.entry(s.clone()).or_default().backorder_allowed = allowed;
    }

    fn stock(&self, s: &Sku) -> SkuStock {
        let meta = self.meta.get(s).cloned().unwrap_or_default();
        SkuStock {
            sku: s.clone(),
            levels: self
                .levels
                .iter()
                .filter(|((k, _), _)| k == s)
                .map(|(_, l)| l.clone())
                .collect(),
            backorder_allowed: meta.backorder_allowed,
            backordered: meta.backordered,
        }
    }

    fn restock(&mut self, s: &Sku, l: &LocationId, qty: u32) -> Result<StockLevel> {
        check_quantity(qty)?;
        let meta = self.meta.entry(s.clone()).or_default();
        let q = u64::from(qty);
        let fill = meta.owed.min(q);
        meta.owed -= fill;
        meta.backordered -= fill;
        let level = self
            .levels
            .entry((s.clone(), l.clone()))
            .or_insert_with(|| StockLevel::empty(s.clone(), l.clone()));
        level.received += q;
        level.sold += fill;
        level.available += q - fill;
        Ok(level.clone())
    }

    fn adjust(&mut self, s: &Sku, l: &LocationId, delta: i64) -> Result<StockLevel> {
        if delta == 0 || delta.unsigned_abs() > u64::from(MAX_QUANTITY) {
            return Err(Error::validation("delta", "model"));
        }
        let level = self
            .levels
            .get_mut(&(s.clone(), l.clone()))
            .ok_or_else(|| Error::not_found(EntityKind::Stock, s))?;
        if delta < 0 && level.available < delta.unsigned_abs() {
            return Err(Error::OutOfStock {
                sku: s.to_string(),
                requested: delta.unsigned_abs(),
                available: level.available,
            });
        }
        level.available = level.available.saturating_add_signed(delta);
        level.adjusted -= delta;
        Ok(level.clone())
    }

    /// The location policy of [`crate::inventory`], for one line.
    fn plan(&self, line: &ReservationLine) -> Result<Vec<Allocation>> {
        let levels: Vec<&StockLevel> = self
            .levels
            .iter()
            .filter(|((k, _), _)| k == &line.sku)
            .map(|(_, l)| l)
            .collect();
        let meta = self.meta.get(&line.sku);
        if levels.is_empty() && meta.is_none() {
            return Err(Error::not_found(EntityKind::Stock, &line.sku));
        }
        let wanted = u64::from(line.quantity);
        if let Some(l) = levels.iter().find(|l| l.available >= wanted) {
            return Ok(vec![Allocation {
                sku: line.sku.clone(),
                location: Some(l.location.clone()),
                quantity: line.quantity,
            }]);
        }
        let total: u64 = levels.iter().map(|l| l.available).sum();
        if total < wanted && !meta.is_some_and(|m| m.backorder_allowed) {
            return Err(Error::OutOfStock {
                sku: line.sku.to_string(),
                requested: wanted,
                available: total,
            });
        }
        let mut left = wanted;
        let mut out = Vec::new();
        for l in levels {
            if left == 0 {
                break;
            }
            let take = l.available.min(left);
            if take > 0 {
                out.push(Allocation {
                    sku: line.sku.clone(),
                    location: Some(l.location.clone()),
                    quantity: take as u32,
                });
                left -= take;
            }
        }
        if left > 0 {
            out.push(Allocation {
                sku: line.sku.clone(),
                location: None,
                quantity: left as u32,
            });
        }
        Ok(out)
    }

    fn reserve(&mut self, request: &ReservationRequest, now: Timestamp) -> Result<Reservation> {
        let lines = request.normalized_lines()?;
        if let Some(existing) = self.reservations.get(&request.order_id) {
            return if existing.lines == lines {
                Ok(existing.clone())
            } else {
                Err(Error::conflict(EntityKind::Reservation, "model"))
            };
        }
        let mut allocations = Vec::new();
        for line in &lines {
            allocations.extend(self.plan(line)?);
        }
        for a in &allocations {
            let q = u64::from(a.quantity);
            match &a.location {
                Some(l) => {
                    let level = self
                        .levels
                        .get_mut(&(a.sku.clone(), l.clone()))
                        .expect("planned level exists");
                    level.available -= q;
                    level.reserved += q;
                }
                None => self.meta.entry(a.sku.clone()).or_default().backordered += q,
            }
        }
        let r = Reservation {
            order_id: request.order_id.clone(),
            lines,
            allocations,
            state: ReservationState::Active,
            created_at: now,
            expires_at: clock::add(now, request.ttl),
            closed_at: None,
            reason: None,
        };
        self.reservations.insert(r.order_id.clone(), r.clone());
        Ok(r)
    }

    fn get(&self, o: &OrderId) -> Result<Reservation> {
        self.reservations
            .get(o)
            .cloned()
            .ok_or_else(|| Error::not_found(EntityKind::Reservation, o))
    }

    /// Active to `to` (Confirmed or Released).
    fn close(&mut self, o: &OrderId, to: ReservationState, reason: Option<String>, now: Timestamp) {
        let mut r = self.reservations[o].clone();
        for a in &r.allocations {
            let q = u64::from(a.quantity);
            match &a.location {
                Some(l) => {
                    let level = self
                        .levels
                        .get_mut(&(a.sku.clone(), l.clone()))
                        .expect("allocated level exists");
                    level.reserved -= q;
                    if to == ReservationState::Released {
                        level.available += q;
                    } else {
                        level.sold += q;
                    }
                }
                None => {
                    let meta = self.meta.entry(a.sku.clone()).or_default();
                    if to == ReservationState::Released {
                        meta.backordered -= q;
                    } else {
                        meta.owed += q;
                    }
                }
            }
        }
        r.state = to;
        r.closed_at = Some(now);
        r.reason = reason;
        self.reservations.insert(o.clone(), r);
    }

    fn confirm(&mut self, o: &OrderId, now: Timestamp) -> Result<Reservation> {
        let r = self.get(o)?;
        match r.state {
            ReservationState::Confirmed => Ok(r),
            ReservationState::Active => {
                self.close(o, ReservationState::Confirmed, None, now);
                self.get(o)
            }
            other => Err(Error::invalid_transition(
                EntityKind::Reservation,
                other,
                ReservationState::Confirmed,
            )),
        }
    }

    fn release(&mut self, o: &OrderId, reason: &str, now: Timestamp) -> Result<Reservation> {
        let r = self.get(o)?;
        match r.state {
            ReservationState::Released => Ok(r),
            ReservationState::Active => {
                self.close(o, ReservationState::Released, Some(reason.into()), now);
                self.get(o)
            }
            other => Err(Error::invalid_transition(
                EntityKind::Reservation,
                other,
                ReservationState::Released,
            )),
        }
    }

    fn return_stock(
        &mut self,
        o: &OrderId,
        restock: bool,
        reason: &str,
        now: Timestamp,
    ) -> Result<Reservation> {
        let mut r = self.get(o)?;
        match r.state {
            ReservationState::Returned => return Ok(r),
            ReservationState::Confirmed => {}
            other => {
                return Err(Error::invalid_transition(
                    EntityKind::Reservation,
                    other,
                    ReservationState::Returned,
                ));
            }
        }
        for a in &r.allocations {
            let q = u64::from(a.quantity);
            match &a.location {
                Some(l) => {
                    let level = self
                        .levels
                        .get_mut(&(a.sku.clone(), l.clone()))
                        .expect("allocated level exists");
                    level.sold -= q;
                    if restock {
                        level.available += q;
                    } else {
                        level.adjusted += q as i64;
                    }
                }
                None => {
                    let meta = self.meta.entry(a.sku.clone()).or_default();
                    let cancel = meta.owed.min(q);
                    meta.owed -= cancel;
                    meta.backordered -= cancel;
                }
            }
        }
        r.state = ReservationState::Returned;
        r.closed_at = Some(now);
        r.reason = Some(reason.into());
        self.reservations.insert(o.clone(), r.clone());
        Ok(r)
    }

    fn extend(&mut self, o: &OrderId, ttl: Duration, now: Timestamp) -> Result<Reservation> {
        let r = self
            .reservations
            .get_mut(o)
            .ok_or_else(|| Error::not_found(EntityKind::Reservation, o))?;
        if r.state != ReservationState::Active {
            return Err(Error::invalid_transition(
                EntityKind::Reservation,
                r.state,
                "EXTENDED",
            ));
        }
        if r.expires_at <= now {
            return Err(Error::invalid_transition(
                EntityKind::Reservation,
                "EXPIRED",
                "EXTENDED",
            ));
        }
        r.expires_at = clock::add(now, ttl);
        Ok(r.clone())
    }

    fn due(&self, now: Timestamp) -> BTreeSet<OrderId> {
        self.reservations
            .values()
            .filter(|r| r.state == ReservationState::Active && r.expires_at <= now)
            .map(|r| r.order_id.clone())
            .collect()
    }
}

const RELEASE_REASON: &str = "model release";
const RETURN_REASON: &str = "model return";

/// Runs `op` against the store.
async fn run_on_store(inv: &dyn InventoryStore, ctx: &Ctx, op: &Op) -> Outcome {
    let o = |i: usize| oid(&order_name(i));
    match op {
        Op::Restock {
            sku: s,
            loc: l,
            qty,
        } => outcome(
            inv.restock(&sku(SKUS[*s]), &loc(LOCATIONS[*l]), *qty, "model")
                .await,
            Outcome::Level,
        ),
        Op::Adjust {
            sku: s,
            loc: l,
            delta,
        } => outcome(
            inv.adjust(&sku(SKUS[*s]), &loc(LOCATIONS[*l]), *delta, "model")
                .await,
            Outcome::Level,
        ),
        Op::Reserve {
            order,
            lines,
            ttl_secs,
        } => outcome(
            inv.reserve(&Op::request(*order, lines, *ttl_secs)).await,
            Outcome::Reservation,
        ),
        Op::Extend { order, ttl_secs } => outcome(
            inv.extend(&o(*order), Duration::from_secs(*ttl_secs)).await,
            Outcome::Reservation,
        ),
        Op::Confirm { order } => outcome(inv.confirm(&o(*order)).await, Outcome::Reservation),
        Op::Release { order } => outcome(
            inv.release(&o(*order), RELEASE_REASON).await,
            Outcome::Reservation,
        ),
        Op::Return { order, restock } => outcome(
            inv.return_stock(&o(*order), *restock, RETURN_REASON).await,
            Outcome::Reservation,
        ),
        Op::ReleaseExpired { limit } => outcome(
            inv.release_expired(ctx.now(), *limit).await,
            Outcome::Reaped,
        ),
        Op::Advance { secs } => {
            ctx.advance(Duration::from_secs(*secs));
            Outcome::Done
        }
    }
}

/// Runs `op` against the model; `store` is the store's outcome, consulted only where
/// the contract leaves a choice (which due reservations a limited reap picks).
fn run_on_model(
    model: &mut Model,
    op: &Op,
    now: Timestamp,
    store: &Outcome,
) -> std::result::Result<(Outcome, Vec<DomainEvent>), String> {
    let o = |i: usize| oid(&order_name(i));
    let res_event = |r: &Reservation| DomainEvent::ReservationChanged {
        order_id: r.order_id.clone(),
        state: r.state,
        skus: r.lines.iter().map(|l| l.sku.clone()).collect(),
    };
    let stock_event = |l: &StockLevel| DomainEvent::StockChanged {
        sku: l.sku.clone(),
        location: l.location.clone(),
        available: l.available,
    };
    let before = op
        .order()
        .map(|i| model.reservations.get(&o(i)).map(|r| r.state));
    let (out, events) = match op {
        Op::Restock {
            sku: s,
            loc: l,
            qty,
        } => {
            let r = model.restock(&sku(SKUS[*s]), &loc(LOCATIONS[*l]), *qty);
            let events = r.iter().map(stock_event).collect();
            (outcome(r, Outcome::Level), events)
        }
        Op::Adjust {
            sku: s,
            loc: l,
            delta,
        } => {
            let r = model.adjust(&sku(SKUS[*s]), &loc(LOCATIONS[*l]), *delta);
            let events = r.iter().map(stock_event).collect();
            (outcome(r, Outcome::Level), events)
        }
        Op::Reserve {
            order,
            lines,
            ttl_secs,
        } => {
            let r = model.reserve(&Op::request(*order, lines, *ttl_secs), now);
            let created = before == Some(None);
            let events = r.iter().filter(|_| created).map(res_event).collect();
            (outcome(r, Outcome::Reservation), events)
        }
        Op::Extend { order, ttl_secs } => {
            let r = model.extend(&o(*order), Duration::from_secs(*ttl_secs), now);
            (outcome(r, Outcome::Reservation), Vec::new())
        }
        Op::Confirm { order } | Op::Release { order } | Op::Return { order, .. } => {
            let r = match op {
                Op::Confirm { .. } => model.confirm(&o(*order), now),
                Op::Release { .. } => model.release(&o(*order), RELEASE_REASON, now),
                Op::Return { restock, .. } => {
                    model.return_stock(&o(*order), *restock, RETURN_REASON, now)
                }
                _ => unreachable!("matched above"),
            };
            let changed = matches!(&r, Ok(res) if before != Some(Some(res.state)));
            let events = r.iter().filter(|_| changed).map(res_event).collect();
            (outcome(r, Outcome::Reservation), events)
        }
        Op::ReleaseExpired { limit } => {
            let due = model.due(now);
            let Outcome::Reaped(chosen) = store else {
                return Ok((
                    Outcome::Failed(ErrorShape::Other("model: no choice".into())),
                    vec![],
                ));
            };
            let ids: Vec<OrderId> = chosen.iter().map(|r| r.order_id.clone()).collect();
            let unique: BTreeSet<OrderId> = ids.iter().cloned().collect();
            let want = due.len().min(*limit as usize);
            if unique.len() != ids.len() || !unique.is_subset(&due) || ids.len() != want {
                return Err(format!(
                    "release_expired(now, {limit}) must release {want} distinct reservations among the due {due:?}; it released {ids:?}"
                ));
            }
            let mut out = Vec::new();
            for r in chosen {
                model.close(
                    &r.order_id,
                    ReservationState::Released,
                    r.reason.clone(),
                    now,
                );
                out.push(model.get(&r.order_id).map_err(|e| e.to_string())?);
            }
            let events = out.iter().map(res_event).collect();
            (Outcome::Reaped(out), events)
        }
        Op::Advance { .. } => (Outcome::Done, Vec::new()),
    };
    Ok((out, events))
}

fn multiset(events: &[DomainEvent]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(format!("{e:?}")).or_default() += 1;
    }
    m
}

/// A history for the sequential test.
#[derive(Clone)]
pub(crate) struct History(Vec<Op>);

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.0.iter().enumerate() {
            writeln!(f, "  {i:>3}: {op:?}")?;
        }
        Ok(())
    }
}

async fn observable(ctx: &Ctx) -> (Vec<SkuStock>, BTreeMap<OrderId, Reservation>) {
    let inv = ctx.inventory();
    let mut stocks = Vec::new();
    for s in SKUS {
        stocks.push(inv.stock(&sku(s)).await.expect("stock"));
    }
    let orders: Vec<OrderId> = (0..ORDERS).map(|i| oid(&order_name(i))).collect();
    (stocks, reservations_of(ctx, &orders).await)
}

async fn ledger_matches(ctx: &Ctx) -> std::result::Result<(), String> {
    let inv = ctx.inventory();
    for s in SKUS {
        let s = sku(s);
        let mut ledger = Vec::new();
        loop {
            let page = inv
                .movements(&s, ledger.len() as u64, 1000)
                .await
                .map_err(|e| format!("movements: {e}"))?;
            if page.is_empty() {
                break;
            }
            if ledger.len() > 1_000_000 {
                return Err(format!("movements({s}) does not end (is offset ignored?)"));
            }
            ledger.extend(page);
        }
        for level in inv.stock(&s).await.map_err(|e| e.to_string())?.levels {
            let rebuilt = replay(&s, &level.location, &ledger);
            if rebuilt != level {
                return Err(format!(
                    "the ledger of {s} replays to {rebuilt:?} but the counters are {level:?}"
                ));
            }
        }
    }
    Ok(())
}

async fn run_history(env: Env<'_>, history: &History) -> std::result::Result<(), String> {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    let mut model = Model::default();
    let bo = sku(SKUS[BACKORDER_SKU]);
    inv.set_backorder(&bo, true)
        .await
        .map_err(|e| format!("set_backorder: {e}"))?;
    model.set_backorder(&bo, true);
    let mut trace = String::new();
    for (i, op) in history.0.iter().enumerate() {
        let now = ctx.now();
        let mark = ctx.event_mark().await;
        let got = run_on_store(&*inv, &ctx, op).await;
        let fail = |why: String, trace: &str| {
            Err(format!(
                "{why}\n  at step {i}: {op:?}\n  steps so far (store outcomes):\n{trace}"
            ))
        };
        let (expected, expected_events) = match run_on_model(&mut model, op, now, &got) {
            Ok(x) => x,
            Err(why) => return fail(why, &trace),
        };
        trace.push_str(&format!("  {i:>3}: {op:?} -> {got:?}\n"));
        if got != expected {
            return fail(
                format!("the store gave {got:?}\n  the model expects {expected:?}"),
                &trace,
            );
        }
        if !matches!(op, Op::Extend { .. }) {
            let events = ctx.events_since(mark).await;
            if multiset(&events) != multiset(&expected_events) {
                return fail(
                    format!(
                        "the store appended events {events:?}\n  the model expects {expected_events:?}"
                    ),
                    &trace,
                );
            }
        }
        let (stocks, reservations) = observable(&ctx).await;
        let want_stocks: Vec<SkuStock> = SKUS.iter().map(|s| model.stock(&sku(s))).collect();
        if stocks != want_stocks {
            return fail(
                format!("stock after the step: store {stocks:#?}\n  model {want_stocks:#?}"),
                &trace,
            );
        }
        if reservations != model.reservations {
            return fail(
                format!(
                    "reservations after the step: store {reservations:#?}\n  model {:#?}",
                    model.reservations
                ),
                &trace,
            );
        }
    }
    let violations = inv.audit().await.map_err(|e| format!("audit: {e}"))?;
    if !violations.is_empty() {
        return Err(format!(
            "audit() after the history found {violations:#?}\n{trace}"
        ));
    }
    ledger_matches(&ctx)
        .await
        .map_err(|e| format!("{e}\n{trace}"))
}

fn seed_of(env: &Env<'_>) -> u64 {
    env.seed()
}

fn runner(cases: u32, max_shrink_iters: u32, seed: u64) -> TestRunner {
    let config = Config {
        cases,
        max_shrink_iters,
        failure_persistence: None,
        ..Config::default()
    };
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(
            &(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes(),
        );
    }
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// Runs a proptest search from inside the kit's async case: the runner is synchronous,
/// so it runs in `block_in_place` and drives each generated case on the same runtime.
pub(crate) fn search<T: fmt::Debug + Clone>(
    env: Env<'_>,
    name: &str,
    cases: u32,
    max_shrink_iters: u32,
    strategy: impl Strategy<Value = T>,
    check: impl for<'a> Fn(
        Env<'a>,
        T,
    ) -> futures::future::LocalBoxFuture<'a, std::result::Result<(), String>>,
) {
    let seed = seed_of(&env);
    let handle = tokio::runtime::Handle::current();
    let mut runner = runner(cases, max_shrink_iters, seed);
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |input| {
            handle
                .block_on(check(env, input))
                .map_err(TestCaseError::fail)
        })
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, minimal)) => panic!(
            "{name} failed (case {case}).\n\
             Reproduce the generated histories with COMMERCE_TESTKIT_SEED={seed} \
             (and COMMERCE_TESTKIT_CASES={cases}, COMMERCE_TESTKIT_FILTER={case}).\n\
             Shrunk history:\n{minimal:#?}\nWhy:\n{reason}",
            case = env.case(),
        ),
        Err(TestError::Abort(reason)) => {
            panic!("{name} aborted (seed {seed}): {reason}")
        }
    }
}

/// The sequential comparison with the model.
pub(crate) async fn sequential(env: Env<'_>) {
    let cases = env.settings().cases;
    search(
        env,
        "the sequential model-based test",
        cases,
        1024,
        prop::collection::vec(op_strategy(false), 1..40).prop_map(History),
        |env, history| Box::pin(async move { run_history(env, &history).await }),
    );
}

/// Concurrent programs: one op list per task.
#[derive(Clone)]
pub(crate) struct Program(Vec<Vec<Op>>);

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (t, ops) in self.0.iter().enumerate() {
            let ops: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
            writeln!(f, "  task {t}: {}", ops.join("; "))?;
        }
        Ok(())
    }
}

/// Stock every SKU has at every location before a concurrent program runs.
const INITIAL_STOCK: u32 = 12;

async fn run_program(env: Env<'_>, program: &Program) -> std::result::Result<(), String> {
    let ctx = env.ctx().await;
    let inv = ctx.inventory();
    let bo = sku(SKUS[BACKORDER_SKU]);
    inv.set_backorder(&bo, true)
        .await
        .map_err(|e| format!("set_backorder: {e}"))?;
    for s in SKUS {
        for l in LOCATIONS {
            inv.restock(&sku(s), &loc(l), INITIAL_STOCK, "initial")
                .await
                .map_err(|e| format!("initial restock: {e}"))?;
        }
    }
    let mark = ctx.event_mark().await;
    let ctx = std::sync::Arc::new(ctx);
    let results: Vec<Vec<(Op, Outcome)>> = concurrently(program.0.len(), |t| {
        let ctx = ctx.clone();
        let ops = program.0[t].clone();
        async move {
            let inv = ctx.inventory();
            let mut out = Vec::with_capacity(ops.len());
            for op in ops {
                let got = run_on_store(&*inv, &ctx, &op).await;
                out.push((op, got));
            }
            out
        }
    })
    .await;
    let mut trace = String::new();
    for (t, ops) in results.iter().enumerate() {
        let steps: Vec<String> = ops
            .iter()
            .map(|(op, got)| format!("{op:?} -> {got:?}"))
            .collect();
        trace.push_str(&format!("  task {t}:\n    {}\n", steps.join("\n    ")));
    }
    let events: Vec<DomainEvent> = read_all_after(&*ctx.events(), mark)
        .await
        .into_iter()
        .map(|e| e.event)
        .collect();
    check_program(&ctx, &results, &events)
        .await
        .map_err(|why| format!("{why}\noutcomes by task:\n{trace}"))
}

/// What must hold after any interleaving of `results`.
async fn check_program(
    ctx: &Ctx,
    results: &[Vec<(Op, Outcome)>],
    events: &[DomainEvent],
) -> std::result::Result<(), String> {
    let inv = ctx.inventory();
    let violations = inv.audit().await.map_err(|e| format!("audit: {e}"))?;
    if !violations.is_empty() {
        return Err(format!("audit() found {violations:#?}"));
    }
    ledger_matches(ctx).await?;
    let orders: Vec<OrderId> = (0..ORDERS).map(|i| oid(&order_name(i))).collect();
    let finals = reservations_of(ctx, &orders).await;
    let all: Vec<&(Op, Outcome)> = results.iter().flatten().collect();

    // Operations on no order have few possible outcomes.
    for (op, got) in &all {
        let ok = match (op, got) {
            (Op::Restock { .. }, Outcome::Level(_)) => true,
            (Op::Adjust { .. }, Outcome::Level(_)) => true,
            (Op::Adjust { delta, .. }, Outcome::Failed(ErrorShape::Validation)) => *delta == 0,
            (
                Op::Adjust { delta, .. },
                Outcome::Failed(ErrorShape::OutOfStock {
                    requested,
                    available,
                    ..
                }),
            ) => *delta < 0 && delta.unsigned_abs() == *requested && available < requested,
            (Op::ReleaseExpired { .. }, Outcome::Reaped(_)) => true,
            (Op::Advance { .. }, Outcome::Done) => true,
            _ => op.order().is_some(),
        };
        if !ok {
            return Err(format!("{op:?} -> {got:?} cannot be explained"));
        }
    }

    // Every outcome on an order is explainable by the final state.
    let mut reaped: BTreeMap<OrderId, usize> = BTreeMap::new();
    for (op, got) in &all {
        if let (Op::ReleaseExpired { .. }, Outcome::Reaped(rs)) = (op, got) {
            for r in rs {
                if r.state != ReservationState::Released {
                    return Err(format!(
                        "release_expired returned {r:?} in state {}",
                        r.state
                    ));
                }
                *reaped.entry(r.order_id.clone()).or_default() += 1;
            }
        }
    }
    for (o, n) in &reaped {
        if *n > 1 {
            return Err(format!(
                "{o} was returned by {n} release_expired calls (exactly once)"
            ));
        }
    }
    for (i, o) in orders.iter().enumerate() {
        let f = finals.get(o);
        let state = f.map(|r| r.state);
        let mine = all.iter().filter(|(op, _)| op.order() == Some(i));
        let mut confirmed = false;
        let mut released_by_call = reaped.contains_key(o);
        let mut returned = false;
        for (op, got) in mine {
            let bad = |why: &str| {
                Err(format!(
                    "{op:?} -> {got:?} cannot be explained: {why} (final reservation {f:?})"
                ))
            };
            use ReservationState as S;
            match (op, got) {
                (Op::Reserve { .. }, Outcome::Reservation(r)) => match f {
                    Some(f)
                        if f.lines == r.lines
                            && f.allocations == r.allocations
                            && f.created_at == r.created_at => {}
                    _ => return bad("a successful reserve must be the order's one reservation"),
                },
                (
                    Op::Reserve {
                        lines,
                        ttl_secs,
                        order,
                    },
                    Outcome::Failed(e),
                ) => {
                    let request = Op::request(*order, lines, *ttl_secs);
                    let normal = request.normalized_lines();
                    match e {
                        ErrorShape::Validation if normal.is_err() => {}
                        ErrorShape::Conflict(EntityKind::Reservation)
                            if f.is_some_and(|f| normal.as_ref().is_ok_and(|n| n != &f.lines)) => {}
                        ErrorShape::OutOfStock {
                            sku: s,
                            requested,
                            available,
                        } => {
                            let line = normal
                                .as_ref()
                                .ok()
                                .and_then(|n| n.iter().find(|l| l.sku.as_str() == s));
                            if s == SKUS[BACKORDER_SKU]
                                || available >= requested
                                || line.is_none_or(|l| u64::from(l.quantity) != *requested)
                            {
                                return bad(
                                    "OutOfStock must be for a short non-backorder line of the request, asking more than was available",
                                );
                            }
                        }
                        _ => return bad("unexpected error for reserve"),
                    }
                }
                (_, Outcome::Failed(ErrorShape::NotFound(EntityKind::Reservation))) => {}
                (Op::Confirm { .. }, Outcome::Reservation(r)) => {
                    if r.state != S::Confirmed || !matches!(state, Some(S::Confirmed | S::Returned))
                    {
                        return bad(
                            "a successful confirm leaves the order confirmed (or later returned)",
                        );
                    }
                    confirmed = true;
                }
                (Op::Release { .. }, Outcome::Reservation(r)) => {
                    if r.state != S::Released || state != Some(S::Released) {
                        return bad("a successful release leaves the order released");
                    }
                    released_by_call = true;
                }
                (Op::Return { .. }, Outcome::Reservation(r)) => {
                    if r.state != S::Returned || state != Some(S::Returned) {
                        return bad("a successful return leaves the order returned");
                    }
                    returned = true;
                }
                (Op::Extend { .. }, Outcome::Reservation(r)) => {
                    if r.state != S::Active {
                        return bad("extend returns an active reservation");
                    }
                }
                (
                    _,
                    Outcome::Failed(ErrorShape::InvalidTransition {
                        entity: EntityKind::Reservation,
                        from,
                    }),
                ) => {
                    let ok = match (op, from.as_str()) {
                        (Op::Confirm { .. }, "RELEASED")
                        | (Op::Return { .. }, "RELEASED")
                        | (Op::Extend { .. }, "RELEASED") => state == Some(S::Released),
                        (
                            Op::Confirm { .. } | Op::Release { .. } | Op::Extend { .. },
                            "RETURNED",
                        ) => state == Some(S::Returned),
                        (Op::Release { .. } | Op::Extend { .. }, "CONFIRMED") => {
                            matches!(state, Some(S::Confirmed | S::Returned))
                        }
                        (Op::Return { .. }, "ACTIVE") | (Op::Extend { .. }, "EXPIRED") => {
                            f.is_some()
                        }
                        _ => false,
                    };
                    if !ok {
                        return bad("the refused transition names a state the order never reached");
                    }
                }
                _ => return bad("unexpected outcome"),
            }
        }
        if reaped.contains_key(o) && (state != Some(ReservationState::Released) || confirmed) {
            return Err(format!(
                "{o} was reaped but ends {state:?} (confirmed by a call: {confirmed})"
            ));
        }
        let reached_by_call = match state {
            None | Some(ReservationState::Active) => true,
            Some(ReservationState::Confirmed) => confirmed,
            Some(ReservationState::Released) => released_by_call,
            Some(ReservationState::Returned) => returned && confirmed,
        };
        if !reached_by_call {
            return Err(format!(
                "{o} ends {state:?} but no successful call moved it there"
            ));
        }
        // One event per state reached.
        let count = |st: ReservationState| {
            events
                .iter()
                .filter(|e| matches!(e, DomainEvent::ReservationChanged { order_id, state, .. } if order_id == o && *state == st))
                .count()
        };
        let reached = |st: ReservationState| -> usize {
            use ReservationState as S;
            usize::from(match st {
                S::Active => state.is_some(),
                S::Confirmed => matches!(state, Some(S::Confirmed | S::Returned)),
                S::Released => state == Some(S::Released),
                S::Returned => state == Some(S::Returned),
            })
        };
        for st in [
            ReservationState::Active,
            ReservationState::Confirmed,
            ReservationState::Released,
            ReservationState::Returned,
        ] {
            if count(st) != reached(st) {
                return Err(format!(
                    "{o} ends {state:?}: expected {} ReservationChanged({st}) event(s), found {}",
                    reached(st),
                    count(st)
                ));
            }
        }
    }

    // Stock events: one per successful restock or adjust.
    let stock_writes = all
        .iter()
        .filter(|(op, got)| {
            matches!(op, Op::Restock { .. } | Op::Adjust { .. }) && matches!(got, Outcome::Level(_))
        })
        .count();
    let stock_events = events
        .iter()
        .filter(|e| matches!(e, DomainEvent::StockChanged { .. }))
        .count();
    if stock_events != stock_writes {
        return Err(format!(
            "{stock_writes} successful restocks/adjustments appended {stock_events} StockChanged events"
        ));
    }

    // Exact conservation for SKUs without backorders.
    for (si, s) in SKUS.iter().enumerate().filter(|(i, _)| *i != BACKORDER_SKU) {
        for (li, l) in LOCATIONS.iter().enumerate() {
            let mut received = i128::from(INITIAL_STOCK);
            let mut adjusted: i128 = 0;
            for (op, got) in &all {
                match (op, got) {
                    (Op::Restock { sku, loc, qty }, Outcome::Level(_))
                        if *sku == si && *loc == li =>
                    {
                        received += i128::from(*qty)
                    }
                    (Op::Adjust { sku, loc, delta }, Outcome::Level(_))
                        if *sku == si && *loc == li =>
                    {
                        adjusted -= i128::from(*delta)
                    }
                    _ => {}
                }
            }
            let (mut reserved, mut sold): (i128, i128) = (0, 0);
            for (i, o) in orders.iter().enumerate() {
                let Some(r) = finals.get(o) else { continue };
                let held: i128 = r
                    .allocations
                    .iter()
                    .filter(|a| {
                        a.sku.as_str() == *s
                            && a.location.as_ref().is_some_and(|x| x.as_str() == *l)
                    })
                    .map(|a| i128::from(a.quantity))
                    .sum();
                match r.state {
                    ReservationState::Active => reserved += held,
                    ReservationState::Confirmed => sold += held,
                    // Concurrent programs write off the returns of odd orders.
                    ReservationState::Returned if i % 2 != 0 => adjusted += held,
                    ReservationState::Returned => {}
                    ReservationState::Released => {}
                }
            }
            let available = received - adjusted - reserved - sold;
            let level = inv
                .stock(&sku(s))
                .await
                .map_err(|e| e.to_string())?
                .levels
                .into_iter()
                .find(|x| x.location.as_str() == *l)
                .ok_or_else(|| format!("no level {s}@{l}"))?;
            let got = (
                i128::from(level.received),
                i128::from(level.adjusted),
                i128::from(level.available),
                i128::from(level.reserved),
                i128::from(level.sold),
            );
            let want = (received, adjusted, available, reserved, sold);
            if got != want {
                return Err(format!(
                    "{s}@{l}: counters (received, adjusted, available, reserved, sold) are {got:?}, \
                     but the successful operations and final reservations imply {want:?}"
                ));
            }
        }
    }
    Ok(())
}

/// The concurrent test.
pub(crate) async fn concurrent(env: Env<'_>) {
    let cases = (env.settings().cases / 4).max(2);
    let task = prop::collection::vec(op_strategy(true), 1..12);
    search(
        env,
        "the concurrent model-based test",
        cases,
        128,
        prop::collection::vec(task, 4..9).prop_map(Program),
        |env, program| Box::pin(async move { run_program(env, &program).await }),
    );
}
