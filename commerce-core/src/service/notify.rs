//! Telling the customer: the [`Notifier`] contract and an in-memory implementation.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{CustomerId, OrderId};
use crate::order::Order;

/// What the customer is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notification {
    /// The order is paid and on its way to the warehouse.
    OrderConfirmed,
    /// The order was cancelled before payment completed.
    OrderCancelled {
        /// Why.
        reason: String,
    },
    /// The order was refunded.
    OrderRefunded {
        /// Why.
        reason: String,
    },
}

impl Notification {
    /// The deduplication kind: `order_confirmed`, `order_cancelled`, `order_refunded`.
    pub fn kind(&self) -> &'static str {
        match self {
            Notification::OrderConfirmed => "order_confirmed",
            Notification::OrderCancelled { .. } => "order_cancelled",
            Notification::OrderRefunded { .. } => "order_refunded",
        }
    }
}

/// A channel to customers (e-mail, SMS, push).
///
/// # To ensure correctness
/// Deliver at most once per `(order id, notification kind)`: the pipeline calls
/// `notify` again when it resumes an order after a crash or a failed attempt.
#[async_trait]
pub trait Notifier: Send + Sync + Debug + 'static {
    /// Sends `notification` about `order` to its customer.
    async fn notify(&self, order: &Order, notification: &Notification) -> Result<()>;
}

/// One message the in-memory notifier delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentNotification {
    /// The recipient.
    pub customer_id: CustomerId,
    /// What was said.
    pub notification: Notification,
}

#[derive(Debug, Default)]
struct State {
    sent: BTreeMap<(OrderId, &'static str), SentNotification>,
    fail_next: u32,
    calls: u64,
}

/// The in-memory [`Notifier`]: records what it delivered, deduplicated; can be told to
/// fail.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    state: Mutex<State>,
}

impl MemoryNotifier {
    /// A notifier that has sent nothing.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next `n` calls fail with a retryable error.
    pub fn fail_next(&self, n: u32) {
        self.lock().fail_next = n;
    }

    /// What was delivered about `order`, in kind order.
    pub fn sent_for(&self, order: &OrderId) -> Vec<SentNotification> {
        self.lock()
            .sent
            .iter()
            .filter(|((o, _), _)| o == order)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// Number of messages delivered.
    pub fn sent(&self) -> usize {
        self.lock().sent.len()
    }

    /// Number of calls received (including repeats and failures).
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn notify(&self, order: &Order, notification: &Notification) -> Result<()> {
        let mut s = self.lock();
        s.calls += 1;
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Err(Error::backend(true, "mail server unavailable"));
        }
        s.sent
            .entry((order.id.clone(), notification.kind()))
            .or_insert_with(|| SentNotification {
                customer_id: order.customer_id.clone(),
                notification: notification.clone(),
            });
        Ok(())
    }
}
