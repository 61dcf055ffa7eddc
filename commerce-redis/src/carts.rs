//! [`RedisCarts`]: the [`CartStore`] on Redis, every write one Lua script.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeZone;
use commerce_core::address::Address;
use commerce_core::cart::{Cart, CartAddresses, CartItem, CartLimits, CartOwner, MergeReport};
use commerce_core::clock::{self, Clock, Timestamp};
use commerce_core::id::{CartId, CustomerId, ProductId, Sku};
use commerce_core::money::Money;
use commerce_core::store::{CartStore, check_limit};
use commerce_core::{Error, Result};
use redis::Script;
use tracing::instrument;

use crate::backend::RedisBackend;
use crate::error::{RedisFailure, map};

macro_rules! cart_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/cart_common.lua"),
                "\n",
                include_str!($file)
            ))
        })
    };
}

static ADD: LazyLock<Script> = cart_script!("lua/cart_add.lua");
static SET: LazyLock<Script> = cart_script!("lua/cart_set.lua");
static CLEAR: LazyLock<Script> = cart_script!("lua/cart_clear.lua");
static ADDRESS: LazyLock<Script> = cart_script!("lua/cart_address.lua");
static MERGE: LazyLock<Script> = cart_script!("lua/cart_merge.lua");
static CLAIM: LazyLock<Script> = cart_script!("lua/cart_claim.lua");
static APPLY: LazyLock<Script> = cart_script!("lua/cart_apply.lua");
static UNCLAIM: LazyLock<Script> = cart_script!("lua/cart_unclaim.lua");

/// Longest Redis TTL set on a cart (the clock-based `expires_at` is what counts; the
/// Redis TTL only reclaims memory).
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Offset making every representable second positive in a time key.
const TIME_OFFSET: i64 = 10_000_000_000_000;

/// A fixed-width, digits-only encoding of a timestamp: ordered as the timestamps are, so
/// scripts compare times as strings; decodes exactly.
pub(crate) fn time_key(t: Timestamp) -> String {
    let nanos = t.timestamp_subsec_nanos().min(999_999_999);
    format!("{:020}{:09}", t.timestamp() + TIME_OFFSET, nanos)
}

pub(crate) fn parse_time_key(s: &str) -> Option<Timestamp> {
    if s.len() != 29 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = s[..20].parse().ok()?;
    let nanos: u32 = s[20..].parse().ok()?;
    chrono::Utc
        .timestamp_opt(secs.checked_sub(TIME_OFFSET)?, nanos)
        .single()
}

fn owner_key(owner: &CartOwner) -> String {
    match owner {
        CartOwner::Guest => "g".into(),
        CartOwner::Customer(c) => format!("c:{}", c.as_str()),
    }
}

fn ttl_ms(limits: &CartLimits) -> u64 {
    (limits.ttl.min(MAX_TTL).as_millis() as u64).max(1)
}

/// Server-side carts on Redis (one node or a cluster).
///
/// A cart is one hash `<prefix>:cart:{<cart id>}` (its saved addresses are two fields
/// of it, JSON, validated again when read); every write (add, set quantity, remove,
/// set addresses, clear, merge) is one Lua script that checks ownership, expiry and limits,
/// applies the [`Cart`] rules and slides the expiry, so concurrent writers lose nothing.
/// Expiry follows the injected [`Clock`] (`expires_at` is stored and checked by the
/// scripts); the Redis TTL (`limits.ttl`) is a backstop that reclaims memory.
///
/// On a cluster, a guest cart and a customer cart live in different hash slots, so a
/// merge runs in two idempotent steps: the guest cart is first *claimed* (moved, in its
/// slot, to a claim key holding a merge token), then applied to the customer cart (which
/// records the token, so a retried or concurrent merge applies it once), then the claim
/// is dropped. An interrupted merge resumes on the next `merge_carts` call for the same
/// customer; the guest cart is never half-merged. On one node the merge is one script.
///
/// ```no_run
/// # async fn demo() -> commerce_core::Result<()> {
/// use std::sync::Arc;
/// use commerce_core::cart::{CartLimits, CartOwner};
/// use commerce_core::clock::SystemClock;
/// use commerce_core::id::CartId;
/// use commerce_core::store::{CartStore, check_limit};
/// use commerce_redis::{RedisCarts, RedisConfig};
///
/// let redis = RedisConfig::single("redis://127.0.0.1:6379").with_prefix("shop")?.connect().await?;
/// let carts = RedisCarts::new(redis, Arc::new(SystemClock));
/// let id = CartId::new_guest();
/// assert!(carts.get_cart(&id, &CartOwner::Guest).await?.is_none());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisCarts {
    redis: RedisBackend,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RedisCarts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCarts")
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

/// A merge script's answer: the customer cart's fields, the capped and dropped SKUs.
type MergeOutput = (Vec<String>, Vec<String>, Vec<String>);

struct Line {
    seq: u64,
    quantity: Option<u32>,
    price: Option<Money>,
    added_at: Option<Timestamp>,
    product: Option<ProductId>,
}

impl RedisCarts {
    /// Carts on `redis`, reading "now" from `clock`.
    pub fn new(redis: RedisBackend, clock: Arc<dyn Clock>) -> Self {
        RedisCarts { redis, clock }
    }

    fn key(&self, id: &CartId) -> String {
        self.redis.key("cart", id.as_str())
    }

    /// The cart id of a cart key (`<prefix>:cart:{<id>}`).
    fn id_of_key(&self, key: &str) -> Option<CartId> {
        let tagged = key
            .strip_prefix(self.redis.prefix())?
            .strip_prefix(":cart:{")?
            .strip_suffix('}')?;
        CartId::new(tagged).ok()
    }

    fn claim_key(&self, id: &CartId) -> String {
        self.redis.key("cartclaim", id.as_str())
    }

    /// Decodes a cart hash (a flat field/value list). `None` if empty.
    fn decode<S: AsRef<str>>(
        &self,
        id: &CartId,
        flat: impl IntoIterator<Item = S>,
    ) -> Result<Option<Cart>> {
        let mut it = flat.into_iter().peekable();
        if it.peek().is_none() {
            return Ok(None);
        }
        let key = self.key(id);
        let corrupt = |what: &str| -> Error { RedisFailure::corrupt(key.clone(), what).into() };
        let mut owner = None;
        let mut version = None;
        let (mut created, mut updated, mut expires) = (None, None, None);
        let mut lines: BTreeMap<String, Line> = BTreeMap::new();
        let mut addresses = CartAddresses::default();
        // Deserialising an `Address` validates it: a tampered stored address is corrupt.
        let address = |v: &str, what: &str| -> Result<Address> {
            serde_json::from_str(v).map_err(|_| corrupt(what))
        };
        while let (Some(f), Some(v)) = (it.next(), it.next()) {
            let (f, v) = (f.as_ref(), v.as_ref());
            match f {
                "o" => {
                    owner = Some(match v.strip_prefix("c:") {
                        Some(c) => {
                            CartOwner::Customer(CustomerId::new(c).map_err(|_| corrupt("owner"))?)
                        }
                        None if v == "g" => CartOwner::Guest,
                        None => return Err(corrupt("owner")),
                    })
                }
                "v" => version = Some(v.parse::<u64>().map_err(|_| corrupt("version"))?),
                "c" => created = parse_time_key(v),
                "u" => updated = parse_time_key(v),
                "e" => expires = parse_time_key(v),
                "ship" => addresses.shipping = Some(address(v, "shipping address")?),
                "bill" => addresses.billing = Some(address(v, "billing address")?),
                _ => {
                    let Some((kind, sku)) = f.split_at_checked(2) else {
                        continue;
                    };
                    let line = || Line {
                        seq: 0,
                        quantity: None,
                        price: None,
                        added_at: None,
                        product: None,
                    };
                    match kind {
                        "q:" => {
                            lines.entry(sku.to_owned()).or_insert_with(line).quantity =
                                Some(v.parse().map_err(|_| corrupt("quantity"))?)
                        }
                        "i:" => {
                            lines.entry(sku.to_owned()).or_insert_with(line).seq =
                                v.parse().map_err(|_| corrupt("line order"))?
                        }
                        "m:" => {
                            lines.entry(sku.to_owned()).or_insert_with(line).price =
                                Some(serde_json::from_str(v).map_err(|_| corrupt("unit price"))?)
                        }
                        "a:" => {
                            lines.entry(sku.to_owned()).or_insert_with(line).added_at =
                                Some(parse_time_key(v).ok_or_else(|| corrupt("added_at"))?)
                        }
                        "p:" => {
                            lines.entry(sku.to_owned()).or_insert_with(line).product =
                                Some(ProductId::new(v).map_err(|_| corrupt("product id"))?)
                        }
                        _ => {}
                    }
                }
            }
        }
        let (Some(owner), Some(version), Some(created_at), Some(updated_at), Some(expires_at)) =
            (owner, version, created, updated, expires)
        else {
            return Err(corrupt("cart header"));
        };
        let mut items = Vec::with_capacity(lines.len());
        for (sku, line) in lines {
            let (Some(quantity), Some(unit_price), Some(added_at), Some(product_id)) =
                (line.quantity, line.price, line.added_at, line.product)
            else {
                return Err(corrupt("cart line"));
            };
            let sku = Sku::new(sku).map_err(|_| corrupt("sku"))?;
            items.push((
                line.seq,
                CartItem {
                    product_id,
                    sku,
                    quantity,
                    unit_price,
                    added_at,
                },
            ));
        }
        items.sort_by_key(|(seq, _)| *seq);
        Ok(Some(Cart {
            id: id.clone(),
            owner,
            items: items.into_iter().map(|(_, i)| i).collect(),
            version,
            created_at,
            updated_at,
            expires_at,
            addresses,
        }))
    }

    /// Decodes what a write script returns: the cart's fields and values joined by NUL
    /// (one bulk string is much cheaper to parse than an array of them).
    fn written(&self, id: &CartId, packed: String) -> Result<Cart> {
        let fields = packed.split('\0').filter(|_| !packed.is_empty());
        self.decode(id, fields)?
            .ok_or_else(|| Error::backend(false, "redis: a cart script returned no cart"))
    }

    async fn merge_cluster(
        &self,
        guest: &CartId,
        customer: &CustomerId,
        caps: &BTreeMap<Sku, u32>,
        limits: &CartLimits,
    ) -> Result<MergeOutput> {
        let now = self.clock.now();
        let target = CartId::for_customer(customer);
        let owner = owner_key(&CartOwner::Customer(customer.clone()));
        let (gkey, ckey) = (self.key(guest), self.claim_key(guest));
        if guest == &target {
            // The "guest" cart is the customer cart's own id: nothing can move; the
            // one-key read path applies the ownership check.
            return self.apply(&target, &owner, None, caps, limits).await;
        }
        let mut conn = self.redis.conn();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let claim: Option<(String, Vec<String>)> = CLAIM
            .key(&gkey)
            .key(&ckey)
            .arg(&owner)
            .arg(time_key(now))
            .arg(&token)
            .arg(ttl_ms(limits))
            .invoke_async(&mut conn)
            .await
            .map_err(map)?;
        let Some((token, fields)) = claim else {
            // Nothing to merge: the customer cart as it is (checked by the same script).
            return self.apply(&target, &owner, None, caps, limits).await;
        };
        let applied = self
            .apply(&target, &owner, Some((&token, &fields)), caps, limits)
            .await;
        match &applied {
            Ok(_) => {
                redis::cmd("DEL")
                    .arg(&ckey)
                    .query_async::<u64>(&mut conn)
                    .await
                    .map_err(map)?;
            }
            Err(Error::NotFound { .. }) => {
                UNCLAIM
                    .key(&gkey)
                    .key(&ckey)
                    .arg(&token)
                    .invoke_async::<u64>(&mut conn)
                    .await
                    .map_err(map)?;
            }
            Err(_) => {} // retryable: the claim stays and the next merge resumes it
        }
        applied
    }

    /// Phase 2 of a cluster merge (or, with no claim, a read of the customer cart
    /// through the one-node merge script with no guest, which applies the same checks).
    async fn apply(
        &self,
        target: &CartId,
        owner: &str,
        claim: Option<(&str, &[String])>,
        caps: &BTreeMap<Sku, u32>,
        limits: &CartLimits,
    ) -> Result<MergeOutput> {
        let now = self.clock.now();
        let key = self.key(target);
        let mut inv = match claim {
            Some(_) => APPLY.key(&key),
            None => {
                let mut inv = MERGE.key(&key);
                inv.key(&key);
                inv
            }
        };
        inv.arg(owner)
            .arg(time_key(now))
            .arg(time_key(clock::add(now, limits.ttl)))
            .arg(ttl_ms(limits))
            .arg(limits.max_line_quantity)
            .arg(limits.max_lines)
            .arg(target.as_str());
        let Some((token, fields)) = claim else {
            inv.arg(0);
            let mut conn = self.redis.conn();
            return inv.invoke_async(&mut conn).await.map_err(map);
        };
        inv.arg(token).arg(caps.len());
        for (sku, cap) in caps {
            inv.arg(sku.as_str()).arg(*cap);
        }
        for f in fields {
            inv.arg(f);
        }
        let mut conn = self.redis.conn();
        inv.invoke_async(&mut conn).await.map_err(map)
    }
}

#[async_trait]
impl CartStore for RedisCarts {
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn get_cart(&self, id: &CartId, owner: &CartOwner) -> Result<Option<Cart>> {
        let mut conn = self.redis.conn();
        let flat: Vec<String> = redis::cmd("HGETALL")
            .arg(self.key(id))
            .query_async(&mut conn)
            .await
            .map_err(map)?;
        let now = self.clock.now();
        Ok(self
            .decode(id, flat)?
            .filter(|c| &c.owner == owner && !c.is_expired(now)))
    }

    #[instrument(level = "debug", skip_all, fields(cart_id = %id, sku = %item.sku), err(level = "debug"))]
    async fn add_item(
        &self,
        id: &CartId,
        owner: &CartOwner,
        item: CartItem,
        limits: &CartLimits,
    ) -> Result<Cart> {
        let now = self.clock.now();
        let price = serde_json::to_string(&item.unit_price)
            .map_err(|e| Error::permanent("serializing a price", e))?;
        let mut conn = self.redis.conn();
        let packed: String = ADD
            .key(self.key(id))
            .arg(owner_key(owner))
            .arg(time_key(now))
            .arg(time_key(clock::add(now, limits.ttl)))
            .arg(ttl_ms(limits))
            .arg(limits.max_line_quantity)
            .arg(limits.max_lines)
            .arg(item.sku.as_str())
            .arg(item.quantity)
            .arg(item.unit_price.currency().code())
            .arg(if item.unit_price.is_negative() {
                "1"
            } else {
                "0"
            })
            .arg(price)
            .arg(item.product_id.as_str())
            .arg(time_key(item.added_at))
            .arg(id.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(map)?;
        self.written(id, packed)
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
        let now = self.clock.now();
        let mut conn = self.redis.conn();
        let packed: String = SET
            .key(self.key(id))
            .arg(owner_key(owner))
            .arg(time_key(now))
            .arg(time_key(clock::add(now, limits.ttl)))
            .arg(ttl_ms(limits))
            .arg(limits.max_line_quantity)
            .arg(sku.as_str())
            .arg(quantity)
            .arg(id.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(map)?;
        self.written(id, packed)
    }

    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn remove_item(
        &self,
        id: &CartId,
        owner: &CartOwner,
        sku: &Sku,
        limits: &CartLimits,
    ) -> Result<Cart> {
        self.set_quantity(id, owner, sku, 0, limits).await
    }

    #[instrument(level = "debug", skip_all, fields(cart_id = %id), err(level = "debug"))]
    async fn set_addresses(
        &self,
        id: &CartId,
        owner: &CartOwner,
        addresses: CartAddresses,
        limits: &CartLimits,
    ) -> Result<Cart> {
        let json = |a: &Option<Address>| -> Result<String> {
            match a {
                Some(a) => serde_json::to_string(a)
                    .map_err(|e| Error::permanent("serializing an address", e)),
                None => Ok(String::new()),
            }
        };
        let now = self.clock.now();
        let mut conn = self.redis.conn();
        let packed: String = ADDRESS
            .key(self.key(id))
            .arg(owner_key(owner))
            .arg(time_key(now))
            .arg(time_key(clock::add(now, limits.ttl)))
            .arg(ttl_ms(limits))
            .arg(id.as_str())
            .arg(json(&addresses.shipping)?)
            .arg(json(&addresses.billing)?)
            .invoke_async(&mut conn)
            .await
            .map_err(map)?;
        self.written(id, packed)
    }

    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn clear_cart(&self, id: &CartId, owner: &CartOwner) -> Result<()> {
        let mut conn = self.redis.conn();
        CLEAR
            .key(self.key(id))
            .arg(owner_key(owner))
            .arg(time_key(self.clock.now()))
            .invoke_async::<u64>(&mut conn)
            .await
            .map_err(map)?;
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
        let target = CartId::for_customer(customer);
        let now = self.clock.now();
        let (flat, capped, dropped) = if self.redis.is_cluster() {
            self.merge_cluster(guest, customer, caps, limits).await?
        } else {
            let mut inv = MERGE.key(self.key(&target));
            inv.key(self.key(guest))
                .arg(owner_key(&CartOwner::Customer(customer.clone())))
                .arg(time_key(now))
                .arg(time_key(clock::add(now, limits.ttl)))
                .arg(ttl_ms(limits))
                .arg(limits.max_line_quantity)
                .arg(limits.max_lines)
                .arg(target.as_str())
                .arg(caps.len());
            for (sku, cap) in caps {
                inv.arg(sku.as_str()).arg(*cap);
            }
            let mut conn = self.redis.conn();
            inv.invoke_async(&mut conn).await.map_err(map)?
        };
        let cart = match self.decode(&target, flat)? {
            Some(c) => c,
            None => Cart::new(target, CartOwner::Customer(customer.clone()), now, limits),
        };
        let skus = |v: Vec<String>| -> Result<Vec<Sku>> {
            v.into_iter()
                .map(|s| Sku::new(s).map_err(|e| Error::permanent("redis: bad sku", e)))
                .collect()
        };
        Ok((
            cart,
            MergeReport {
                capped: skus(capped)?,
                dropped: skus(dropped)?,
            },
        ))
    }

    /// Scans every cart key (`SCAN`, node by node: O(carts), meant for a periodic
    /// recovery-mail job, not for requests), reads the carts in batches and keeps the
    /// `limit` oldest abandoned ones.
    #[instrument(level = "debug", skip_all, fields(limit), err(level = "debug"))]
    async fn list_abandoned(&self, since: Timestamp, limit: u32) -> Result<Vec<Cart>> {
        let limit = check_limit(limit)?;
        let now = self.clock.now();
        let pattern = format!("{}:cart:{{*}}", self.redis.prefix());
        let ids: Vec<CartId> = self
            .redis
            .scan_keys(&pattern)
            .await?
            .iter()
            .filter_map(|k| self.id_of_key(k))
            .collect();
        let mut found: Vec<Cart> = Vec::new();
        let conn = self.redis.conn();
        for chunk in ids.chunks(ABANDONED_BATCH) {
            // One HGETALL per key (each its own slot on a cluster), sent together.
            let reads = chunk.iter().map(|id| {
                let mut conn = conn.clone();
                let key = self.key(id);
                async move {
                    redis::cmd("HGETALL")
                        .arg(key)
                        .query_async::<Vec<String>>(&mut conn)
                        .await
                        .map_err(map)
                }
            });
            let flats = futures::future::try_join_all(reads).await?;
            for (id, flat) in chunk.iter().zip(flats) {
                if let Some(cart) = self.decode(id, flat)? {
                    if !cart.is_expired(now) && !cart.items.is_empty() && cart.updated_at <= since {
                        found.push(cart);
                    }
                }
            }
            found.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
            found.truncate(limit);
        }
        Ok(found)
    }
}

/// Cart keys read per round trip by `list_abandoned`.
const ABANDONED_BATCH: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_round_trip_and_sort() {
        let a = chrono::Utc
            .timestamp_opt(1_893_456_000, 5)
            .single()
            .expect("t");
        let b = chrono::Utc
            .timestamp_opt(1_893_456_001, 0)
            .single()
            .expect("t");
        let early = chrono::Utc.timestamp_opt(-5, 0).single().expect("t");
        assert_eq!(parse_time_key(&time_key(a)), Some(a));
        assert_eq!(parse_time_key(&time_key(early)), Some(early));
        assert!(time_key(a) < time_key(b) && time_key(early) < time_key(a));
        let max = chrono::DateTime::<chrono::Utc>::MAX_UTC;
        assert_eq!(parse_time_key(&time_key(max)), Some(max));
        assert!(time_key(b) < time_key(max));
    }
}
