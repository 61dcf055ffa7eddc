//! The cart service: server-side carts with live prices and availability, the
//! guest-to-customer merge on sign-in, and client-side / hybrid carts.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::instrument;

use crate::cart::{Cart, CartAddresses, CartItem, CartLimits, CartOwner, MergeReport};
use crate::catalog::Product;
use crate::clock::Clock;
use crate::error::{EntityKind, Error, Result};
use crate::id::{CartId, CustomerGroupId, CustomerId, Sku};
use crate::money::Currency;
use crate::promotion::PriceList;
use crate::service::Stores;
use crate::service::client_cart::ClientCart;
use crate::service::pricing::{LineInput, ListPricing, PriceRules, Revalidation, revalidate};
use crate::store::{CartStore, CatalogStore, InventoryStore, PriceListStore};

/// Carts, on top of a [`CartStore`], the catalog and the inventory.
///
/// * **add** checks the SKU is sold and that the units (with those already in the
///   cart) are available, snapshots the current catalog price, and lets the store
///   merge it with the line of the same SKU, enforce the [`CartLimits`] and slide the
///   expiry, atomically (no lost update under concurrent adds).
/// * Availability here is advisory: nothing is held until checkout reserves stock.
/// * Cart ids and owners must agree: a guest uses a guest id ([`CartId::new_guest`]),
///   a customer the id [`CartId::for_customer`] gives, so a guest cannot squat a
///   customer's cart id.
///
/// **Sign-in** ([`CartService::sign_in`]) merges the guest cart into the customer's
/// cart by the policy of [`Cart::merge_from`]: quantities add up, capped by the line
/// limit and by the units available now (a merge never lowers what the customer's cart
/// already had); the later price snapshot wins; lines without stock or beyond the
/// cart's line limit are dropped and reported. The store does it atomically
/// ([`CartStore::merge_carts`]).
#[derive(Debug, Clone)]
pub struct CartService {
    carts: Arc<dyn CartStore>,
    catalog: Arc<dyn CatalogStore>,
    inventory: Arc<dyn InventoryStore>,
    clock: Arc<dyn Clock>,
    limits: CartLimits,
    price_lists: Option<(Arc<dyn PriceListStore>, Option<Currency>)>,
}

impl CartService {
    /// A cart service enforcing `limits`.
    pub fn new(stores: &Stores, limits: CartLimits) -> Self {
        CartService {
            carts: stores.carts.clone(),
            catalog: stores.catalog.clone(),
            inventory: stores.inventory.clone(),
            clock: stores.clock.clone(),
            limits,
            price_lists: None,
        }
    }

    /// Snapshots (and re-checks server carts against) the price resolved through the
    /// price lists of `store` for the owner's customer groups (a guest has none) in
    /// `currency` (`None`: each variant's own), as
    /// [`CheckoutService::with_price_lists`](crate::service::CheckoutService::with_price_lists)
    /// charges it. A SKU without a price in the currency cannot be added
    /// (`NotFound { kind: Variant }`).
    pub fn with_price_lists(
        mut self,
        store: Arc<dyn PriceListStore>,
        currency: Option<Currency>,
    ) -> Self {
        self.price_lists = Some((store, currency));
        self
    }

    /// The owner's groups and the lists valid now, when price lists are used.
    async fn list_context(
        &self,
        owner: &CartOwner,
    ) -> Result<Option<(Vec<CustomerGroupId>, Vec<PriceList>, Option<Currency>)>> {
        let Some((store, currency)) = &self.price_lists else {
            return Ok(None);
        };
        let groups = match owner {
            CartOwner::Customer(c) => store.customer_groups(c).await?,
            CartOwner::Guest => Vec::new(),
        };
        let lists = store.active_price_lists(self.clock.now()).await?;
        Ok(Some((groups, lists, *currency)))
    }

    /// The limits every write enforces.
    pub fn limits(&self) -> &CartLimits {
        &self.limits
    }

    /// The cart, if it exists, has not expired and belongs to `owner`.
    pub async fn get(&self, id: &CartId, owner: &CartOwner) -> Result<Option<Cart>> {
        check_owner(id, owner)?;
        self.carts.get_cart(id, owner).await
    }

    /// Adds `quantity` units of `sku` at the current catalog price.
    ///
    /// Errors: an unknown or unsold SKU is `NotFound { kind: Variant }`; too few units
    /// is `OutOfStock` (with the units the cart would hold); limits are `Validation`.
    #[instrument(level = "debug", skip(self, owner), fields(cart_id = %id), err(level = "debug"))]
    pub async fn add(
        &self,
        id: &CartId,
        owner: &CartOwner,
        sku: &Sku,
        quantity: u32,
    ) -> Result<Cart> {
        check_owner(id, owner)?;
        self.check_quantity(quantity)?;
        let product = self.sold_product(sku).await?;
        let in_cart = self
            .carts
            .get_cart(id, owner)
            .await?
            .and_then(|c| c.item(sku).map(|i| u64::from(i.quantity)))
            .unwrap_or(0);
        self.check_available(sku, in_cart + u64::from(quantity))
            .await?;
        let base = product
            .variant(sku)
            .map(|v| v.price)
            .ok_or_else(|| Error::not_found(EntityKind::Variant, sku))?;
        let price = match self.list_context(owner).await? {
            None => base,
            Some((groups, lists, currency)) => ListPricing {
                currency,
                groups: &groups,
                lists: &lists,
                now: self.clock.now(),
            }
            .price(sku, &base)
            .ok_or_else(|| Error::not_found(EntityKind::Variant, sku))?,
        };
        let item = CartItem {
            product_id: product.id.clone(),
            sku: sku.clone(),
            quantity,
            unit_price: price,
            added_at: self.clock.now(),
        };
        self.carts.add_item(id, owner, item, &self.limits).await
    }

    /// Sets a line's quantity (0 removes it); raising it checks availability.
    #[instrument(level = "debug", skip(self, owner), fields(cart_id = %id), err(level = "debug"))]
    pub async fn set_quantity(
        &self,
        id: &CartId,
        owner: &CartOwner,
        sku: &Sku,
        quantity: u32,
    ) -> Result<Cart> {
        check_owner(id, owner)?;
        if quantity > 0 {
            self.check_quantity(quantity)?;
            let cart = self
                .carts
                .get_cart(id, owner)
                .await?
                .ok_or_else(|| Error::not_found(EntityKind::Cart, id))?;
            let line = cart
                .item(sku)
                .ok_or_else(|| Error::not_found(EntityKind::CartItem, sku))?;
            if quantity > line.quantity {
                self.check_available(sku, u64::from(quantity)).await?;
            }
        }
        self.carts
            .set_quantity(id, owner, sku, quantity, &self.limits)
            .await
    }

    /// Removes a line.
    pub async fn remove(&self, id: &CartId, owner: &CartOwner, sku: &Sku) -> Result<Cart> {
        check_owner(id, owner)?;
        self.carts.remove_item(id, owner, sku, &self.limits).await
    }

    /// Saves `addresses` on the cart, replacing what it had (a `None` clears one), for
    /// checkout to use when its request carries no address
    /// ([`CheckoutRequest::shipping_address`](crate::service::CheckoutRequest::shipping_address)).
    /// Build them from client input with [`CartAddresses::from_input`] (or deserialise
    /// them): both validate.
    ///
    /// Errors: a missing, expired or foreign cart is `NotFound { kind: Cart }` (as
    /// [`CartStore::set_addresses`]; nothing is written); an id that does not match the
    /// owner is `Validation`.
    #[instrument(level = "debug", skip(self, owner, addresses), fields(cart_id = %id), err(level = "debug"))]
    pub async fn set_addresses(
        &self,
        id: &CartId,
        owner: &CartOwner,
        addresses: CartAddresses,
    ) -> Result<Cart> {
        check_owner(id, owner)?;
        self.carts
            .set_addresses(id, owner, addresses, &self.limits)
            .await
    }

    /// Deletes the cart (idempotent).
    pub async fn clear(&self, id: &CartId, owner: &CartOwner) -> Result<()> {
        check_owner(id, owner)?;
        self.carts.clear_cart(id, owner).await
    }

    /// Re-checks a server cart's lines (prices against the snapshots, availability),
    /// for a cart page. A missing cart is `NotFound { kind: Cart }`.
    pub async fn revalidate(&self, id: &CartId, owner: &CartOwner) -> Result<Revalidation> {
        let cart = self
            .get(id, owner)
            .await?
            .ok_or_else(|| Error::not_found(EntityKind::Cart, id))?;
        let context = self.list_context(owner).await?;
        revalidate(
            self.catalog.as_ref(),
            self.inventory.as_ref(),
            &cart_lines(&cart),
            &PriceRules {
                lists: context
                    .as_ref()
                    .map(|(groups, lists, currency)| ListPricing {
                        currency: *currency,
                        groups,
                        lists,
                        now: self.clock.now(),
                    }),
                ..PriceRules::default()
            },
        )
        .await
    }

    /// Merges the guest cart `guest` into `customer`'s cart on sign-in (see the
    /// [type docs](CartService) for the policy). A missing guest cart merges nothing.
    #[instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn sign_in(
        &self,
        guest: &CartId,
        customer: &CustomerId,
    ) -> Result<(Cart, MergeReport)> {
        check_owner(guest, &CartOwner::Guest)?;
        let mut caps = BTreeMap::new();
        if let Some(cart) = self.carts.get_cart(guest, &CartOwner::Guest).await? {
            for item in &cart.items {
                let sold = self
                    .catalog
                    .get_product_by_sku(&item.sku)
                    .await?
                    .is_some_and(|p| p.is_active() && p.variant(&item.sku).is_some());
                let stock = self.inventory.stock(&item.sku).await?;
                let cap = if !sold {
                    0
                } else if stock.backorder_allowed {
                    continue;
                } else {
                    u32::try_from(stock.available()).unwrap_or(u32::MAX)
                };
                caps.insert(item.sku.clone(), cap);
            }
        }
        self.carts
            .merge_carts(guest, customer, &caps, &self.limits)
            .await
    }

    /// Re-checks a client-held cart: validates it against the limits and re-reads every
    /// price from the catalog (the client's prices only flag changes). Writes nothing.
    pub async fn price_client_cart(&self, cart: &ClientCart) -> Result<Revalidation> {
        let lines = cart.lines(&self.limits)?;
        revalidate(
            self.catalog.as_ref(),
            self.inventory.as_ref(),
            &lines,
            &PriceRules::default(),
        )
        .await
    }

    /// The hybrid model: moves a client-held cart into the server cart `id` (e.g. when
    /// the shopper signs in on a second device). Each line is added at the current
    /// catalog price, capped at the units available; lines that are not sold, have no
    /// stock or do not fit are dropped and reported. Returns the server cart (`None` if
    /// nothing was added and it did not exist).
    pub async fn import_client_cart(
        &self,
        id: &CartId,
        owner: &CartOwner,
        cart: &ClientCart,
    ) -> Result<(Option<Cart>, MergeReport)> {
        check_owner(id, owner)?;
        let lines = cart.lines(&self.limits)?;
        let mut report = MergeReport::default();
        for line in lines {
            let in_cart = self
                .carts
                .get_cart(id, owner)
                .await?
                .and_then(|c| c.item(&line.sku).map(|i| u64::from(i.quantity)))
                .unwrap_or(0);
            let stock = self.inventory.stock(&line.sku).await?;
            let room = u64::from(self.limits.max_line_quantity).saturating_sub(in_cart);
            let free = if stock.backorder_allowed {
                room
            } else {
                stock.available().saturating_sub(in_cart).min(room)
            };
            let quantity = u64::from(line.quantity).min(free) as u32;
            if quantity == 0 {
                report.dropped.push(line.sku);
                continue;
            }
            match self.add(id, owner, &line.sku, quantity).await {
                Ok(_) => {
                    if quantity < line.quantity {
                        report.capped.push(line.sku);
                    }
                }
                Err(
                    Error::NotFound { .. }
                    | Error::OutOfStock { .. }
                    | Error::Validation { .. }
                    | Error::CurrencyMismatch { .. },
                ) => report.dropped.push(line.sku),
                Err(e) => return Err(e),
            }
        }
        Ok((self.carts.get_cart(id, owner).await?, report))
    }

    fn check_quantity(&self, quantity: u32) -> Result<()> {
        if quantity == 0 || quantity > self.limits.max_line_quantity {
            return Err(Error::validation(
                "quantity",
                format!(
                    "{quantity} units; 1 to {} allowed",
                    self.limits.max_line_quantity
                ),
            ));
        }
        Ok(())
    }

    async fn sold_product(&self, sku: &Sku) -> Result<Product> {
        self.catalog
            .get_product_by_sku(sku)
            .await?
            .filter(|p| p.is_active() && p.variant(sku).is_some())
            .ok_or_else(|| Error::not_found(EntityKind::Variant, sku))
    }

    async fn check_available(&self, sku: &Sku, wanted: u64) -> Result<()> {
        let stock = self.inventory.stock(sku).await?;
        if !stock.backorder_allowed && stock.available() < wanted {
            return Err(Error::OutOfStock {
                sku: sku.to_string(),
                requested: wanted,
                available: stock.available(),
            });
        }
        Ok(())
    }
}

/// A server cart's lines as revalidation input (the snapshots are the seen prices).
pub(crate) fn cart_lines(cart: &Cart) -> Vec<LineInput> {
    cart.items
        .iter()
        .map(|i| LineInput {
            sku: i.sku.clone(),
            quantity: i.quantity,
            seen_price: Some(i.unit_price),
        })
        .collect()
}

/// A guest must use a guest cart id, a customer their own cart id.
pub(crate) fn check_owner(id: &CartId, owner: &CartOwner) -> Result<()> {
    let ok = match owner {
        CartOwner::Guest => id.is_guest(),
        CartOwner::Customer(c) => id == &CartId::for_customer(c),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            "cart_id",
            format!("{id} is not a cart id this owner may use"),
        ))
    }
}
