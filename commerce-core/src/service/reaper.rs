//! The reservation reaper: releases expired reservations and cancels their orders.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::error::Result;
use crate::inventory::ReservationState;
use crate::order::OrderStatus;
use crate::service::Stores;
use crate::service::pipeline::OrderPipeline;
use crate::service::task::BackgroundTask;
use crate::store::{InventoryStore, OrderQuery, OrderStore, PromotionStore};

/// What a reaper pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Reservations this pass released.
    pub released: usize,
    /// Promotion redemptions this pass released (see
    /// [`ReservationReaper::with_promotions`]).
    pub redemptions_released: usize,
    /// Orders this pass cancelled.
    pub cancelled: usize,
}

/// Releases expired reservations and cancels the orders they held stock for.
///
/// Safe on several nodes at once: [`InventoryStore::release_expired`] hands each
/// expired reservation to exactly one caller, and the order is cancelled through
/// [`OrderPipeline::expire`] — a compare-and-set plus idempotent cleanup (the payment
/// key is voided, so a charge still in flight is refunded or refused).
///
/// A reservation that a running payment step extended is not expired, so it is not
/// reaped (see [`PipelineConfig::payment_lease`](crate::service::PipelineConfig)).
#[derive(Debug, Clone)]
pub struct ReservationReaper {
    inventory: Arc<dyn InventoryStore>,
    orders: Arc<dyn OrderStore>,
    pipeline: Arc<OrderPipeline>,
    clock: Arc<dyn Clock>,
    batch: u32,
    promotions: Option<Arc<dyn PromotionStore>>,
}

impl ReservationReaper {
    /// A reaper releasing up to 500 reservations a pass.
    pub fn new(stores: &Stores, pipeline: Arc<OrderPipeline>) -> Self {
        ReservationReaper {
            inventory: stores.inventory.clone(),
            orders: stores.orders.clone(),
            pipeline,
            clock: stores.clock.clone(),
            batch: 500,
            promotions: None,
        }
    }

    /// The same reaper also releasing expired promotion redemptions of `store`
    /// ([`PromotionStore::release_expired`]: each exactly once, even with several
    /// reapers) and cancelling their orders, as for stock.
    pub fn with_promotions(mut self, store: Arc<dyn PromotionStore>) -> Self {
        self.promotions = Some(store);
        self
    }

    /// The same reaper releasing up to `batch` reservations a pass (at least 1).
    pub fn with_batch(mut self, batch: u32) -> Self {
        self.batch = batch.clamp(1, crate::store::MAX_PAGE_SIZE);
        self
    }

    /// Releases the reservations expired now (one batch) and cancels their orders.
    pub async fn run_once(&self) -> Result<ReapReport> {
        let released = self
            .inventory
            .release_expired(self.clock.now(), self.batch)
            .await?;
        let mut report = ReapReport {
            released: released.len(),
            ..ReapReport::default()
        };
        let mut orders: Vec<_> = released.into_iter().map(|r| r.order_id).collect();
        if let Some(store) = &self.promotions {
            let redemptions = store.release_expired(self.clock.now(), self.batch).await?;
            report.redemptions_released = redemptions.len();
            orders.extend(redemptions.into_iter().map(|r| r.order_id));
        }
        for order_id in orders {
            tracing::info!(%order_id, "reservation expired and released");
            match self.pipeline.expire(&order_id).await {
                Ok(Some(_)) => report.cancelled += 1,
                Ok(None) => {}
                // The next sweep (or the order's own job) finishes it.
                Err(e) => tracing::warn!(%order_id, error = %e, "could not cancel"),
            }
        }
        Ok(report)
    }

    /// Finds orders still waiting for stock or payment whose reservation is already
    /// released (a reaper that died between releasing and cancelling, for example) and
    /// cancels them. Scans those two statuses, `page` orders at a time. Returns how
    /// many it cancelled.
    pub async fn sweep(&self, page: u32) -> Result<usize> {
        let mut cancelled = 0;
        for status in [OrderStatus::Created, OrderStatus::PaymentPending] {
            let mut query = OrderQuery {
                status: Some(status),
                limit: page,
                ..OrderQuery::default()
            };
            loop {
                let found = self.orders.list_orders(&query).await?;
                for order in &found.items {
                    let released = self
                        .inventory
                        .reservation(&order.id)
                        .await?
                        .is_some_and(|r| r.state == ReservationState::Released);
                    if released && self.pipeline.expire(&order.id).await?.is_some() {
                        cancelled += 1;
                    }
                }
                match found.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
        }
        Ok(cancelled)
    }

    /// Runs a pass every `every` in the background, and a [`sweep`](Self::sweep)
    /// every tenth pass. Returns the totals when shut down.
    pub fn spawn(&self, every: Duration) -> BackgroundTask<ReapReport> {
        let this = self.clone();
        BackgroundTask::spawn(move |mut stop| async move {
            let mut total = ReapReport::default();
            let mut pass = 0u64;
            while !stop.is_stopping() {
                match this.run_once().await {
                    Ok(r) => {
                        total.released += r.released;
                        total.redemptions_released += r.redemptions_released;
                        total.cancelled += r.cancelled;
                    }
                    Err(e) => tracing::warn!(error = %e, "reaper pass failed"),
                }
                pass += 1;
                if pass % 10 == 0 {
                    match this.sweep(500).await {
                        Ok(n) => total.cancelled += n,
                        Err(e) => tracing::warn!(error = %e, "reaper sweep failed"),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.stopped() => {}
                }
            }
            total
        })
    }
}
