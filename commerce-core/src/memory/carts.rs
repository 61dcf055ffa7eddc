use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tracing::instrument;

use super::lock;
use crate::cart::{Cart, CartAddresses, CartItem, CartLimits, CartOwner, MergeReport};
use crate::clock::{Clock, Timestamp};
use crate::error::{EntityKind, Error, Result};
use crate::id::{CartId, CustomerId, Sku};
use crate::store::{CartStore, check_limit};

/// The in-memory [`CartStore`]. Expired carts are dropped when touched and by
/// [`MemoryCarts::purge_expired`].
#[derive(Debug)]
pub struct MemoryCarts {
    clock: Arc<dyn Clock>,
    carts: Mutex<HashMap<CartId, Cart>>,
}

impl MemoryCarts {
    /// An empty cart store.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryCarts {
            clock,
            carts: Mutex::new(HashMap::new()),
        }
    }

    /// Drops every expired cart; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now();
        let mut carts = lock(&self.carts);
        let before = carts.len();
        carts.retain(|_, c| !c.is_expired(now));
        before - carts.len()
    }

    /// Applies `f` to the owner's live cart (or a new one when `create`), storing the
    /// result only if `f` succeeds.
    fn write<T>(
        &self,
        id: &CartId,
        owner: &CartOwner,
        limits: &CartLimits,
        create: bool,
        f: impl FnOnce(&mut Cart, Timestamp) -> Result<T>,
    ) -> Result<(Cart, T)> {
        let now = self.clock.now();
        let mut carts = lock(&self.carts);
        let mut cart = match live(&carts, id, owner, now) {
            Some(c) => c.clone(),
            None if create && carts.get(id).is_none_or(|c| c.is_expired(now)) => {
                Cart::new(id.clone(), owner.clone(), now, limits)
            }
            None => return Err(Error::not_found(EntityKind::Cart, id)),
        };
        let out = f(&mut cart, now)?;
        carts.insert(id.clone(), cart.clone());
        Ok((cart, out))
    }
}

/// The cart if it is live and owned by `owner`.
fn live<'a>(
    carts: &'a HashMap<CartId, Cart>,
    id: &CartId,
    owner: &CartOwner,
    now: Timestamp,
) -> Option<&'a Cart> {
    carts
        .get(id)
        .filter(|c| !c.is_expired(now) && &c.owner == owner)
}

#[async_trait]
impl CartStore for MemoryCarts {
    async fn get_cart(&self, id: &CartId, owner: &CartOwner) -> Result<Option<Cart>> {
        let now = self.clock.now();
        Ok(live(&lock(&self.carts), id, owner, now).cloned())
    }

    #[instrument(level = "debug", skip_all, fields(cart_id = %id, sku = %item.sku), err(level = "debug"))]
    async fn add_item(
        &self,
        id: &CartId,
        owner: &CartOwner,
        item: CartItem,
        limits: &CartLimits,
    ) -> Result<Cart> {
        self.write(id, owner, limits, true, |cart, now| {
            cart.add_item(item, now, limits)
        })
        .map(|(c, ())| c)
    }

    #[instrument(level = "debug", skip_all, fields(cart_id = %id, sku = %sku), err(level = "debug"))]
    async fn set_quantity(
        &self,
        id: &CartId,
        owner: &CartOwner,
        sku: &Sku,
        quantity: u32,
        limits: &CartLimits,
    ) -> Result<Cart> {
        self.write(id, owner, limits, false, |cart, now| {
            cart.set_quantity(sku, quantity, now, limits)
        })
        .map(|(c, ())| c)
    }

    async fn remove_item(
        &self,
        id: &CartId,
        owner: &CartOwner,
        sku: &Sku,
        limits: &CartLimits,
    ) -> Result<Cart> {
        self.write(id, owner, limits, false, |cart, now| {
            cart.remove_item(sku, now, limits)
        })
        .map(|(c, ())| c)
    }

    #[instrument(level = "debug", skip_all, fields(cart_id = %id), err(level = "debug"))]
    async fn set_addresses(
        &self,
        id: &CartId,
        owner: &CartOwner,
        addresses: CartAddresses,
        limits: &CartLimits,
    ) -> Result<Cart> {
        self.write(id, owner, limits, false, |cart, now| {
            cart.set_addresses(addresses, now, limits);
            Ok(())
        })
        .map(|(c, ())| c)
    }

    async fn clear_cart(&self, id: &CartId, owner: &CartOwner) -> Result<()> {
        let now = self.clock.now();
        let mut carts = lock(&self.carts);
        if live(&carts, id, owner, now).is_some() {
            carts.remove(id);
        }
        Ok(())
    }

    #[instrument(level = "debug", skip_all, fields(guest = %guest, customer = %customer), err(level = "debug"))]
    async fn merge_carts(
        &self,
        guest: &CartId,
        customer: &CustomerId,
        caps: &BTreeMap<Sku, u32>,
        limits: &CartLimits,
    ) -> Result<(Cart, MergeReport)> {
        let now = self.clock.now();
        let target_id = CartId::for_customer(customer);
        let owner = CartOwner::Customer(customer.clone());
        let mut carts = lock(&self.carts);
        let guest_cart = live(&carts, guest, &CartOwner::Guest, now).cloned();
        let mut target = match live(&carts, &target_id, &owner, now) {
            Some(c) => c.clone(),
            None if carts.get(&target_id).is_some_and(|c| !c.is_expired(now)) => {
                return Err(Error::not_found(EntityKind::Cart, &target_id));
            }
            None => Cart::new(target_id.clone(), owner, now, limits),
        };
        let report = match &guest_cart {
            Some(g) => target.merge_from(g, caps, now, limits),
            None => MergeReport::default(),
        };
        if guest_cart.is_some() {
            carts.remove(guest);
            carts.insert(target_id, target.clone());
        }
        Ok((target, report))
    }

    async fn list_abandoned(&self, since: Timestamp, limit: u32) -> Result<Vec<Cart>> {
        let limit = check_limit(limit)?;
        let now = self.clock.now();
        let mut found: Vec<Cart> = lock(&self.carts)
            .values()
            .filter(|c| !c.is_expired(now) && !c.items.is_empty() && c.updated_at <= since)
            .cloned()
            .collect();
        found.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
        found.truncate(limit);
        Ok(found)
    }
}
