//! The order pipeline: an order's persisted [`OrderStatus`] decides its next step.
//!
//! | status            | step (each idempotent)                                                      | next                                   |
//! |-------------------|-----------------------------------------------------------------------------|----------------------------------------|
//! | CREATED           | validate; hold the promotions; reserve stock (both idempotent per order)    | PAYMENT_PENDING, or CANCELLED           |
//! | PAYMENT_PENDING   | extend the leases; charge (one gateway key per order); confirm the promotions, then the stock | PAYMENT_CONFIRMED, or CANCELLED |
//! | PAYMENT_CONFIRMED | open the refund ledger if any (idempotent); submit to fulfilment (idempotent per order) | PREPARING                |
//! | PREPARING         | notify "confirmed" (deduplicated per order and kind)                        | rests (SHIPPED / DELIVERED come from fulfilment) |
//! | CANCELLED         | release or return the stock, release the promotions, void or refund the payment, notify | rests                      |
//! | PARTIALLY_REFUNDED| (returns, see [`ReturnsService`](crate::service::ReturnsService))           | rests                                  |
//! | REFUNDED          | refund the payment, return the stock by policy, cancel fulfilment, notify (from PARTIALLY_REFUNDED: notify only; the returns refunded and restocked) | rests |
//!
//! Every status change is a compare-and-set ([`OrderStore::transition`]) written with
//! its reason; a step's side effect happens *before* the status that records it, and is
//! repeated harmlessly if the process dies in between. So an order can be resumed from
//! its stored state at any point, by any node, any number of times, and two workers
//! racing on one order converge (the loser of a compare-and-set reloads and goes on
//! from the winner's status).
//!
//! **Compensation** converges the same way: whoever moves an order to CANCELLED or
//! REFUNDED, the CANCELLED/REFUNDED step undoes what may have been done (all undo
//! operations are idempotent), and a racing step that finds the order moved away runs
//! the same cleanup.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::clock::Clock;
use crate::error::{EntityKind, Error, Result};
use crate::id::{OrderId, Sku};
use crate::inventory::{DEFAULT_RESERVATION_TTL, Reservation, ReservationState};
use crate::order::{Order, OrderStatus, Transition};
use crate::promotion::{RedemptionLine, RedemptionRequest, RedemptionState};
use crate::refund::PaidOrder;
use crate::service::Stores;
use crate::service::fulfillment::Fulfillment;
use crate::service::notify::{Notification, Notifier};
use crate::service::payment::{
    ChargeOutcome, ChargeRequest, PaymentGateway, RefundOutcome, payment_key,
};
use crate::service::retry::{retry, with_timeout};
use crate::store::steps::promotion_unavailable_reason;
use crate::store::{
    CatalogStore, InventoryStore, OrderSteps, OrderStore, PromotionStore, RefundLedger,
    RetryPolicy, StepOutcome,
};

/// Pipeline settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineConfig {
    /// How long stock is held for an order before payment starts.
    pub reservation_ttl: Duration,
    /// The lease policy while paying: with `Some(lease)`, when less than `lease` is
    /// left on the reservation just before charging, it is extended to now + `lease`
    /// (so a slow gateway cannot let the stock lapse mid-payment; a reservation made
    /// moments ago with a longer `reservation_ttl` needs no extra write); `None` leaves
    /// the reservation's expiry as it is.
    pub payment_lease: Option<Duration>,
    /// The longest a charge or refund call may take before it counts as a (retryable)
    /// failure.
    pub payment_timeout: Duration,
    /// The longest a fulfilment or notification call may take.
    pub call_timeout: Duration,
    /// Retries of one step within one run (only retryable errors are retried).
    pub step_retry: RetryPolicy,
}

impl Default for PipelineConfig {
    /// 15-minute reservations, extended to 10 minutes from the start of the charge
    /// when less is left, 30 s timeouts, 3 tries per step from 50 ms up to 2 s apart.
    fn default() -> Self {
        PipelineConfig {
            reservation_ttl: DEFAULT_RESERVATION_TTL,
            payment_lease: Some(Duration::from_secs(10 * 60)),
            payment_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(30),
            step_retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_secs(2),
            },
        }
    }
}

/// The most status changes one `process` call makes before it reports that the order
/// does not settle (a loop guard; a normal order needs four).
const MAX_ROUNDS: usize = 12;

#[allow(clippy::large_enum_variant)] // short-lived, one per step
enum Next {
    /// The status changed (or may have): take the next step from this order as the
    /// step stored it, or reload it when `None`.
    Continue(Option<Order>),
    /// Nothing more to do until something outside the pipeline happens.
    Rest,
}

/// What one `process` call learned along the way (saves re-reading it).
#[derive(Default)]
struct Run {
    /// The reservation as the reserve step left it.
    reservation: Option<Reservation>,
    /// The cancellation this run wrote: the order's version after it, the status it
    /// left and the reason (so the cleanup need not read the history back).
    cancelled: Option<(u64, OrderStatus, String)>,
    /// When the redemption this run held expires (it needs no extension before then).
    promotions_until: Option<crate::clock::Timestamp>,
}

/// Drives orders through their statuses; see the [module docs](self).
///
/// Cancellation and refunds ([`OrderPipeline::cancel`], [`OrderPipeline::refund`])
/// return stock by this policy:
/// * before payment (CREATED, PAYMENT_PENDING): the reservation is released and any
///   capture under the order's payment key is refunded (or the key voided);
/// * paid but not shipped (PAYMENT_CONFIRMED, PREPARING): the sold units go back to
///   `available` (they never left the warehouse), fulfilment is cancelled;
/// * shipped or delivered: the sold units are written off (`sold` to `adjusted`); goods
///   that come back resellable are put back with [`InventoryStore::restock`] after
///   inspection (or returned line by line through the
///   [`ReturnsService`](crate::service::ReturnsService)).
#[derive(Debug, Clone)]
pub struct OrderPipeline {
    orders: Arc<dyn OrderStore>,
    inventory: Arc<dyn InventoryStore>,
    catalog: Arc<dyn CatalogStore>,
    steps: Arc<dyn OrderSteps>,
    clock: Arc<dyn Clock>,
    payments: Arc<dyn PaymentGateway>,
    fulfillment: Arc<dyn Fulfillment>,
    notifier: Arc<dyn Notifier>,
    config: PipelineConfig,
    refunds: Option<Arc<dyn RefundLedger>>,
    promotions: Option<Arc<dyn PromotionStore>>,
}

impl OrderPipeline {
    /// A pipeline over `stores` and the three outside services.
    pub fn new(
        stores: &Stores,
        payments: Arc<dyn PaymentGateway>,
        fulfillment: Arc<dyn Fulfillment>,
        notifier: Arc<dyn Notifier>,
        config: PipelineConfig,
    ) -> Self {
        OrderPipeline {
            orders: stores.orders.clone(),
            inventory: stores.inventory.clone(),
            catalog: stores.catalog.clone(),
            steps: stores.steps.clone(),
            clock: stores.clock.clone(),
            payments,
            fulfillment,
            notifier,
            config,
            refunds: None,
            promotions: None,
        }
    }

    /// Holds the promotions an order records ([`Order::promotions`]) as a redemption in
    /// `store`, following its stock reservation:
    /// * CREATED: reserved for [`PipelineConfig::reservation_ttl`] just before the stock
    ///   is reserved; a limit that refuses it cancels the order with
    ///   [`promotion_unavailable_reason`] (no stock is reserved then);
    /// * PAYMENT_PENDING: extended by [`PipelineConfig::payment_lease`] with the stock
    ///   (not when the hold this run just made lasts longer than the lease already),
    ///   and confirmed once the charge is approved, just before the stock is confirmed
    ///   (a redemption found released cancels the order and refunds the charge);
    /// * CANCELLED: released (exactly once; the store makes a repeat harmless).
    ///
    /// A confirmed redemption stays confirmed when the order is refunded, or when its
    /// stock turned out to have lapsed during payment: it keeps counting against the
    /// limits, so they are never exceeded (such a use is lost, not doubled). Pair with
    /// [`ReservationReaper::with_promotions`](crate::service::ReservationReaper::with_promotions)
    /// on the same store, and build checkout
    /// [`with_promotions`](crate::service::CheckoutService::with_promotions) on it.
    pub fn with_promotions(mut self, store: Arc<dyn PromotionStore>) -> Self {
        self.promotions = Some(store);
        self
    }

    /// The promotion store, when the order records promotions and the pipeline holds
    /// them.
    fn promotions_of(&self, order: &Order) -> Option<&dyn PromotionStore> {
        self.promotions
            .as_deref()
            .filter(|_| !order.promotions.is_empty())
    }

    /// Opens every paid order in `ledger` ([`RefundLedger::open`] with
    /// [`PaidOrder::from_order`]) in the PAYMENT_CONFIRMED step, before fulfilment:
    /// idempotent, so a resumed or repeated step opens it once. Partial refunds
    /// ([`ReturnsService`](crate::service::ReturnsService)) are then guarded by it.
    pub fn with_refunds(mut self, ledger: Arc<dyn RefundLedger>) -> Self {
        self.refunds = Some(ledger);
        self
    }

    /// The settings.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Takes the order's steps from its stored status until it rests (PREPARING and
    /// notified, SHIPPED, DELIVERED, or CANCELLED / REFUNDED and cleaned up), and
    /// returns it as stored then.
    ///
    /// An error leaves the order where it got to: a later call resumes it. Retryable
    /// errors (a gateway that keeps failing or timing out) are worth retrying later;
    /// the queue workers do exactly that.
    #[instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn process(&self, order_id: &OrderId) -> Result<Order> {
        let mut run = Run::default();
        let mut next = None;
        for _ in 0..MAX_ROUNDS {
            let order = match next.take() {
                Some(order) => order,
                None => self.load(order_id).await?,
            };
            match self.advance(&order, &mut run).await? {
                Next::Continue(stored) => next = stored,
                Next::Rest => return Ok(order),
            }
        }
        Err(Error::backend(
            true,
            format!("order {order_id} did not settle after {MAX_ROUNDS} steps"),
        ))
    }

    /// Cancels an order that has not been paid, then cleans up (releases the stock,
    /// voids the payment key, tells the customer). Idempotent on a cancelled order;
    /// a paid order is `InvalidTransition` (refund it instead).
    #[instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn cancel(&self, order_id: &OrderId, reason: &str) -> Result<Order> {
        self.settle_into(
            order_id,
            OrderStatus::Cancelled,
            &format!("cancelled: {reason}"),
        )
        .await
    }

    /// Refunds a paid order (PAYMENT_CONFIRMED, PREPARING, SHIPPED or DELIVERED), then
    /// refunds the payment and returns the stock by the policy in the
    /// [type docs](Self). Idempotent on a refunded order; other statuses are
    /// `InvalidTransition`; a PARTIALLY_REFUNDED order is `Validation` on `status`
    /// (refund the rest through the returns, whose ledger knows what is left).
    #[instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn refund(&self, order_id: &OrderId, reason: &str) -> Result<Order> {
        if self.load(order_id).await?.status == OrderStatus::PartiallyRefunded {
            return Err(Error::validation(
                "status",
                "the order was partly refunded: refund the rest through the returns",
            ));
        }
        self.settle_into(
            order_id,
            OrderStatus::Refunded,
            &format!("refunded: {reason}"),
        )
        .await
    }

    /// Cancels the order whose reservation expired (called by the reaper), if it is
    /// still waiting for stock or payment; otherwise leaves it alone.
    pub async fn expire(&self, order_id: &OrderId) -> Result<Option<Order>> {
        let Some(order) = self.orders.get_order(order_id).await? else {
            return Ok(None);
        };
        if !matches!(
            order.status,
            OrderStatus::Created | OrderStatus::PaymentPending
        ) {
            return Ok(None);
        }
        match self
            .settle_into(
                order_id,
                OrderStatus::Cancelled,
                "reservation expired before payment completed",
            )
            .await
        {
            Ok(order) => Ok(Some(order)),
            // Paid meanwhile (an expired but unreaped reservation may still be
            // confirmed): nothing to cancel.
            Err(Error::InvalidTransition { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records that fulfilment shipped the order (PREPARING to SHIPPED).
    pub async fn mark_shipped(&self, order_id: &OrderId, tracking: &str) -> Result<Order> {
        self.orders
            .transition(
                order_id,
                &Transition::new(
                    OrderStatus::Preparing,
                    OrderStatus::Shipped,
                    format!("shipped; tracking {tracking}"),
                ),
            )
            .await
    }

    /// Records that the order arrived (SHIPPED to DELIVERED).
    pub async fn mark_delivered(&self, order_id: &OrderId) -> Result<Order> {
        self.orders
            .transition(
                order_id,
                &Transition::new(OrderStatus::Shipped, OrderStatus::Delivered, "delivered"),
            )
            .await
    }

    /// Moves the order to `to` (CANCELLED or REFUNDED) from whatever legal status it is
    /// in, retrying lost compare-and-sets, then runs the cleanup.
    async fn settle_into(
        &self,
        order_id: &OrderId,
        to: OrderStatus,
        reason: &str,
    ) -> Result<Order> {
        for _ in 0..MAX_ROUNDS {
            let order = self.load(order_id).await?;
            if order.status != to {
                order.status.check_transition(to)?;
                let change = Transition::new(order.status, to, truncate(reason));
                match self.orders.transition(order_id, &change).await {
                    Ok(_) => {}
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(e),
                }
            }
            return self.process(order_id).await;
        }
        Err(Error::conflict(
            EntityKind::Order,
            format!("order {order_id} kept changing; try again"),
        ))
    }

    async fn load(&self, id: &OrderId) -> Result<Order> {
        retry(&self.config.step_retry, "load order", || {
            self.orders.get_order(id)
        })
        .await?
        .ok_or_else(|| Error::not_found(EntityKind::Order, id))
    }

    /// One step for the order's current status.
    async fn advance(&self, order: &Order, run: &mut Run) -> Result<Next> {
        match order.status {
            OrderStatus::Created => self.reserve(order, run).await,
            OrderStatus::PaymentPending => self.pay(order, run).await,
            OrderStatus::PaymentConfirmed => {
                self.open_ledger(order).await?;
                self.fulfil(order).await
            }
            OrderStatus::Preparing => {
                self.notify(order, Notification::OrderConfirmed).await?;
                Ok(Next::Rest)
            }
            OrderStatus::Shipped | OrderStatus::Delivered | OrderStatus::PartiallyRefunded => {
                Ok(Next::Rest)
            }
            OrderStatus::Cancelled => {
                self.clean_up_cancelled(order, run).await?;
                Ok(Next::Rest)
            }
            OrderStatus::Refunded => {
                self.clean_up_refunded(order).await?;
                Ok(Next::Rest)
            }
        }
    }

    /// Writes `order.status -> to`; a lost compare-and-set is fine (the caller reloads).
    async fn move_to(
        &self,
        order: &Order,
        to: OrderStatus,
        reason: String,
        payment_ref: Option<String>,
    ) -> Result<Next> {
        let change = Transition {
            from: order.status,
            to,
            reason: truncate(&reason),
            payment_ref,
        };
        match retry(&self.config.step_retry, "transition", || {
            self.orders.transition(&order.id, &change)
        })
        .await
        {
            Ok(stored) => Ok(Next::Continue(Some(stored))),
            // Someone else moved it, or an earlier try of ours committed and its answer
            // was lost: either way, reload.
            Err(e) if e.is_conflict() => Ok(Next::Continue(None)),
            Err(e) => Err(e),
        }
    }

    /// The next step after a fused step: go on from the order it stored; a lost
    /// compare-and-set on the order reloads it.
    fn stepped(&self, result: Result<StepOutcome>, run: &mut Run) -> Result<Next> {
        match result {
            Ok(out) => {
                if out.is_cancelled() {
                    tracing::info!(order_id = %out.order.id, "order cancelled by its step");
                }
                run.reservation = out.reservation;
                Ok(Next::Continue(Some(out.order)))
            }
            Err(Error::Conflict {
                kind: EntityKind::Order,
                ..
            }) => Ok(Next::Continue(None)),
            Err(e) => Err(e),
        }
    }

    async fn cancel_with(&self, order: &Order, reason: String, run: &mut Run) -> Result<Next> {
        tracing::info!(order_id = %order.id, %reason, "cancelling order");
        let reason = truncate(&reason);
        let next = self
            .move_to(order, OrderStatus::Cancelled, reason.clone(), None)
            .await?;
        if let Next::Continue(Some(stored)) = &next {
            run.cancelled = Some((stored.version, order.status, reason));
        }
        Ok(next)
    }

    // ---- CREATED: validate, reserve ---------------------------------------------

    async fn reserve(&self, order: &Order, run: &mut Run) -> Result<Next> {
        if let Err(problem) = self.validate(order).await? {
            return self
                .cancel_with(order, format!("validation failed: {problem}"), run)
                .await;
        }
        let ttl = self.config.reservation_ttl;
        if let Some(store) = self.promotions_of(order) {
            if let Err(problem) = self.hold_promotions(store, order, run).await? {
                return self.cancel_with(order, problem, run).await;
            }
        }
        let started = std::time::Instant::now();
        let result = retry(&self.config.step_retry, "reserve", || {
            self.steps.reserve_order(order, ttl)
        })
        .await;
        record_step("reserve", &result, started.elapsed());
        self.stepped(result, run)
    }

    /// Reserves the order's redemption; `Err(reason)` when the order must be cancelled
    /// instead (a limit refused it, or it was released already).
    async fn hold_promotions(
        &self,
        store: &dyn PromotionStore,
        order: &Order,
        run: &mut Run,
    ) -> Result<std::result::Result<(), String>> {
        let mut lines = Vec::with_capacity(order.promotions.len());
        let mut shipping = order.totals.shipping;
        for p in &order.promotions {
            shipping = shipping.checked_add(&p.shipping_discount)?;
            lines.push(RedemptionLine {
                promotion_id: p.promotion_id.clone(),
                code: p.code.clone(),
                amount: p.amount()?,
            });
        }
        let request = RedemptionRequest {
            ttl: self.config.reservation_ttl,
            ..RedemptionRequest::new(
                order.id.clone(),
                Some(order.customer_id.clone()),
                order.totals.subtotal.checked_add(&shipping)?,
                lines,
            )
        };
        let held = retry(&self.config.step_retry, "hold promotions", || {
            store.reserve(&request)
        })
        .await;
        match held {
            Ok(r) if r.state == RedemptionState::Released => {
                let why = r.reason.unwrap_or_else(|| "released".into());
                Ok(Err(format!("promotions released before payment ({why})")))
            }
            Ok(r) => {
                if r.state == RedemptionState::Active {
                    run.promotions_until = Some(r.expires_at);
                }
                Ok(Ok(()))
            }
            Err(Error::PromotionUnavailable { promotion, reason }) => {
                Ok(Err(promotion_unavailable_reason(&promotion, reason)))
            }
            Err(
                e @ (Error::Validation { .. }
                | Error::CurrencyMismatch { .. }
                | Error::NotFound { .. }
                | Error::Conflict { .. }),
            ) => Ok(Err(format!("promotions cannot be held: {e}"))),
            Err(e) => Err(e),
        }
    }

    /// Checks the order can still be sold and its money adds up. The prices are those
    /// the customer accepted at checkout and are honoured as they are.
    async fn validate(&self, order: &Order) -> Result<std::result::Result<(), String>> {
        // An order has at most MAX_ORDER_LINES lines: one call asks for all of them.
        const _: () =
            assert!(crate::order::MAX_ORDER_LINES <= crate::store::MAX_PAGE_SIZE as usize);
        let skus: Vec<Sku> = order.lines.iter().map(|l| l.sku.clone()).collect();
        let on_sale = retry(&self.config.step_retry, "validate", || {
            self.catalog.skus_on_sale(&skus)
        })
        .await?;
        if on_sale.len() != order.lines.len() {
            return Err(Error::backend(
                false,
                format!(
                    "the catalog answered {} of {} SKUs",
                    on_sale.len(),
                    order.lines.len()
                ),
            ));
        }
        for (line, sold) in order.lines.iter().zip(on_sale) {
            if !sold {
                return Ok(Err(format!("{} is no longer sold", line.sku)));
            }
            let expected = line.unit_price.checked_mul(u64::from(line.quantity))?;
            if expected != line.line_total {
                return Ok(Err(format!("line total of {} does not add up", line.sku)));
            }
        }
        let t = &order.totals;
        let total = t.expected_total(order.checkout.prices_include_tax())?;
        if total != t.total || total.is_negative() {
            return Ok(Err("the order total does not add up".into()));
        }
        Ok(Ok(()))
    }

    // ---- PAYMENT_PENDING: extend, charge, confirm ----------------------------------

    async fn pay(&self, order: &Order, run: &mut Run) -> Result<Next> {
        let known = run.reservation.take().filter(|r| r.order_id == order.id);
        let reservation = match known {
            Some(r) => Some(r),
            None => {
                retry(&self.config.step_retry, "read reservation", || {
                    self.inventory.reservation(&order.id)
                })
                .await?
            }
        };
        let reservation = reservation.ok_or_else(|| {
            Error::permanent(
                format!(
                    "order {} is PAYMENT_PENDING without a reservation",
                    order.id
                ),
                "inconsistent state",
            )
        })?;
        match reservation.state {
            ReservationState::Released => {
                let why = reservation.reason.unwrap_or_else(|| "released".into());
                return self
                    .cancel_with(
                        order,
                        format!("reservation lapsed before payment was taken ({why})"),
                        run,
                    )
                    .await;
            }
            ReservationState::Returned => {
                return Err(Error::permanent(
                    format!(
                        "order {} is PAYMENT_PENDING but its stock was returned",
                        order.id
                    ),
                    "inconsistent state",
                ));
            }
            // Paid in an earlier run that stopped before recording it; the charge
            // below returns that payment (same key) without charging again.
            ReservationState::Confirmed => {}
            ReservationState::Active => {
                let left = (reservation.expires_at - self.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                if let Some(lease) = self.config.payment_lease.filter(|l| left < *l) {
                    let extended = retry(&self.config.step_retry, "extend reservation", || {
                        self.inventory.extend(&order.id, lease)
                    })
                    .await;
                    match extended {
                        Ok(_) => {}
                        Err(Error::InvalidTransition { .. }) => {
                            return self
                                .cancel_with(
                                    order,
                                    "reservation expired before payment was taken".into(),
                                    run,
                                )
                                .await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let lease = self.config.payment_lease.filter(|lease| {
            // A hold this run made that outlasts the lease needs no extension.
            !run.promotions_until.is_some_and(|until| {
                (until - self.clock.now())
                    .to_std()
                    .is_ok_and(|left| left >= *lease)
            })
        });
        if let (Some(store), Some(lease)) = (self.promotions_of(order), lease) {
            let extended = retry(&self.config.step_retry, "extend promotions", || {
                store.extend(&order.id, lease)
            })
            .await;
            match extended {
                Ok(_) => {}
                Err(Error::InvalidTransition { .. }) | Err(Error::NotFound { .. }) => {
                    let held = store.redemption(&order.id).await?;
                    // Confirmed by an earlier run: go on (the charge is idempotent).
                    if held.map(|r| r.state) != Some(RedemptionState::Confirmed) {
                        return self
                            .cancel_with(
                                order,
                                "promotions expired before payment was taken".into(),
                                run,
                            )
                            .await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match self.charge(order).await? {
            ChargeOutcome::Declined { reason } => {
                self.cancel_with(order, format!("payment declined: {reason}"), run)
                    .await
            }
            ChargeOutcome::Approved { payment_ref } => {
                if let Some(store) = self.promotions_of(order) {
                    let confirmed = retry(&self.config.step_retry, "confirm promotions", || {
                        store.confirm(&order.id)
                    })
                    .await;
                    match confirmed {
                        Ok(_) => {}
                        Err(Error::InvalidTransition { .. }) | Err(Error::NotFound { .. }) => {
                            return self
                                .cancel_with(
                                    order,
                                    format!(
                                        "promotions released during payment; payment {payment_ref} refunded"
                                    ),
 run,
                                )
                                .await;
                        }
                        Err(e) => return Err(e),
                    }
                }
                let started = std::time::Instant::now();
                let result = retry(&self.config.step_retry, "confirm payment", || {
                    self.steps.confirm_payment(order, &payment_ref)
                })
                .await;
                record_step("confirm", &result, started.elapsed());
                self.stepped(result, run)
            }
        }
    }

    async fn charge(&self, order: &Order) -> Result<ChargeOutcome> {
        if order.totals.total.is_zero() {
            return Ok(ChargeOutcome::Approved {
                payment_ref: "no-charge".into(),
            });
        }
        let request = ChargeRequest {
            idempotency_key: payment_key(&order.id)?,
            order_id: order.id.clone(),
            customer_id: order.customer_id.clone(),
            amount: order.totals.total,
        };
        retry(&self.config.step_retry, "charge", || {
            with_timeout(
                self.config.payment_timeout,
                "payment gateway",
                self.payments.charge(&request),
            )
        })
        .await
    }

    // ---- PAYMENT_CONFIRMED: refund ledger, fulfilment ------------------------------

    /// Registers what the order paid in the refund ledger, if there is one.
    async fn open_ledger(&self, order: &Order) -> Result<()> {
        let Some(ledger) = &self.refunds else {
            return Ok(());
        };
        if order.totals.total.is_zero() {
            return Ok(());
        }
        let paid = PaidOrder::from_order(order)?;
        retry(&self.config.step_retry, "open refund ledger", || {
            ledger.open(&paid)
        })
        .await
        .map(|_| ())
    }

    async fn fulfil(&self, order: &Order) -> Result<Next> {
        let submitted = retry(&self.config.step_retry, "fulfilment", || {
            with_timeout(
                self.config.call_timeout,
                "fulfilment",
                self.fulfillment.submit(order),
            )
        })
        .await;
        let reference = match submitted {
            Ok(r) => r,
            // Fulfilment was cancelled by a refund racing this step: reload.
            Err(Error::InvalidTransition { .. }) => return Ok(Next::Continue(None)),
            Err(e) => return Err(e),
        };
        self.move_to(
            order,
            OrderStatus::Preparing,
            format!("sent to fulfilment ({reference})"),
            None,
        )
        .await
    }

    async fn notify(&self, order: &Order, notification: Notification) -> Result<()> {
        retry(&self.config.step_retry, "notify", || {
            with_timeout(
                self.config.call_timeout,
                "notifier",
                self.notifier.notify(order, &notification),
            )
        })
        .await
    }

    // ---- compensation -----------------------------------------------------------------

    /// The status the order left when it entered its current one, and why.
    async fn entry(&self, order: &Order) -> Result<(Option<OrderStatus>, String)> {
        let history = retry(&self.config.step_retry, "history", || {
            self.orders.history(&order.id)
        })
        .await?;
        Ok(history
            .iter()
            .rev()
            .find(|c| c.to == order.status)
            .map(|c| (c.from, c.reason.clone()))
            .unwrap_or((None, String::new())))
    }

    async fn clean_up_cancelled(&self, order: &Order, run: &Run) -> Result<()> {
        let (from, reason) = match &run.cancelled {
            // This run wrote the cancellation and nothing changed the order since.
            Some((version, from, reason)) if *version == order.version => {
                (Some(*from), reason.clone())
            }
            _ => self.entry(order).await?,
        };
        self.give_back_stock(order, true, &reason).await?;
        self.release_promotions(order, &reason).await?;
        // A charge can only have been attempted once the order was PAYMENT_PENDING.
        if from == Some(OrderStatus::PaymentPending) {
            self.refund_payment(order, &reason).await?;
        }
        self.notify(order, Notification::OrderCancelled { reason })
            .await
    }

    async fn clean_up_refunded(&self, order: &Order) -> Result<()> {
        let (from, reason) = self.entry(order).await?;
        if from == Some(OrderStatus::PartiallyRefunded) {
            // The returns refunded every line and shipping through the ledger and
            // restocked what came back: only the customer is left to tell.
            return self
                .notify(order, Notification::OrderRefunded { reason })
                .await;
        }
        let shipped = matches!(from, Some(OrderStatus::Shipped | OrderStatus::Delivered));
        self.refund_payment(order, &reason).await?;
        self.give_back_stock(order, !shipped, &reason).await?;
        // A refund from PAYMENT_CONFIRMED may race the fulfilment step, so cancel
        // (which also blocks a later submission) whenever the goods have not shipped.
        if !shipped {
            retry(&self.config.step_retry, "cancel fulfilment", || {
                with_timeout(
                    self.config.call_timeout,
                    "fulfilment",
                    self.fulfillment.cancel(&order.id, &reason),
                )
            })
            .await?;
        }
        self.notify(order, Notification::OrderRefunded { reason })
            .await
    }

    /// Releases an active reservation or returns a confirmed one (`restock` decides
    /// whether sold units go back to `available` or are written off).
    async fn give_back_stock(&self, order: &Order, restock: bool, reason: &str) -> Result<()> {
        let reason = truncate(reason);
        // A racing step may confirm the reservation between our read and our release:
        // read again and return it instead.
        for _ in 0..3 {
            let reservation = retry(&self.config.step_retry, "read reservation", || {
                self.inventory.reservation(&order.id)
            })
            .await?;
            let result = match reservation.map(|r| r.state) {
                Some(ReservationState::Active) => {
                    retry(&self.config.step_retry, "release", || {
                        self.inventory.release(&order.id, &reason)
                    })
                    .await
                }
                Some(ReservationState::Confirmed) => {
                    retry(&self.config.step_retry, "return stock", || {
                        self.inventory.return_stock(&order.id, restock, &reason)
                    })
                    .await
                }
                _ => return Ok(()),
            };
            match result {
                Ok(_) => return Ok(()),
                Err(Error::InvalidTransition { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::backend(
            true,
            format!("the reservation of order {} kept changing", order.id),
        ))
    }

    /// Releases the order's redemption if it holds one (a confirmed one keeps counting).
    async fn release_promotions(&self, order: &Order, reason: &str) -> Result<()> {
        let Some(store) = self.promotions_of(order) else {
            return Ok(());
        };
        let reason = truncate(reason);
        match retry(&self.config.step_retry, "release promotions", || {
            store.release(&order.id, &reason)
        })
        .await
        {
            Ok(_) => Ok(()),
            // Never held (a limit refused it, or the order was cancelled first).
            Err(Error::NotFound { .. }) => Ok(()),
            Err(Error::InvalidTransition { .. }) => {
                tracing::warn!(order_id = %order.id, "cancelled order keeps its confirmed promotions");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn refund_payment(&self, order: &Order, reason: &str) -> Result<()> {
        if order.totals.total.is_zero() {
            return Ok(());
        }
        let key = payment_key(&order.id)?;
        let outcome = retry(&self.config.step_retry, "refund", || {
            with_timeout(
                self.config.payment_timeout,
                "payment gateway",
                self.payments.refund(&key, reason),
            )
        })
        .await?;
        if let RefundOutcome::Refunded {
            payment_ref,
            amount,
        } = outcome
        {
            tracing::info!(order_id = %order.id, %payment_ref, %amount, "payment refunded");
        }
        Ok(())
    }
}

/// Counts a fused step by outcome (see [`crate::telemetry`]).
fn record_step(step: &'static str, result: &Result<StepOutcome>, took: Duration) {
    let outcome = match result {
        Ok(out) if out.is_cancelled() => "cancelled",
        Ok(_) => "advanced",
        Err(_) => "failed",
    };
    crate::telemetry::record_step(step, outcome, took);
}

/// Reasons are at most 500 characters in the history.
fn truncate(reason: &str) -> String {
    reason.chars().take(500).collect()
}
