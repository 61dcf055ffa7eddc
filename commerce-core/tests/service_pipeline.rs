//! The order pipeline: the happy path, declines, failures, timeouts, lost answers,
//! crashes between and inside steps, reservation expiry during payment, cancellation
//! and refunds.

mod service_support;

use std::sync::Arc;
use std::time::Duration;

use commerce_core::Error;
use commerce_core::inventory::ReservationState;
use commerce_core::order::OrderStatus::*;
use commerce_core::service::*;
use commerce_core::testkit::faults::{FaultAction, FaultKind, Faults, Faulty, Rule};
use service_support::*;

#[tokio::test]
async fn an_order_goes_through_every_step_with_reasons_in_its_history() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 10).await;
    let b = f.product("B-1", "2.50 USD", 10).await;
    let order = f.order("alice", &[(&a, 2), (&b, 4)]).await;
    let pipeline = f.pipeline();
    let done = pipeline.process(&order.id).await.expect("process");
    assert_eq!(done.status, Preparing);

    let history = f.history(&order.id).await;
    let steps: Vec<_> = history.iter().map(|c| (c.from, c.to)).collect();
    assert_eq!(
        steps,
        vec![
            (None, Created),
            (Some(Created), PaymentPending),
            (Some(PaymentPending), PaymentConfirmed),
            (Some(PaymentConfirmed), Preparing)
        ]
    );
    assert!(
        history[1].reason.contains("6 unit(s) reserved until"),
        "{}",
        history[1].reason
    );
    assert!(
        history[2].reason.contains("captured (30.00 USD)"),
        "{}",
        history[2].reason
    );
    assert!(
        history[3].reason.contains("sent to fulfilment (ful_"),
        "{}",
        history[3].reason
    );
    assert!(history.windows(2).all(|w| w[0].at <= w[1].at));

    let capture = f.payments.capture_for(&order.id).expect("captured");
    assert_eq!(capture.amount.to_string(), "30.00 USD");
    assert_eq!(
        done.payment_ref.as_deref(),
        Some(capture.payment_ref.as_str())
    );
    assert_eq!((f.available(&a).await, f.stock(&a).await.sold()), (8, 2));
    assert_eq!((f.available(&b).await, f.stock(&b).await.sold()), (6, 4));
    assert!(f.fulfillment.submission(&order.id).is_some());
    let sent = f.notifier.sent_for(&order.id);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].notification, Notification::OrderConfirmed);

    // Processing a settled order again changes nothing.
    pipeline.process(&order.id).await.expect("again");
    assert_eq!(f.history(&order.id).await.len(), 4);
    assert_eq!(f.payments.captures().len(), 1);
    assert_eq!(f.fulfillment.submitted(), 1);
    assert_eq!(f.notifier.sent(), 1);
    f.audit_clean().await;
}

#[tokio::test]
async fn a_declined_payment_releases_the_stock_and_cancels_with_the_reason() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 3).await;
    let order = f.order("alice", &[(&a, 3)]).await;
    f.payments
        .script([ChargeBehavior::Decline("insufficient funds".into())]);
    let done = f.pipeline().process(&order.id).await.expect("process");
    assert_eq!(done.status, Cancelled);
    assert_eq!(
        f.statuses(&order.id).await,
        vec![Created, PaymentPending, Cancelled]
    );
    let last = f.history(&order.id).await.pop().expect("entry");
    assert_eq!(last.reason, "payment declined: insufficient funds");
    assert_eq!(f.available(&a).await, 3, "the reservation was released");
    let r = f
        .stores
        .inventory
        .reservation(&order.id)
        .await
        .expect("read")
        .expect("r");
    assert_eq!(r.state, ReservationState::Released);
    assert!(f.payments.captures().is_empty());
    assert_eq!(
        f.notifier.sent_for(&order.id)[0].notification,
        Notification::OrderCancelled {
            reason: "payment declined: insufficient funds".into()
        }
    );
    f.audit_clean().await;
}

#[tokio::test]
async fn gateway_failures_and_timeouts_are_retried_without_charging_twice() {
    for script in [
        vec![
            ChargeBehavior::Fail,
            ChargeBehavior::Fail,
            ChargeBehavior::Approve,
        ],
        vec![ChargeBehavior::Timeout, ChargeBehavior::Approve],
        vec![ChargeBehavior::LoseResponse],
        vec![ChargeBehavior::LoseResponseAndHang],
        vec![ChargeBehavior::Fail, ChargeBehavior::LoseResponse],
    ] {
        let f = Fixture::new();
        let a = f.product("A-1", "10.00 USD", 3).await;
        let order = f.order("alice", &[(&a, 1)]).await;
        let tries = script.len() as u64;
        let lost = script.iter().any(|b| {
            matches!(
                b,
                ChargeBehavior::LoseResponse | ChargeBehavior::LoseResponseAndHang
            )
        });
        f.payments.script(script.clone());
        let done = f.pipeline().process(&order.id).await.expect("process");
        assert_eq!(done.status, Preparing, "{script:?}");
        assert_eq!(f.captured_for(&order.id).len(), 1, "{script:?}");
        assert_eq!(
            f.payments.calls(),
            tries + u64::from(lost),
            "a lost answer is followed by one retry that finds the capture: {script:?}"
        );
        assert_eq!(f.stock(&a).await.sold(), 1);
        f.audit_clean().await;
    }
}

#[tokio::test]
async fn a_gateway_that_keeps_failing_leaves_the_order_resumable() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 3).await;
    let order = f.order("alice", &[(&a, 2)]).await;
    f.payments.set_default(ChargeBehavior::Fail);
    let pipeline = f.pipeline();
    let err = pipeline
        .process(&order.id)
        .await
        .expect_err("gives up for now");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(f.payments.calls(), 3, "three tries of the step");
    assert_eq!(f.status(&order.id).await, PaymentPending);
    assert_eq!(f.available(&a).await, 1, "still held");
    assert!(f.payments.captures().is_empty());

    f.payments.set_default(ChargeBehavior::Approve);
    assert_eq!(
        pipeline.process(&order.id).await.expect("resume").status,
        Preparing
    );
    assert_eq!(f.payments.captures().len(), 1);
}

/// Kills the pipeline right before each status write (the side effect of the step is
/// done, its record is not), then resumes with a fresh pipeline.
#[tokio::test]
async fn a_crash_before_any_status_write_is_resumed_without_repeating_effects() {
    for (at, before) in [
        (PaymentPending, Created),
        (PaymentConfirmed, PaymentPending),
        (Preparing, PaymentConfirmed),
    ] {
        let f = Fixture::new();
        let a = f.product("A-1", "10.00 USD", 5).await;
        let order = f.order("alice", &[(&a, 2)]).await;
        let faults = Faults::new();
        let stores = Stores {
            orders: Faulty::new(f.stores.orders.clone(), faults.clone()),
            ..f.stores.clone()
        }
        .with_composed_steps();
        faults.add(
            Rule::fail(FaultKind::Permanent)
                .on("transition")
                .with_arg("to", at)
                .times(1),
        );
        let crashed = f.pipeline_on(&stores, test_config());
        let err = crashed.process(&order.id).await.expect_err("crash");
        assert!(
            err.to_string().contains("injected permanent failure"),
            "{err}"
        );
        assert_eq!(faults.injected(), 1, "crash before {at}");
        assert_eq!(f.status(&order.id).await, before, "crash before {at}");
        drop(crashed);

        let done = f.pipeline().process(&order.id).await.expect("resume");
        assert_eq!(done.status, Preparing, "crash before {at}");
        assert_eq!(f.captured_for(&order.id).len(), 1, "crash before {at}");
        assert_eq!(f.fulfillment.submitted(), 1);
        assert_eq!(f.notifier.sent(), 1);
        assert_eq!((f.available(&a).await, f.stock(&a).await.sold()), (3, 2));
        assert_eq!(
            f.statuses(&order.id).await,
            vec![Created, PaymentPending, PaymentConfirmed, Preparing]
        );
        f.audit_clean().await;
    }
}

/// The write commits but its answer is lost: the retry's compare-and-set fails, the
/// pipeline reloads and goes on.
#[tokio::test]
async fn a_lost_answer_to_a_status_write_is_harmless() {
    for at in [PaymentPending, PaymentConfirmed, Preparing] {
        let f = Fixture::new();
        let a = f.product("A-1", "10.00 USD", 5).await;
        let order = f.order("alice", &[(&a, 1)]).await;
        let faults = Faults::new();
        faults.add(
            Rule::lose_answer()
                .on("transition")
                .with_arg("to", at)
                .times(1),
        );
        let stores = Stores {
            orders: Faulty::new(f.stores.orders.clone(), faults.clone()),
            ..f.stores.clone()
        }
        .with_composed_steps();
        let done = f
            .pipeline_on(&stores, test_config())
            .process(&order.id)
            .await
            .expect("process");
        assert_eq!(done.status, Preparing);
        assert_eq!(f.history(&order.id).await.len(), 4, "no transition twice");
        assert_eq!(f.payments.captures().len(), 1);
        assert_eq!(faults.injected(), 1, "the answer was lost once");
    }
}

/// The process "dies" in a call: a permanent failure, nothing forwarded.
const CRASH: FaultAction = FaultAction::Fail(FaultKind::Permanent);

/// Crashes and lost answers inside the inventory steps.
#[tokio::test]
async fn inventory_faults_inside_steps_are_resumed() {
    for (call, fault) in [
        ("reserve", CRASH),
        ("reserve", FaultAction::LoseAnswer),
        ("extend", CRASH),
        ("confirm", CRASH),
        ("confirm", FaultAction::LoseAnswer),
    ] {
        let f = Fixture::new();
        let a = f.product("A-1", "10.00 USD", 5).await;
        let order = f.order("alice", &[(&a, 2)]).await;
        let faults = Faults::new();
        faults.add(Rule::new(fault).on(call).times(1));
        let stores = Stores {
            inventory: Faulty::new(f.stores.inventory.clone(), faults.clone()),
            ..f.stores.clone()
        }
        .with_composed_steps();
        // A lease longer than what is left, so the pipeline extends before charging.
        let config = PipelineConfig {
            payment_lease: Some(Duration::from_secs(3600)),
            ..test_config()
        };
        let first = f.pipeline_on(&stores, config).process(&order.id).await;
        if fault == CRASH {
            assert!(first.is_err(), "{call}");
        } else {
            assert_eq!(first.expect("process").status, Preparing);
        }
        assert_eq!(faults.injected(), 1, "{call} {fault:?}");
        let done = f.pipeline().process(&order.id).await.expect("resume");
        assert_eq!(done.status, Preparing, "{call:?} {fault:?}");
        assert_eq!(f.captured_for(&order.id).len(), 1, "{call:?} {fault:?}");
        assert_eq!((f.available(&a).await, f.stock(&a).await.sold()), (3, 2));
        f.audit_clean().await;
    }
}

/// The process dies while the gateway holds the request (the capture happened, the
/// answer never comes): the task is aborted and a new pipeline resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_run_in_the_middle_of_the_charge_is_resumed_with_one_capture() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 5).await;
    let order = f.order("alice", &[(&a, 1)]).await;
    f.payments.script([ChargeBehavior::LoseResponseAndHang]);
    let slow = PipelineConfig {
        payment_timeout: Duration::from_secs(3600),
        ..test_config()
    };
    let pipeline = f.pipeline_on(&f.stores, slow);
    let id = order.id.clone();
    let run = tokio::spawn(async move { pipeline.process(&id).await });
    while f.payments.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    run.abort();
    assert!(run.await.expect_err("aborted").is_cancelled());
    assert_eq!(f.status(&order.id).await, PaymentPending);
    assert_eq!(
        f.captured_for(&order.id).len(),
        1,
        "money moved, unrecorded"
    );

    let done = f.pipeline().process(&order.id).await.expect("resume");
    assert_eq!(done.status, Preparing);
    assert_eq!(f.captured_for(&order.id).len(), 1);
    assert_eq!(
        done.payment_ref,
        Some(f.captured_for(&order.id)[0].payment_ref.clone())
    );
}

/// The lease is extended when payment starts, so a slow payment (20 minutes on a
/// 10-minute reservation) keeps its stock even with a reaper running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_extended_while_payment_is_in_progress() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 1).await;
    let order = f.order("alice", &[(&a, 1)]).await;
    let config = PipelineConfig {
        reservation_ttl: Duration::from_secs(600),
        payment_lease: Some(Duration::from_secs(1800)),
        ..test_config()
    };
    let pipeline = f.pipeline_on(&f.stores, config);
    let reaper = Arc::new(ReservationReaper::new(&f.stores, pipeline.clone()));
    let (clock, r) = (f.clock.clone(), reaper.clone());
    let reaped = Arc::new(std::sync::Mutex::new(None));
    let seen = reaped.clone();
    f.payments.on_charge(move |_| {
        clock.advance(Duration::from_secs(1200));
        let report = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(r.run_once())
        });
        *seen.lock().expect("lock") = Some(report.expect("reap"));
    });
    let done = pipeline.process(&order.id).await.expect("process");
    assert_eq!(done.status, Preparing);
    assert_eq!(
        *reaped.lock().expect("lock"),
        Some(ReapReport::default()),
        "nothing expired"
    );
    assert_eq!(f.stock(&a).await.sold(), 1);
    f.audit_clean().await;
}

/// Without the extension, a reaper releases the stock during the payment; the pipeline
/// refunds the payment and cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_that_expires_during_payment_refunds_and_cancels() {
    for reaper_cancels in [false, true] {
        let f = Fixture::new();
        let a = f.product("A-1", "10.00 USD", 1).await;
        let order = f.order("alice", &[(&a, 1)]).await;
        let config = PipelineConfig {
            reservation_ttl: Duration::from_secs(600),
            payment_lease: None,
            ..test_config()
        };
        let pipeline = f.pipeline_on(&f.stores, config);
        let reaper = Arc::new(ReservationReaper::new(&f.stores, pipeline.clone()));
        let (clock, inventory) = (f.clock.clone(), f.stores.inventory.clone());
        f.payments.on_charge(move |_| {
            clock.advance(Duration::from_secs(1200));
            let (reaper, inventory, now) = (
                reaper.clone(),
                inventory.clone(),
                service_support::now(&clock),
            );
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async move {
                    if reaper_cancels {
                        let r = reaper.run_once().await.expect("reap");
                        assert_eq!(
                            r,
                            ReapReport {
                                released: 1,
                                cancelled: 1,
                                ..ReapReport::default()
                            }
                        );
                    } else {
                        // A reaper that released the stock and died before cancelling.
                        assert_eq!(
                            inventory
                                .release_expired(now, 10)
                                .await
                                .expect("release")
                                .len(),
                            1
                        );
                    }
                })
            });
        });
        let done = pipeline.process(&order.id).await.expect("process");
        assert_eq!(done.status, Cancelled);
        let reason = f.history(&order.id).await.pop().expect("entry").reason;
        let expected = if reaper_cancels {
            "reservation expired before payment completed"
        } else {
            "reservation expired during payment"
        };
        assert!(reason.contains(expected), "{reason}");
        let captures = f.captured_for(&order.id);
        assert_eq!(captures.len(), 1);
        assert!(captures[0].refunded, "the payment went back");
        assert_eq!(f.available(&a).await, 1);
        assert_eq!(f.stock(&a).await.sold(), 0);
        f.audit_clean().await;
    }
}

/// The order stopped in PAYMENT_PENDING (gateway down); when it is resumed its
/// reservation has already expired: nothing is charged, the order is cancelled —
/// whether a reaper got there first or not.
#[tokio::test]
async fn a_reservation_already_expired_when_payment_resumes_is_never_charged() {
    for reaped_first in [false, true] {
        let f = Fixture::new();
        let a = f.product("A-1", "10.00 USD", 2).await;
        let order = f.order("alice", &[(&a, 2)]).await;
        let pipeline = f.pipeline();
        f.payments.set_default(ChargeBehavior::Fail);
        pipeline.process(&order.id).await.expect_err("gateway down");
        assert_eq!(f.status(&order.id).await, PaymentPending);
        f.clock.advance(Duration::from_secs(16 * 60)); // past the 15-minute lease
        f.payments.set_default(ChargeBehavior::Approve);
        if reaped_first {
            let r = ReservationReaper::new(&f.stores, pipeline.clone())
                .run_once()
                .await
                .expect("reap");
            assert_eq!(
                r,
                ReapReport {
                    released: 1,
                    cancelled: 1,
                    ..ReapReport::default()
                }
            );
        }
        let done = pipeline.process(&order.id).await.expect("resume");
        assert_eq!(done.status, Cancelled, "reaped first: {reaped_first}");
        let reason = f.history(&order.id).await.pop().expect("entry").reason;
        assert!(reason.contains("expired"), "{reason}");
        assert!(f.payments.captures().is_empty(), "nothing charged");
        assert_eq!(f.available(&a).await, 2);
        f.audit_clean().await;
    }
}

#[tokio::test]
async fn out_of_stock_and_unsold_orders_are_cancelled_at_validation() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 1).await;
    let b = f.product("B-1", "10.00 USD", 5).await;
    let first = f.order("alice", &[(&a, 1)]).await;
    let second = f.order("bob", &[(&a, 1), (&b, 1)]).await;
    let pipeline = f.pipeline();
    assert_eq!(
        pipeline.process(&first.id).await.expect("p").status,
        Preparing
    );
    assert_eq!(
        pipeline.process(&second.id).await.expect("p").status,
        Cancelled
    );
    let reason = f.history(&second.id).await.pop().expect("e").reason;
    assert_eq!(reason, "out of stock: A-1 (requested 1, available 0)");
    assert_eq!(f.available(&b).await, 5, "all or nothing");

    let third = f.order("carol", &[(&b, 1)]).await;
    commerce_core::store::CatalogStoreExt::set_product_status(
        f.stores.catalog.as_ref(),
        &third.lines[0].product_id,
        commerce_core::catalog::ProductStatus::Archived,
    )
    .await
    .expect("archive");
    assert_eq!(
        pipeline.process(&third.id).await.expect("p").status,
        Cancelled
    );
    let reason = f.history(&third.id).await.pop().expect("e").reason;
    assert_eq!(reason, "validation failed: B-1 is no longer sold");
    assert!(f.captured_for(&second.id).is_empty() && f.captured_for(&third.id).is_empty());
}

#[tokio::test]
async fn cancelling_before_payment_releases_the_stock() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 4).await;
    let pipeline = f.pipeline();

    // Before anything ran.
    let o1 = f.order("alice", &[(&a, 1)]).await;
    let done = pipeline
        .cancel(&o1.id, "customer changed their mind")
        .await
        .expect("cancel");
    assert_eq!(done.status, Cancelled);
    assert_eq!(pipeline.process(&o1.id).await.expect("p").status, Cancelled);
    assert_eq!(f.available(&a).await, 4);

    // With stock reserved and payment pending.
    let o2 = f.order("alice", &[(&a, 2)]).await;
    f.payments.set_default(ChargeBehavior::Fail);
    pipeline.process(&o2.id).await.expect_err("gateway down");
    assert_eq!(f.available(&a).await, 2);
    let done = pipeline.cancel(&o2.id, "too slow").await.expect("cancel");
    assert_eq!(done.status, Cancelled);
    assert_eq!(f.available(&a).await, 4);
    // The payment key is void: a late charge is refused.
    f.payments.set_default(ChargeBehavior::Approve);
    assert_eq!(pipeline.process(&o2.id).await.expect("p").status, Cancelled);
    assert!(f.payments.captures().is_empty());
    // Idempotent.
    pipeline
        .cancel(&o2.id, "again")
        .await
        .expect("cancel again");
    assert_eq!(
        f.statuses(&o2.id).await,
        vec![Created, PaymentPending, Cancelled]
    );
    assert_eq!(f.history(&o2.id).await[2].reason, "cancelled: too slow");

    // A paid order cannot be cancelled, only refunded.
    let o3 = f.order("alice", &[(&a, 1)]).await;
    pipeline.process(&o3.id).await.expect("p");
    assert!(matches!(
        pipeline.cancel(&o3.id, "late").await,
        Err(Error::InvalidTransition { .. })
    ));
    f.audit_clean().await;
}

#[tokio::test]
async fn a_refund_in_transit_writes_the_units_off_and_keeps_fulfilment() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 10).await;
    let pipeline = f.pipeline();
    let o = f.order("dave", &[(&a, 2)]).await;
    pipeline.process(&o.id).await.expect("p");
    pipeline.mark_shipped(&o.id, "1Z998").await.expect("ship");
    let before = f.stock(&a).await;
    let done = pipeline
        .refund(&o.id, "lost in transit")
        .await
        .expect("refund");
    assert_eq!(done.status, Refunded);
    let after = f.stock(&a).await;
    assert_eq!(after.available(), before.available(), "not back on sale");
    assert_eq!(after.levels[0].adjusted, before.levels[0].adjusted + 2);
    assert!(f.captured_for(&o.id)[0].refunded);
    assert_eq!(
        f.fulfillment.submission(&o.id).map(|s| s.1),
        Some(false),
        "shipped goods: fulfilment is not cancelled"
    );
}

#[tokio::test]
async fn refunds_return_stock_by_the_documented_policy() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 10).await;
    let pipeline = f.pipeline();

    // Refund before shipping: the units go back on sale, fulfilment is cancelled.
    let o1 = f.order("alice", &[(&a, 2)]).await;
    pipeline.process(&o1.id).await.expect("p");
    assert_eq!(f.available(&a).await, 8);
    let done = pipeline
        .refund(&o1.id, "customer request")
        .await
        .expect("refund");
    assert_eq!(done.status, Refunded);
    assert_eq!(f.available(&a).await, 10);
    assert!(f.captured_for(&o1.id)[0].refunded);
    assert_eq!(f.fulfillment.submission(&o1.id).map(|s| s.1), Some(true));
    assert!(
        f.notifier
            .sent_for(&o1.id)
            .iter()
            .any(|n| matches!(n.notification, Notification::OrderRefunded { .. }))
    );
    pipeline.refund(&o1.id, "again").await.expect("idempotent");
    assert_eq!(f.available(&a).await, 10);

    // Refund of a PREPARING order that was never cancelled at fulfilment.
    let o2 = f.order("bob", &[(&a, 3)]).await;
    pipeline.process(&o2.id).await.expect("p");
    let refunded = pipeline.refund(&o2.id, "x").await.expect("refund");
    assert_eq!(refunded.status, Refunded);
    assert_eq!(f.available(&a).await, 10);

    // Refund after delivery: the units are written off.
    let o3 = f.order("carol", &[(&a, 3)]).await;
    pipeline.process(&o3.id).await.expect("p");
    pipeline.mark_shipped(&o3.id, "1Z999").await.expect("ship");
    pipeline.mark_delivered(&o3.id).await.expect("deliver");
    let before = f.stock(&a).await;
    pipeline
        .refund(&o3.id, "arrived broken")
        .await
        .expect("refund");
    let after = f.stock(&a).await;
    assert_eq!(after.available(), before.available(), "not back on sale");
    assert_eq!(after.sold(), before.sold() - 3);
    assert_eq!(
        after.levels[0].adjusted,
        before.levels[0].adjusted + 3,
        "written off"
    );
    assert_eq!(
        f.statuses(&o3.id).await,
        vec![
            Created,
            PaymentPending,
            PaymentConfirmed,
            Preparing,
            Shipped,
            Delivered,
            Refunded
        ]
    );
    // Refund while fulfilment is down (PAYMENT_CONFIRMED): fulfilment is cancelled
    // before it ever got the order, and a late submission is refused.
    let o5 = f.order("erin", &[(&a, 1)]).await;
    f.fulfillment.fail_next(3);
    pipeline.process(&o5.id).await.expect_err("fulfilment down");
    assert_eq!(f.status(&o5.id).await, PaymentConfirmed);
    pipeline
        .refund(&o5.id, "changed mind")
        .await
        .expect("refund");
    assert_eq!(pipeline.process(&o5.id).await.expect("p").status, Refunded);
    assert!(f.fulfillment.submission(&o5.id).is_none(), "never shipped");
    let late = f
        .stores
        .orders
        .get_order(&o5.id)
        .await
        .expect("r")
        .expect("o");
    assert!(matches!(
        f.fulfillment.submit(&late).await,
        Err(Error::InvalidTransition { .. })
    ));
    assert!(f.captured_for(&o5.id)[0].refunded);

    // Never paid: cannot be refunded.
    let o4 = f.order("dave", &[(&a, 1)]).await;
    assert!(matches!(
        pipeline.refund(&o4.id, "x").await,
        Err(Error::InvalidTransition { .. })
    ));
    f.audit_clean().await;
}

#[tokio::test]
async fn fulfilment_and_notification_failures_are_retried_and_deduplicated() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 10).await;
    let order = f.order("alice", &[(&a, 1)]).await;
    f.fulfillment.fail_next(2);
    f.notifier.fail_next(2);
    let done = f.pipeline().process(&order.id).await.expect("process");
    assert_eq!(done.status, Preparing);
    assert_eq!(f.fulfillment.calls(), 3);
    assert_eq!(f.fulfillment.submitted(), 1);
    assert_eq!(f.notifier.sent(), 1);

    // Fulfilment down for longer than one run: the order waits in PAYMENT_CONFIRMED.
    let order = f.order("bob", &[(&a, 1)]).await;
    f.fulfillment.fail_next(10);
    let err = f.pipeline().process(&order.id).await.expect_err("down");
    assert!(err.is_retryable());
    assert_eq!(f.status(&order.id).await, PaymentConfirmed);
    f.fulfillment.fail_next(0);
    assert_eq!(
        f.pipeline().process(&order.id).await.expect("p").status,
        Preparing
    );
    assert_eq!(f.captured_for(&order.id).len(), 1);
}

/// Cancellations racing the pipeline on many orders: every order ends either paid
/// (and its cancel refused) or cancelled with its stock back and no money kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancellations_racing_the_pipeline_converge() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 1000).await;
    f.payments.set_latency(Duration::from_millis(1));
    let pipeline = f.pipeline();
    let mut orders = Vec::new();
    for i in 0..60 {
        orders.push(f.order(&format!("c{i}"), &[(&a, 2)]).await);
    }
    let mut tasks = Vec::new();
    for (i, o) in orders.iter().enumerate() {
        let (p1, p2, id) = (pipeline.clone(), pipeline.clone(), o.id.clone());
        let id2 = id.clone();
        tasks.push(tokio::spawn(
            async move { p1.process(&id).await.map(|_| ()) },
        ));
        tasks.push(tokio::spawn(async move {
            if i % 3 == 0 {
                tokio::task::yield_now().await;
            }
            match p2.cancel(&id2, "race").await {
                Ok(_) | Err(Error::InvalidTransition { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("no unexpected error");
    }
    let mut paid_units = 0;
    for o in &orders {
        let status = f.status(&o.id).await;
        let kept: Vec<_> = f
            .captured_for(&o.id)
            .into_iter()
            .filter(|c| !c.refunded)
            .collect();
        match status {
            Preparing => {
                paid_units += 2;
                assert_eq!(kept.len(), 1);
            }
            Cancelled => {
                assert!(kept.is_empty(), "a cancelled order keeps no money");
                let state = f
                    .stores
                    .inventory
                    .reservation(&o.id)
                    .await
                    .expect("r")
                    .map(|r| r.state);
                assert!(matches!(
                    state,
                    None | Some(ReservationState::Released) | Some(ReservationState::Returned)
                ));
            }
            other => panic!("order left in {other}"),
        }
    }
    eprintln!("paid units {paid_units} of {}", orders.len() * 2);
    let stock = f.stock(&a).await;
    assert_eq!(stock.sold(), paid_units);
    assert_eq!(stock.reserved(), 0);
    assert_eq!(stock.available(), 1000 - paid_units);
    f.audit_clean().await;
}
