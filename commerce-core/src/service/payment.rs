//! Taking money: the [`PaymentGateway`] contract and a scriptable in-memory gateway.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{EntityKind, Error, Result};
use crate::id::{CustomerId, IdempotencyKey, OrderId};
use crate::money::Money;

/// A charge to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    /// One key per order ([`payment_key`]): the gateway's deduplication key.
    pub idempotency_key: IdempotencyKey,
    /// The order being paid.
    pub order_id: OrderId,
    /// The payer.
    pub customer_id: CustomerId,
    /// The amount to capture.
    pub amount: Money,
}

/// The gateway's final answer to a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChargeOutcome {
    /// The money was captured.
    Approved {
        /// The gateway's reference of the payment.
        payment_ref: String,
    },
    /// The payment method was refused; no money moved.
    Declined {
        /// Why, as the gateway says.
        reason: String,
    },
}

/// What [`PaymentGateway::refund`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundOutcome {
    /// The key's charge was (or had already been) refunded in full.
    Refunded {
        /// The refunded payment.
        payment_ref: String,
        /// The amount given back.
        amount: Money,
    },
    /// Nothing had been captured under the key; the key is now void.
    NothingCharged,
}

/// A partial refund of a capture ([`PaymentGateway::refund_partial`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialRefundRequest {
    /// The key the capture was made under ([`payment_key`]).
    pub charge_key: IdempotencyKey,
    /// This refund's own key: the gateway refunds at most once per key.
    pub refund_key: IdempotencyKey,
    /// The amount to give back, more than zero.
    pub amount: Money,
    /// Why (for the gateway's records).
    pub reason: String,
}

/// A partial refund the gateway made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialRefund {
    /// The refunded payment.
    pub payment_ref: String,
    /// The gateway's reference of this refund.
    pub refund_ref: String,
    /// The amount given back.
    pub amount: Money,
}

/// The idempotency key the pipeline uses towards the gateway for `order`: exactly one
/// per order, so no retry, resume or duplicate job can charge an order twice.
pub fn payment_key(order: &OrderId) -> Result<IdempotencyKey> {
    IdempotencyKey::new(format!("pay:{order}"))
}

/// A payment provider.
///
/// # To ensure correctness
/// * **Idempotent charges**: the first *final* answer to a key (approved or declined)
///   is returned for every later `charge` with that key, and money moves at most once
///   per key. A later request with the same key and a different amount is
///   `Conflict { kind: Order }`.
/// * A failure (`Error::Backend`, or no answer before the caller's timeout) means "not
///   known whether money moved": the caller retries with the **same key**, which either
///   returns the earlier capture or makes the only one.
/// * **Refund voids**: `refund` gives the key's capture back in full (less what
///   [`refund_partial`](PaymentGateway::refund_partial) already gave back), once
///   (repeated calls return the same refund); if nothing was captured under the key, the key
///   becomes void and every later `charge` with it is declined. So a refund racing a
///   slow charge never leaves money taken.
#[async_trait]
pub trait PaymentGateway: Send + Sync + Debug + 'static {
    /// Captures `request.amount`, or returns the earlier answer for the key.
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome>;

    /// Refunds the capture made under `key`, or voids the key.
    async fn refund(&self, key: &IdempotencyKey, reason: &str) -> Result<RefundOutcome>;

    /// Gives back part of the capture made under `request.charge_key`.
    ///
    /// # To ensure correctness
    /// * **Idempotent per `refund_key`**: money moves at most once per key; a retry
    ///   with the same key and amount returns the same [`PartialRefund`] (also when
    ///   the retries race); the same key with another amount or charge is
    ///   `Conflict { kind: Refund }`.
    /// * Never more than captured: partial refunds of one capture add up to at most its
    ///   amount (`Validation` on `amount` otherwise, nothing moves); a capture already
    ///   refunded in full by [`refund`](Self::refund) is
    ///   `Validation` too. No capture under the key: `NotFound { kind: Order }`.
    /// * The amount is in the capture's currency (`CurrencyMismatch`) and more than
    ///   zero (`Validation`).
    /// * A failure (`Backend`) means "not known whether money moved": retry with the
    ///   same `refund_key`.
    async fn refund_partial(&self, request: &PartialRefundRequest) -> Result<PartialRefund>;
}

/// How the in-memory gateway answers a charge it has not answered finally yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeBehavior {
    /// Capture and approve.
    Approve,
    /// Decline with this reason.
    Decline(String),
    /// Fail with a retryable error; no money moves.
    Fail,
    /// Never answer (the caller's timeout fires); no money moves.
    Timeout,
    /// Capture, then fail with a retryable error: the response is lost.
    LoseResponse,
    /// Capture, then never answer: the response is lost to a timeout.
    LoseResponseAndHang,
}

/// One capture the in-memory gateway made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// The payment reference.
    pub payment_ref: String,
    /// The order.
    pub order_id: OrderId,
    /// The amount.
    pub amount: Money,
    /// Whether it was refunded in full.
    pub refunded: bool,
}

#[derive(Debug, Clone)]
enum KeyState {
    Captured(Capture),
    Declined(String),
    Void,
}

type ChargeHook = Arc<dyn Fn(&ChargeRequest) + Send + Sync>;

#[derive(Default)]
struct GatewayState {
    script: VecDeque<ChargeBehavior>,
    default: Option<ChargeBehavior>,
    keys: HashMap<IdempotencyKey, KeyState>,
    partial: HashMap<IdempotencyKey, (IdempotencyKey, PartialRefund)>,
    /// Per charge key: given back so far by partial refunds.
    partially_refunded: HashMap<IdempotencyKey, Money>,
    next_ref: u64,
    calls: u64,
    hook: Option<ChargeHook>,
    latency: Duration,
}

/// The in-memory [`PaymentGateway`], scriptable for tests and demos.
///
/// Each charge whose key has no final answer yet takes the next scripted
/// [`ChargeBehavior`] (then the default, [`ChargeBehavior::Approve`] unless set), so a
/// test can make a gateway decline, fail, time out, or capture and lose the response.
///
/// ```
/// use commerce_core::service::{ChargeBehavior, MemoryPaymentGateway};
///
/// let gateway = MemoryPaymentGateway::new();
/// gateway.script([ChargeBehavior::LoseResponse, ChargeBehavior::Approve]);
/// assert_eq!(gateway.captures().len(), 0);
/// ```
#[derive(Default)]
pub struct MemoryPaymentGateway {
    state: Mutex<GatewayState>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Debug for MemoryPaymentGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("MemoryPaymentGateway")
            .field("keys", &s.keys.len())
            .field("calls", &s.calls)
            .finish()
    }
}

impl MemoryPaymentGateway {
    /// A gateway that approves everything.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GatewayState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends behaviors for the next undecided charges, in order.
    pub fn script(&self, behaviors: impl IntoIterator<Item = ChargeBehavior>) {
        self.lock().script.extend(behaviors);
    }

    /// The behavior once the script is used up.
    pub fn set_default(&self, behavior: ChargeBehavior) {
        self.lock().default = Some(behavior);
    }

    /// Calls `hook` during every charge not answered from an earlier final answer,
    /// after any capture and before the answer (to move a test clock or run a reaper
    /// "while the payment is in progress").
    pub fn on_charge(&self, hook: impl Fn(&ChargeRequest) + Send + Sync + 'static) {
        self.lock().hook = Some(Arc::new(hook));
    }

    /// Makes every charge take `latency` of real time.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Every capture made, refunded or not.
    pub fn captures(&self) -> Vec<Capture> {
        let mut out: Vec<Capture> = self
            .lock()
            .keys
            .values()
            .filter_map(|k| match k {
                KeyState::Captured(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.payment_ref.cmp(&b.payment_ref));
        out
    }

    /// The capture made for `order`, if any.
    pub fn capture_for(&self, order: &OrderId) -> Option<Capture> {
        self.captures().into_iter().find(|c| &c.order_id == order)
    }

    /// Every partial refund made, by refund reference.
    pub fn partial_refunds(&self) -> Vec<PartialRefund> {
        let mut out: Vec<PartialRefund> = self
            .lock()
            .partial
            .values()
            .map(|(_, r)| r.clone())
            .collect();
        out.sort_by(|a, b| a.refund_ref.cmp(&b.refund_ref));
        out
    }

    /// Number of `charge` calls received.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// The most charges that were in progress at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl PaymentGateway for MemoryPaymentGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = InFlight(&self.in_flight);
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let (hook, latency) = {
            let mut s = self.lock();
            s.calls += 1;
            (s.hook.clone(), s.latency)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let (outcome, hang) = {
            let mut s = self.lock();
            match s.keys.get(&request.idempotency_key) {
                Some(KeyState::Captured(c)) if c.amount != request.amount => {
                    return Err(Error::conflict(
                        EntityKind::Order,
                        format!(
                            "payment key {} was used for {}, not {}",
                            request.idempotency_key, c.amount, request.amount
                        ),
                    ));
                }
                Some(KeyState::Captured(c)) => {
                    return Ok(ChargeOutcome::Approved {
                        payment_ref: c.payment_ref.clone(),
                    });
                }
                Some(KeyState::Declined(reason)) => {
                    return Ok(ChargeOutcome::Declined {
                        reason: reason.clone(),
                    });
                }
                Some(KeyState::Void) => {
                    return Ok(ChargeOutcome::Declined {
                        reason: "the payment was voided".into(),
                    });
                }
                None => {}
            }
            let behavior = match s.script.pop_front() {
                Some(b) => b,
                None => s.default.clone().unwrap_or(ChargeBehavior::Approve),
            };
            let capture = |s: &mut GatewayState| {
                s.next_ref += 1;
                let payment_ref = format!("pay_{:06}", s.next_ref);
                s.keys.insert(
                    request.idempotency_key.clone(),
                    KeyState::Captured(Capture {
                        payment_ref: payment_ref.clone(),
                        order_id: request.order_id.clone(),
                        amount: request.amount,
                        refunded: false,
                    }),
                );
                payment_ref
            };
            match behavior {
                ChargeBehavior::Approve => (
                    Ok(ChargeOutcome::Approved {
                        payment_ref: capture(&mut s),
                    }),
                    false,
                ),
                ChargeBehavior::Decline(reason) => {
                    s.keys.insert(
                        request.idempotency_key.clone(),
                        KeyState::Declined(reason.clone()),
                    );
                    (Ok(ChargeOutcome::Declined { reason }), false)
                }
                ChargeBehavior::Fail => (
                    Err(Error::backend(true, "payment gateway unavailable (503)")),
                    false,
                ),
                ChargeBehavior::Timeout => (Err(Error::backend(true, "no answer")), true),
                ChargeBehavior::LoseResponse => {
                    capture(&mut s);
                    (
                        Err(Error::backend(
                            true,
                            "connection reset while reading the gateway's answer",
                        )),
                        false,
                    )
                }
                ChargeBehavior::LoseResponseAndHang => {
                    capture(&mut s);
                    (Err(Error::backend(true, "no answer")), true)
                }
            }
        };
        if let Some(hook) = hook {
            hook(request);
        }
        if hang {
            std::future::pending::<()>().await;
        }
        outcome
    }

    async fn refund(&self, key: &IdempotencyKey, _reason: &str) -> Result<RefundOutcome> {
        let mut s = self.lock();
        let partial = s.partially_refunded.get(key).copied();
        match s.keys.get_mut(key) {
            Some(KeyState::Captured(c)) => {
                c.refunded = true;
                Ok(RefundOutcome::Refunded {
                    payment_ref: c.payment_ref.clone(),
                    // What partial refunds have not given back yet.
                    amount: match partial {
                        Some(p) => c.amount.checked_sub(&p)?,
                        None => c.amount,
                    },
                })
            }
            Some(KeyState::Declined(_)) | Some(KeyState::Void) => Ok(RefundOutcome::NothingCharged),
            None => {
                s.keys.insert(key.clone(), KeyState::Void);
                Ok(RefundOutcome::NothingCharged)
            }
        }
    }

    async fn refund_partial(&self, request: &PartialRefundRequest) -> Result<PartialRefund> {
        let mut s = self.lock();
        if let Some((charge_key, done)) = s.partial.get(&request.refund_key) {
            if charge_key != &request.charge_key || done.amount != request.amount {
                return Err(Error::conflict(
                    EntityKind::Refund,
                    format!(
                        "refund key {} was used for {} on another request",
                        request.refund_key, done.amount
                    ),
                ));
            }
            return Ok(done.clone());
        }
        let Some(KeyState::Captured(c)) = s.keys.get(&request.charge_key) else {
            return Err(Error::not_found(EntityKind::Order, &request.charge_key));
        };
        if request.amount.currency() != c.amount.currency() {
            return Err(Error::CurrencyMismatch {
                left: c.amount.currency(),
                right: request.amount.currency(),
            });
        }
        if request.amount.is_negative() || request.amount.is_zero() {
            return Err(Error::validation("amount", "must be more than zero"));
        }
        let before = s
            .partially_refunded
            .get(&request.charge_key)
            .copied()
            .unwrap_or_else(|| Money::zero(c.amount.currency()));
        let after = before.checked_add(&request.amount)?;
        if c.refunded || after.try_cmp(&c.amount)? == std::cmp::Ordering::Greater {
            return Err(Error::validation(
                "amount",
                format!(
                    "{} would refund more than the {} captured ({before} refunded)",
                    request.amount, c.amount
                ),
            ));
        }
        let payment_ref = c.payment_ref.clone();
        s.next_ref += 1;
        let done = PartialRefund {
            payment_ref,
            refund_ref: format!("re_{:06}", s.next_ref),
            amount: request.amount,
        };
        s.partially_refunded
            .insert(request.charge_key.clone(), after);
        s.partial.insert(
            request.refund_key.clone(),
            (request.charge_key.clone(), done.clone()),
        );
        Ok(done)
    }
}
