use std::collections::BTreeMap;
use std::fmt::Debug;

use async_trait::async_trait;

use crate::cart::{Cart, CartAddresses, CartItem, CartLimits, CartOwner, MergeReport};
use crate::clock::Timestamp;
use crate::error::Result;
use crate::id::{CartId, CustomerId, Sku};

/// Server-side carts.
///
/// The rules of each operation are those of the same-named method of [`Cart`]; a store
/// applies them **atomically on the server** (a transaction, a script), never as a
/// client-side read-modify-write, so that concurrent writers lose no update.
///
/// # To ensure correctness (every method)
/// * **Ownership**: a cart is only visible to its owner. A call whose `owner` differs
///   from a live stored cart's reads `None` and writes nothing: `set_quantity`,
///   `remove_item`, `set_addresses` and **`add_item`** are `NotFound { kind: Cart }`
///   (`add_item` never creates or overwrites a live cart of another owner; once that
///   cart has expired it creates a new one), `clear_cart` succeeds without deleting
///   it. Each answer is one a missing cart could also give, so ids of other customers'
///   carts cannot be probed by the content they hold.
/// * **Expiry**: a cart whose `expires_at` is at or before the store clock's now does not
///   exist. Every write sets `updated_at` to now and `expires_at` to `now + limits.ttl`,
///   and bumps `version` by one.
/// * **Limits and validation**: a write that breaks `limits` or the currency rule fails
///   with the error [`Cart`] gives and leaves the stored cart unchanged.
/// * **No lost update**: N concurrent `add_item` calls on one cart all count, also
///   when `set_addresses` calls run among them.
#[async_trait]
pub trait CartStore: Send + Sync + Debug + 'static {
    /// The cart, if it exists, is not expired and belongs to `owner`.
    async fn get_cart(&self, id: &CartId, owner: &CartOwner) -> Result<Option<Cart>>;

    /// Adds a line (merging with the same SKU, see [`Cart::add_item`]), creating the
    /// cart for `owner` if it does not exist (or has expired).
    async fn add_item(
        &self,
        id: &CartId,
        owner: &CartOwner,
        item: CartItem,
        limits: &CartLimits,
    ) -> Result<Cart>;

    /// Sets a line's quantity; 0 removes the line. A missing cart is `NotFound { kind:
    /// Cart }`, a missing line `NotFound { kind: CartItem }`.
    async fn set_quantity(
        &self,
        id: &CartId,
        owner: &CartOwner,
        sku: &Sku,
        quantity: u32,
        limits: &CartLimits,
    ) -> Result<Cart>;

    /// Removes a line; errors as [`CartStore::set_quantity`].
    async fn remove_item(
        &self,
        id: &CartId,
        owner: &CartOwner,
        sku: &Sku,
        limits: &CartLimits,
    ) -> Result<Cart>;

    /// Replaces the cart's saved addresses with `addresses` (by [`Cart::set_addresses`]:
    /// a `None` clears that address; `CartAddresses::default()` clears both).
    ///
    /// # To ensure correctness
    /// * **Only an existing cart**: a missing or expired cart, or a live cart of another
    ///   owner, is `NotFound { kind: Cart }` and nothing is written (no cart is
    ///   created: addresses alone do not make a cart). An empty live cart (every line
    ///   removed) takes addresses.
    /// * **Any owner**: guest carts carry addresses as customer carts do (the unguessable
    ///   guest id is the credential, as for its lines).
    /// * **A write like the others**: bumps `version` by one, sets `updated_at` to now
    ///   and `expires_at` to `now + limits.ttl`, atomically on the server; the lines are
    ///   untouched. Setting the addresses a cart already has still writes.
    /// * **Round trip**: `get_cart` then returns exactly the addresses given (every
    ///   field, in the normalised form [`Address::new`](crate::address::Address::new)
    ///   gave them). A stored address that no longer passes validation (tampered data)
    ///   is an error when read, never an unvalidated `Address`.
    async fn set_addresses(
        &self,
        id: &CartId,
        owner: &CartOwner,
        addresses: CartAddresses,
        limits: &CartLimits,
    ) -> Result<Cart>;

    /// Deletes the cart. Idempotent: deleting a missing cart succeeds.
    async fn clear_cart(&self, id: &CartId, owner: &CartOwner) -> Result<()>;

    /// Moves the guest cart's lines into the customer's cart (created if needed) by
    /// the policy of [`Cart::merge_from`], with `caps` bounding quantities per SKU, and
    /// deletes the guest cart. Addresses follow the same policy: the customer cart
    /// keeps its [`CartAddresses`] if it has any, else takes the guest cart's (as a
    /// pair).
    ///
    /// # To ensure correctness
    /// * Atomic: afterwards either both carts are as before or the guest cart is gone
    ///   and the customer cart holds the merge; never half-merged, never merged twice.
    /// * A missing or expired guest cart is not an error: the customer cart is returned
    ///   unchanged, with an empty report, and **nothing is written**. If the customer
    ///   has no live cart either, the answer is an empty cart that is not stored:
    ///   `version` 0 (as [`Cart::new`]), `get_cart` still `None`.
    /// * `guest` is read as a guest cart (`CartOwner::Guest`): an id that holds another
    ///   owner's cart (a customer's) counts as missing (`Ok`, nothing changed), by the
    ///   ownership rule. The customer cart id is [`CartId::for_customer`]; a live cart
    ///   at that id owned by someone else is `NotFound { kind: Cart }`.
    async fn merge_carts(
        &self,
        guest: &CartId,
        customer: &CustomerId,
        caps: &BTreeMap<Sku, u32>,
        limits: &CartLimits,
    ) -> Result<(Cart, MergeReport)>;

    /// Abandoned carts, for recovery mails: live carts (any owner) with at least one
    /// line whose last write (`updated_at`) is at or before `since`, oldest first (ties
    /// by id), at most `limit`.
    ///
    /// # To ensure correctness
    /// * `limit` is 1 to [`MAX_PAGE_SIZE`](crate::store::MAX_PAGE_SIZE), else
    ///   `Validation` on `limit`.
    /// * Expired carts and empty carts are never listed; a write after `since` takes a
    ///   cart off the list.
    /// * Oldest first by `updated_at` at the store's time resolution (a store keeping
    ///   microseconds may order carts written within one microsecond by id).
    async fn list_abandoned(&self, since: Timestamp, limit: u32) -> Result<Vec<Cart>>;
}
