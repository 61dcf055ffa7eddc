//! The event consumer that keeps the co-purchase counts (and bought histories) up to
//! date as orders are paid: no nightly batch.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tracing::{debug, instrument, warn};

use crate::activity::{Basket, Interaction, InteractionKind, RecordOutcome};
use crate::error::Result;
use crate::event::DomainEvent;
use crate::id::{ConsumerName, EventId, OrderId};
use crate::order::{Order, OrderStatus};
use crate::store::{CatalogStore, CoPurchaseStore, EventLog, HistoryStore, OrderStore};

/// What one [`CoPurchaseUpdater::run_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateReport {
    /// Events handled (of any kind).
    pub events: u64,
    /// Orders counted for the first time.
    pub recorded: u64,
    /// Orders that had been counted before (a redelivery).
    pub duplicates: u64,
    /// Confirmed orders the order store no longer has (skipped).
    pub missing: u64,
    /// The checkpoint afterwards.
    pub checkpoint: EventId,
}

impl UpdateReport {
    fn add(&mut self, other: &UpdateReport) {
        self.events += other.events;
        self.recorded += other.recorded;
        self.duplicates += other.duplicates;
        self.missing += other.missing;
        self.checkpoint = self.checkpoint.max(other.checkpoint);
    }
}

/// Records every order that reaches `PAYMENT_CONFIRMED` in a [`CoPurchaseStore`] (and,
/// optionally, as `Bought` interactions in a [`HistoryStore`]).
///
/// It reads the [`EventLog`] after its consumer checkpoint, looks each confirmed
/// order up in the [`OrderStore`], records its [`Basket`], and commits the checkpoint
/// past what it handled. Delivery is at least once: after a crash between recording
/// and committing the same orders come again, and the store's per-order idempotency
/// makes the second recording a no-op. Several updaters may share a consumer name
/// (for availability); they may record the same order twice, which is equally
/// harmless.
///
/// Refunds and cancellations after payment do not take counts back: a bought pair is
/// evidence of interest even if one item went back.
///
/// ```
/// use std::sync::Arc;
/// use commerce_core::id::*;
/// use commerce_core::memory::MemoryEngine;
/// use commerce_core::money::Money;
/// use commerce_core::order::{NewOrder, NewOrderLine, OrderStatus::*, Transition};
/// use commerce_core::recommend::{CoPurchaseUpdater, MemoryCoPurchase};
/// use commerce_core::store::{CoPurchaseStore, OrderStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let engine = MemoryEngine::new();
/// let counts = Arc::new(MemoryCoPurchase::new());
/// let updater = CoPurchaseUpdater::new(engine.events.clone(), engine.orders.clone(), counts.clone());
///
/// let line = |p: &str| NewOrderLine {
///     product_id: ProductId::new(p).unwrap(), sku: Sku::new(format!("{p}-1")).unwrap(),
///     title: p.into(), quantity: 1, unit_price: "10.00 USD".parse().unwrap(), tax: None,
/// };
/// let order = engine.orders.create_order(NewOrder {
///     id: None, customer_id: CustomerId::new("c1")?, idempotency_key: IdempotencyKey::new("k1")?,
///     lines: vec![line("phone"), line("case")],
///     shipping: "0.00 USD".parse()?, tax: "0.00 USD".parse()?, checkout: Default::default(),
///     promotions: Vec::new(),
/// }).await?.into_order();
/// engine.orders.transition(&order.id, &Transition::new(Created, PaymentPending, "checkout")).await?;
/// engine.orders.transition(&order.id, &Transition::new(PaymentPending, PaymentConfirmed, "paid")).await?;
///
/// let report = updater.catch_up().await?;
/// assert_eq!(report.recorded, 1);
/// let also = counts.also_bought(&ProductId::new("phone")?, 5).await?;
/// assert_eq!(also[0].product_id.as_str(), "case");
/// # Ok::<(), commerce_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct CoPurchaseUpdater {
    events: Arc<dyn EventLog>,
    orders: Arc<dyn OrderStore>,
    store: Arc<dyn CoPurchaseStore>,
    history: Option<(Arc<dyn HistoryStore>, Arc<dyn CatalogStore>)>,
    consumer: ConsumerName,
    batch: u32,
    concurrency: usize,
}

impl CoPurchaseUpdater {
    /// The default consumer name (its checkpoint key).
    pub const DEFAULT_CONSUMER: &'static str = "recommend-co-purchase";

    /// An updater reading `events`, looking orders up in `orders`, counting in `store`.
    pub fn new(
        events: Arc<dyn EventLog>,
        orders: Arc<dyn OrderStore>,
        store: Arc<dyn CoPurchaseStore>,
    ) -> Self {
        CoPurchaseUpdater {
            events,
            orders,
            store,
            history: None,
            consumer: ConsumerName::unchecked(Self::DEFAULT_CONSUMER),
            batch: 256,
            concurrency: 8,
        }
    }

    /// Also records each bought product in the buyer's history (the product's brand
    /// and category are read from `catalog`; products no longer there are skipped).
    pub fn with_history(
        mut self,
        history: Arc<dyn HistoryStore>,
        catalog: Arc<dyn CatalogStore>,
    ) -> Self {
        self.history = Some((history, catalog));
        self
    }

    /// Uses another consumer name.
    pub fn with_consumer(mut self, consumer: ConsumerName) -> Self {
        self.consumer = consumer;
        self
    }

    /// Events read per batch (1 to 1000; default 256).
    pub fn with_batch_size(mut self, batch: u32) -> Self {
        self.batch = batch.clamp(1, crate::store::MAX_PAGE_SIZE);
        self
    }

    /// Confirmed orders of a batch read (and their buyers' histories written) at once,
    /// default 8: at 10,000 orders/s one round trip at a time would fall behind.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The consumer name.
    pub fn consumer(&self) -> &ConsumerName {
        &self.consumer
    }

    /// Handles one batch after the checkpoint and commits it.
    ///
    /// The batch's confirmed orders are read up to
    /// [`with_concurrency`](Self::with_concurrency) at a time and recorded with one
    /// [`CoPurchaseStore::record_all`] (the counts commute, so order does not matter).
    /// On an error the checkpoint is committed up to the last event before the first
    /// order that failed, and the error is returned; the next call starts there (orders
    /// after it that were recorded meanwhile come again and are duplicates).
    #[instrument(level = "debug", skip(self), fields(consumer = %self.consumer), err(level = "warn"))]
    pub async fn run_once(&self) -> Result<UpdateReport> {
        let after = self.events.checkpoint(&self.consumer).await?;
        let batch = self.events.read(after, self.batch).await?;
        let mut report = UpdateReport {
            checkpoint: after,
            ..UpdateReport::default()
        };
        let confirmed: Vec<(usize, OrderId)> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, envelope)| match &envelope.event {
                DomainEvent::OrderStatusChanged {
                    order_id,
                    to: OrderStatus::PaymentConfirmed,
                    ..
                } => Some((i, order_id.clone())),
                _ => None,
            })
            .collect();

        // Everything before `cut` is handled.
        let mut cut = batch.len();
        let mut failure = None;
        let fetched: Vec<(usize, OrderId, Result<Option<Order>>)> =
            futures::stream::iter(confirmed)
                .map(|(i, id)| {
                    let orders = self.orders.clone();
                    async move {
                        let order = orders.get_order(&id).await;
                        (i, id, order)
                    }
                })
                .buffered(self.concurrency)
                .collect()
                .await;
        let mut found: Vec<(usize, Order)> = Vec::new();
        for (i, id, order) in fetched {
            match order {
                Ok(Some(order)) => found.push((i, order)),
                Ok(None) => {
                    warn!(order = %id, "confirmed order not found; skipped");
                    report.missing += 1;
                }
                Err(e) => {
                    cut = i;
                    failure = Some(e);
                    break;
                }
            }
        }

        if !found.is_empty() {
            let baskets: Vec<Basket> = found.iter().map(|(_, o)| Basket::from_order(o)).collect();
            for outcome in self.store.record_all(&baskets).await? {
                match outcome {
                    RecordOutcome::Recorded => report.recorded += 1,
                    RecordOutcome::Duplicate => report.duplicates += 1,
                }
            }
            debug!(
                orders = baskets.len(),
                duplicates = report.duplicates,
                "recorded"
            );
        }

        if let Some((history, catalog)) = &self.history {
            let written: Vec<(usize, Result<()>)> = futures::stream::iter(found)
                .map(|(i, order)| {
                    let (history, catalog) = (history.clone(), catalog.clone());
                    async move { (i, record_bought(&*history, &*catalog, &order).await) }
                })
                .buffered(self.concurrency)
                .collect()
                .await;
            if let Some((i, Err(e))) = written.into_iter().find(|(_, r)| r.is_err()) {
                if i < cut {
                    cut = i;
                    failure = Some(e);
                }
            }
        }

        report.events = cut as u64;
        if let Some(last) = cut.checked_sub(1).and_then(|i| batch.get(i)) {
            self.events.commit(&self.consumer, last.id).await?;
            report.checkpoint = last.id;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Runs batches until the log has nothing new for this consumer.
    pub async fn catch_up(&self) -> Result<UpdateReport> {
        let mut total = UpdateReport::default();
        loop {
            let r = self.run_once().await?;
            total.add(&r);
            if r.events == 0 {
                return Ok(total);
            }
        }
    }

    /// Follows the log until `shutdown` completes: handles batches as they come and
    /// waits for new events (at most `idle_wait` at a time) when caught up. Errors are
    /// logged and retried after `idle_wait`.
    pub async fn run(&self, idle_wait: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let step = async {
                match self.run_once().await {
                    Ok(r) if r.events > 0 => {}
                    Ok(r) => {
                        let _ = self.events.wait_for_events(r.checkpoint, idle_wait).await;
                    }
                    Err(e) => {
                        warn!(consumer = %self.consumer, error = %e, "co-purchase update failed; retrying");
                        tokio::time::sleep(idle_wait).await;
                    }
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = step => {}
            }
        }
    }
}

/// Records each product of `order` as bought by its customer (products no longer in
/// the catalog are skipped). Idempotent: the interaction's time is the order's creation.
async fn record_bought(
    history: &dyn HistoryStore,
    catalog: &dyn CatalogStore,
    order: &Order,
) -> Result<()> {
    for product_id in Basket::from_order(order).products() {
        if let Some(product) = catalog.get_product(product_id).await? {
            let interaction = Interaction::new(&product, InteractionKind::Bought, order.created_at);
            history.record(&order.customer_id, &interaction).await?;
        }
    }
    Ok(())
}
