//! The background loops behind checkout: the outbox relay (event log -> queue), the
//! queue workers (payment, fulfilment, notification), the reservation reaper, and the
//! co-purchase updater that feeds recommendations. `stop` drains them.

use std::sync::Arc;
use std::time::Duration;

use commerce_core::Result;
use commerce_core::recommend::CoPurchaseUpdater;
use commerce_core::service::{
    BackgroundTask, MemoryFulfillment, MemoryNotifier, MemoryPaymentGateway, OrderPipeline,
    OrderRelay, OrderWorkers, PipelineConfig, ReapReport, ReservationReaper, Stores, WorkStats,
    WorkerConfig,
};
use commerce_core::store::{CatalogStore, CoPurchaseStore, HistoryStore};
use tokio::task::JoinHandle;

/// The running loops.
pub struct Pipeline {
    relay: Option<BackgroundTask<Result<u64>>>,
    workers: BackgroundTask<Result<WorkStats>>,
    reaper: BackgroundTask<ReapReport>,
    co_purchase: JoinHandle<()>,
    /// The (in-memory) payment gateway.
    pub payments: Arc<MemoryPaymentGateway>,
}

/// What the loops did, reported after they drained.
#[derive(Debug)]
pub struct Drained {
    /// Orders relayed from the event log to the queue (0 when no relay ran: the order
    /// store wrote each order's job with the order).
    pub relayed: u64,
    /// Worker statistics.
    pub work: WorkStats,
    /// Reservations the reaper released.
    pub reaped: ReapReport,
}

impl Pipeline {
    /// Starts the loops over `stores` with `workers` concurrent jobs (the outbox relay
    /// only when `relay`: not when the order store writes the jobs).
    pub fn start(
        stores: &Stores,
        workers: usize,
        relay: bool,
        co_purchase: Arc<dyn CoPurchaseStore>,
        history: Arc<dyn HistoryStore>,
        catalog: Arc<dyn CatalogStore>,
    ) -> Result<Pipeline> {
        let payments = Arc::new(MemoryPaymentGateway::new());
        let pipeline = Arc::new(OrderPipeline::new(
            stores,
            payments.clone(),
            Arc::new(MemoryFulfillment::new()),
            Arc::new(MemoryNotifier::new()),
            PipelineConfig::default(),
        ));
        let relay = match relay {
            true => Some(
                OrderRelay::new(stores.events.clone(), stores.queue.clone())?
                    .spawn(Duration::from_millis(50)),
            ),
            false => None,
        };
        let workers = OrderWorkers::new(
            stores.queue.clone(),
            pipeline.clone(),
            WorkerConfig {
                concurrency: workers,
                idle_poll: Duration::from_millis(5),
                ..WorkerConfig::default()
            },
        )
        .spawn();
        let reaper = ReservationReaper::new(stores, pipeline).spawn(Duration::from_secs(1));
        let updater =
            CoPurchaseUpdater::new(stores.events.clone(), stores.orders.clone(), co_purchase)
                .with_history(history, catalog);
        // Idempotent per event (consumer checkpoint), so aborting it at shutdown loses
        // nothing: the next start continues from the checkpoint.
        let co_purchase = tokio::spawn(async move {
            loop {
                if let Err(e) = updater.run_once().await {
                    tracing::warn!(error = %e, "co-purchase update failed; retrying");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Ok(Pipeline {
            relay,
            workers,
            reaper,
            co_purchase,
            payments,
        })
    }

    /// Stops the loops, letting the work in progress finish.
    pub async fn stop(self) -> Result<Drained> {
        self.co_purchase.abort();
        let relayed = match self.relay {
            Some(relay) => relay.shutdown().await??,
            None => 0,
        };
        let work = self.workers.shutdown().await??;
        let reaped = self.reaper.shutdown().await?;
        Ok(Drained {
            relayed,
            work,
            reaped,
        })
    }
}
