//! Shared fixtures of the service tests: an in-memory engine on a manual clock, the
//! scriptable outside services (faults are injected with `testkit::faults`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use commerce_core::cart::CartLimits;
use commerce_core::catalog::{CategoryPath, NewProduct, ProductStatus};
use commerce_core::clock::{Clock, ManualClock};
use commerce_core::id::{CustomerId, IdempotencyKey, LocationId, OrderId, SellerId, Sku};
use commerce_core::inventory::SkuStock;
use commerce_core::memory::MemoryEngine;
use commerce_core::order::{Order, OrderStatus, StatusChange};
use commerce_core::service::*;
use commerce_core::store::{CatalogStoreExt, RetryPolicy};

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

/// Sums a map of counts.
pub fn total(m: &BTreeMap<String, usize>) -> usize {
    m.values().sum()
}

pub fn now(clock: &ManualClock) -> commerce_core::clock::Timestamp {
    clock.now()
}
