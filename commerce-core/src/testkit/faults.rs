//! Fault and latency injection around any store: a [`Faults`] policy shared by any
//! number of [`Faulty`] wrappers.
//!
//! [`Faulty<S>`] implements the store contracts ([`InventoryStore`], [`OrderStore`],
//! [`CartStore`], [`CatalogStore`], [`EventLog`], [`OrderQueue`], [`PromotionStore`],
//! [`OrderSteps`], [`CoPurchaseStore`], [`HistoryStore`]) for any `S` implementing them: each call (the default methods
//! included, so an inner store's batch writes stay its own) asks the policy what to do
//! with it, described as a [`Call`] (contract, method name, key arguments), then waits,
//! fails, hangs or forwards. A test arms [`Rule`]s on the policy, at any time, from
//! outside:
//!
//! ```
//! use std::time::Duration;
//! use commerce_core::memory::MemoryEngine;
//! use commerce_core::store::InventoryStore;
//! use commerce_core::testkit::faults::{FaultKind, Faults, Faulty, Latency, Rule};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let engine = MemoryEngine::new();
//! let faults = Faults::seeded(7);
//! let inventory: std::sync::Arc<dyn InventoryStore> =
//!     Faulty::new(engine.inventory.clone(), faults.clone());
//! // The next reservation fails with a retryable backend error ...
//! faults.add(Rule::fail(FaultKind::Retryable).on("reserve").times(1));
//! // ... a tenth of the stock reads (drawn from the seeded generator) are permanent
//! // failures, and every stock read waits 1 to 5 ms first.
//! faults.add(Rule::fail(FaultKind::Permanent).on("stock").with_probability(0.1));
//! faults.add(Rule::delay(Latency::jitter(Duration::from_millis(1), Duration::from_millis(5))).on("stock"));
//! # let sku = commerce_core::id::Sku::new("A").unwrap();
//! # let _ = inventory.stock(&sku).await;
//! # assert_eq!(faults.calls("stock"), 1);
//! # });
//! ```
//!
//! What a rule can do to a call ([`FaultAction`]): fail without forwarding it
//! ([`FaultKind::Retryable`], [`FaultKind::Permanent`], or [`FaultKind::Timeout`]: wait,
//! then a retryable error), forward it and then lose the answer
//! ([`FaultAction::LoseAnswer`]: the change is made, the caller gets a retryable
//! error), hang forever ([`FaultAction::Hang`]), or wait first ([`FaultAction::Delay`],
//! fixed or jittered).
//! Which calls it hits: any method or the named ones ([`Rule::on`]), of one contract
//! ([`Rule::in_contract`]), with a given key argument ([`Rule::with_arg`], e.g. the
//! target status of `OrderStore::transition`), after skipping the first `n`
//! ([`Rule::skip`]), at most `n` times ([`Rule::times`]), each with a probability from
//! the policy's seeded generator ([`Rule::with_probability`]).
//!
//! Rules are consulted in the order they were added: delays of every rule that fires
//! add up; the first firing rule with a fault decides, and later fault rules are not
//! consulted for that call (nor counted). Waiting uses `tokio::time::sleep`, so a test
//! on a paused runtime sees the delay without waiting.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt::{self, Debug};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::activity::{Basket, Interaction, ProductCount, RecordOutcome};
use crate::cart::{Cart, CartAddresses, CartItem, CartLimits, CartOwner, MergeReport};
use crate::catalog::{Category, CategoryPath, CategoryWrite, NewProduct, Product, Slug};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::event::{DomainEvent, EventEnvelope};
use crate::id::{
    CartId, ConsumerName, CustomerId, EventId, IdempotencyKey, JobId, LocationId, OrderId,
    ProductId, PromotionId, Sku,
};
use crate::inventory::{
    InvariantViolation, Reservation, ReservationRequest, Restock, SkuStock, StockLevel,
    StockMovement,
};
use crate::order::{NewOrder, Order, StatusChange, Transition};
use crate::promotion::{
    CodeBatch, CodeLookup, Offer, Promotion, PromotionUsage, Redemption, RedemptionRequest,
};
use crate::store::{
    CartStore, CatalogStore, CoPurchaseStore, CreateOutcome, DeadLetter, EventLog, HistoryStore,
    InventoryStore, OrderQuery, OrderQueue, OrderSteps, OrderStore, Page, ProductQuery,
    PromotionStore, QueueStats, QueuedJob, RetryOutcome, RetryPolicy, StepOutcome,
};

/// One call through a [`Faulty`] wrapper, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The contract: `"inventory"`, `"orders"`, `"carts"`, `"catalog"`, `"events"`,
    /// `"queue"`, `"promotions"`, `"steps"`, `"co_purchase"` or `"history"`.
    pub contract: &'static str,
    /// The method name, as in the trait (`"reserve"`, `"transition"`, ...).
    pub method: &'static str,
    /// The key arguments, displayed: `("sku", "A-1")`, `("order", "o-1")`, and for
    /// `OrderStore::transition` also `("from", "CREATED")`, `("to", "PAYMENT_PENDING")`.
    pub args: Vec<(&'static str, String)>,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{}", self.contract, self.method)?;
        for (i, (k, v)) in self.args.iter().enumerate() {
            let sep = if i == 0 { "(" } else { ", " };
            write!(f, "{sep}{k}={v}")?;
        }
        if !self.args.is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Which error an injected failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A retryable `Backend` error (a dropped connection): repeating may succeed.
    Retryable,
    /// A permanent `Backend` error (the process "crashes" before the call).
    Permanent,
    /// Waits this long, then a retryable `Backend` error saying it timed out.
    Timeout(Duration),
}

impl FaultKind {
    fn error(self, call: &Call) -> Error {
        match self {
            FaultKind::Retryable => {
                Error::backend(true, format!("injected retryable failure in {call}"))
            }
            FaultKind::Permanent => {
                Error::backend(false, format!("injected permanent failure in {call}"))
            }
            FaultKind::Timeout(after) => Error::backend(
                true,
                format!("injected timeout in {call} after {} ms", after.as_millis()),
            ),
        }
    }
}

/// How long an injected delay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// Always this long.
    Fixed(Duration),
    /// Uniformly between `min` and `max` (inclusive), drawn from the policy's seeded
    /// generator.
    Jitter {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
    },
}

impl Latency {
    /// [`Latency::Fixed`].
    pub fn fixed(d: Duration) -> Self {
        Latency::Fixed(d)
    }

    /// [`Latency::Jitter`] between `a` and `b` (in either order).
    pub fn jitter(a: Duration, b: Duration) -> Self {
        Latency::Jitter {
            min: a.min(b),
            max: a.max(b),
        }
    }

    fn draw(self, rng: &mut Rng) -> Duration {
        match self {
            Latency::Fixed(d) => d,
            Latency::Jitter { min, max } => {
                let span = (max - min).as_nanos().min(u128::from(u64::MAX)) as u64;
                let extra = if span == 0 {
                    0
                } else {
                    rng.next() % span.saturating_add(1).max(1)
                };
                min + Duration::from_nanos(extra)
            }
        }
    }
}

/// What a firing [`Rule`] does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Fails without forwarding the call.
    Fail(FaultKind),
    /// Forwards the call, then fails with a retryable error whatever it answered: the
    /// change is made but the caller never learns it (a lost acknowledgement). An error
    /// of the inner store is returned as is.
    LoseAnswer,
    /// Never completes (a hung connection); the caller's timeout must end it.
    Hang,
    /// Waits, then goes on (to the next rules' decision, then the inner store).
    Delay(Latency),
}

impl FaultAction {
    fn is_fault(self) -> bool {
        !matches!(self, FaultAction::Delay(_))
    }
}

/// One rule of a [`Faults`] policy: what it does ([`FaultAction`]) and to which calls.
///
/// Built from its action, then narrowed: by default it hits every call of every
/// contract, every time.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    action: FaultAction,
    contract: Option<&'static str>,
    methods: BTreeSet<&'static str>,
    args: Vec<(&'static str, String)>,
    skip: u64,
    times: Option<u64>,
    probability: f64,
}

impl Rule {
    /// A rule doing `action`.
    pub fn new(action: FaultAction) -> Self {
        Rule {
            action,
            contract: None,
            methods: BTreeSet::new(),
            args: Vec::new(),
            skip: 0,
            times: None,
            probability: 1.0,
        }
    }

    /// Fails the calls with `kind` ([`FaultAction::Fail`]).
    pub fn fail(kind: FaultKind) -> Self {
        Rule::new(FaultAction::Fail(kind))
    }

    /// Forwards the calls and loses their answers ([`FaultAction::LoseAnswer`]).
    pub fn lose_answer() -> Self {
        Rule::new(FaultAction::LoseAnswer)
    }

    /// Hangs the calls ([`FaultAction::Hang`]).
    pub fn hang() -> Self {
        Rule::new(FaultAction::Hang)
    }

    /// Delays the calls ([`FaultAction::Delay`]).
    pub fn delay(latency: Latency) -> Self {
        Rule::new(FaultAction::Delay(latency))
    }

    /// Only calls of this method (repeat to allow several methods; none named: any).
    pub fn on(mut self, method: &'static str) -> Self {
        self.methods.insert(method);
        self
    }

    /// Only calls of this contract (see [`Call::contract`]).
    pub fn in_contract(mut self, contract: &'static str) -> Self {
        self.contract = Some(contract);
        self
    }

    /// Only calls whose key argument `name` displays as `value` (see [`Call::args`]);
    /// repeat to require several.
    pub fn with_arg(mut self, name: &'static str, value: impl fmt::Display) -> Self {
        self.args.push((name, value.to_string()));
        self
    }

    /// Lets the first `n` matching calls through untouched.
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    /// Fires at most `n` times, then never again.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Fires on each matching call with probability `p` (clamped to 0..=1), drawn from
    /// the policy's seeded generator.
    pub fn with_probability(mut self, p: f64) -> Self {
        self.probability = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        self
    }

    fn matches(&self, call: &Call) -> bool {
        self.contract.is_none_or(|c| c == call.contract)
            && (self.methods.is_empty() || self.methods.contains(call.method))
            && self
                .args
                .iter()
                .all(|(k, v)| call.args.iter().any(|(ck, cv)| ck == k && cv == v))
    }
}

/// What the policy decided for one call: wait `delay`, then apply `action` (a fault) or
/// forward. [`Plan::run`] does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The call it is for.
    pub call: Call,
    /// Total injected delay before anything else.
    pub delay: Duration,
    /// The fault, if one fires (never [`FaultAction::Delay`]).
    pub fault: Option<FaultAction>,
}

impl Plan {
    /// Waits, then fails, hangs, or awaits `forward` (the inner store's call), as
    /// planned. `forward` is not polled when the call fails before it.
    pub async fn run<T, F>(self, forward: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send,
    {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        match self.fault {
            None | Some(FaultAction::Delay(_)) => forward.await,
            Some(FaultAction::Fail(kind)) => {
                if let FaultKind::Timeout(after) = kind {
                    tokio::time::sleep(after).await;
                }
                Err(kind.error(&self.call))
            }
            Some(FaultAction::LoseAnswer) => {
                forward.await?;
                Err(Error::backend(
                    true,
                    format!("injected lost answer in {}", self.call),
                ))
            }
            Some(FaultAction::Hang) => std::future::pending().await,
        }
    }
}

/// SplitMix64: small, seedable, good enough for picking faults.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug)]
struct Armed {
    rule: Rule,
    seen: u64,
    fired: u64,
}

#[derive(Debug)]
struct State {
    rules: Vec<Armed>,
    rng: Rng,
    calls: BTreeMap<&'static str, u64>,
    injected: u64,
}

/// A fault and latency policy: [`Rule`]s consulted by every [`Faulty`] wrapper built on
/// it, changeable at any time (share it as `Arc<Faults>`).
pub struct Faults {
    state: Mutex<State>,
}

impl Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("Faults")
            .field("rules", &s.rules)
            .field("injected", &s.injected)
            .finish()
    }
}

impl Faults {
    /// An empty policy (every call forwarded untouched), its generator seeded with 0.
    pub fn new() -> Arc<Self> {
        Faults::seeded(0)
    }

    /// An empty policy whose generator (probabilities, jitter) starts from `seed`: the
    /// same seed and the same calls in the same order make the same decisions.
    pub fn seeded(seed: u64) -> Arc<Self> {
        Arc::new(Faults {
            state: Mutex::new(State {
                rules: Vec::new(),
                rng: Rng(seed),
                calls: BTreeMap::new(),
                injected: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves consistent counters.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a rule after the existing ones.
    pub fn add(&self, rule: Rule) -> &Self {
        self.lock().rules.push(Armed {
            rule,
            seen: 0,
            fired: 0,
        });
        self
    }

    /// Removes every rule (calls are forwarded untouched again); the counters stay.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Removes every rule and adds `rule`.
    pub fn set(&self, rule: Rule) -> &Self {
        self.clear();
        self.add(rule)
    }

    /// How many calls of `method` (any contract) the wrappers have seen.
    pub fn calls(&self, method: &str) -> u64 {
        self.lock().calls.get(method).copied().unwrap_or(0)
    }

    /// How many times a rule fired (a fault or a delay), in total.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Decides what happens to `call` (counting it, and the firing rules).
    pub fn plan(&self, call: Call) -> Plan {
        let mut guard = self.lock();
        let state = &mut *guard;
        *state.calls.entry(call.method).or_default() += 1;
        let mut delay = Duration::ZERO;
        let mut fault = None;
        for armed in &mut state.rules {
            let rule = &armed.rule;
            if (fault.is_some() && rule.action.is_fault()) || !rule.matches(&call) {
                continue;
            }
            armed.seen += 1;
            if armed.seen <= rule.skip || rule.times.is_some_and(|t| armed.fired >= t) {
                continue;
            }
            if rule.probability < 1.0 && state.rng.unit() >= rule.probability {
                continue;
            }
            armed.fired += 1;
            state.injected += 1;
            match rule.action {
                FaultAction::Delay(latency) => delay += latency.draw(&mut state.rng),
                other => fault = Some(other),
            }
        }
        Plan { call, delay, fault }
    }
}

/// A store wrapped in a [`Faults`] policy: implements each store contract `S` does,
/// asking the policy before forwarding every call.
pub struct Faulty<S: ?Sized> {
    inner: Arc<S>,
    faults: Arc<Faults>,
}

impl<S: ?Sized> Faulty<S> {
    /// Wraps `inner`; use it where `inner` was (`Arc<Faulty<dyn InventoryStore>>` is an
    /// `Arc<dyn InventoryStore>`).
    pub fn new(inner: Arc<S>, faults: Arc<Faults>) -> Arc<Self> {
        Arc::new(Faulty { inner, faults })
    }

    /// The wrapped store (to read around the faults).
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// The policy.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }
}

impl<S: Debug + ?Sized> Debug for Faulty<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faulty")
            .field("inner", &self.inner)
            .field("faults", &self.faults)
            .finish()
    }
}

/// One forwarding impl of a contract for `Faulty<S>`: each method is listed with its
/// key arguments (`[name = expr, ...]`, displayed into [`Call::args`]).
macro_rules! forward {
    (
        $trait:ident, $contract:literal;
        $(
            fn $m:ident(&self $(, $a:ident : $t:ty)* $(,)?) -> $r:ty
                [$($k:ident = $v:expr),* $(,)?];
        )*
    ) => {
        #[async_trait]
        impl<S: $trait + ?Sized> $trait for Faulty<S> {
            $(
                async fn $m(&self $(, $a: $t)*) -> $r {
                    let call = Call {
                        contract: $contract,
                        method: stringify!($m),
                        args: vec![$((stringify!($k), $v.to_string())),*],
                    };
                    self.faults.plan(call).run(self.inner.$m($($a),*)).await
                }
            )*
        }
    };
}

forward! { InventoryStore, "inventory";
    fn restock(&self, sku: &Sku, location: &LocationId, quantity: u32, reason: &str)
        -> Result<StockLevel> [sku = sku, location = location];
    fn restock_many(&self, items: &[Restock]) -> Result<Vec<StockLevel>> [];
    fn adjust(&self, sku: &Sku, location: &LocationId, delta: i64, reason: &str)
        -> Result<StockLevel> [sku = sku, location = location];
    fn set_backorder(&self, sku: &Sku, allowed: bool) -> Result<()> [sku = sku];
    fn stock(&self, sku: &Sku) -> Result<SkuStock> [sku = sku];
    fn stocks(&self, skus: &[Sku]) -> Result<Vec<SkuStock>> [];
    fn reserve(&self, request: &ReservationRequest) -> Result<Reservation>
        [order = request.order_id];
    fn extend(&self, order_id: &OrderId, ttl: Duration) -> Result<Reservation>
        [order = order_id];
    fn confirm(&self, order_id: &OrderId) -> Result<Reservation> [order = order_id];
    fn release(&self, order_id: &OrderId, reason: &str) -> Result<Reservation>
        [order = order_id];
    fn return_stock(&self, order_id: &OrderId, restock: bool, reason: &str)
        -> Result<Reservation> [order = order_id];
    fn release_expired(&self, now: Timestamp, limit: u32) -> Result<Vec<Reservation>> [];
    fn reservation(&self, order_id: &OrderId) -> Result<Option<Reservation>>
        [order = order_id];
    fn movements(&self, sku: &Sku, offset: u64, limit: u32) -> Result<Vec<StockMovement>>
        [sku = sku];
    fn audit(&self) -> Result<Vec<InvariantViolation>> [];
}

forward! { OrderStore, "orders";
    fn create_order(&self, new: NewOrder) -> Result<CreateOutcome>
        [key = new.idempotency_key];
    fn get_order(&self, id: &OrderId) -> Result<Option<Order>> [order = id];
    fn get_order_by_key(&self, key: &IdempotencyKey) -> Result<Option<Order>> [key = key];
    fn transition(&self, id: &OrderId, change: &Transition) -> Result<Order>
        [order = id, from = change.from, to = change.to];
    fn history(&self, id: &OrderId) -> Result<Vec<StatusChange>> [order = id];
    fn list_orders(&self, query: &OrderQuery) -> Result<Page<Order, OrderId>> [];
}

forward! { CartStore, "carts";
    fn get_cart(&self, id: &CartId, owner: &CartOwner) -> Result<Option<Cart>> [cart = id];
    fn add_item(&self, id: &CartId, owner: &CartOwner, item: CartItem, limits: &CartLimits)
        -> Result<Cart> [cart = id, sku = item.sku];
    fn set_quantity(
        &self,
        id: &CartId,
        owner: &CartOwner,
        sku: &Sku,
        quantity: u32,
        limits: &CartLimits,
    ) -> Result<Cart> [cart = id, sku = sku];
    fn remove_item(&self, id: &CartId, owner: &CartOwner, sku: &Sku, limits: &CartLimits)
        -> Result<Cart> [cart = id, sku = sku];
    fn set_addresses(
        &self,
        id: &CartId,
        owner: &CartOwner,
        addresses: CartAddresses,
        limits: &CartLimits,
    ) -> Result<Cart> [cart = id];
    fn clear_cart(&self, id: &CartId, owner: &CartOwner) -> Result<()> [cart = id];
    fn merge_carts(
        &self,
        guest: &CartId,
        customer: &CustomerId,
        caps: &BTreeMap<Sku, u32>,
        limits: &CartLimits,
    ) -> Result<(Cart, MergeReport)> [cart = guest, customer = customer];
    fn list_abandoned(&self, since: Timestamp, limit: u32) -> Result<Vec<Cart>> [];
}

forward! { CatalogStore, "catalog";
    fn insert_product(&self, new: NewProduct, slug: Slug) -> Result<Product> [slug = slug];
    fn insert_products(&self, batch: Vec<(NewProduct, Slug)>) -> Result<Vec<Product>> [];
    fn update_product(&self, product: Product) -> Result<Product> [product = product.id];
    fn get_product(&self, id: &ProductId) -> Result<Option<Product>> [product = id];
    fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> [];
    fn get_product_by_slug(&self, slug: &Slug) -> Result<Option<Product>> [slug = slug];
    fn get_product_by_sku(&self, sku: &Sku) -> Result<Option<Product>> [sku = sku];
    fn list_products(&self, query: &ProductQuery) -> Result<Page<Product, ProductId>> [];
    fn put_categories(&self, categories: &[Category]) -> Result<CategoryWrite> [];
    fn categories(&self, root: Option<&CategoryPath>) -> Result<Vec<Category>> [];
}

forward! { EventLog, "events";
    fn append(&self, events: Vec<DomainEvent>) -> Result<Vec<EventId>> [];
    fn read(&self, after: EventId, limit: u32) -> Result<Vec<EventEnvelope>> [after = after];
    fn checkpoint(&self, consumer: &ConsumerName) -> Result<EventId> [consumer = consumer];
    fn commit(&self, consumer: &ConsumerName, up_to: EventId) -> Result<()>
        [consumer = consumer];
    fn wait_for_events(&self, after: EventId, timeout: Duration) -> Result<bool>
        [after = after];
    fn prune(&self, before: Timestamp) -> Result<u64> [];
}

forward! { OrderQueue, "queue";
    fn enqueue(&self, order_id: &OrderId) -> Result<JobId> [order = order_id];
    fn enqueue_many(&self, order_ids: &[OrderId]) -> Result<Vec<JobId>> [];
    fn wait_for_jobs(&self, timeout: Duration) -> Result<bool> [];
    fn claim(&self, limit: u32, visibility: Duration) -> Result<Vec<QueuedJob>> [];
    fn ack(&self, job: &QueuedJob) -> Result<()> [order = job.order_id];
    fn fail(&self, job: &QueuedJob, error: &str, policy: &RetryPolicy) -> Result<RetryOutcome>
        [order = job.order_id];
    fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>> [];
    fn stats(&self) -> Result<QueueStats> [];
}

forward! { PromotionStore, "promotions";
    fn create_promotion(&self, promotion: &Promotion) -> Result<Promotion>
        [promotion = promotion.id];
    fn promotion(&self, id: &PromotionId) -> Result<Option<Promotion>> [promotion = id];
    fn automatic_offers(&self, now: Timestamp) -> Result<Vec<Offer>> [];
    fn add_codes(&self, promotion_id: &PromotionId, batch: &CodeBatch) -> Result<u64>
        [promotion = promotion_id];
    fn lookup_codes(&self, codes: &[String]) -> Result<Vec<CodeLookup>> [];
    fn reserve(&self, request: &RedemptionRequest) -> Result<Redemption>
        [order = request.order_id];
    fn extend(&self, order_id: &OrderId, ttl: Duration) -> Result<Redemption>
        [order = order_id];
    fn confirm(&self, order_id: &OrderId) -> Result<Redemption> [order = order_id];
    fn release(&self, order_id: &OrderId, reason: &str) -> Result<Redemption>
        [order = order_id];
    fn release_expired(&self, now: Timestamp, limit: u32) -> Result<Vec<Redemption>> [];
    fn redemption(&self, order_id: &OrderId) -> Result<Option<Redemption>>
        [order = order_id];
    fn usage(&self, promotion_id: &PromotionId) -> Result<PromotionUsage>
        [promotion = promotion_id];
}

forward! { CoPurchaseStore, "co_purchase";
    fn record(&self, basket: &Basket) -> Result<RecordOutcome> [];
    fn record_all(&self, baskets: &[Basket]) -> Result<Vec<RecordOutcome>> [];
    fn also_bought(&self, product: &ProductId, limit: u32) -> Result<Vec<ProductCount>>
        [product = product];
    fn popular(&self, limit: u32) -> Result<Vec<ProductCount>> [];
    fn orders_recorded(&self) -> Result<u64> [];
}

forward! { HistoryStore, "history";
    fn record(&self, customer: &CustomerId, interaction: &Interaction) -> Result<()>
        [customer = customer];
    fn recent(&self, customer: &CustomerId, limit: u32) -> Result<Vec<Interaction>>
        [customer = customer];
}

forward! { OrderSteps, "steps";
    fn reserve_order(&self, order: &Order, ttl: Duration) -> Result<StepOutcome>
        [order = order.id];
    fn confirm_payment(&self, order: &Order, payment_ref: &str) -> Result<StepOutcome>
        [order = order.id];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryEngine;
    use crate::store::InventoryStoreExt;

    fn sku(s: &str) -> Sku {
        Sku::new(s).expect("sku")
    }

    fn loc() -> LocationId {
        LocationId::new("main").expect("location")
    }

    fn faulty_inventory(engine: &MemoryEngine, faults: &Arc<Faults>) -> Arc<dyn InventoryStore> {
        Faulty::new(engine.inventory.clone(), faults.clone())
    }

    #[tokio::test]
    async fn without_rules_every_call_is_forwarded_and_counted() {
        let engine = MemoryEngine::new();
        let faults = Faults::new();
        let inv = faulty_inventory(&engine, &faults);
        inv.restock(&sku("A"), &loc(), 5, "in")
            .await
            .expect("restock");
        assert_eq!(inv.available(&sku("A")).await.expect("read"), 5);
        assert_eq!(
            engine.inventory.available(&sku("A")).await.expect("read"),
            5
        );
        assert_eq!((faults.calls("restock"), faults.calls("stock")), (1, 1));
        assert_eq!(faults.injected(), 0);
    }

    #[tokio::test]
    async fn a_rule_fails_exactly_the_next_n_matching_calls() {
        let engine = MemoryEngine::new();
        let faults = Faults::new();
        let inv = faulty_inventory(&engine, &faults);
        inv.restock(&sku("A"), &loc(), 5, "in")
            .await
            .expect("restock");
        faults.add(Rule::fail(FaultKind::Retryable).on("stock").times(2));
        // Another method is untouched.
        assert!(inv.movements(&sku("A"), 0, 10).await.is_ok());
        let first = inv.stock(&sku("A")).await.expect_err("1st fails");
        assert!(first.is_retryable(), "{first}");
        assert!(
            first.to_string().contains("inventory::stock(sku=A)"),
            "{first}"
        );
        assert!(inv.stock(&sku("A")).await.is_err(), "2nd fails");
        assert_eq!(inv.available(&sku("A")).await.expect("3rd passes"), 5);
        assert_eq!(faults.injected(), 2);
    }

    #[tokio::test]
    async fn a_permanent_failure_does_not_forward_and_a_lost_answer_does() {
        let engine = MemoryEngine::new();
        let faults = Faults::new();
        let inv = faulty_inventory(&engine, &faults);
        faults.set(Rule::fail(FaultKind::Permanent).on("restock").times(1));
        let e = inv
            .restock(&sku("A"), &loc(), 5, "in")
            .await
            .expect_err("crash");
        assert!(!e.is_retryable(), "{e}");
        assert!(e.to_string().contains("injected permanent failure"), "{e}");
        assert_eq!(
            engine.inventory.available(&sku("A")).await.expect("read"),
            0
        );

        faults.set(Rule::lose_answer().on("restock").times(1));
        let e = inv
            .restock(&sku("A"), &loc(), 5, "in")
            .await
            .expect_err("lost");
        assert!(e.is_retryable(), "{e}");
        assert_eq!(
            engine.inventory.available(&sku("A")).await.expect("read"),
            5,
            "the change was made"
        );
    }

    #[tokio::test]
    async fn skip_contract_and_arguments_narrow_a_rule() {
        let engine = MemoryEngine::new();
        let faults = Faults::new();
        let inv = faulty_inventory(&engine, &faults);
        inv.restock(&sku("A"), &loc(), 5, "in")
            .await
            .expect("restock");
        inv.restock(&sku("B"), &loc(), 5, "in")
            .await
            .expect("restock");
        faults.add(
            Rule::fail(FaultKind::Retryable)
                .on("stock")
                .in_contract("inventory")
                .with_arg("sku", "B")
                .skip(1),
        );
        faults.add(
            Rule::fail(FaultKind::Retryable)
                .on("stock")
                .in_contract("orders"),
        );
        for _ in 0..3 {
            assert!(inv.stock(&sku("A")).await.is_ok(), "another SKU");
        }
        assert!(inv.stock(&sku("B")).await.is_ok(), "the first is skipped");
        assert!(inv.stock(&sku("B")).await.is_err());
        assert!(inv.stock(&sku("B")).await.is_err(), "no limit on times");
        assert_eq!(faults.injected(), 2);
    }

    #[tokio::test]
    async fn probabilities_follow_the_seed() {
        async fn outcomes(seed: u64) -> Vec<bool> {
            let engine = MemoryEngine::new();
            let faults = Faults::seeded(seed);
            let inv = faulty_inventory(&engine, &faults);
            faults.add(Rule::fail(FaultKind::Retryable).with_probability(0.5));
            let mut out = Vec::new();
            for _ in 0..200 {
                out.push(inv.stock(&sku("A")).await.is_err());
            }
            out
        }
        let a = outcomes(42).await;
        assert_eq!(a, outcomes(42).await, "the same seed, the same faults");
        assert_ne!(a, outcomes(43).await, "another seed, other faults");
        let failed = a.iter().filter(|f| **f).count();
        assert!((50..=150).contains(&failed), "p = 0.5 of 200: {failed}");
        // p = 0 never fires, p = 1 always.
        let faults = Faults::seeded(1);
        faults.add(Rule::fail(FaultKind::Retryable).with_probability(0.0));
        let engine = MemoryEngine::new();
        let inv = faulty_inventory(&engine, &faults);
        for _ in 0..50 {
            assert!(inv.stock(&sku("A")).await.is_ok());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delays_add_at_least_their_latency_and_then_forward() {
        let engine = MemoryEngine::new();
        let faults = Faults::seeded(9);
        let inv = faulty_inventory(&engine, &faults);
        inv.restock(&sku("A"), &loc(), 3, "in")
            .await
            .expect("restock");
        faults.add(Rule::delay(Latency::fixed(Duration::from_millis(100))).on("stock"));
        faults.add(
            Rule::delay(Latency::jitter(
                Duration::from_millis(20),
                Duration::from_millis(10),
            ))
            .on("stock"),
        );
        for _ in 0..10 {
            let start = tokio::time::Instant::now();
            assert_eq!(inv.available(&sku("A")).await.expect("read"), 3);
            assert!(start.elapsed() >= Duration::from_millis(110));
        }
        let start = tokio::time::Instant::now();
        inv.movements(&sku("A"), 0, 10).await.expect("read");
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "other methods are not delayed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_waits_then_fails_and_a_hang_never_ends() {
        let engine = MemoryEngine::new();
        let faults = Faults::new();
        let inv = faulty_inventory(&engine, &faults);
        faults.set(Rule::fail(FaultKind::Timeout(Duration::from_secs(2))).times(1));
        let start = tokio::time::Instant::now();
        let e = inv.stock(&sku("A")).await.expect_err("timeout");
        assert!(start.elapsed() >= Duration::from_secs(2));
        assert!(e.is_retryable() && e.to_string().contains("timeout"), "{e}");

        faults.set(Rule::hang().on("stock"));
        let hung = tokio::time::timeout(Duration::from_secs(3600), inv.stock(&sku("A"))).await;
        assert!(hung.is_err(), "a hung call never answers");
        faults.clear();
        assert!(inv.stock(&sku("A")).await.is_ok(), "cleared");
    }

    #[tokio::test]
    async fn transitions_are_matched_by_their_target_status() {
        use crate::order::OrderStatus::*;
        let engine = MemoryEngine::new();
        let faults = Faults::new();
        let orders: Arc<dyn OrderStore> = Faulty::new(engine.orders.clone(), faults.clone());
        let new = crate::testkit::fixtures::new_order("k-1", "c1", &[("A", 1, "1.00 USD")]);
        let order = orders.create_order(new).await.expect("create").into_order();
        faults.add(
            Rule::fail(FaultKind::Permanent)
                .on("transition")
                .with_arg("to", PaymentConfirmed),
        );
        let pending = orders
            .transition(&order.id, &Transition::new(Created, PaymentPending, "r"))
            .await
            .expect("another target passes");
        let e = orders
            .transition(
                &order.id,
                &Transition::new(PaymentPending, PaymentConfirmed, "p"),
            )
            .await
            .expect_err("this target fails");
        assert!(e.to_string().contains("to=PAYMENT_CONFIRMED"), "{e}");
        let stored = engine.orders.get_order(&order.id).await.expect("read");
        assert_eq!(stored.map(|o| o.version), Some(pending.version));
    }
}
