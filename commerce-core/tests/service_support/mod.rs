//! Shared fixtures of the service tests: an in-memory engine on a manual clock, the
//! scriptable outside services, and store wrappers that inject faults.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::cart::CartLimits;
use commerce_core::catalog::{CategoryPath, NewProduct, ProductStatus};
use commerce_core::clock::{Clock, ManualClock};
use commerce_core::id::{CustomerId, IdempotencyKey, LocationId, OrderId, SellerId, Sku};
use commerce_core::inventory::{
    InvariantViolation, Reservation, ReservationRequest, SkuStock, StockLevel, StockMovement,
};
use commerce_core::memory::MemoryEngine;
use commerce_core::order::{NewOrder, Order, OrderStatus, StatusChange, Transition};
use commerce_core::service::*;
use commerce_core::store::{
    CatalogStoreExt, CreateOutcome, InventoryStore, OrderQuery, OrderStore, Page, RetryPolicy,
};
use commerce_core::{Error, Result};

pub fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    }
}

/// Fast settings for tests: 3 tries a step, 1 ms apart, 250 ms timeouts.
pub fn test_config() -> PipelineConfig {
    PipelineConfig {
        payment_timeout: Duration::from_millis(250),
        call_timeout: Duration::from_millis(250),
        step_retry: fast_retry(3),
        ..PipelineConfig::default()
    }
}

pub struct Fixture {
    pub clock: Arc<ManualClock>,
    pub engine: MemoryEngine,
    pub stores: Stores,
    pub payments: Arc<MemoryPaymentGateway>,
    pub fulfillment: Arc<MemoryFulfillment>,
    pub notifier: Arc<MemoryNotifier>,
}

impl Fixture {
    pub fn new() -> Self {
        let clock = Arc::new(ManualClock::default());
        let engine = MemoryEngine::with_clock(clock.clone());
        let stores = Stores::memory(&engine);
        Fixture {
            clock,
            engine,
            stores,
            payments: Arc::new(MemoryPaymentGateway::new()),
            fulfillment: Arc::new(MemoryFulfillment::new()),
            notifier: Arc::new(MemoryNotifier::new()),
        }
    }

    /// A pipeline over `stores` (the fixture's, or wrapped ones) with `config`.
    pub fn pipeline_on(&self, stores: &Stores, config: PipelineConfig) -> Arc<OrderPipeline> {
        Arc::new(OrderPipeline::new(
            stores,
            self.payments.clone(),
            self.fulfillment.clone(),
            self.notifier.clone(),
            config,
        ))
    }

    pub fn pipeline(&self) -> Arc<OrderPipeline> {
        self.pipeline_on(&self.stores, test_config())
    }

    pub fn carts(&self) -> CartService {
        CartService::new(&self.stores, CartLimits::default())
    }

    pub fn checkout(&self) -> CheckoutService {
        CheckoutService::new(&self.stores, CheckoutConfig::default())
    }

    /// An active product with one variant `sku` at `price`, and `stock` units at
    /// location "main" (none if 0).
    pub async fn product(&self, sku: &str, price: &str, stock: u32) -> Sku {
        let sku = Sku::new(sku).expect("sku");
        let mut new = NewProduct::new(
            SellerId::new("seller").expect("id"),
            format!("Product {sku}"),
            CategoryPath::parse("Electronics > Phones").expect("path"),
            "Acme",
            sku.clone(),
            price.parse().expect("price"),
        );
        new.status = ProductStatus::Active;
        self.stores
            .catalog
            .create_product(new)
            .await
            .expect("product");
        if stock > 0 {
            self.restock(&sku, stock).await;
        }
        sku
    }

    pub async fn restock(&self, sku: &Sku, units: u32) {
        self.stores
            .inventory
            .restock(
                sku,
                &LocationId::new("main").expect("id"),
                units,
                "test stock",
            )
            .await
            .expect("restock");
    }

    /// Changes the price of the product selling `sku`.
    pub async fn reprice(&self, sku: &Sku, price: &str) {
        let mut p = self
            .stores
            .catalog
            .get_product_by_sku(sku)
            .await
            .expect("read")
            .expect("exists");
        let price = price.parse().expect("price");
        for v in p.variants.iter_mut().filter(|v| &v.sku == sku) {
            v.price = price;
        }
        p.base_price = price;
        self.stores.catalog.update_product(p).await.expect("update");
    }

    /// A CREATED order of `lines` (at the catalog prices) for `customer`, through the
    /// checkout service with a client cart.
    pub async fn order(&self, customer: &str, lines: &[(&Sku, u32)]) -> Order {
        let cart = ClientCart {
            items: lines
                .iter()
                .map(|(sku, q)| ClientCartItem {
                    sku: (*sku).clone(),
                    quantity: *q,
                    unit_price: None,
                })
                .collect(),
        };
        let key = IdempotencyKey::new(format!("key-{}", OrderId::generate())).expect("key");
        let request =
            CheckoutRequest::client_cart(CustomerId::new(customer).expect("id"), cart, key);
        match self.checkout().checkout(&request).await.expect("checkout") {
            CheckoutOutcome::Placed { order, .. } => order,
            CheckoutOutcome::NeedsReview(r) => panic!("checkout needs review: {r:?}"),
        }
    }

    pub async fn available(&self, sku: &Sku) -> u64 {
        self.stores
            .inventory
            .stock(sku)
            .await
            .expect("stock")
            .available()
    }

    pub async fn stock(&self, sku: &Sku) -> SkuStock {
        self.stores.inventory.stock(sku).await.expect("stock")
    }

    pub async fn status(&self, order: &OrderId) -> OrderStatus {
        self.stores
            .orders
            .get_order(order)
            .await
            .expect("read")
            .expect("exists")
            .status
    }

    pub async fn history(&self, order: &OrderId) -> Vec<StatusChange> {
        self.stores.orders.history(order).await.expect("history")
    }

    pub async fn statuses(&self, order: &OrderId) -> Vec<OrderStatus> {
        self.history(order).await.iter().map(|c| c.to).collect()
    }

    pub async fn audit_clean(&self) {
        let problems = self.stores.inventory.audit().await.expect("audit");
        assert!(problems.is_empty(), "inventory audit: {problems:?}");
    }

    pub fn captured_for(&self, order: &OrderId) -> Vec<Capture> {
        self.payments
            .captures()
            .into_iter()
            .filter(|c| &c.order_id == order)
            .collect()
    }
}

/// When a wrapped store call should misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail without doing anything, with a non-retryable error (the process "dies").
    Crash,
    /// Do it, then fail with a retryable error (the answer is lost).
    LoseAnswer,
}

/// An order store whose `transition` into a chosen status misbehaves `times` times.
#[derive(Debug)]
pub struct FaultyOrders {
    pub inner: Arc<dyn OrderStore>,
    rule: Mutex<Option<(OrderStatus, Fault)>>,
    left: AtomicU32,
}

impl FaultyOrders {
    pub fn new(inner: Arc<dyn OrderStore>) -> Arc<Self> {
        Arc::new(FaultyOrders {
            inner,
            rule: Mutex::new(None),
            left: AtomicU32::new(0),
        })
    }

    /// The next `times` transitions into `to` misbehave as `fault`.
    pub fn arm(&self, to: OrderStatus, fault: Fault, times: u32) {
        *self.rule.lock().expect("lock") = Some((to, fault));
        self.left.store(times, Ordering::SeqCst);
    }

    fn fault_for(&self, to: OrderStatus) -> Option<Fault> {
        let rule = *self.rule.lock().expect("lock");
        match rule {
            Some((t, f)) if t == to => self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .ok()
                .map(|_| f),
            _ => None,
        }
    }
}

#[async_trait]
impl OrderStore for FaultyOrders {
    async fn create_order(&self, new: NewOrder) -> Result<CreateOutcome> {
        self.inner.create_order(new).await
    }
    async fn get_order(&self, id: &OrderId) -> Result<Option<Order>> {
        self.inner.get_order(id).await
    }
    async fn get_order_by_key(&self, key: &IdempotencyKey) -> Result<Option<Order>> {
        self.inner.get_order_by_key(key).await
    }
    async fn transition(&self, id: &OrderId, change: &Transition) -> Result<Order> {
        match self.fault_for(change.to) {
            Some(Fault::Crash) => Err(Error::backend(
                false,
                format!("injected crash before {}", change.to),
            )),
            Some(Fault::LoseAnswer) => {
                self.inner.transition(id, change).await?;
                Err(Error::backend(true, "injected lost answer"))
            }
            None => self.inner.transition(id, change).await,
        }
    }
    async fn history(&self, id: &OrderId) -> Result<Vec<StatusChange>> {
        self.inner.history(id).await
    }
    async fn list_orders(&self, query: &OrderQuery) -> Result<Page<Order, OrderId>> {
        self.inner.list_orders(query).await
    }
}

/// Which inventory call a [`FaultyInventory`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryCall {
    Reserve,
    Extend,
    Confirm,
    Release,
}

/// An inventory whose chosen call misbehaves `times` times.
#[derive(Debug)]
pub struct FaultyInventory {
    pub inner: Arc<dyn InventoryStore>,
    rule: Mutex<Option<(InventoryCall, Fault)>>,
    left: AtomicU32,
}

impl FaultyInventory {
    pub fn new(inner: Arc<dyn InventoryStore>) -> Arc<Self> {
        Arc::new(FaultyInventory {
            inner,
            rule: Mutex::new(None),
            left: AtomicU32::new(0),
        })
    }

    pub fn arm(&self, call: InventoryCall, fault: Fault, times: u32) {
        *self.rule.lock().expect("lock") = Some((call, fault));
        self.left.store(times, Ordering::SeqCst);
    }

    fn fault_for(&self, call: InventoryCall) -> Option<Fault> {
        let rule = *self.rule.lock().expect("lock");
        match rule {
            Some((c, f)) if c == call => self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .ok()
                .map(|_| f),
            _ => None,
        }
    }

    async fn faulty<T>(
        &self,
        call: InventoryCall,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.fault_for(call) {
            Some(Fault::Crash) => Err(Error::backend(false, format!("injected crash in {call:?}"))),
            Some(Fault::LoseAnswer) => {
                f.await?;
                Err(Error::backend(true, "injected lost answer"))
            }
            None => f.await,
        }
    }
}

#[async_trait]
impl InventoryStore for FaultyInventory {
    async fn restock(
        &self,
        sku: &Sku,
        location: &LocationId,
        quantity: u32,
        reason: &str,
    ) -> Result<StockLevel> {
        self.inner.restock(sku, location, quantity, reason).await
    }
    async fn adjust(
        &self,
        sku: &Sku,
        location: &LocationId,
        delta: i64,
        reason: &str,
    ) -> Result<StockLevel> {
        self.inner.adjust(sku, location, delta, reason).await
    }
    async fn set_backorder(&self, sku: &Sku, allowed: bool) -> Result<()> {
        self.inner.set_backorder(sku, allowed).await
    }
    async fn stock(&self, sku: &Sku) -> Result<SkuStock> {
        self.inner.stock(sku).await
    }
    async fn reserve(&self, request: &ReservationRequest) -> Result<Reservation> {
        self.faulty(InventoryCall::Reserve, self.inner.reserve(request))
            .await
    }
    async fn extend(&self, order_id: &OrderId, ttl: Duration) -> Result<Reservation> {
        self.faulty(InventoryCall::Extend, self.inner.extend(order_id, ttl))
            .await
    }
    async fn confirm(&self, order_id: &OrderId) -> Result<Reservation> {
        self.faulty(InventoryCall::Confirm, self.inner.confirm(order_id))
            .await
    }
    async fn release(&self, order_id: &OrderId, reason: &str) -> Result<Reservation> {
        self.faulty(InventoryCall::Release, self.inner.release(order_id, reason))
            .await
    }
    async fn return_stock(
        &self,
        order_id: &OrderId,
        restock: bool,
        reason: &str,
    ) -> Result<Reservation> {
        self.inner.return_stock(order_id, restock, reason).await
    }
    async fn release_expired(
        &self,
        now: commerce_core::clock::Timestamp,
        limit: u32,
    ) -> Result<Vec<Reservation>> {
        self.inner.release_expired(now, limit).await
    }
    async fn reservation(&self, order_id: &OrderId) -> Result<Option<Reservation>> {
        self.inner.reservation(order_id).await
    }
    async fn movements(&self, sku: &Sku, offset: u64, limit: u32) -> Result<Vec<StockMovement>> {
        self.inner.movements(sku, offset, limit).await
    }
    async fn audit(&self) -> Result<Vec<InvariantViolation>> {
        self.inner.audit().await
    }
}

/// Sums a map of counts.
pub fn total(m: &BTreeMap<String, usize>) -> usize {
    m.values().sum()
}

pub fn now(clock: &ManualClock) -> commerce_core::clock::Timestamp {
    clock.now()
}
