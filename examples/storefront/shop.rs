//! The shop: the services over the stores, and the background loops that process
//! orders (outbox relay, queue workers, reservation reaper, queue depth sampling).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use commerce_core::address::CountryCode;
use commerce_core::cart::CartLimits;
use commerce_core::id::OrderId;
use commerce_core::money::Money;
use commerce_core::order::{Order, OrderStatus};
use commerce_core::promotion::StackingPolicy;
use commerce_core::service::*;
use commerce_core::shipping::{
    PriceBand, Rate, ShippingMethod, ShippingZone, ZoneArea, ZoneShipping,
};
use commerce_core::store::{OrderStore, PromotionStore, RefundLedger, SearchIndex};
use commerce_core::tax::{Jurisdiction, PriceMode, Rounding, RuleBasedTax, TaxRules};
use commerce_core::{EntityKind, Error, Result};
use rust_decimal::Decimal;

/// Everything a storefront request handler would hold.
pub struct Shop {
    /// The stores.
    pub stores: Stores,
    /// Product search.
    pub search: Arc<dyn SearchIndex>,
    /// Carts.
    pub carts: CartService,
    /// Checkout with flat shipping and tax (the flash sale's buyers give no address).
    pub checkout: CheckoutService,
    /// Checkout for an address: tax by US state and city, shipping by zone.
    pub checkout_to_address: CheckoutService,
    /// The pipeline (fulfilment reports shipping through it).
    pub pipeline: Arc<OrderPipeline>,
    /// Returns and partial refunds.
    pub returns: ReturnsService,
    /// The (in-memory) payment gateway.
    pub payments: Arc<MemoryPaymentGateway>,
    /// The (in-memory) notifier.
    pub notifier: Arc<MemoryNotifier>,
    /// Promotions, coupon codes and their redemptions.
    pub promotions: Arc<dyn PromotionStore>,
    /// Wakes whoever waits for an order when the pipeline tells its customer.
    settled: Arc<Settled>,
    /// The outbox relay, unless the order store writes the jobs with the orders.
    relay: Option<BackgroundTask<Result<u64>>>,
    workers: BackgroundTask<Result<WorkStats>>,
    reaper: BackgroundTask<ReapReport>,
    /// Samples the queue's depth into the `commerce_queue_jobs` gauges.
    depth: BackgroundTask<u64>,
}

/// What the background loops did.
pub struct Totals {
    /// Orders relayed from the event log to the queue (`None`: no relay ran, the
    /// order store wrote each order's job with the order).
    pub relayed: Option<u64>,
    /// Worker statistics.
    pub work: WorkStats,
    /// Reaper statistics.
    pub reaped: ReapReport,
}

impl Shop {
    /// The services over `stores` (with `promotions`, applied at checkout and held by
    /// the pipeline, and the `refunds` ledger), with the background loops started (the
    /// outbox relay only when `relay`: not when the order store writes the jobs).
    pub fn start(
        stores: Stores,
        promotions: Arc<dyn PromotionStore>,
        search: Arc<dyn SearchIndex>,
        refunds: Arc<dyn RefundLedger>,
        workers: usize,
        relay: bool,
    ) -> Result<Shop> {
        let payments = Arc::new(MemoryPaymentGateway::new());
        payments.set_latency(Duration::from_millis(1));
        let notifier = Arc::new(MemoryNotifier::new());
        let settled = Arc::new(Settled {
            inner: notifier.clone(),
            waiters: Mutex::new(HashMap::new()),
        });
        let pipeline = Arc::new(
            OrderPipeline::new(
                &stores,
                payments.clone(),
                Arc::new(MemoryFulfillment::new()),
                settled.clone(),
                PipelineConfig::default(),
            )
            .with_refunds(refunds.clone())
            .with_promotions(promotions.clone()),
        );
        let returns = ReturnsService::new(&stores, refunds, payments.clone());
        let checkout_to_address = CheckoutService::new(&stores, CheckoutConfig::default())
            .with_tax(Arc::new(us_tax()?), PriceMode::TaxExclusive)
            .with_shipping(Arc::new(us_shipping()?));
        let checkout = CheckoutService::new(
            &stores,
            CheckoutConfig {
                flat_shipping: Decimal::new(599, 2),
                free_shipping_from: Some(Decimal::new(35, 0)),
                tax_rate: Decimal::new(825, 4),
                ..CheckoutConfig::default()
            },
        )
        .with_promotions(promotions.clone(), StackingPolicy::BestForCustomer);
        let relay = match relay {
            true => Some(
                OrderRelay::new(stores.events.clone(), stores.queue.clone())?
                    .spawn(Duration::from_millis(100)),
            ),
            false => None,
        };
        let workers = OrderWorkers::new(
            stores.queue.clone(),
            pipeline.clone(),
            WorkerConfig {
                concurrency: workers,
                idle_poll: Duration::from_millis(2),
                ..WorkerConfig::default()
            },
        )
        .spawn();
        let reaper = ReservationReaper::new(&stores, pipeline.clone())
            .with_promotions(promotions.clone())
            .spawn(Duration::from_secs(1));
        let depth = QueueDepthMonitor::new(stores.queue.clone()).spawn(Duration::from_secs(1));
        Ok(Shop {
            depth,
            carts: CartService::new(&stores, CartLimits::default()),
            checkout,
            checkout_to_address,
            pipeline,
            returns,
            payments,
            notifier,
            promotions,
            settled,
            search,
            stores,
            relay,
            workers,
            reaper,
        })
    }

    /// Waits until the order rests (see [`wait_settled`]).
    pub async fn wait_settled(&self, id: &OrderId, timeout: Duration) -> Result<Order> {
        wait_settled(self.stores.orders.as_ref(), &self.settled, id, timeout).await
    }

    /// A handle for waiting on orders from other tasks.
    pub fn waiter(&self) -> Waiter {
        Waiter {
            orders: self.stores.orders.clone(),
            settled: self.settled.clone(),
        }
    }

    /// Stops the background loops, waiting for the work in progress.
    pub async fn stop(self) -> Result<Totals> {
        let relayed = match self.relay {
            Some(relay) => Some(relay.shutdown().await??),
            None => None,
        };
        let work = self.workers.shutdown().await??;
        let reaped = self.reaper.shutdown().await?;
        self.depth.shutdown().await?;
        // A last sample, so the printed gauges show the queue as left.
        QueueDepthMonitor::new(self.stores.queue.clone())
            .sample()
            .await?;
        Ok(Totals {
            relayed,
            work,
            reaped,
        })
    }
}

/// New York sales tax: state 4 %, New York City 4.5 % and the commuter district
/// 0.375 % by ZIP prefix (combined 8.875 %); shipping of taxable goods is taxed.
fn us_tax() -> Result<RuleBasedTax> {
    let us = CountryCode::parse("US")?;
    let nyc = [
        "100", "101", "102", "103", "104", "111", "112", "113", "114", "116",
    ];
    Ok(RuleBasedTax::new(TaxRules::new(
        Rounding::PerLine,
        vec![
            Jurisdiction::country("New York State", us, Decimal::new(4, 2)).region("NY"),
            Jurisdiction::country("New York City", us, Decimal::new(45, 3))
                .region("NY")
                .postal_prefixes(nyc),
            Jurisdiction::country("MCTD", us, Decimal::new(375, 5))
                .region("NY")
                .postal_prefixes(nyc),
        ],
    )?))
}

/// The US: ground by order value (free from $35), two-day flat.
fn us_shipping() -> Result<ZoneShipping> {
    let usd = |s: &str| s.parse::<Money>();
    ZoneShipping::new(
        vec![ShippingZone {
            name: "United States".into(),
            areas: vec![ZoneArea::country("US")?],
            methods: vec![
                ShippingMethod::new(
                    "ground",
                    "Ground",
                    Rate::ByPrice(vec![PriceBand {
                        from: usd("0.00 USD")?,
                        price: usd("5.99 USD")?,
                    }]),
                )
                .free_over(usd("35.00 USD")?)
                .transit_days(3, 5),
                ShippingMethod::new("two-day", "Two-day", Rate::Flat(usd("19.95 USD")?))
                    .transit_days(2, 2),
            ],
        }],
        5000,
    )
}

/// Waits for orders from any task (see [`wait_settled`]).
#[derive(Clone)]
pub struct Waiter {
    orders: Arc<dyn OrderStore>,
    settled: Arc<Settled>,
}

impl Waiter {
    /// Waits until the order rests.
    pub async fn wait(&self, id: &OrderId, timeout: Duration) -> Result<Order> {
        wait_settled(self.orders.as_ref(), &self.settled, id, timeout).await
    }
}

/// The pipeline's notifier: records what was sent (the in-memory notifier) and wakes
/// the tasks waiting for that order, so waiting costs no reads of the order store.
#[derive(Debug)]
pub struct Settled {
    inner: Arc<MemoryNotifier>,
    waiters: Mutex<HashMap<OrderId, Arc<tokio::sync::Notify>>>,
}

impl Settled {
    fn handle(&self, id: &OrderId) -> Arc<tokio::sync::Notify> {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(id.clone()).or_default().clone()
    }

    fn forget(&self, id: &OrderId) {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        w.remove(id);
    }
}

#[async_trait]
impl Notifier for Settled {
    async fn notify(&self, order: &Order, notification: &Notification) -> Result<()> {
        self.inner.notify(order, notification).await?;
        let waiter = {
            let w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            w.get(&order.id).cloned()
        };
        if let Some(n) = waiter {
            n.notify_waiters();
        }
        Ok(())
    }
}

/// Waits until the order rests (PREPARING or later, or CANCELLED / REFUNDED): woken
/// by the pipeline's notification, re-reading the order at most once a second
/// otherwise (a notification from another process, or one sent before we waited).
/// A read that fails with a retryable error (a database failover) is retried.
pub async fn wait_settled(
    orders: &dyn OrderStore,
    settled: &Settled,
    id: &OrderId,
    timeout: Duration,
) -> Result<Order> {
    let deadline = Instant::now() + timeout;
    let wake = settled.handle(id);
    let result = loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match orders.get_order(id).await {
            Ok(Some(order)) => {
                if !matches!(
                    order.status,
                    OrderStatus::Created
                        | OrderStatus::PaymentPending
                        | OrderStatus::PaymentConfirmed
                ) {
                    break Ok(order);
                }
                if Instant::now() > deadline {
                    break Err(Error::backend(
                        true,
                        format!("order {id} still {} after {timeout:?}", order.status),
                    ));
                }
            }
            Ok(None) => break Err(Error::not_found(EntityKind::Order, id)),
            Err(e) if e.is_retryable() && Instant::now() < deadline => {}
            Err(e) => break Err(e),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
    };
    settled.forget(id);
    result
}
