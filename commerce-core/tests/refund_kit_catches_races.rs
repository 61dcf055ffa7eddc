//! The refund kit is not a rubber stamp: a ledger that checks the balance and then
//! writes (a read-then-write, the bug the contract forbids) fails its concurrent case.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::clock::{Clock, ManualClock};
use commerce_core::id::OrderId;
use commerce_core::refund::{PaidOrder, Refund, RefundBalance, RefundRequest};
use commerce_core::store::{RefundLedger, RefundLedgerOutcome};
use commerce_core::testkit::{self, Settings, StoreBuilder, StoresUnderTest};
use commerce_core::{EntityKind, Error, Result};

/// One order's ledger: what was paid, the totals, the refunds.
type Entry = (PaidOrder, RefundBalance, Vec<Refund>);

/// Checks against a snapshot, waits, then adds to whatever the balance is by then.
#[derive(Debug)]
struct ReadThenWriteLedger {
    clock: Arc<dyn Clock>,
    state: Mutex<HashMap<OrderId, Entry>>,
}

#[async_trait]
impl RefundLedger for ReadThenWriteLedger {
    async fn open(&self, paid: &PaidOrder) -> Result<RefundBalance> {
        let b = RefundBalance::new(paid)?;
        let mut state = self.state.lock().unwrap();
        let entry = state
            .entry(paid.order_id.clone())
            .or_insert_with(|| (paid.clone(), b, Vec::new()));
        Ok(entry.1.clone())
    }

    async fn record(&self, request: &RefundRequest) -> Result<RefundLedgerOutcome> {
        let snapshot = self
            .balance(&request.order_id)
            .await?
            .ok_or_else(|| Error::not_found(EntityKind::Order, &request.order_id))?;
        snapshot.check(request)?;
        // The window between the check and the write.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut state = self.state.lock().unwrap();
        let (_, balance, refunds) = state.get_mut(&request.order_id).unwrap();
        for l in &request.lines {
            let line = balance.lines.iter_mut().find(|b| b.sku == l.sku).unwrap();
            line.refunded_units += l.quantity;
            line.refunded = line.refunded.checked_add(&l.amount)?;
        }
        let total = request.total(balance.currency)?;
        balance.shipping_refunded = balance.shipping_refunded.checked_add(&request.shipping)?;
        balance.total_refunded = balance.total_refunded.checked_add(&total)?;
        let refund = Refund {
            request: request.clone(),
            total,
            created_at: self.clock.now(),
        };
        refunds.push(refund.clone());
        Ok(RefundLedgerOutcome {
            refund,
            created: true,
            completes_order: balance.is_fully_refunded(),
        })
    }

    async fn balance(&self, order: &OrderId) -> Result<Option<RefundBalance>> {
        Ok(self.state.lock().unwrap().get(order).map(|e| e.1.clone()))
    }

    async fn paid(&self, order: &OrderId) -> Result<Option<PaidOrder>> {
        Ok(self.state.lock().unwrap().get(order).map(|e| e.0.clone()))
    }

    async fn refunds(&self, order: &OrderId) -> Result<Vec<Refund>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .get(order)
            .map(|e| e.2.clone())
            .unwrap_or_default())
    }
}

struct Racy;

#[async_trait]
impl StoreBuilder for Racy {
    async fn build(&self, clock: Arc<ManualClock>) -> Result<StoresUnderTest> {
        Ok(
            StoresUnderTest::new().with_refunds(Arc::new(ReadThenWriteLedger {
                clock,
                state: Mutex::default(),
            })),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_then_write_ledger_fails_the_concurrent_case() {
    let settings = Settings {
        filter: Some("concurrent_partial_refunds".into()),
        ..Settings::from_env()
    };
    let outcome = tokio::spawn(async move {
        testkit::refunds::test_all_with(&Racy, &settings).await;
    })
    .await;
    let err = outcome.expect_err("the kit must reject a read-then-write ledger");
    let payload = err.into_panic();
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("never more"),
        "it fails on refunding more than was paid: {message}"
    );
}
