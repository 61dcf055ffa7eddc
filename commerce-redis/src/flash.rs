//! [`FlashSaleGate`]: an atomic Redis token gate in front of the inventory store for a
//! hot SKU.

use std::sync::LazyLock;
use std::time::Duration;

use commerce_core::id::Sku;
use commerce_core::store::{InventoryStore, InventoryStoreExt};
use commerce_core::{Error, Result};
use redis::Script;

use crate::backend::RedisBackend;
use crate::error::map;

static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/flash_admit.lua")));
static GIVE_BACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/flash_give_back.lua")));
static RECONCILE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/flash_reconcile.lua")));

/// A buyer's admission through a [`FlashSaleGate`]: hold on to it until the checkout
/// either succeeds ([`FlashSaleGate::complete`]) or fails ([`FlashSaleGate::give_back`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AdmissionTicket(String);

impl AdmissionTicket {
    /// The ticket id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Admission control for a flash sale: at most as many buyers as there are units get
/// through to the inventory store, so 100,000 buyers for 100 units cost the database
/// about 100 reservations instead of 100,000.
///
/// One hash per SKU (`<prefix>:flash:{<sku>}`) holds the tokens left and the tickets of
/// admitted buyers; [`admit`](Self::admit) takes a token in one script (`DECR`-style,
/// never below zero). The gate never causes an oversell: the inventory store still
/// reserves atomically and has the last word; the gate only keeps the losers away.
/// Tokens of buyers whose checkout fails go back ([`give_back`](Self::give_back), once
/// per ticket); tickets abandoned by crashed processes expire, and
/// [`reconcile`](Self::reconcile) resets the tokens from the inventory store.
///
/// ```no_run
/// # async fn demo(inventory: std::sync::Arc<dyn commerce_core::store::InventoryStore>,
/// #               request: commerce_core::inventory::ReservationRequest) -> commerce_core::Result<()> {
/// use std::time::Duration;
/// use commerce_core::id::Sku;
/// use commerce_redis::{FlashSaleGate, RedisConfig};
///
/// let redis = RedisConfig::single("redis://127.0.0.1:6379").connect().await?;
/// let gate = FlashSaleGate::new(redis, Sku::new("HOT-1")?, Duration::from_secs(600));
/// gate.reconcile(inventory.as_ref()).await?; // tokens = units available
/// match gate.admit().await? {
///     None => { /* sold out: answer at once, the database never sees this buyer */ }
///     Some(ticket) => match inventory.reserve(&request).await {
///         Ok(_) => gate.complete(&ticket).await?,
///         Err(e) => {
///             gate.give_back(&ticket).await?;
///             return Err(e);
///         }
///     },
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FlashSaleGate {
    redis: RedisBackend,
    sku: Sku,
    ticket_ttl: Duration,
}

impl FlashSaleGate {
    /// The gate of `sku`; an admitted buyer's ticket holds a unit for `ticket_ttl`.
    pub fn new(redis: RedisBackend, sku: Sku, ticket_ttl: Duration) -> Self {
        FlashSaleGate {
            redis,
            sku,
            ticket_ttl,
        }
    }

    /// The SKU.
    pub fn sku(&self) -> &Sku {
        &self.sku
    }

    fn key(&self) -> String {
        self.redis.key("flash", self.sku.as_str())
    }

    /// Opens the sale with `units` tokens, forgetting earlier tickets.
    pub async fn open(&self, units: u64) -> Result<()> {
        let mut conn = self.redis.conn();
        redis::pipe()
            .atomic()
            .del(self.key())
            .hset(self.key(), "tokens", units)
            .query_async::<()>(&mut conn)
            .await
            .map_err(map)
    }

    /// Takes a token: a ticket if the buyer may go on to reserve, `None` if sold out.
    #[tracing::instrument(level = "debug", skip_all, fields(sku = %self.sku), err(level = "debug"))]
    pub async fn admit(&self) -> Result<Option<AdmissionTicket>> {
        let ticket = uuid::Uuid::new_v4().simple().to_string();
        let mut conn = self.redis.conn();
        let admitted: u64 = ADMIT
            .key(self.key())
            .arg(&ticket)
            .arg(self.ticket_ttl.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(map)?;
        let outcome = if admitted == 1 {
            "admitted"
        } else {
            "sold_out"
        };
        metrics::counter!(commerce_core::telemetry::FLASH_ADMISSIONS, "outcome" => outcome)
            .increment(1);
        Ok((admitted == 1).then_some(AdmissionTicket(ticket)))
    }

    /// The buyer reserved: the ticket is done and its token stays taken.
    pub async fn complete(&self, ticket: &AdmissionTicket) -> Result<()> {
        let mut conn = self.redis.conn();
        redis::cmd("HDEL")
            .arg(self.key())
            .arg(format!("t:{}", ticket.0))
            .query_async::<u64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(map)
    }

    /// The buyer's checkout failed: the token goes back for the next buyer. Idempotent:
    /// `true` the first time, `false` after (or for a completed or expired ticket).
    pub async fn give_back(&self, ticket: &AdmissionTicket) -> Result<bool> {
        let mut conn = self.redis.conn();
        let n: u64 = GIVE_BACK
            .key(self.key())
            .arg(&ticket.0)
            .invoke_async(&mut conn)
            .await
            .map_err(map)?;
        Ok(n == 1)
    }

    /// Tokens left.
    pub async fn remaining(&self) -> Result<u64> {
        let mut conn = self.redis.conn();
        let n: Option<i64> = redis::cmd("HGET")
            .arg(self.key())
            .arg("tokens")
            .query_async(&mut conn)
            .await
            .map_err(map)?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Resets the tokens from the inventory store: the units available minus the
    /// outstanding (unexpired, neither completed nor given back) tickets. Returns the
    /// new token count.
    pub async fn reconcile(&self, inventory: &dyn InventoryStore) -> Result<u64> {
        let available = inventory.available(&self.sku).await?;
        let mut conn = self.redis.conn();
        let tokens: i64 = RECONCILE
            .key(self.key())
            .arg(available)
            .invoke_async(&mut conn)
            .await
            .map_err(map)?;
        u64::try_from(tokens).map_err(|_| Error::backend(false, "negative token count"))
    }
}
