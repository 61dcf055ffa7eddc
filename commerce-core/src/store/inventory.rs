use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::id::{LocationId, OrderId, Sku};
use crate::inventory::{
    InvariantViolation, Reservation, ReservationRequest, Restock, SkuStock, StockLevel,
    StockMovement,
};

/// Stock levels, reservations and the movement ledger. The counters, the invariant,
/// the location policy and backorders are defined in [`crate::inventory`].
///
/// # To ensure correctness (every method)
/// * **Strong consistency**: every write is linearizable; a read after a write sees it.
/// * **Invariant**: at every instant `available >= 0`, `reserved` equals the sum of
///   live allocations, and `available + reserved + sold == received - adjusted` for
///   every level; [`InventoryStore::audit`] finds nothing.
/// * **Ledger**: every counter change appends its [`StockMovement`] atomically.
///   Backordered units (allocations with `location: None`) change no level, so
///   reserving, confirming, releasing or returning them records no movement; they show
///   only in [`SkuStock::backordered`].
/// * **Events**: restock and adjust append `StockChanged`; reservation state changes
///   append `ReservationChanged`, atomically with the change. Its `skus` are the SKUs
///   of the reservation's normalised lines (each once, in SKU order) on every
///   transition: reserve, confirm, release, return and expiry.
/// * Invalid input (zero or huge quantities, reasons over 500 characters) is a
///   `Validation` error and writes nothing.
#[async_trait]
pub trait InventoryStore: Send + Sync + Debug + 'static {
    /// Receives `quantity` units of `sku` at `location` (creating the level), first
    /// filling the SKU's confirmed backorders. Returns the level afterwards.
    ///
    /// # To ensure correctness
    /// * The ledger gets, at this location, with the restock's reason and no order: one
    ///   `BackorderFilled` movement for the units that filled owed backorders (if any),
    ///   then one `Received` movement for the rest (if any).
    /// * Exactly one `StockChanged` event (the level's `available` afterwards), whether
    ///   or not backorders were filled; filling them appends no `ReservationChanged`.
    async fn restock(
        &self,
        sku: &Sku,
        location: &LocationId,
        quantity: u32,
        reason: &str,
    ) -> Result<StockLevel>;

    /// Receives several restocks at once, each exactly as [`restock`](Self::restock)
    /// would (backorders filled first, its movements and its `StockChanged` event), in
    /// the order given: a SKU's owed backorders are filled by its first items. Returns
    /// each level as it was right after its item, in that order.
    /// For bulk loads: one round trip and one commit instead of one per item.
    ///
    /// # To ensure correctness
    /// * Validate every item first ([`check_restocks`](crate::inventory::check_restocks):
    ///   at most [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE) items); one invalid item is a
    ///   `Validation` error and nothing is written. No items: `Ok` with none.
    /// * A store with atomic writes makes the batch all or nothing (memory and
    ///   PostgreSQL do). The default validates, then calls `restock` item by item: a
    ///   backend failure midway leaves the items before it received.
    async fn restock_many(&self, items: &[Restock]) -> Result<Vec<StockLevel>> {
        crate::inventory::check_restocks(items)?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(
                self.restock(&item.sku, &item.location, item.quantity, &item.reason)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Adds `delta` units to `available` (negative removes), recording `-delta` in
    /// `adjusted`. Removing more than is available is `OutOfStock` and changes nothing;
    /// an unknown level is `NotFound { kind: Stock }`.
    async fn adjust(
        &self,
        sku: &Sku,
        location: &LocationId,
        delta: i64,
        reason: &str,
    ) -> Result<StockLevel>;

    /// Allows or forbids backorders for `sku` (creating its record if needed).
    async fn set_backorder(&self, sku: &Sku, allowed: bool) -> Result<()>;

    /// All stock of `sku`; a SKU never stocked has no levels.
    async fn stock(&self, sku: &Sku) -> Result<SkuStock>;

    /// The stock of each of `skus`, in the order of `skus`, each once (a repeated SKU is
    /// answered at its first position). For pages that show many SKUs (a product's
    /// variants, recommendations): one call instead of one per SKU.
    ///
    /// # To ensure correctness
    /// * Each entry is exactly what [`stock`](Self::stock) would return for its SKU at
    ///   some instant during the call (a SKU never stocked has no levels).
    /// * At most [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE) SKUs, else `Validation`; no
    ///   SKUs gives an empty list.
    ///
    /// The default calls `stock` once per distinct SKU; a store with a batch read should
    /// override it (the PostgreSQL store reads them all in one statement, so one
    /// snapshot).
    async fn stocks(&self, skus: &[Sku]) -> Result<Vec<SkuStock>> {
        let skus = super::distinct_batch("skus", skus)?;
        let mut out = Vec::with_capacity(skus.len());
        for sku in skus {
            out.push(self.stock(sku).await?);
        }
        Ok(out)
    }

    /// Reserves every line of `request` for `request.order_id`, all or nothing, for
    /// `request.ttl` from the store clock's now.
    ///
    /// # To ensure correctness
    /// * **All or nothing**: if any line cannot be served, nothing is reserved and the
    ///   error is `OutOfStock` for the first short SKU (in SKU order) with the units
    ///   available when it was evaluated. A SKU with no stock record and no backorder
    ///   setting is `NotFound { kind: Stock }`.
    /// * **Never oversell**: under any number of concurrent calls, the units reserved
    ///   at a location never exceed what was available there.
    /// * **Idempotent per order**: if the order already has a reservation (in any
    ///   state) with the same normalised lines, return it unchanged; with different
    ///   lines, `Conflict { kind: Reservation }`.
    /// * **No deadlock**: concurrent multi-SKU reservations must not deadlock (take
    ///   locks in [`ReservationRequest::normalized_lines`] order).
    /// * Locations follow the policy of [`crate::inventory`].
    async fn reserve(&self, request: &ReservationRequest) -> Result<Reservation>;

    /// Moves an active reservation's expiry to now + `ttl` (the lease is extended while
    /// a payment is in progress).
    ///
    /// # To ensure correctness
    /// * `ttl` outside 1 ms to [`MAX_RESERVATION_TTL`](crate::inventory::MAX_RESERVATION_TTL)
    ///   (the bounds of `reserve`, see [`check_ttl`](crate::inventory::check_ttl)) is
    ///   `Validation` and changes nothing.
    /// * Only an `Active` reservation that has not expired at now can be extended;
    ///   otherwise `InvalidTransition { entity: Reservation }` (from its state, or
    ///   `EXPIRED`). Unknown order: `NotFound { kind: Reservation }`.
    /// * Only `expires_at` changes: no event and no movement are appended.
    async fn extend(&self, order_id: &OrderId, ttl: Duration) -> Result<Reservation>;

    /// Turns an active reservation into a sale (`reserved` to `sold`).
    ///
    /// # To ensure correctness
    /// * Idempotent: confirming a `Confirmed` reservation returns it unchanged.
    /// * A reservation that was released (or returned) cannot be confirmed:
    ///   `InvalidTransition { entity: Reservation }`.
    /// * An `Active` reservation past its expiry that no reaper has released yet may
    ///   still be confirmed: the units are still held, so nothing is oversold.
    async fn confirm(&self, order_id: &OrderId) -> Result<Reservation>;

    /// Gives an active reservation's units back (`reserved` to `available`).
    ///
    /// # To ensure correctness
    /// Idempotent on `Released`; a `Confirmed` or `Returned` reservation is
    /// `InvalidTransition`.
    async fn release(&self, order_id: &OrderId, reason: &str) -> Result<Reservation>;

    /// Gives a confirmed reservation's sold units back: to `available` when `restock`,
    /// else written off (`sold` to `adjusted`). Backordered units still owed are
    /// cancelled. Idempotent on `Returned`; any other state is `InvalidTransition`.
    async fn return_stock(
        &self,
        order_id: &OrderId,
        restock: bool,
        reason: &str,
    ) -> Result<Reservation>;

    /// Releases up to `limit` active reservations whose `expires_at <= now`, returning
    /// them as released.
    ///
    /// # To ensure correctness
    /// Each expired reservation is released **exactly once** even when several reapers
    /// run this concurrently (on several nodes): no reservation is returned by two
    /// calls, and its units go back once.
    async fn release_expired(&self, now: Timestamp, limit: u32) -> Result<Vec<Reservation>>;

    /// The order's reservation, in whatever state.
    async fn reservation(&self, order_id: &OrderId) -> Result<Option<Reservation>>;

    /// The ledger of `sku`, oldest first, at most `limit` entries after the first
    /// `offset`.
    async fn movements(&self, sku: &Sku, offset: u64, limit: u32) -> Result<Vec<StockMovement>>;

    /// Checks the invariant and the ledger for every SKU and reports what is wrong
    /// (empty when all is well). Meant for tests and operations, not hot paths.
    async fn audit(&self) -> Result<Vec<InvariantViolation>>;
}

/// Conveniences on any [`InventoryStore`].
#[async_trait]
pub trait InventoryStoreExt: InventoryStore {
    /// Units of `sku` available over all locations.
    async fn available(&self, sku: &Sku) -> Result<u64> {
        Ok(self.stock(sku).await?.available())
    }

    /// The stock of any number of SKUs: [`InventoryStore::stocks`] in batches of
    /// [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE) (each batch is its own read).
    async fn stocks_in_batches(&self, skus: &[Sku]) -> Result<Vec<SkuStock>> {
        let mut out = Vec::with_capacity(skus.len());
        for batch in skus.chunks(super::MAX_PAGE_SIZE as usize) {
            out.extend(self.stocks(batch).await?);
        }
        Ok(out)
    }
}

impl<T: InventoryStore + ?Sized> InventoryStoreExt for T {}
