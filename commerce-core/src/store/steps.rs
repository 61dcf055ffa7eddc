//! The order pipeline's fused writes: [`OrderSteps`].

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{EntityKind, Error, Result};
use crate::inventory::{Reservation, ReservationRequest, ReservationState};
use crate::money::Money;
use crate::order::{Order, OrderStatus, Transition};
use crate::store::{InventoryStore, OrderStore};

/// What a step left behind: the order as stored after it, and the reservation the step
/// wrote or found (when it touched one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutcome {
    /// The order after the step: the step's target status, or `CANCELLED` when the step
    /// could not be done (see each step).
    pub order: Order,
    /// The order's reservation after the step, if the step wrote or read it.
    pub reservation: Option<Reservation>,
}

impl StepOutcome {
    /// Whether the step cancelled the order instead of advancing it.
    pub fn is_cancelled(&self) -> bool {
        self.order.status == OrderStatus::Cancelled
    }
}

/// The history reason of a successful reservation step.
///
/// ```
/// use commerce_core::store::steps::reserved_reason;
/// let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
/// assert_eq!(
///     reserved_reason(3, at),
///     "validated; 3 unit(s) reserved until 2023-11-14 22:13:20 UTC; awaiting payment"
/// );
/// ```
pub fn reserved_reason(units: u64, expires_at: Timestamp) -> String {
    format!(
        "validated; {units} unit(s) reserved until {}; awaiting payment",
        expires_at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// The history reason of an order cancelled because `sku` was short.
pub fn out_of_stock_reason(sku: &str, requested: u64, available: u64) -> String {
    format!("out of stock: {sku} (requested {requested}, available {available})")
}

/// The history reason of an order cancelled because `sku` has no stock record.
pub fn not_stocked_reason(sku: &str) -> String {
    format!("out of stock: {sku} is not stocked")
}

/// The history reason of an order whose reservation was released before it was
/// reserved for it (`why` is the reservation's reason).
pub fn released_reason(why: &str) -> String {
    format!("reservation released before payment ({why})")
}

/// The history reason of an order cancelled because one of its promotions could not be
/// held (`reason`: which limit refused it).
///
/// ```
/// use commerce_core::promotion::Unavailable;
/// use commerce_core::store::steps::promotion_unavailable_reason;
/// assert_eq!(
///     promotion_unavailable_reason("BF100", Unavailable::TotalUses),
///     "promotion unavailable: BF100 (usage limit reached)"
/// );
/// ```
pub fn promotion_unavailable_reason(
    promotion: &str,
    reason: crate::promotion::Unavailable,
) -> String {
    format!("promotion unavailable: {promotion} ({reason})")
}

/// The history reason of a confirmed payment.
pub fn paid_reason(payment_ref: &str, total: &Money) -> String {
    format!("payment {payment_ref} captured ({total}); reserved stock sold")
}

/// The history reason of an order whose reservation lapsed while it was being paid.
pub fn lapsed_during_payment_reason(payment_ref: &str) -> String {
    format!("reservation expired during payment; payment {payment_ref} refunded")
}

/// The pipeline's writes that belong together, each one step.
///
/// The [`OrderPipeline`](crate::service::OrderPipeline) writes through this contract
/// (and through the ordinary stores for everything else), so every engine runs the
/// same path. [`ComposedSteps`] builds the steps from an [`InventoryStore`] and an
/// [`OrderStore`] (two writes per step); an adapter that can do a step in one
/// transaction (the PostgreSQL one) implements it directly, and may group concurrent
/// steps of many orders into one transaction as long as each order keeps its own
/// decision and one order's failure never fails another.
///
/// # To ensure correctness (every method)
/// * A step writes **exactly** what the separate calls of [`ComposedSteps`] write: the
///   order's status, version, `payment_ref` and history entry (with the reasons of this
///   module's functions), the reservation, the ledger movements and the events, in the
///   same order. The conformance kit (`testkit::steps`) compares both.
/// * **Atomic** where the engine can: an adapter that implements a step itself writes
///   all of it or nothing. ([`ComposedSteps`] is not atomic; the pipeline's
///   compensation makes a half-done step converge, as it always has.)
/// * **Retry-safe**: repeating a step that already took effect returns its result
///   again and writes nothing more, so a caller that lost an acknowledgement can retry.
#[async_trait]
pub trait OrderSteps: Send + Sync + Debug + 'static {
    /// Reserves the lines of `order` (which must be `CREATED`) for `ttl`, and moves it
    /// to `PAYMENT_PENDING` with [`reserved_reason`].
    ///
    /// # To ensure correctness
    /// * If the stock is short the order moves to `CANCELLED` instead, with
    ///   [`out_of_stock_reason`] for the first short SKU (or [`not_stocked_reason`] for
    ///   one with no stock record); nothing is reserved. If the order already has a
    ///   reservation that was released, it moves to `CANCELLED` with
    ///   [`released_reason`].
    /// * If the stored order is not `CREATED`: when it is `PAYMENT_PENDING` with an
    ///   active reservation (this step already ran), that outcome is returned and nothing
    ///   is written; otherwise `Conflict { kind: Order }` and nothing is written.
    /// * Never oversells, exactly as [`InventoryStore::reserve`].
    /// * Invalid input (a bad `ttl`, bad lines) is `Validation` and writes nothing.
    async fn reserve_order(&self, order: &Order, ttl: Duration) -> Result<StepOutcome>;

    /// Sells the reservation of `order` (which must be `PAYMENT_PENDING`) and moves it
    /// to `PAYMENT_CONFIRMED` with `payment_ref` and [`paid_reason`].
    ///
    /// # To ensure correctness
    /// * If the reservation was released meanwhile (it lapsed during payment), the order
    ///   moves to `CANCELLED` with [`lapsed_during_payment_reason`] instead (the caller
    ///   refunds the payment).
    /// * If the stored order was already paid with the same `payment_ref` (this step
    ///   already ran), it is returned as stored and nothing is written; any other
    ///   status is `Conflict { kind: Order }` and nothing is written.
    /// * An unknown order is `NotFound { kind: Order }`; a pending order without a
    ///   reservation is a permanent `Backend` error (inconsistent state).
    async fn confirm_payment(&self, order: &Order, payment_ref: &str) -> Result<StepOutcome>;
}

/// The steps composed from the separate store calls: the default for any engine.
///
/// ```
/// use std::sync::Arc;
/// use commerce_core::memory::MemoryEngine;
/// use commerce_core::store::steps::{ComposedSteps, OrderSteps};
///
/// let engine = MemoryEngine::new();
/// let steps: Arc<dyn OrderSteps> =
///     Arc::new(ComposedSteps::new(engine.inventory.clone(), engine.orders.clone()));
/// # let _ = steps;
/// ```
#[derive(Debug, Clone)]
pub struct ComposedSteps {
    inventory: Arc<dyn InventoryStore>,
    orders: Arc<dyn OrderStore>,
}

impl ComposedSteps {
    /// Steps over these stores.
    pub fn new(inventory: Arc<dyn InventoryStore>, orders: Arc<dyn OrderStore>) -> Self {
        ComposedSteps { inventory, orders }
    }

    async fn stored(&self, order: &Order) -> Result<Order> {
        self.orders
            .get_order(&order.id)
            .await?
            .ok_or_else(|| Error::not_found(EntityKind::Order, &order.id))
    }

    /// Moves `order` from `from` to `to`; on a lost compare-and-set, `replay` decides
    /// from the stored order whether the step already took effect.
    async fn moved(
        &self,
        order: &Order,
        change: Transition,
        reservation: Option<Reservation>,
        replay: impl Fn(&Order) -> bool + Send,
    ) -> Result<StepOutcome> {
        match self.orders.transition(&order.id, &change).await {
            Ok(order) => Ok(StepOutcome { order, reservation }),
            Err(e) if e.is_conflict() => {
                let stored = self.stored(order).await?;
                if replay(&stored) {
                    Ok(StepOutcome {
                        order: stored,
                        reservation,
                    })
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }
}

fn cancel(from: OrderStatus, reason: String) -> Transition {
    Transition::new(from, OrderStatus::Cancelled, reason)
}

#[async_trait]
impl OrderSteps for ComposedSteps {
    async fn reserve_order(&self, order: &Order, ttl: Duration) -> Result<StepOutcome> {
        let request = ReservationRequest {
            ttl,
            ..ReservationRequest::new(
                order.id.clone(),
                order.lines.iter().map(|l| (l.sku.clone(), l.quantity)),
            )
        };
        request.normalized_lines()?;
        let stored = self.stored(order).await?;
        if stored.status != OrderStatus::Created {
            let reservation = self.inventory.reservation(&order.id).await?;
            let done = stored.status == OrderStatus::PaymentPending
                && reservation
                    .as_ref()
                    .is_some_and(|r| r.state == ReservationState::Active);
            if done {
                return Ok(StepOutcome {
                    order: stored,
                    reservation,
                });
            }
            return Err(Error::conflict(
                EntityKind::Order,
                format!("order {} is {}, not CREATED", order.id, stored.status),
            ));
        }
        let from = OrderStatus::Created;
        let (change, reservation) = match self.inventory.reserve(&request).await {
            Ok(r) => match r.state {
                ReservationState::Active => {
                    let units = r.lines.iter().map(|l| u64::from(l.quantity)).sum();
                    let reason = reserved_reason(units, r.expires_at);
                    (
                        Transition::new(from, OrderStatus::PaymentPending, reason),
                        Some(r),
                    )
                }
                ReservationState::Released => {
                    let why = r.reason.clone().unwrap_or_else(|| "released".into());
                    (cancel(from, released_reason(&why)), Some(r))
                }
                other => {
                    // Another run of this order went on (paid, confirmed) after this
                    // one read it as CREATED: the caller reloads.
                    let now = self.stored(order).await?;
                    if now.status != OrderStatus::Created {
                        return Err(Error::conflict(
                            EntityKind::Order,
                            format!("order {} is {}, not CREATED", order.id, now.status),
                        ));
                    }
                    return Err(Error::permanent(
                        format!(
                            "order {} is CREATED but its reservation is {other}",
                            order.id
                        ),
                        "inconsistent state",
                    ));
                }
            },
            Err(Error::OutOfStock {
                sku,
                requested,
                available,
            }) => (
                cancel(from, out_of_stock_reason(&sku, requested, available)),
                None,
            ),
            Err(Error::NotFound {
                kind: EntityKind::Stock,
                id,
            }) => (cancel(from, not_stocked_reason(&id)), None),
            Err(e) => return Err(e),
        };
        let target = change.to;
        self.moved(order, change, reservation, move |o| o.status == target)
            .await
    }

    async fn confirm_payment(&self, order: &Order, payment_ref: &str) -> Result<StepOutcome> {
        let mut paid = Transition::new(
            OrderStatus::PaymentPending,
            OrderStatus::PaymentConfirmed,
            paid_reason(payment_ref, &order.totals.total),
        );
        paid.payment_ref = Some(payment_ref.to_owned());
        paid.validate()?;
        let stored = self.stored(order).await?;
        if stored.status != OrderStatus::PaymentPending {
            if already_paid(&stored, payment_ref) {
                return Ok(StepOutcome {
                    order: stored,
                    reservation: None,
                });
            }
            return Err(Error::conflict(
                EntityKind::Order,
                format!(
                    "order {} is {}, not PAYMENT_PENDING",
                    order.id, stored.status
                ),
            ));
        }
        let (change, reservation) = match self.inventory.confirm(&order.id).await {
            Ok(r) => (paid, Some(r)),
            Err(Error::InvalidTransition { .. }) => (
                cancel(
                    OrderStatus::PaymentPending,
                    lapsed_during_payment_reason(payment_ref),
                ),
                self.inventory.reservation(&order.id).await?,
            ),
            Err(Error::NotFound {
                kind: EntityKind::Reservation,
                ..
            }) => {
                return Err(Error::permanent(
                    format!(
                        "order {} is PAYMENT_PENDING without a reservation",
                        order.id
                    ),
                    "inconsistent state",
                ));
            }
            Err(e) => return Err(e),
        };
        let target = change.to;
        let payment_ref = payment_ref.to_owned();
        self.moved(order, change, reservation, move |o| {
            if target == OrderStatus::PaymentConfirmed {
                already_paid(o, &payment_ref)
            } else {
                o.status == target
            }
        })
        .await
    }
}

/// Whether `order` is past payment with `payment_ref`.
fn already_paid(order: &Order, payment_ref: &str) -> bool {
    matches!(
        order.status,
        OrderStatus::PaymentConfirmed
            | OrderStatus::Preparing
            | OrderStatus::Shipped
            | OrderStatus::Delivered
            | OrderStatus::Refunded
    ) && order.payment_ref.as_deref() == Some(payment_ref)
}
