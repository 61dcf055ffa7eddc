//! The shop: the services over the stores, and the background loops that process
//! orders (outbox relay, queue workers, reservation reaper).

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_core::cart::CartLimits;
use commerce_core::id::OrderId;
use commerce_core::order::{Order, OrderStatus};
use commerce_core::service::*;
use commerce_core::store::{OrderStore, SearchIndex};
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
    /// Checkout.
    pub checkout: CheckoutService,
    /// The (in-memory) payment gateway.
    pub payments: Arc<MemoryPaymentGateway>,
    /// The (in-memory) notifier.
    pub notifier: Arc<MemoryNotifier>,
    relay: BackgroundTask<Result<u64>>,
    workers: BackgroundTask<Result<WorkStats>>,
    reaper: BackgroundTask<ReapReport>,
}

/// What the background loops did.
pub struct Totals {
    /// Orders relayed from the event log to the queue.
    pub relayed: u64,
    /// Worker statistics.
    pub work: WorkStats,
    /// Reaper statistics.
    pub reaped: ReapReport,
}

impl Shop {
    /// The services over `stores`, with the background loops started.
    pub fn start(stores: Stores, search: Arc<dyn SearchIndex>, workers: usize) -> Result<Shop> {
        let payments = Arc::new(MemoryPaymentGateway::new());
        payments.set_latency(Duration::from_millis(1));
        let notifier = Arc::new(MemoryNotifier::new());
        let pipeline = Arc::new(OrderPipeline::new(
            &stores,
            payments.clone(),
            Arc::new(MemoryFulfillment::new()),
            notifier.clone(),
            PipelineConfig::default(),
        ));
        let checkout = CheckoutService::new(
            &stores,
            CheckoutConfig {
                flat_shipping: Decimal::new(599, 2),
                free_shipping_from: Some(Decimal::new(35, 0)),
                tax_rate: Decimal::new(825, 4),
                ..CheckoutConfig::default()
            },
        );
        let relay = OrderRelay::new(stores.events.clone(), stores.queue.clone())?
            .spawn(Duration::from_millis(100));
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
        let reaper =
            ReservationReaper::new(&stores, pipeline.clone()).spawn(Duration::from_secs(1));
        Ok(Shop {
            carts: CartService::new(&stores, CartLimits::default()),
            checkout,
            payments,
            notifier,
            search,
            stores,
            relay,
            workers,
            reaper,
        })
    }

    /// Waits until the order rests (see [`wait_settled`]).
    pub async fn wait_settled(&self, id: &OrderId, timeout: Duration) -> Result<Order> {
        wait_settled(self.stores.orders.as_ref(), id, timeout).await
    }

    /// Stops the background loops, waiting for the work in progress.
    pub async fn stop(self) -> Result<Totals> {
        let relayed = self.relay.shutdown().await??;
        let work = self.workers.shutdown().await??;
        let reaped = self.reaper.shutdown().await?;
        Ok(Totals {
            relayed,
            work,
            reaped,
        })
    }
}

/// Waits until the order rests (PREPARING or later, or CANCELLED / REFUNDED).
pub async fn wait_settled(
    orders: &dyn OrderStore,
    id: &OrderId,
    timeout: Duration,
) -> Result<Order> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        let order = orders
            .get_order(id)
            .await?
            .ok_or_else(|| Error::not_found(EntityKind::Order, id))?;
        if !matches!(
            order.status,
            OrderStatus::Created | OrderStatus::PaymentPending | OrderStatus::PaymentConfirmed
        ) {
            return Ok(order);
        }
        if Instant::now() > deadline {
            return Err(Error::backend(
                true,
                format!("order {id} still {} after {timeout:?}", order.status),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
