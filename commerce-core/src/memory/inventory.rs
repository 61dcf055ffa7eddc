use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tracing::instrument;

use super::{MemoryEventLog, lock};
use crate::clock::{self, Clock, Timestamp};
use crate::error::{EntityKind, Error, Result};
use crate::event::DomainEvent;
use crate::id::{LocationId, OrderId, Sku};
use crate::inventory::{
    Allocation, InvariantViolation, MovementKind, Reservation, ReservationLine, ReservationRequest,
    ReservationState, Restock, SkuStock, StockLevel, StockMovement, check_reason, check_restocks,
    replay,
};
use crate::store::{InventoryStore, check_limit};

#[derive(Debug, Default, Clone)]
struct SkuMeta {
    backorder_allowed: bool,
    /// Live backordered allocations plus confirmed ones not yet filled.
    backordered: u64,
    /// Confirmed backordered units not yet filled by a restock.
    owed: u64,
}

#[derive(Debug, Default)]
struct State {
    levels: BTreeMap<(Sku, LocationId), StockLevel>,
    skus: HashMap<Sku, SkuMeta>,
    reservations: HashMap<OrderId, Reservation>,
    /// Active reservations by expiry.
    expiry: BTreeSet<(Timestamp, OrderId)>,
    ledger: HashMap<Sku, Vec<StockMovement>>,
}

impl State {
    fn levels_of<'a>(&'a self, sku: &'a Sku) -> impl Iterator<Item = &'a StockLevel> + 'a {
        self.levels
            .range((sku.clone(), min_location())..)
            .take_while(move |((s, _), _)| s == sku)
            .map(|(_, l)| l)
    }

    fn stock_of(&self, sku: &Sku) -> SkuStock {
        let meta = self.skus.get(sku).cloned().unwrap_or_default();
        SkuStock {
            sku: sku.clone(),
            levels: self.levels_of(sku).cloned().collect(),
            backorder_allowed: meta.backorder_allowed,
            backordered: meta.backordered,
        }
    }

    fn record(&mut self, m: StockMovement) {
        self.ledger.entry(m.sku.clone()).or_default().push(m);
    }

    fn level_mut(&mut self, sku: &Sku, location: &LocationId) -> Result<&mut StockLevel> {
        self.levels
            .get_mut(&(sku.clone(), location.clone()))
            .ok_or_else(|| Error::not_found(EntityKind::Stock, format!("{sku}@{location}")))
    }

    /// Plans the allocations of one line by the location policy, without writing.
    fn plan(&self, line: &ReservationLine) -> Result<Vec<Allocation>> {
        let levels: Vec<&StockLevel> = self.levels_of(&line.sku).collect();
        let meta = self.skus.get(&line.sku);
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
        let backorder = meta.is_some_and(|m| m.backorder_allowed);
        if total < wanted && !backorder {
            return Err(Error::OutOfStock {
                sku: line.sku.to_string(),
                requested: wanted,
                available: total,
            });
        }
        let mut left = wanted;
        let mut out = Vec::new();
        for l in levels.iter().filter(|l| l.available > 0) {
            let take = l.available.min(left);
            out.push(Allocation {
                sku: line.sku.clone(),
                location: Some(l.location.clone()),
                quantity: take as u32,
            });
            left -= take;
            if left == 0 {
                break;
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

    /// Moves an active reservation's units; `kind` is `Released` or `Sold`.
    fn close(
        &mut self,
        order_id: &OrderId,
        to: ReservationState,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<Reservation> {
        let mut r = self
            .reservations
            .get(order_id)
            .cloned()
            .ok_or_else(|| Error::not_found(EntityKind::Reservation, order_id))?;
        let kind = match to {
            ReservationState::Released => MovementKind::Released,
            _ => MovementKind::Sold,
        };
        for a in &r.allocations {
            let q = u64::from(a.quantity);
            match &a.location {
                Some(loc) => {
                    let level = self.level_mut(&a.sku, loc)?;
                    level.reserved -= q;
                    if kind == MovementKind::Released {
                        level.available += q;
                    } else {
                        level.sold += q;
                    }
                    self.record(StockMovement {
                        sku: a.sku.clone(),
                        location: Some(loc.clone()),
                        kind,
                        quantity: q as i64,
                        order_id: Some(order_id.clone()),
                        reason: reason.map(str::to_owned),
                        at: now,
                    });
                }
                None => {
                    let meta = self.skus.entry(a.sku.clone()).or_default();
                    if kind == MovementKind::Released {
                        meta.backordered -= q;
                    } else {
                        meta.owed += q;
                    }
                }
            }
        }
        self.expiry.remove(&(r.expires_at, order_id.clone()));
        r.state = to;
        r.closed_at = Some(now);
        r.reason = reason.map(str::to_owned);
        self.reservations.insert(order_id.clone(), r.clone());
        Ok(r)
    }
}

impl State {
    /// One restock, first filling the SKU's confirmed backorders (the item is valid).
    fn restock(&mut self, now: Timestamp, item: &Restock) -> (StockLevel, DomainEvent) {
        let Restock {
            sku,
            location,
            quantity,
            reason,
        } = item;
        let quantity = u64::from(*quantity);
        let meta = self.skus.entry(sku.clone()).or_default();
        let fill = meta.owed.min(quantity);
        meta.owed -= fill;
        meta.backordered -= fill;
        let level = self
            .levels
            .entry((sku.clone(), location.clone()))
            .or_insert_with(|| StockLevel::empty(sku.clone(), location.clone()));
        level.received += quantity;
        level.sold += fill;
        level.available += quantity - fill;
        let level = level.clone();
        let movement = |kind, q: u64| StockMovement {
            sku: sku.clone(),
            location: Some(location.clone()),
            kind,
            quantity: q as i64,
            order_id: None,
            reason: Some(reason.clone()),
            at: now,
        };
        if fill > 0 {
            self.record(movement(MovementKind::BackorderFilled, fill));
        }
        if quantity > fill {
            self.record(movement(MovementKind::Received, quantity - fill));
        }
        let event = DomainEvent::StockChanged {
            sku: sku.clone(),
            location: location.clone(),
            available: level.available,
        };
        (level, event)
    }
}

/// The smallest location id in byte order (`-` is the lowest allowed byte).
fn min_location() -> LocationId {
    LocationId::unchecked("-")
}

fn reservation_event(r: &Reservation) -> DomainEvent {
    DomainEvent::ReservationChanged {
        order_id: r.order_id.clone(),
        state: r.state,
        skus: r.lines.iter().map(|l| l.sku.clone()).collect(),
    }
}

/// The in-memory [`InventoryStore`].
#[derive(Debug)]
pub struct MemoryInventory {
    clock: Arc<dyn Clock>,
    events: Arc<MemoryEventLog>,
    state: Mutex<State>,
}

impl MemoryInventory {
    /// An empty inventory.
    pub fn new(clock: Arc<dyn Clock>, events: Arc<MemoryEventLog>) -> Self {
        MemoryInventory {
            clock,
            events,
            state: Mutex::new(State::default()),
        }
    }
}

#[async_trait]
impl InventoryStore for MemoryInventory {
    #[instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn restock(
        &self,
        sku: &Sku,
        location: &LocationId,
        quantity: u32,
        reason: &str,
    ) -> Result<StockLevel> {
        let item = Restock::new(sku.clone(), location.clone(), quantity, reason);
        item.validate()?;
        let mut state = lock(&self.state);
        let (level, event) = state.restock(self.clock.now(), &item);
        self.events.push([event]);
        Ok(level)
    }

    #[instrument(level = "debug", skip_all, fields(items = items.len()), err(level = "debug"))]
    async fn restock_many(&self, items: &[Restock]) -> Result<Vec<StockLevel>> {
        check_restocks(items)?;
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let (levels, events): (Vec<_>, Vec<_>) =
            items.iter().map(|item| state.restock(now, item)).unzip();
        self.events.push(events);
        Ok(levels)
    }

    #[instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn adjust(
        &self,
        sku: &Sku,
        location: &LocationId,
        delta: i64,
        reason: &str,
    ) -> Result<StockLevel> {
        if delta == 0 || delta.unsigned_abs() > u64::from(crate::inventory::MAX_QUANTITY) {
            return Err(Error::validation(
                "delta",
                "must be non-zero and at most 1,000,000 units",
            ));
        }
        check_reason(reason)?;
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let level = state.level_mut(sku, location)?;
        if delta < 0 && level.available < delta.unsigned_abs() {
            return Err(Error::OutOfStock {
                sku: sku.to_string(),
                requested: delta.unsigned_abs(),
                available: level.available,
            });
        }
        level.available = level.available.saturating_add_signed(delta);
        level.adjusted -= delta;
        let level = level.clone();
        state.record(StockMovement {
            sku: sku.clone(),
            location: Some(location.clone()),
            kind: MovementKind::Adjusted,
            quantity: delta,
            order_id: None,
            reason: Some(reason.to_owned()),
            at: now,
        });
        self.events.push([DomainEvent::StockChanged {
            sku: sku.clone(),
            location: location.clone(),
            available: level.available,
        }]);
        Ok(level)
    }

    async fn set_backorder(&self, sku: &Sku, allowed: bool) -> Result<()> {
        lock(&self.state)
            .skus
            .entry(sku.clone())
            .or_default()
            .backorder_allowed = allowed;
        Ok(())
    }

    async fn stock(&self, sku: &Sku) -> Result<SkuStock> {
        Ok(lock(&self.state).stock_of(sku))
    }

    async fn stocks(&self, skus: &[Sku]) -> Result<Vec<SkuStock>> {
        let skus = crate::store::distinct_batch("skus", skus)?;
        let state = lock(&self.state);
        Ok(skus.into_iter().map(|sku| state.stock_of(sku)).collect())
    }

    #[instrument(level = "debug", skip_all, fields(order_id = %request.order_id), err(level = "debug"))]
    async fn reserve(&self, request: &ReservationRequest) -> Result<Reservation> {
        let lines = request.normalized_lines()?;
        let now = self.clock.now();
        let mut state = lock(&self.state);
        if let Some(existing) = state.reservations.get(&request.order_id) {
            return if existing.lines == lines {
                Ok(existing.clone())
            } else {
                Err(Error::conflict(
                    EntityKind::Reservation,
                    format!(
                        "order {} already holds a different reservation",
                        request.order_id
                    ),
                ))
            };
        }
        let mut allocations = Vec::new();
        for line in &lines {
            allocations.extend(state.plan(line)?);
        }
        for a in &allocations {
            let q = u64::from(a.quantity);
            match &a.location {
                Some(loc) => {
                    let level = state.level_mut(&a.sku, loc)?;
                    level.available -= q;
                    level.reserved += q;
                    state.record(StockMovement {
                        sku: a.sku.clone(),
                        location: Some(loc.clone()),
                        kind: MovementKind::Reserved,
                        quantity: q as i64,
                        order_id: Some(request.order_id.clone()),
                        reason: None,
                        at: now,
                    });
                }
                None => state.skus.entry(a.sku.clone()).or_default().backordered += q,
            }
        }
        let reservation = Reservation {
            order_id: request.order_id.clone(),
            lines,
            allocations,
            state: ReservationState::Active,
            created_at: now,
            expires_at: clock::add(now, request.ttl),
            closed_at: None,
            reason: None,
        };
        state
            .expiry
            .insert((reservation.expires_at, reservation.order_id.clone()));
        state
            .reservations
            .insert(reservation.order_id.clone(), reservation.clone());
        self.events.push([reservation_event(&reservation)]);
        Ok(reservation)
    }

    #[instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn extend(&self, order_id: &OrderId, ttl: Duration) -> Result<Reservation> {
        crate::inventory::check_ttl(ttl)?;
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let r = state
            .reservations
            .get_mut(order_id)
            .ok_or_else(|| Error::not_found(EntityKind::Reservation, order_id))?;
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
        let old = (r.expires_at, order_id.clone());
        r.expires_at = clock::add(now, ttl);
        let r = r.clone();
        state.expiry.remove(&old);
        state.expiry.insert((r.expires_at, order_id.clone()));
        Ok(r)
    }

    #[instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn confirm(&self, order_id: &OrderId) -> Result<Reservation> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let current = state
            .reservations
            .get(order_id)
            .ok_or_else(|| Error::not_found(EntityKind::Reservation, order_id))?;
        match current.state {
            ReservationState::Confirmed => Ok(current.clone()),
            ReservationState::Active => {
                let r = state.close(order_id, ReservationState::Confirmed, None, now)?;
                self.events.push([reservation_event(&r)]);
                Ok(r)
            }
            other => Err(Error::invalid_transition(
                EntityKind::Reservation,
                other,
                ReservationState::Confirmed,
            )),
        }
    }

    #[instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn release(&self, order_id: &OrderId, reason: &str) -> Result<Reservation> {
        check_reason(reason)?;
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let current = state
            .reservations
            .get(order_id)
            .ok_or_else(|| Error::not_found(EntityKind::Reservation, order_id))?;
        match current.state {
            ReservationState::Released => Ok(current.clone()),
            ReservationState::Active => {
                let r = state.close(order_id, ReservationState::Released, Some(reason), now)?;
                self.events.push([reservation_event(&r)]);
                Ok(r)
            }
            other => Err(Error::invalid_transition(
                EntityKind::Reservation,
                other,
                ReservationState::Released,
            )),
        }
    }

    #[instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn return_stock(
        &self,
        order_id: &OrderId,
        restock: bool,
        reason: &str,
    ) -> Result<Reservation> {
        check_reason(reason)?;
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let mut r = state
            .reservations
            .get(order_id)
            .cloned()
            .ok_or_else(|| Error::not_found(EntityKind::Reservation, order_id))?;
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
                Some(loc) => {
                    let level = state.level_mut(&a.sku, loc)?;
                    level.sold -= q;
                    if restock {
                        level.available += q;
                    } else {
                        level.adjusted += q as i64;
                    }
                    state.record(StockMovement {
                        sku: a.sku.clone(),
                        location: Some(loc.clone()),
                        kind: if restock {
                            MovementKind::Returned
                        } else {
                            MovementKind::WrittenOff
                        },
                        quantity: q as i64,
                        order_id: Some(order_id.clone()),
                        reason: Some(reason.to_owned()),
                        at: now,
                    });
                }
                None => {
                    let meta = state.skus.entry(a.sku.clone()).or_default();
                    let cancel = meta.owed.min(q);
                    meta.owed -= cancel;
                    meta.backordered -= cancel;
                }
            }
        }
        r.state = ReservationState::Returned;
        r.closed_at = Some(now);
        r.reason = Some(reason.to_owned());
        state.reservations.insert(order_id.clone(), r.clone());
        self.events.push([reservation_event(&r)]);
        Ok(r)
    }

    #[instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn release_expired(&self, now: Timestamp, limit: u32) -> Result<Vec<Reservation>> {
        let limit = check_limit(limit)?;
        let mut state = lock(&self.state);
        let due: Vec<OrderId> = state
            .expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect();
        let mut released = Vec::with_capacity(due.len());
        for id in due {
            let r = state.close(&id, ReservationState::Released, Some("expired"), now)?;
            released.push(r);
        }
        self.events.push(released.iter().map(reservation_event));
        Ok(released)
    }

    async fn reservation(&self, order_id: &OrderId) -> Result<Option<Reservation>> {
        Ok(lock(&self.state).reservations.get(order_id).cloned())
    }

    async fn movements(&self, sku: &Sku, offset: u64, limit: u32) -> Result<Vec<StockMovement>> {
        let limit = check_limit(limit)?;
        let state = lock(&self.state);
        Ok(state
            .ledger
            .get(sku)
            .map(|l| {
                l.iter()
                    .skip(offset as usize)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn audit(&self) -> Result<Vec<InvariantViolation>> {
        let state = lock(&self.state);
        let mut held: HashMap<(&Sku, &LocationId), u64> = HashMap::new();
        let mut live_backorders: HashMap<&Sku, u64> = HashMap::new();
        for r in state
            .reservations
            .values()
            .filter(|r| r.state == ReservationState::Active)
        {
            for a in &r.allocations {
                match &a.location {
                    Some(loc) => *held.entry((&a.sku, loc)).or_default() += u64::from(a.quantity),
                    None => *live_backorders.entry(&a.sku).or_default() += u64::from(a.quantity),
                }
            }
        }
        let mut out = Vec::new();
        for ((sku, loc), level) in &state.levels {
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
            let live = held.get(&(sku, loc)).copied().unwrap_or(0);
            if live != level.reserved {
                problem(format!(
                    "reserved is {} but live reservations hold {live}",
                    level.reserved
                ));
            }
            let ledger = state.ledger.get(sku).map(Vec::as_slice).unwrap_or_default();
            let rebuilt = replay(sku, loc, ledger);
            if rebuilt != *level {
                problem(format!(
                    "ledger replays to {rebuilt:?}, counters are {level:?}"
                ));
            }
        }
        for (sku, meta) in &state.skus {
            let live = live_backorders.get(sku).copied().unwrap_or(0);
            if meta.backordered != live + meta.owed {
                out.push(InvariantViolation {
                    sku: sku.clone(),
                    location: None,
                    message: format!(
                        "backordered is {} but live backorders {live} + owed {}",
                        meta.backordered, meta.owed
                    ),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "inventory_audit_tests.rs"]
mod audit_tests;
