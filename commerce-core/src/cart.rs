//! Carts: lines with a price snapshot, an owner, and a sliding expiry.
//!
//! The rules here are the reference every [`CartStore`](crate::store::CartStore) follows
//! (the in-memory store calls them; server-side scripts reimplement them and the
//! conformance kit checks they agree):
//!
//! * adding a SKU that is already in the cart adds to its quantity and takes the new
//!   price snapshot (the price the shopper just saw);
//! * a line holds 1 to [`CartLimits::max_line_quantity`] units, a cart at most
//!   [`CartLimits::max_lines`] lines, all in one currency; a write that would break a
//!   limit fails with [`Error::Validation`] and changes nothing;
//! * every write moves `expires_at` to `now + ttl` (7 days by default).
//!
//! **Merging a guest cart into a customer's cart** ([`Cart::merge_from`]): for a SKU in
//! both, quantities add up but are capped by the per-line limit and by the caller's
//! availability cap for that SKU (a merge never lowers a quantity the customer's cart
//! already had); the price snapshot taken **later** wins (it is the
//! price the shopper saw last; checkout re-prices anyway). Guest lines that would exceed
//! the line limit, that have no stock, or whose currency differs are dropped and reported.
//! Addresses move as a pair: the customer cart keeps its [`CartAddresses`] when it has
//! any, and takes the guest cart's otherwise (shipping and billing are never mixed from
//! the two carts).
//!
//! **Addresses** ([`CartAddresses`], set with [`Cart::set_addresses`]): a cart may carry
//! a shipping and a billing [`Address`], each already validated (an `Address` can only
//! be built by [`Address::new`], and deserialising one, from a client or from a store,
//! validates it again). Setting them replaces both (a `None` clears one) and is a write
//! like any other: it bumps the version and slides the expiry. Guest carts may carry
//! addresses too (a guest checks out with one); they are personal data and disappear
//! with the cart. [`CheckoutService`](crate::service::CheckoutService) uses them when
//! the checkout request carries no address of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::address::{Address, AddressInput};
use crate::clock::{self, Timestamp};
use crate::error::{EntityKind, Error, Result};
use crate::id::{CartId, CustomerId, ProductId, Sku};
use crate::money::{Currency, Money};

/// Who a cart belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum CartOwner {
    /// An anonymous shopper; the unguessable cart id is the only credential.
    Guest,
    /// A signed-in customer.
    Customer(CustomerId),
}

/// One line of a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartItem {
    /// The product.
    pub product_id: ProductId,
    /// The variant.
    pub sku: Sku,
    /// Units, at least 1.
    pub quantity: u32,
    /// Unit price when the line was (last) added.
    pub unit_price: Money,
    /// When the line was (last) added.
    pub added_at: Timestamp,
}

/// The addresses saved on a cart, both validated (see the [module docs](self)).
///
/// Deserialising validates each address ([`Address`] deserialises through
/// [`Address::new`]) and refuses unknown fields, so a value from a client or a store
/// that breaks the address rules never becomes a `CartAddresses`.
///
/// ```
/// use commerce_core::address::AddressInput;
/// use commerce_core::cart::CartAddresses;
///
/// let home = AddressInput {
///     name: "Erika Mustermann".into(),
///     line1: "Heidestraße 17".into(),
///     city: "Köln".into(),
///     postal_code: Some("51147".into()),
///     country: "DE".into(),
///     ..AddressInput::default()
/// };
/// let saved = CartAddresses::from_input(Some(home.clone()), None)?;
/// assert_eq!(saved.shipping.as_ref().map(|a| a.city()), Some("Köln"));
/// let bad = AddressInput { country: "XX".into(), ..home };
/// assert!(CartAddresses::from_input(None, Some(bad)).is_err());
/// // Deserialising (a client's JSON, a stored cart) validates too.
/// let json = r#"{"shipping":{"name":"A","line1":"B","city":"C","country":"XX"}}"#;
/// assert!(serde_json::from_str::<CartAddresses>(json).is_err());
/// # Ok::<(), commerce_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartAddresses {
    /// Where the goods go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<Address>,
    /// Who pays (at checkout, the shipping address when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<Address>,
}

impl CartAddresses {
    /// Validates client input ([`Address::new`] on each address given): the first
    /// invalid address is `Validation` on its `address.<field>`, and nothing is built.
    pub fn from_input(
        shipping: Option<AddressInput>,
        billing: Option<AddressInput>,
    ) -> Result<Self> {
        Ok(CartAddresses {
            shipping: shipping.map(Address::new).transpose()?,
            billing: billing.map(Address::new).transpose()?,
        })
    }

    /// Whether neither address is set.
    pub fn is_empty(&self) -> bool {
        self.shipping.is_none() && self.billing.is_none()
    }
}

/// A shopping cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cart {
    /// Identifier.
    pub id: CartId,
    /// Owner.
    pub owner: CartOwner,
    /// Lines, in the order they were first added; one line per SKU.
    pub items: Vec<CartItem>,
    /// Bumped by every write.
    pub version: u64,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last write.
    pub updated_at: Timestamp,
    /// When the cart disappears unless written again.
    pub expires_at: Timestamp,
    /// The saved shipping and billing addresses (none by default; carts stored before
    /// addresses existed read as none).
    #[serde(default, skip_serializing_if = "CartAddresses::is_empty")]
    pub addresses: CartAddresses,
}

/// Limits and expiry applied by every cart write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLimits {
    /// Most units on one line.
    pub max_line_quantity: u32,
    /// Most lines in one cart.
    pub max_lines: u32,
    /// Sliding expiry.
    pub ttl: Duration,
}

impl Default for CartLimits {
    /// 99 units a line, 100 lines, 7 days.
    fn default() -> Self {
        CartLimits {
            max_line_quantity: 99,
            max_lines: 100,
            ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What a merge changed besides adding lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeReport {
    /// SKUs whose merged quantity was capped (by the line limit or availability).
    pub capped: Vec<Sku>,
    /// SKUs from the guest cart that were not merged (no stock, cart full, currency).
    pub dropped: Vec<Sku>,
}

impl Cart {
    /// An empty cart created at `now`.
    pub fn new(id: CartId, owner: CartOwner, now: Timestamp, limits: &CartLimits) -> Self {
        Cart {
            id,
            owner,
            items: Vec::new(),
            version: 0,
            created_at: now,
            updated_at: now,
            expires_at: clock::add(now, limits.ttl),
            addresses: CartAddresses::default(),
        }
    }

    /// The currency of the cart's lines, if it has any.
    pub fn currency(&self) -> Option<Currency> {
        self.items.first().map(|i| i.unit_price.currency())
    }

    /// The line for `sku`.
    pub fn item(&self, sku: &Sku) -> Option<&CartItem> {
        self.items.iter().find(|i| &i.sku == sku)
    }

    /// Total units.
    pub fn total_quantity(&self) -> u64 {
        self.items.iter().map(|i| u64::from(i.quantity)).sum()
    }

    /// Sum of `unit_price * quantity` over the lines; zero in `fallback` when empty.
    pub fn subtotal(&self, fallback: Currency) -> Result<Money> {
        let currency = self.currency().unwrap_or(fallback);
        self.items.iter().try_fold(Money::zero(currency), |acc, i| {
            acc.checked_add(&i.unit_price.checked_mul(u64::from(i.quantity))?)
        })
    }

    /// Whether the cart has expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }

    fn touch(&mut self, now: Timestamp, limits: &CartLimits) {
        self.version += 1;
        self.updated_at = now;
        self.expires_at = clock::add(now, limits.ttl);
    }

    fn check_quantity(quantity: u64, limits: &CartLimits) -> Result<u32> {
        if quantity == 0 || quantity > u64::from(limits.max_line_quantity) {
            return Err(Error::validation(
                "quantity",
                format!(
                    "{quantity} units on one line; 1 to {} allowed",
                    limits.max_line_quantity
                ),
            ));
        }
        Ok(quantity as u32)
    }

    /// Adds `item` (merging with the line of the same SKU) and refreshes the expiry.
    /// On error the cart is unchanged.
    pub fn add_item(&mut self, item: CartItem, now: Timestamp, limits: &CartLimits) -> Result<()> {
        if let Some(currency) = self.currency() {
            if currency != item.unit_price.currency() {
                return Err(Error::CurrencyMismatch {
                    left: currency,
                    right: item.unit_price.currency(),
                });
            }
        }
        if item.unit_price.is_negative() {
            return Err(Error::validation("unit_price", "must not be negative"));
        }
        if let Some(line) = self.items.iter_mut().find(|l| l.sku == item.sku) {
            let quantity = Self::check_quantity(
                u64::from(line.quantity) + u64::from(item.quantity.max(1)),
                limits,
            )?;
            Self::check_quantity(u64::from(item.quantity), limits)?;
            line.quantity = quantity;
            line.unit_price = item.unit_price;
            line.added_at = item.added_at;
            line.product_id = item.product_id;
        } else {
            Self::check_quantity(u64::from(item.quantity), limits)?;
            if self.items.len() >= limits.max_lines as usize {
                return Err(Error::validation(
                    "items",
                    format!("the cart is full ({} lines)", limits.max_lines),
                ));
            }
            self.items.push(item);
        }
        self.touch(now, limits);
        Ok(())
    }

    /// Sets the quantity of the line for `sku`; 0 removes it.
    pub fn set_quantity(
        &mut self,
        sku: &Sku,
        quantity: u32,
        now: Timestamp,
        limits: &CartLimits,
    ) -> Result<()> {
        let index = self
            .items
            .iter()
            .position(|l| &l.sku == sku)
            .ok_or_else(|| Error::not_found(EntityKind::CartItem, sku))?;
        if quantity == 0 {
            self.items.remove(index);
        } else {
            self.items[index].quantity = Self::check_quantity(u64::from(quantity), limits)?;
        }
        self.touch(now, limits);
        Ok(())
    }

    /// Removes the line for `sku`.
    pub fn remove_item(&mut self, sku: &Sku, now: Timestamp, limits: &CartLimits) -> Result<()> {
        self.set_quantity(sku, 0, now, limits)
    }

    /// Replaces the saved addresses (a `None` clears that address) and refreshes the
    /// expiry. Cannot fail: every [`Address`] is valid by construction.
    pub fn set_addresses(&mut self, addresses: CartAddresses, now: Timestamp, limits: &CartLimits) {
        self.addresses = addresses;
        self.touch(now, limits);
    }

    /// Merges the guest cart's lines (and its addresses, when this cart has none) into
    /// this one by the policy in the
    /// [module docs](self). `caps` bounds the merged quantity per SKU (typically the
    /// units available); a SKU missing from `caps` is capped only by the line limit.
    pub fn merge_from(
        &mut self,
        guest: &Cart,
        caps: &BTreeMap<Sku, u32>,
        now: Timestamp,
        limits: &CartLimits,
    ) -> MergeReport {
        let mut report = MergeReport::default();
        for g in &guest.items {
            let cap = caps
                .get(&g.sku)
                .copied()
                .unwrap_or(u32::MAX)
                .min(limits.max_line_quantity);
            if self
                .currency()
                .is_some_and(|c| c != g.unit_price.currency())
            {
                // Another currency: dropped, even for a SKU the customer already has.
                report.dropped.push(g.sku.clone());
                continue;
            }
            if let Some(line) = self.items.iter_mut().find(|l| l.sku == g.sku) {
                // Never below what the customer already had; never past the cap otherwise.
                let wanted = u64::from(line.quantity) + u64::from(g.quantity);
                let merged = wanted.min(u64::from(cap)).max(u64::from(line.quantity)) as u32;
                if u64::from(merged) < wanted {
                    report.capped.push(g.sku.clone());
                }
                line.quantity = merged;
                if g.added_at > line.added_at {
                    line.unit_price = g.unit_price;
                    line.added_at = g.added_at;
                }
            } else if cap == 0 || self.items.len() >= limits.max_lines as usize {
                report.dropped.push(g.sku.clone());
            } else {
                let quantity = g.quantity.min(cap);
                if quantity < g.quantity {
                    report.capped.push(g.sku.clone());
                }
                let mut line = g.clone();
                line.quantity = quantity;
                self.items.push(line);
            }
        }
        if self.addresses.is_empty() {
            self.addresses = guest.addresses.clone();
        }
        self.touch(now, limits);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn item(sku: &str, q: u32, price: &str, at: Timestamp) -> CartItem {
        CartItem {
            product_id: ProductId::new("p1").expect("ok"),
            sku: Sku::new(sku).expect("ok"),
            quantity: q,
            unit_price: price.parse().expect("ok"),
            added_at: at,
        }
    }

    #[test]
    fn add_merges_lines_and_enforces_limits() {
        let clock = ManualClock::default();
        let now = clock.now();
        let limits = CartLimits {
            max_line_quantity: 5,
            max_lines: 2,
            ..CartLimits::default()
        };
        let mut cart = Cart::new(CartId::new_guest(), CartOwner::Guest, now, &limits);
        cart.add_item(item("a", 2, "1.00 USD", now), now, &limits)
            .expect("ok");
        cart.add_item(item("a", 3, "1.50 USD", now), now, &limits)
            .expect("ok");
        assert_eq!(cart.items.len(), 1);
        assert_eq!(cart.items[0].quantity, 5);
        assert_eq!(cart.items[0].unit_price.to_string(), "1.50 USD");
        let before = cart.clone();
        assert!(
            cart.add_item(item("a", 1, "1.00 USD", now), now, &limits)
                .is_err()
        );
        assert!(
            cart.add_item(item("b", 0, "1.00 USD", now), now, &limits)
                .is_err()
        );
        assert!(
            cart.add_item(item("b", 1, "1.00 EUR", now), now, &limits)
                .is_err()
        );
        cart.add_item(item("b", 1, "1.00 USD", now), now, &limits)
            .expect("ok");
        assert!(
            cart.add_item(item("c", 1, "1.00 USD", now), now, &limits)
                .is_err()
        );
        assert_eq!(cart.items.len(), 2);
        assert_eq!(before.items[0], cart.items[0]);
    }

    #[test]
    fn expiry_slides_with_every_write() {
        let clock = ManualClock::default();
        let limits = CartLimits::default();
        let mut cart = Cart::new(CartId::new_guest(), CartOwner::Guest, clock.now(), &limits);
        clock.advance(Duration::from_secs(6 * 24 * 3600));
        cart.add_item(item("a", 1, "1.00 USD", clock.now()), clock.now(), &limits)
            .expect("ok");
        clock.advance(Duration::from_secs(6 * 24 * 3600));
        assert!(!cart.is_expired(clock.now()));
        clock.advance(Duration::from_secs(24 * 3600));
        assert!(cart.is_expired(clock.now()));
    }

    #[test]
    fn merge_caps_and_prefers_the_later_snapshot() {
        let clock = ManualClock::default();
        let t0 = clock.now();
        let t1 = t0 + chrono::Duration::seconds(60);
        let limits = CartLimits {
            max_line_quantity: 10,
            max_lines: 3,
            ..CartLimits::default()
        };
        let owner = CartOwner::Customer(CustomerId::new("c1").expect("ok"));
        let mut customer = Cart::new(CartId::new("c-c1").expect("ok"), owner, t0, &limits);
        customer
            .add_item(item("a", 6, "2.00 USD", t0), t0, &limits)
            .expect("ok");
        customer
            .add_item(item("b", 1, "3.00 USD", t1), t1, &limits)
            .expect("ok");
        let roomy = CartLimits::default();
        let mut guest = Cart::new(CartId::new_guest(), CartOwner::Guest, t0, &roomy);
        guest
            .add_item(item("a", 6, "1.50 USD", t1), t1, &roomy)
            .expect("ok");
        guest
            .add_item(item("b", 1, "9.00 USD", t0), t0, &roomy)
            .expect("ok");
        guest
            .add_item(item("c", 4, "1.00 USD", t1), t1, &roomy)
            .expect("ok");
        guest
            .add_item(item("d", 1, "1.00 USD", t1), t1, &roomy)
            .expect("ok");
        let caps = BTreeMap::from([(Sku::new("c").expect("ok"), 2)]);
        let report = customer.merge_from(&guest, &caps, t1, &limits);
        let q = |s: &str| {
            customer
                .item(&Sku::new(s).expect("ok"))
                .map(|i| (i.quantity, i.unit_price.to_string()))
        };
        assert_eq!(q("a"), Some((10, "1.50 USD".into())));
        assert_eq!(q("b"), Some((2, "3.00 USD".into())));
        assert_eq!(q("c"), Some((2, "1.00 USD".into())));
        assert_eq!(q("d"), None);
        assert_eq!(
            report.capped,
            vec![Sku::new("a").expect("ok"), Sku::new("c").expect("ok")]
        );
        assert_eq!(report.dropped, vec![Sku::new("d").expect("ok")]);
    }

    fn saved(name: &str, country: &str, postal: &str) -> Address {
        Address::new(AddressInput {
            name: name.into(),
            line1: "1 Test Street".into(),
            city: "Testville".into(),
            postal_code: Some(postal.into()),
            country: country.into(),
            ..AddressInput::default()
        })
        .expect("valid")
    }

    #[test]
    fn addresses_are_a_write_and_merge_as_a_pair() {
        let clock = ManualClock::default();
        let limits = CartLimits::default();
        let owner = CartOwner::Customer(CustomerId::new("c1").expect("ok"));
        let mut customer = Cart::new(
            CartId::new("c-c1").expect("ok"),
            owner,
            clock.now(),
            &limits,
        );
        let mut guest = Cart::new(CartId::new_guest(), CartOwner::Guest, clock.now(), &limits);
        clock.advance(Duration::from_secs(60));
        let both = CartAddresses {
            shipping: Some(saved("G", "DE", "10115")),
            billing: Some(saved("G", "FR", "75008")),
        };
        guest.set_addresses(both.clone(), clock.now(), &limits);
        assert_eq!((guest.version, guest.updated_at), (1, clock.now()));
        assert_eq!(guest.expires_at, clock::add(clock.now(), limits.ttl));

        // No addresses on the customer cart: the guest's come in, as a pair.
        let mut fresh = customer.clone();
        fresh.merge_from(&guest, &BTreeMap::new(), clock.now(), &limits);
        assert_eq!(fresh.addresses, both);

        // Any address on the customer cart: kept, nothing of the guest's mixed in.
        let billing_only = CartAddresses {
            shipping: None,
            billing: Some(saved("C", "DE", "50667")),
        };
        customer.set_addresses(billing_only.clone(), clock.now(), &limits);
        customer.merge_from(&guest, &BTreeMap::new(), clock.now(), &limits);
        assert_eq!(customer.addresses, billing_only);

        // Clearing is setting none.
        customer.set_addresses(CartAddresses::default(), clock.now(), &limits);
        assert!(customer.addresses.is_empty());
        assert_eq!(customer.version, 3);
    }

    #[test]
    fn stored_carts_round_trip_and_tampered_addresses_are_refused() {
        let clock = ManualClock::default();
        let limits = CartLimits::default();
        let mut cart = Cart::new(CartId::new_guest(), CartOwner::Guest, clock.now(), &limits);
        // A cart without addresses serialises without the field (as before addresses).
        let plain = serde_json::to_string(&cart).expect("json");
        assert!(!plain.contains("addresses"), "{plain}");
        assert_eq!(serde_json::from_str::<Cart>(&plain).expect("read"), cart);

        cart.set_addresses(
            CartAddresses {
                shipping: Some(saved("S", "NL", "1012ab")),
                billing: None,
            },
            clock.now(),
            &limits,
        );
        let json = serde_json::to_string(&cart).expect("json");
        assert!(json.contains(r#""postal_code":"1012 AB""#), "{json}");
        assert_eq!(serde_json::from_str::<Cart>(&json).expect("read"), cart);
        for tampered in [
            json.replace(r#""country":"NL""#, r#""country":"XX""#),
            json.replace("1012 AB", "1012"),
            json.replace(r#""name":"S""#, r#""name":"""#),
            json.replace(r#""shipping":{"#, r#""shipping":{"admin":true,"#),
            json.replace(r#""addresses":{"#, r#""addresses":{"extra":1,"#),
        ] {
            assert_ne!(tampered, json, "the replacement must apply");
            assert!(
                serde_json::from_str::<Cart>(&tampered).is_err(),
                "a tampered cart deserialised: {tampered}"
            );
        }
    }
}
