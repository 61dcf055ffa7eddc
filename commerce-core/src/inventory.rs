//! Inventory: stock levels per SKU and location, reservations, and the movement ledger.
//!
//! ## Counters and the invariant
//! Every stock level (one SKU at one location) keeps `received`, `adjusted`,
//! `available`, `reserved` and `sold`. At every instant, in every store:
//!
//! * `available >= 0` (the counters are unsigned);
//! * `reserved` equals the sum of the live (active) reservations' allocations there;
//! * `available + reserved + sold == received - adjusted`.
//!
//! `adjusted` is the net number of units taken out by adjustments (shrinkage, damage,
//! write-offs of returns); an adjustment that finds stock lowers it.
//!
//! ## Location policy
//! A reservation line is served from the SKU's locations **in location-id order**: the
//! first location that can cover the whole line serves it alone; if none can, the line is
//! split greedily over the locations in the same order. The order is fixed, so
//! concurrent reservations lock stock rows in one global order and cannot deadlock.
//!
//! ## Backorders
//! Opt-in per SKU ([`InventoryStore::set_backorder`](crate::store::InventoryStore::set_backorder)).
//! When a backorder SKU runs short, the missing units are allocated with `location:
//! None` and counted in the SKU's `backordered`; they leave no location's counters and
//! record no movement. When such a reservation is confirmed the units stay owed
//! (`backordered`), and the next restock of the SKU at any location sells them first
//! (received and sold both grow; ledger: `BackorderFilled`). Releasing a reservation
//! cancels its backordered units, and so does returning one for units still owed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::id::{LocationId, OrderId, Sku};

/// The default reservation lease.
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(15 * 60);

/// Largest quantity a single line, restock or adjustment may carry.
pub const MAX_QUANTITY: u32 = 1_000_000;

/// Most lines in one reservation.
pub const MAX_RESERVATION_LINES: usize = 250;

/// The longest a reservation may be held or extended for at once (7 days).
pub const MAX_RESERVATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Checks a reservation's time to live (for `reserve` and `extend`): 1 ms to
/// [`MAX_RESERVATION_TTL`], else `Validation`.
///
/// ```
/// use std::time::Duration;
/// use commerce_core::inventory::check_ttl;
///
/// assert!(check_ttl(Duration::from_secs(900)).is_ok());
/// assert!(check_ttl(Duration::ZERO).is_err());
/// assert!(check_ttl(Duration::MAX).is_err());
/// ```
pub fn check_ttl(ttl: Duration) -> Result<()> {
    if ttl < Duration::from_millis(1) || ttl > MAX_RESERVATION_TTL {
        return Err(Error::validation("ttl", "must be between 1 ms and 7 days"));
    }
    Ok(())
}

/// Counters of one SKU at one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// The SKU.
    pub sku: Sku,
    /// The location.
    pub location: LocationId,
    /// Units ever received (restocks).
    pub received: u64,
    /// Net units removed by adjustments (negative when adjustments found stock).
    pub adjusted: i64,
    /// Units free to reserve.
    pub available: u64,
    /// Units held by active reservations.
    pub reserved: u64,
    /// Units sold (confirmed reservations, net of returns).
    pub sold: u64,
}

impl StockLevel {
    /// A level with every counter at zero.
    pub fn empty(sku: Sku, location: LocationId) -> Self {
        StockLevel {
            sku,
            location,
            received: 0,
            adjusted: 0,
            available: 0,
            reserved: 0,
            sold: 0,
        }
    }

    /// Units physically present (available + reserved).
    pub fn on_hand(&self) -> u64 {
        self.available + self.reserved
    }

    /// Whether `available + reserved + sold == received - adjusted`.
    pub fn is_balanced(&self) -> bool {
        let lhs = i128::from(self.available) + i128::from(self.reserved) + i128::from(self.sold);
        lhs == i128::from(self.received) - i128::from(self.adjusted)
    }
}

/// All stock of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuStock {
    /// The SKU.
    pub sku: Sku,
    /// One level per location, in location-id order.
    pub levels: Vec<StockLevel>,
    /// Whether the SKU may be sold beyond its stock.
    pub backorder_allowed: bool,
    /// Units promised without stock (live backordered allocations plus confirmed ones
    /// not yet filled by a restock).
    pub backordered: u64,
}

impl SkuStock {
    /// Units free to reserve over all locations.
    pub fn available(&self) -> u64 {
        self.levels.iter().map(|l| l.available).sum()
    }

    /// Units reserved over all locations.
    pub fn reserved(&self) -> u64 {
        self.levels.iter().map(|l| l.reserved).sum()
    }

    /// Units sold over all locations.
    pub fn sold(&self) -> u64 {
        self.levels.iter().map(|l| l.sold).sum()
    }
}

/// One line of a reservation request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReservationLine {
    /// The SKU.
    pub sku: Sku,
    /// Units, 1 to [`MAX_QUANTITY`].
    pub quantity: u32,
}

/// A request to reserve stock for an order, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRequest {
    /// The order the stock is held for; the idempotency key of the reservation.
    pub order_id: OrderId,
    /// What to hold.
    pub lines: Vec<ReservationLine>,
    /// How long to hold it unless confirmed or extended.
    pub ttl: Duration,
}

impl ReservationRequest {
    /// A request with the default 15-minute lease.
    pub fn new(order_id: OrderId, lines: impl IntoIterator<Item = (Sku, u32)>) -> Self {
        ReservationRequest {
            order_id,
            lines: lines
                .into_iter()
                .map(|(sku, quantity)| ReservationLine { sku, quantity })
                .collect(),
            ttl: DEFAULT_RESERVATION_TTL,
        }
    }

    /// The lines merged by SKU (quantities summed) and sorted by SKU, after checking
    /// quantities and sizes. Stores reserve in this order and compare requests in this
    /// form for idempotency.
    pub fn normalized_lines(&self) -> Result<Vec<ReservationLine>> {
        if self.lines.is_empty() {
            return Err(Error::validation(
                "lines",
                "a reservation needs at least one line",
            ));
        }
        if self.lines.len() > MAX_RESERVATION_LINES {
            return Err(Error::validation(
                "lines",
                format!("at most {MAX_RESERVATION_LINES} lines"),
            ));
        }
        check_ttl(self.ttl)?;
        let mut merged: BTreeMap<&Sku, u64> = BTreeMap::new();
        for line in &self.lines {
            check_quantity(line.quantity)?;
            *merged.entry(&line.sku).or_default() += u64::from(line.quantity);
        }
        merged
            .into_iter()
            .map(|(sku, q)| {
                let quantity = u32::try_from(q)
                    .ok()
                    .filter(|&q| q <= MAX_QUANTITY)
                    .ok_or_else(|| {
                        Error::validation("quantity", format!("{q} units of {sku} is too many"))
                    })?;
                Ok(ReservationLine {
                    sku: sku.clone(),
                    quantity,
                })
            })
            .collect()
    }
}

/// Checks that a quantity is between 1 and [`MAX_QUANTITY`].
pub fn check_quantity(quantity: u32) -> Result<()> {
    if quantity == 0 || quantity > MAX_QUANTITY {
        return Err(Error::validation(
            "quantity",
            format!("{quantity} is not between 1 and {MAX_QUANTITY}"),
        ));
    }
    Ok(())
}

/// Checks a movement's reason: at most 500 characters, no NUL, else `Validation`.
pub fn check_reason(reason: &str) -> Result<()> {
    if reason.chars().count() > 500 || reason.contains('\0') {
        return Err(Error::validation(
            "reason",
            "at most 500 characters, no NUL",
        ));
    }
    Ok(())
}

/// One item of a bulk restock ([`InventoryStore::restock_many`](crate::store::InventoryStore::restock_many)):
/// `quantity` units of `sku` received at `location`.
///
/// ```
/// use commerce_core::id::{LocationId, Sku};
/// use commerce_core::inventory::Restock;
///
/// let item = Restock::new(Sku::new("PH-1")?, LocationId::new("main")?, 40, "initial stock");
/// assert!(item.validate().is_ok());
/// assert!(Restock { quantity: 0, ..item }.validate().is_err());
/// # Ok::<(), commerce_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restock {
    /// The SKU.
    pub sku: Sku,
    /// Where the units arrive.
    pub location: LocationId,
    /// Units received, 1 to [`MAX_QUANTITY`].
    pub quantity: u32,
    /// Why, for the ledger (at most 500 characters).
    pub reason: String,
}

impl Restock {
    /// A restock item.
    pub fn new(sku: Sku, location: LocationId, quantity: u32, reason: impl Into<String>) -> Self {
        Restock {
            sku,
            location,
            quantity,
            reason: reason.into(),
        }
    }

    /// Checks the quantity and the reason, as `restock` does.
    pub fn validate(&self) -> Result<()> {
        check_quantity(self.quantity)?;
        check_reason(&self.reason)
    }
}

/// Checks a bulk restock: at most [`MAX_PAGE_SIZE`](crate::store::MAX_PAGE_SIZE) items,
/// each valid; else `Validation`.
pub fn check_restocks(items: &[Restock]) -> Result<()> {
    if items.len() > crate::store::MAX_PAGE_SIZE as usize {
        return Err(Error::validation(
            "items",
            format!(
                "{} items; a bulk restock takes at most {}",
                items.len(),
                crate::store::MAX_PAGE_SIZE
            ),
        ));
    }
    items.iter().try_for_each(Restock::validate)
}

/// Where the units of one reservation line come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The SKU.
    pub sku: Sku,
    /// The location, or `None` for backordered units.
    pub location: Option<LocationId>,
    /// Units.
    pub quantity: u32,
}

/// The lifecycle of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationState {
    /// Holding stock until `expires_at`.
    Active,
    /// Turned into a sale.
    Confirmed,
    /// Given back (explicitly or by expiry).
    Released,
    /// Sold, then given back by a cancellation or refund.
    Returned,
}

impl ReservationState {
    /// The upper-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Active => "ACTIVE",
            ReservationState::Confirmed => "CONFIRMED",
            ReservationState::Released => "RELEASED",
            ReservationState::Returned => "RETURNED",
        }
    }

    /// Parses the upper-case name.
    pub fn parse(s: &str) -> Result<Self> {
        [
            Self::Active,
            Self::Confirmed,
            Self::Released,
            Self::Returned,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| Error::validation("state", format!("unknown reservation state {s:?}")))
    }
}

impl std::fmt::Display for ReservationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stock held for one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The order.
    pub order_id: OrderId,
    /// The requested lines, normalised (merged by SKU, sorted).
    pub lines: Vec<ReservationLine>,
    /// Where the units come from.
    pub allocations: Vec<Allocation>,
    /// Lifecycle state.
    pub state: ReservationState,
    /// When it was made.
    pub created_at: Timestamp,
    /// When an active reservation lapses.
    pub expires_at: Timestamp,
    /// When it left the active state.
    pub closed_at: Option<Timestamp>,
    /// Why it was released or returned.
    pub reason: Option<String>,
}

/// What happened to stock, one row per change; counters can be rebuilt from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// Units received (restock): `received` and `available` grow.
    Received,
    /// Units adjusted by `quantity` (negative: removed): `available` changes by it and
    /// `adjusted` by its negation.
    Adjusted,
    /// Units reserved: `available` to `reserved`.
    Reserved,
    /// Units released: `reserved` to `available`.
    Released,
    /// Units sold: `reserved` to `sold`.
    Sold,
    /// Sold units returned to stock: `sold` to `available`.
    Returned,
    /// Sold units returned and written off: `sold` to `adjusted`.
    WrittenOff,
    /// A restock filled confirmed backorders: `received` and `sold` grow.
    BackorderFilled,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockMovement {
    /// The SKU.
    pub sku: Sku,
    /// The location (`None` for backorder bookkeeping).
    pub location: Option<LocationId>,
    /// What happened.
    pub kind: MovementKind,
    /// Units (signed only for [`MovementKind::Adjusted`]).
    pub quantity: i64,
    /// The order, for reservation movements.
    pub order_id: Option<OrderId>,
    /// Free-text reason, for restocks and adjustments.
    pub reason: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A broken invariant found by an audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantViolation {
    /// The SKU.
    pub sku: Sku,
    /// The location, if the problem is with one level.
    pub location: Option<LocationId>,
    /// What is wrong.
    pub message: String,
}

/// Rebuilds the counters of one level from its ledger.
pub fn replay(sku: &Sku, location: &LocationId, movements: &[StockMovement]) -> StockLevel {
    let mut l = StockLevel::empty(sku.clone(), location.clone());
    let q = |m: &StockMovement| m.quantity.unsigned_abs();
    for m in movements
        .iter()
        .filter(|m| m.location.as_ref() == Some(location))
    {
        match m.kind {
            MovementKind::Received => {
                l.received += q(m);
                l.available += q(m);
            }
            MovementKind::Adjusted => {
                l.adjusted -= m.quantity;
                l.available = l.available.saturating_add_signed(m.quantity);
            }
            MovementKind::Reserved => {
                l.available = l.available.saturating_sub(q(m));
                l.reserved += q(m);
            }
            MovementKind::Released => {
                l.reserved = l.reserved.saturating_sub(q(m));
                l.available += q(m);
            }
            MovementKind::Sold => {
                l.reserved = l.reserved.saturating_sub(q(m));
                l.sold += q(m);
            }
            MovementKind::Returned => {
                l.sold = l.sold.saturating_sub(q(m));
                l.available += q(m);
            }
            MovementKind::WrittenOff => {
                l.sold = l.sold.saturating_sub(q(m));
                l.adjusted += m.quantity.abs();
            }
            MovementKind::BackorderFilled => {
                l.received += q(m);
                l.sold += q(m);
            }
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_merges_and_validates() {
        let sku = |s: &str| Sku::new(s).expect("ok");
        let req = ReservationRequest::new(
            OrderId::new("o1").expect("ok"),
            [(sku("b"), 1), (sku("a"), 2), (sku("b"), 3)],
        );
        let lines = req.normalized_lines().expect("ok");
        assert_eq!(
            lines,
            vec![
                ReservationLine {
                    sku: sku("a"),
                    quantity: 2
                },
                ReservationLine {
                    sku: sku("b"),
                    quantity: 4
                }
            ]
        );
        for bad in [0, MAX_QUANTITY + 1] {
            let r = ReservationRequest::new(OrderId::new("o").expect("ok"), [(sku("a"), bad)]);
            assert!(r.normalized_lines().is_err());
        }
        let r = ReservationRequest::new(
            OrderId::new("o").expect("ok"),
            [(sku("a"), MAX_QUANTITY), (sku("a"), 1)],
        );
        assert!(r.normalized_lines().is_err());
        assert!(
            ReservationRequest::new(OrderId::new("o").expect("ok"), [])
                .normalized_lines()
                .is_err()
        );
    }
}
