use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::OrderId;
use crate::refund::{PaidOrder, Refund, RefundBalance, RefundRequest};

/// What [`RefundLedger::record`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLedgerOutcome {
    /// The refund, new or recorded earlier under the same key.
    pub refund: Refund,
    /// Whether this call recorded it (`false`: a replay of the key).
    pub created: bool,
    /// Whether this refund is the one after which everything the order paid was
    /// refunded (and before which it was not). Exactly one recorded refund of an order
    /// that paid more than zero says `true`; replays say `false`. The caller moves the
    /// order to `REFUNDED` on it.
    pub completes_order: bool,
}

/// The refund ledger: what each order paid per line and for shipping, and the refunds
/// against it, never more than was paid.
///
/// A host registers an order once paid ([`open`](RefundLedger::open)), prices a return
/// with [`quote_refund`](crate::refund::quote_refund), records it here, and only then
/// asks the payment gateway to refund, with the refund's key as the gateway's
/// idempotency key.
#[async_trait]
pub trait RefundLedger: Send + Sync + Debug + 'static {
    /// Registers what `paid` says the order paid, with nothing refunded, and returns
    /// the balance.
    ///
    /// # To ensure correctness
    /// * Invalid input ([`PaidOrder::validate`]) is `Validation`/`CurrencyMismatch`,
    ///   nothing written.
    /// * Idempotent: opening an order again with the same content returns its current
    ///   balance (refunds included); with different content it is
    ///   `Conflict { kind: Refund }` and nothing changes. What was paid never changes
    ///   once opened.
    async fn open(&self, paid: &PaidOrder) -> Result<RefundBalance>;

    /// Records `request` if the guard ([`RefundBalance::check`]) admits it.
    ///
    /// # To ensure correctness
    /// * **Never more than paid**, under any number of concurrent calls on any number
    ///   of processes: no line more units than bought or more money than it paid,
    ///   shipping no more than paid, the order no more than its total. The check and
    ///   the write are one atomic step (a guarded update, not a read then a write); a
    ///   request that would exceed is `Validation` naming the first line or amount
    ///   that exceeds (as [`RefundBalance::check`] does) and writes nothing.
    /// * Unknown order (never opened): `NotFound { kind: Order }`.
    /// * **Idempotent per `(order, key)`**: a replay with the same content returns the
    ///   recorded refund with `created: false` and changes nothing, also when the
    ///   replays race; the same key with other content is `Conflict { kind: Refund }`.
    /// * The refund and the new totals are written atomically; `created_at` is the
    ///   store clock's now; `completes_order` is true for exactly the refund after
    ///   which everything was refunded.
    async fn record(&self, request: &RefundRequest) -> Result<RefundLedgerOutcome>;

    /// The order's totals, `None` if never opened.
    async fn balance(&self, order: &OrderId) -> Result<Option<RefundBalance>>;

    /// What the order paid, `None` if never opened.
    async fn paid(&self, order: &OrderId) -> Result<Option<PaidOrder>>;

    /// The order's refunds in the order they were recorded (empty if none or never
    /// opened).
    async fn refunds(&self, order: &OrderId) -> Result<Vec<Refund>>;
}
