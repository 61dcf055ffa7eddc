//! The [`OrderStore`](crate::store::OrderStore) suite, with the events it appends.
//!
//! Checks: `create_order` stores exactly [`NewOrder::into_order`] at the store clock's
//! now with its `created` history entry and one `OrderCreated` event; invalid orders
//! write nothing; one order per idempotency key (sequential and under 24 concurrent
//! calls), a key of another customer and a taken id are `Conflict { Order }`;
//! `transition` is a compare-and-set (stale `from` is `Conflict`, nothing written) that
//! bumps the version, sets `updated_at`/`payment_ref`, appends history and one
//! `OrderStatusChanged`; of 16 concurrent workers exactly one wins; every pair of the
//! status table is enforced (legal pairs succeed, illegal ones are `InvalidTransition`
//! and write nothing); unknown orders are `NotFound`; listings page through every match
//! exactly once with status/customer filters; an order's addresses, chosen shipping
//! option and per-line tax round-trip exactly (also through a transition and a listing),
//! and tax details that do not add up write nothing; while many tasks create orders and
//! move them along (and others race to cancel them), an event is never readable before
//! its change and each order's events come in the order of its history; what
//! `create_order` and `transition` return reads back equal, also when the clock has
//! sub-microsecond digits (a store may keep time at its own precision, and then
//! returns it at that precision).

use std::time::Duration;

use super::builder::{Area, StoreBuilder};
use super::check::{assert_err, concurrently, must};
use super::fixtures::{cust, key, new_order, oid};
use super::runner::{Case, Ctx, Env, Settings, cases, run_one_area};
use crate::error::{EntityKind, Error};
use crate::event::DomainEvent;
use crate::id::{CustomerId, OrderId};
use crate::order::{NewOrder, Order, OrderStatus, StatusChange, Transition};
use crate::store::{CreateOutcome, OrderQuery};

/// Runs every order case against `builder`'s stores; panics listing the failed cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    run_one_area(builder, settings, Area::Orders, cases()).await;
}

pub(crate) fn cases() -> Vec<Case> {
    cases![
        create_order_stores_the_order_and_its_history,
        invalid_orders_write_nothing,
        create_order_is_idempotent_per_key,
        concurrent_creates_with_one_key_create_one_order,
        a_key_of_another_customer_is_a_conflict,
        a_key_reused_with_another_basket_is_a_conflict,
        a_taken_order_id_is_a_conflict,
        concurrent_creates_with_one_id_create_one_order,
        transition_is_a_compare_and_set,
        concurrent_transitions_exactly_one_wins,
        every_pair_of_the_status_table_is_enforced,
        unknown_orders_are_not_found,
        listing_pages_through_every_match_once,
        addresses_shipping_and_line_tax_round_trip,
        inconsistent_tax_details_write_nothing,
        events_never_precede_their_change_and_come_in_order,
        returned_orders_read_back_equal,
    ]
}

fn with_id(mut new: NewOrder, id: &str) -> NewOrder {
    new.id = Some(oid(id));
    new
}

async fn create(ctx: &Ctx, new: NewOrder) -> Order {
    let what = format!("create_order({})", new.idempotency_key);
    match must!(ctx.orders().create_order(new).await, "{what}") {
        CreateOutcome::Created(o) => o,
        CreateOutcome::Existing(o) => panic!("{what}: expected Created, got Existing({o:?})"),
    }
}

async fn stored(ctx: &Ctx, id: &OrderId) -> Option<Order> {
    must!(ctx.orders().get_order(id).await, "get_order({id})")
}

async fn history(ctx: &Ctx, id: &OrderId) -> Vec<StatusChange> {
    must!(ctx.orders().history(id).await, "history({id})")
}

fn created_event(o: &Order) -> DomainEvent {
    DomainEvent::OrderCreated {
        order_id: o.id.clone(),
        customer_id: o.customer_id.clone(),
    }
}

fn status_event(id: &OrderId, from: OrderStatus, to: OrderStatus) -> DomainEvent {
    DomainEvent::OrderStatusChanged {
        order_id: id.clone(),
        from,
        to,
    }
}

async fn create_order_stores_the_order_and_its_history(env: Env<'_>) {
    let ctx = env.ctx().await;
    ctx.advance(Duration::from_secs(9));
    let now = ctx.now();
    let mark = ctx.event_mark().await;
    let new = with_id(
        new_order("k-1", "c1", &[("A", 2, "19.99 USD"), ("B", 1, "5.00 USD")]),
        "o-1",
    );
    let expected = must!(new.clone().into_order(now), "reference into_order");
    let order = create(&ctx, new).await;
    assert_eq!(
        order, expected,
        "create_order must store NewOrder::into_order(now): CREATED, version 1, computed totals"
    );
    assert_eq!(order.totals.total.to_string(), "50.98 USD");
    assert_eq!(stored(&ctx, &order.id).await.as_ref(), Some(&expected));
    assert_eq!(
        must!(
            ctx.orders().get_order_by_key(&key("k-1")).await,
            "get_order_by_key"
        ),
        Some(expected.clone())
    );
    assert_eq!(
        history(&ctx, &order.id).await,
        vec![StatusChange {
            from: None,
            to: OrderStatus::Created,
            reason: "created".into(),
            at: now
        }],
        "the first history entry is None -> CREATED, reason \"created\", at creation"
    );
    assert_eq!(ctx.events_since(mark).await, vec![created_event(&expected)]);
    // A generated id.
    let generated = create(&ctx, new_order("k-2", "c1", &[("A", 1, "1.00 USD")])).await;
    assert_eq!(stored(&ctx, &generated.id).await, Some(generated));
}

async fn invalid_orders_write_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let orders = ctx.orders();
    let mark = ctx.event_mark().await;
    let mut no_lines = new_order("k-bad", "c1", &[("A", 1, "1.00 USD")]);
    no_lines.lines.clear();
    let mut zero = new_order("k-bad", "c1", &[("A", 0, "1.00 USD")]);
    zero.id = Some(oid("o-bad"));
    let repeated = new_order("k-bad", "c1", &[("A", 1, "1.00 USD"), ("A", 2, "1.00 USD")]);
    let negative = new_order("k-bad", "c1", &[("A", 1, "-1.00 USD")]);
    for (what, new) in [
        ("no lines", no_lines),
        ("a zero quantity", zero),
        ("a repeated SKU", repeated),
        ("a negative price", negative),
    ] {
        assert_err!(
            orders.create_order(new).await,
            Error::Validation { .. },
            "create_order with {what}"
        );
    }
    let mixed = new_order("k-bad", "c1", &[("A", 1, "1.00 USD"), ("B", 1, "1.00 EUR")]);
    assert_err!(
        orders.create_order(mixed).await,
        Error::CurrencyMismatch { .. },
        "create_order mixing currencies"
    );
    assert_eq!(
        must!(orders.get_order_by_key(&key("k-bad")).await, "by key"),
        None,
        "a refused order took its idempotency key"
    );
    assert_eq!(stored(&ctx, &oid("o-bad")).await, None);
    assert_eq!(ctx.events_since(mark).await, vec![]);
    // The key is still usable.
    create(&ctx, new_order("k-bad", "c1", &[("A", 1, "1.00 USD")])).await;
}

async fn create_order_is_idempotent_per_key(env: Env<'_>) {
    let ctx = env.ctx().await;
    let first = create(&ctx, new_order("k-1", "c1", &[("A", 1, "1.00 USD")])).await;
    let mark = ctx.event_mark().await;
    ctx.advance(Duration::from_secs(60));
    // The same basket, at the same or another price (a basket with other SKUs or
    // quantities is a conflict: see a_key_reused_with_another_basket_is_a_conflict).
    for retry in [
        new_order("k-1", "c1", &[("A", 1, "1.00 USD")]),
        new_order("k-1", "c1", &[("A", 1, "3.00 USD")]),
    ] {
        match must!(
            ctx.orders().create_order(retry).await,
            "retry with the same key"
        ) {
            CreateOutcome::Existing(o) => assert_eq!(
                o, first,
                "a retry with the same key returns the existing order unchanged"
            ),
            CreateOutcome::Created(o) => {
                panic!("a retry with a used key created a second order {o:?}")
            }
        }
    }
    assert_eq!(history(&ctx, &first.id).await.len(), 1);
    assert_eq!(
        ctx.events_since(mark).await,
        vec![],
        "a retry appended an event"
    );
    let page = must!(
        ctx.orders()
            .list_orders(&OrderQuery {
                limit: 100,
                ..OrderQuery::default()
            })
            .await,
        "list"
    );
    assert_eq!(page.items, vec![first]);
}

async fn concurrent_creates_with_one_key_create_one_order(env: Env<'_>) {
    let ctx = env.ctx().await;
    let orders = ctx.orders();
    let mark = ctx.event_mark().await;
    let results = concurrently(24, |i| {
        let orders = orders.clone();
        let price = format!("{}.00 USD", 1 + i);
        let new = new_order("k-race", "c1", &[("A", 1, price.as_str())]);
        async move { orders.create_order(new).await }
    })
    .await;
    let outcomes: Vec<CreateOutcome> = results
        .into_iter()
        .map(|r| must!(r, "concurrent create_order with one key"))
        .collect();
    let created: Vec<&Order> = outcomes
        .iter()
        .filter(|o| o.is_created())
        .map(CreateOutcome::order)
        .collect();
    assert_eq!(
        created.len(),
        1,
        "24 concurrent create_order calls with one key: exactly one Created"
    );
    for o in &outcomes {
        assert_eq!(o.order(), created[0], "every caller gets the one order");
    }
    assert_eq!(
        ctx.events_since(mark).await,
        vec![created_event(created[0])]
    );
    let page = must!(
        orders
            .list_orders(&OrderQuery {
                limit: 100,
                ..OrderQuery::default()
            })
            .await,
        "list"
    );
    assert_eq!(page.items.len(), 1, "one key, one stored order");
}

async fn a_key_of_another_customer_is_a_conflict(env: Env<'_>) {
    let ctx = env.ctx().await;
    let first = create(&ctx, new_order("k-1", "c1", &[("A", 1, "1.00 USD")])).await;
    let mark = ctx.event_mark().await;
    assert_err!(
        ctx.orders()
            .create_order(new_order("k-1", "c2", &[("A", 1, "1.00 USD")]))
            .await,
        Error::Conflict {
            kind: EntityKind::Order,
            ..
        },
        "create_order with a key held by another customer's order"
    );
    assert_eq!(
        must!(ctx.orders().get_order_by_key(&key("k-1")).await, "by key"),
        Some(first)
    );
    assert_eq!(ctx.events_since(mark).await, vec![]);
}

async fn a_key_reused_with_another_basket_is_a_conflict(env: Env<'_>) {
    let ctx = env.ctx().await;
    let first = create(&ctx, new_order("k-b", "c1", &[("A", 2, "1.00 USD")])).await;
    let mark = ctx.event_mark().await;
    for (what, lines) in [
        ("another SKU", vec![("B", 2, "1.00 USD")]),
        ("another quantity", vec![("A", 3, "1.00 USD")]),
        (
            "an extra line",
            vec![("A", 2, "1.00 USD"), ("B", 1, "1.00 USD")],
        ),
    ] {
        assert_err!(
            ctx.orders()
                .create_order(new_order("k-b", "c1", &lines))
                .await,
            Error::Conflict {
                kind: EntityKind::Order,
                ..
            },
            "create_order with a used key and {what}"
        );
    }
    // The same basket (even at another price) is a retry: the first order comes back.
    let again = must!(
        ctx.orders()
            .create_order(new_order("k-b", "c1", &[("A", 2, "1.50 USD")]))
            .await,
        "create_order retried with the same basket"
    );
    assert_eq!(again, CreateOutcome::Existing(first));
    assert_eq!(ctx.events_since(mark).await, vec![], "nothing written");
}

async fn a_taken_order_id_is_a_conflict(env: Env<'_>) {
    let ctx = env.ctx().await;
    let first = create(
        &ctx,
        with_id(new_order("k-1", "c1", &[("A", 1, "1.00 USD")]), "o-1"),
    )
    .await;
    let mark = ctx.event_mark().await;
    assert_err!(
        ctx.orders()
            .create_order(with_id(
                new_order("k-2", "c1", &[("B", 1, "1.00 USD")]),
                "o-1"
            ))
            .await,
        Error::Conflict {
            kind: EntityKind::Order,
            ..
        },
        "create_order with an id that is taken (under another key)"
    );
    assert_eq!(stored(&ctx, &oid("o-1")).await, Some(first));
    assert_eq!(
        must!(ctx.orders().get_order_by_key(&key("k-2")).await, "by key"),
        None,
        "a refused order took its key"
    );
    assert_eq!(ctx.events_since(mark).await, vec![]);
}

/// 16 concurrent `create_order` calls with one order id under 16 different keys, among
/// 32 creations of other orders (so a store that groups concurrent creations gets
/// several of the one id in one batch, before the id exists): exactly one is `Created`,
/// every other is `Conflict { kind: Order }` and takes nothing (no key, no history
/// entry, no event); the stored order is the winner's, and every other order is
/// created.
async fn concurrent_creates_with_one_id_create_one_order(env: Env<'_>) {
    let ctx = env.ctx().await;
    let orders = ctx.orders();
    let mark = ctx.event_mark().await;
    let (others, n) = (32usize, 16usize);
    let results = concurrently(others + n, |i| {
        let orders = orders.clone();
        let new = if i < others {
            with_id(
                new_order(&format!("k-other-{i}"), "c0", &[("A", 1, "1.00 USD")]),
                &format!("o-other-{i}"),
            )
        } else {
            let i = i - others;
            with_id(
                new_order(&format!("k-{i}"), &format!("c{i}"), &[("A", 1, "1.00 USD")]),
                "o-1",
            )
        };
        async move {
            if new.id == Some(oid("o-1")) {
                // Let the other creations take the store's first batches.
                tokio::task::yield_now().await;
            }
            orders.create_order(new).await
        }
    })
    .await;
    let (other_results, results) = results.split_at(others);
    for (i, r) in other_results.iter().enumerate() {
        assert!(
            matches!(r, Ok(CreateOutcome::Created(_))),
            "create_order(o-other-{i}) among racing creations of another id: expected Created, got {r:?}"
        );
    }
    let mut winners = Vec::new();
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(CreateOutcome::Created(o)) => winners.push((i, o.clone())),
            Err(Error::Conflict {
                kind: EntityKind::Order,
                ..
            }) => {}
            other => panic!(
                "create_order(o-1 under key k-{i}) racing {n} calls for one id: expected Created or Conflict {{ kind: Order }}, got {other:?}"
            ),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{n} concurrent creations of one order id under different keys: exactly one may be Created, got {:?}",
        winners
            .iter()
            .map(|(i, o)| format!("k-{i} ({})", o.customer_id))
            .collect::<Vec<_>>()
    );
    let (w, winner) = &winners[0];
    assert_eq!(stored(&ctx, &oid("o-1")).await.as_ref(), Some(winner));
    assert_eq!(
        history(&ctx, &oid("o-1")).await.len(),
        1,
        "one `created` entry"
    );
    for i in (0..n).filter(|i| i != w) {
        assert_eq!(
            must!(
                orders.get_order_by_key(&key(&format!("k-{i}"))).await,
                "get_order_by_key"
            ),
            None,
            "a refused creation took its key k-{i}"
        );
    }
    let events: Vec<DomainEvent> = ctx
        .events_since(mark)
        .await
        .into_iter()
        .filter(|e| matches!(e, DomainEvent::OrderCreated { order_id, .. } if order_id.as_str() == "o-1"))
        .collect();
    assert_eq!(
        events,
        vec![created_event(winner)],
        "one OrderCreated for o-1, the winner's"
    );
}

async fn transition_is_a_compare_and_set(env: Env<'_>) {
    use OrderStatus::*;
    let ctx = env.ctx().await;
    let orders = ctx.orders();
    let order = create(&ctx, new_order("k-1", "c1", &[("A", 1, "1.00 USD")])).await;
    let id = order.id.clone();
    let mark = ctx.event_mark().await;
    ctx.advance(Duration::from_secs(10));
    let t1 = ctx.now();
    let o = must!(
        orders
            .transition(
                &id,
                &Transition::new(Created, PaymentPending, "stock reserved")
            )
            .await,
        "CREATED -> PAYMENT_PENDING"
    );
    assert_eq!(
        (o.status, o.version, o.updated_at, o.payment_ref.clone()),
        (PaymentPending, 2, t1, None)
    );
    ctx.advance(Duration::from_secs(10));
    let t2 = ctx.now();
    let mut paid = Transition::new(PaymentPending, PaymentConfirmed, "charged");
    paid.payment_ref = Some("pay_123".into());
    let o = must!(
        orders.transition(&id, &paid).await,
        "PAYMENT_PENDING -> PAYMENT_CONFIRMED"
    );
    assert_eq!(
        (o.status, o.version, o.updated_at, o.payment_ref.as_deref()),
        (PaymentConfirmed, 3, t2, Some("pay_123")),
        "a transition bumps the version, sets updated_at = now and records the payment ref"
    );
    let mut expected = order.clone();
    expected.status = PaymentConfirmed;
    expected.version = 3;
    expected.updated_at = t2;
    expected.payment_ref = Some("pay_123".into());
    assert_eq!(stored(&ctx, &id).await, Some(expected.clone()));
    let hist = history(&ctx, &id).await;
    assert_eq!(
        hist[1..],
        [
            StatusChange {
                from: Some(Created),
                to: PaymentPending,
                reason: "stock reserved".into(),
                at: t1
            },
            StatusChange {
                from: Some(PaymentPending),
                to: PaymentConfirmed,
                reason: "charged".into(),
                at: t2
            },
        ],
        "each transition appends a history entry with its reason and time"
    );
    assert_eq!(
        ctx.events_since(mark).await,
        vec![
            status_event(&id, Created, PaymentPending),
            status_event(&id, PaymentPending, PaymentConfirmed)
        ]
    );
    let mark = ctx.event_mark().await;
    assert_err!(
        orders
            .transition(&id, &Transition::new(PaymentPending, Cancelled, "late"))
            .await,
        Error::Conflict {
            kind: EntityKind::Order,
            ..
        },
        "a transition whose `from` is not the stored status"
    );
    assert_err!(
        orders
            .transition(&id, &Transition::new(PaymentConfirmed, Created, "back"))
            .await,
        Error::InvalidTransition {
            entity: EntityKind::Order,
            ..
        },
        "PAYMENT_CONFIRMED -> CREATED"
    );
    assert_err!(
        orders
            .transition(
                &id,
                &Transition::new(PaymentConfirmed, Preparing, "x".repeat(501))
            )
            .await,
        Error::Validation { .. },
        "a 501-character reason"
    );
    let mut bad_ref = Transition::new(PaymentConfirmed, Preparing, "x");
    bad_ref.payment_ref = Some(String::new());
    assert_err!(
        orders.transition(&id, &bad_ref).await,
        Error::Validation { .. },
        "an empty payment ref"
    );
    assert_eq!(
        stored(&ctx, &id).await,
        Some(expected),
        "a refused transition wrote"
    );
    assert_eq!(history(&ctx, &id).await.len(), 3);
    assert_eq!(ctx.events_since(mark).await, vec![]);
}

async fn concurrent_transitions_exactly_one_wins(env: Env<'_>) {
    use OrderStatus::*;
    let ctx = env.ctx().await;
    let orders = ctx.orders();
    let order = create(&ctx, new_order("k-1", "c1", &[("A", 1, "1.00 USD")])).await;
    let id = order.id.clone();
    let mark = ctx.event_mark().await;
    let results = concurrently(16, |i| {
        let orders = orders.clone();
        let id = id.clone();
        let to = if i % 2 == 0 {
            PaymentPending
        } else {
            Cancelled
        };
        async move {
            orders
                .transition(&id, &Transition::new(Created, to, format!("worker {i}")))
                .await
        }
    })
    .await;
    let winners: Vec<&Order> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "16 workers advancing one order from CREATED: exactly one may win, got {results:#?}"
    );
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    Error::Conflict {
                        kind: EntityKind::Order,
                        ..
                    }
                ),
                "a losing worker gets Conflict {{ kind: Order }}, got {e:?}"
            );
        }
    }
    let winner = winners[0];
    assert_eq!(winner.version, 2);
    assert_eq!(stored(&ctx, &id).await.as_ref(), Some(winner));
    assert_eq!(
        history(&ctx, &id).await.len(),
        2,
        "exactly one history entry was added"
    );
    assert_eq!(
        ctx.events_since(mark).await,
        vec![status_event(&id, Created, winner.status)]
    );
}

/// A legal path from CREATED to `to`.
fn path_to(to: OrderStatus) -> Vec<OrderStatus> {
    use OrderStatus::*;
    let full = [
        PaymentPending,
        PaymentConfirmed,
        Preparing,
        Shipped,
        Delivered,
    ];
    match to {
        Created => vec![],
        Cancelled => vec![Cancelled],
        Refunded => vec![PaymentPending, PaymentConfirmed, Refunded],
        PartiallyRefunded => vec![
            PaymentPending,
            PaymentConfirmed,
            Preparing,
            Shipped,
            PartiallyRefunded,
        ],
        other => {
            let n = full.iter().position(|s| *s == other).map_or(0, |i| i + 1);
            full[..n].to_vec()
        }
    }
}

async fn order_in(ctx: &Ctx, status: OrderStatus, n: &mut u32) -> Order {
    *n += 1;
    let mut order = create(
        ctx,
        new_order(&format!("k-{n}"), "c1", &[("A", 1, "1.00 USD")]),
    )
    .await;
    for to in path_to(status) {
        order = must!(
            ctx.orders()
                .transition(&order.id, &Transition::new(order.status, to, "walk"))
                .await,
            "{} -> {to}",
            order.status
        );
    }
    assert_eq!(order.status, status);
    order
}

async fn every_pair_of_the_status_table_is_enforced(env: Env<'_>) {
    let ctx = env.ctx().await;
    let orders = ctx.orders();
    let mut n = 0;
    for from in OrderStatus::ALL {
        let probe = order_in(&ctx, from, &mut n).await;
        let hist = history(&ctx, &probe.id).await;
        for to in OrderStatus::ALL {
            if from.can_transition_to(to) {
                let order = order_in(&ctx, from, &mut n).await;
                let moved = must!(
                    orders
                        .transition(&order.id, &Transition::new(from, to, "table"))
                        .await,
                    "the legal transition {from} -> {to}"
                );
                assert_eq!(moved.status, to);
            } else {
                let mark = ctx.event_mark().await;
                assert_err!(
                    orders
                        .transition(&probe.id, &Transition::new(from, to, "table"))
                        .await,
                    Error::InvalidTransition {
                        entity: EntityKind::Order,
                        ..
                    },
                    "the illegal transition {from} -> {to}"
                );
                assert_eq!(stored(&ctx, &probe.id).await, Some(probe.clone()));
                assert_eq!(history(&ctx, &probe.id).await, hist);
                assert_eq!(ctx.events_since(mark).await, vec![]);
            }
        }
    }
    let delivered_history: Vec<OrderStatus> = {
        let o = order_in(&ctx, OrderStatus::Delivered, &mut n).await;
        history(&ctx, &o.id).await.iter().map(|c| c.to).collect()
    };
    use OrderStatus::*;
    assert_eq!(
        delivered_history,
        vec![
            Created,
            PaymentPending,
            PaymentConfirmed,
            Preparing,
            Shipped,
            Delivered
        ],
        "the history lists every status, oldest first"
    );
}

async fn unknown_orders_are_not_found(env: Env<'_>) {
    let ctx = env.ctx().await;
    let orders = ctx.orders();
    let ghost = oid("o-ghost");
    assert_eq!(stored(&ctx, &ghost).await, None);
    assert_eq!(
        must!(orders.get_order_by_key(&key("nope")).await, "by key"),
        None
    );
    assert_err!(
        orders
            .transition(
                &ghost,
                &Transition::new(OrderStatus::Created, OrderStatus::PaymentPending, "x")
            )
            .await,
        Error::NotFound {
            kind: EntityKind::Order,
            ..
        },
        "transition of an unknown order"
    );
    assert_err!(
        orders.history(&ghost).await,
        Error::NotFound {
            kind: EntityKind::Order,
            ..
        },
        "history of an unknown order"
    );
}

async fn listing_pages_through_every_match_once(env: Env<'_>) {
    use OrderStatus::*;
    let ctx = env.ctx().await;
    let orders = ctx.orders();
    let mut all = Vec::new();
    for i in 0..15u32 {
        let new = with_id(
            new_order(
                &format!("k-{i}"),
                ["c1", "c2", "c3"][i as usize % 3],
                &[("A", 1, "1.00 USD")],
            ),
            &format!("o-{:02}", (i * 7) % 15),
        );
        let mut o = create(&ctx, new).await;
        if i % 2 == 0 {
            o = must!(
                orders
                    .transition(&o.id, &Transition::new(Created, PaymentPending, "x"))
                    .await,
                "transition"
            );
        }
        all.push(o);
    }
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let queries = [
        (None, None, 4),
        (Some(PaymentPending), None, 3),
        (None, Some(cust("c2")), 2),
        (Some(Created), Some(cust("c3")), 1),
        (Some(Refunded), None, 5),
    ];
    for (status, customer, limit) in queries {
        let matches = |o: &Order| {
            status.is_none_or(|s| s == o.status)
                && customer
                    .as_ref()
                    .is_none_or(|c: &CustomerId| c == &o.customer_id)
        };
        let expected: Vec<Order> = all.iter().filter(|o| matches(o)).cloned().collect();
        let mut query = OrderQuery {
            status,
            customer_id: customer.clone(),
            after: None,
            limit,
        };
        let mut got: Vec<Order> = Vec::new();
        for round in 0.. {
            assert!(round < 1000, "pagination does not end");
            let page = must!(orders.list_orders(&query).await, "list_orders({query:?})");
            assert!(page.items.len() <= limit as usize);
            got.extend(page.items);
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        assert_eq!(
            got, expected,
            "list_orders(status {status:?}, customer {customer:?}, pages of {limit}) must list every match once, in id order"
        );
    }
    assert_err!(
        orders
            .list_orders(&OrderQuery {
                limit: 0,
                ..OrderQuery::default()
            })
            .await,
        Error::Validation { .. },
        "list_orders with limit 0"
    );
}

/// An order as a checkout with tax and shipping makes it: EU VAT 19 % on prices that
/// contain it, one line reduced (7 %), shipping 4.90 at 19 %.
pub(crate) fn taxed_order(k: &str) -> NewOrder {
    use crate::address::{Address, AddressInput};
    use crate::order::{CheckoutDetails, LineTax, OrderTax};
    use crate::shipping::{ShippingOption, Weight};
    use crate::tax::{PriceMode, TaxClass};
    use rust_decimal::Decimal;
    let m = super::fixtures::money;
    let address = |name: &str| {
        Address::new(AddressInput {
            name: name.into(),
            line1: "Unter den Linden 1".into(),
            city: "Berlin".into(),
            postal_code: Some("10117".into()),
            country: "DE".into(),
            ..AddressInput::default()
        })
        .expect("a valid German address")
    };
    let mut new = new_order(k, "c1", &[("A", 2, "11.90 EUR"), ("BOOK", 1, "10.70 EUR")]);
    // 23.80 gross at 19 %: net 20.00, tax 3.80; 10.70 at 7 %: net 10.00, tax 0.70.
    new.lines[0].tax = Some(LineTax {
        tax_class: TaxClass::standard(),
        rate: Decimal::new(19, 2),
        net: m("20.00 EUR"),
        tax: m("3.80 EUR"),
        gross: m("23.80 EUR"),
    });
    new.lines[1].tax = Some(LineTax {
        tax_class: TaxClass::reduced(),
        rate: Decimal::new(7, 2),
        net: m("10.00 EUR"),
        tax: m("0.70 EUR"),
        gross: m("10.70 EUR"),
    });
    new.shipping = m("4.90 EUR");
    // 4.90 × 0.19 / 1.19 = 0.7823… → 0.78; tax 3.80 + 0.70 + 0.78.
    new.tax = m("5.28 EUR");
    new.checkout = CheckoutDetails {
        shipping_address: Some(address("Erika Mustermann")),
        billing_address: Some(address("Max Mustermann")),
        shipping_option: Some(ShippingOption {
            method_id: "dhl-paket".into(),
            name: "DHL Paket".into(),
            zone: "Germany".into(),
            price: m("4.90 EUR"),
            chargeable_weight: Weight::from_grams(1200).expect("grams"),
            transit_days: Some((1, 3)),
        }),
        tax: Some(OrderTax {
            prices: PriceMode::TaxInclusive,
            shipping_tax: m("0.78 EUR"),
            jurisdictions: vec!["Germany".into()],
        }),
    };
    new
}

async fn addresses_shipping_and_line_tax_round_trip(env: Env<'_>) {
    let ctx = env.ctx().await;
    let new = with_id(taxed_order("k-tax"), "o-tax");
    let expected = must!(new.clone().into_order(ctx.now()), "reference into_order");
    // Prices contain the tax: the total is lines + shipping, tax not added again.
    assert_eq!(expected.totals.total.to_string(), "39.40 EUR");
    let order = create(&ctx, new).await;
    assert_eq!(order, expected, "create_order must keep every new field");
    assert_eq!(stored(&ctx, &order.id).await.as_ref(), Some(&expected));
    assert_eq!(
        must!(ctx.orders().get_order_by_key(&key("k-tax")).await, "by key"),
        Some(expected.clone())
    );
    let moved = must!(
        ctx.orders()
            .transition(
                &order.id,
                &Transition::new(OrderStatus::Created, OrderStatus::PaymentPending, "t")
            )
            .await,
        "transition"
    );
    assert_eq!(
        moved.checkout, expected.checkout,
        "a transition lost the details"
    );
    assert_eq!(
        moved.lines, expected.lines,
        "a transition lost the line tax"
    );
    let page = must!(
        ctx.orders()
            .list_orders(&OrderQuery {
                limit: 10,
                ..OrderQuery::default()
            })
            .await,
        "list"
    );
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].checkout, expected.checkout);
    assert_eq!(page.items[0].lines, expected.lines);
}

async fn inconsistent_tax_details_write_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let mark = ctx.event_mark().await;
    let m = super::fixtures::money;
    let mut wrong_total = taxed_order("k-bad");
    wrong_total.tax = m("5.29 EUR");
    let mut missing_line = taxed_order("k-bad");
    missing_line.lines[1].tax = None;
    let mut net_plus_tax = taxed_order("k-bad");
    if let Some(t) = net_plus_tax.lines[0].tax.as_mut() {
        t.net = m("20.01 EUR");
    }
    let mut shipping_price = taxed_order("k-bad");
    shipping_price.shipping = m("5.90 EUR");
    let mut no_details = taxed_order("k-bad");
    no_details.checkout.tax = None;
    for (what, new) in [
        ("a tax that is not the lines' and shipping's", wrong_total),
        ("a line without its tax", missing_line),
        ("net + tax != gross", net_plus_tax),
        (
            "shipping other than the chosen option's price",
            shipping_price,
        ),
        ("line tax without the order's tax details", no_details),
    ] {
        assert_err!(
            ctx.orders().create_order(new).await,
            Error::Validation { .. },
            "create_order with {what}"
        );
    }
    assert_eq!(
        must!(ctx.orders().get_order_by_key(&key("k-bad")).await, "by key"),
        None
    );
    assert_eq!(ctx.events_since(mark).await, vec![]);
}

/// The statuses an order walks through after `CREATED` in
/// [`events_never_precede_their_change_and_come_in_order`].
const WALK: [OrderStatus; 5] = [
    OrderStatus::PaymentPending,
    OrderStatus::PaymentConfirmed,
    OrderStatus::Preparing,
    OrderStatus::Shipped,
    OrderStatus::Delivered,
];

/// Many tasks create orders and move them along [`WALK`] (interleaving their orders, so
/// a store that groups concurrent writes groups changes of many orders), while two
/// saboteurs race to cancel some of them (so one order can have two changes in flight).
/// A reader following the log meanwhile must never see an event before its change: an
/// `OrderCreated` only once the order exists, an `OrderStatusChanged(from, to)` only once
/// the order's history holds that step. Afterwards each order's events, in log order,
/// are exactly its history: one event per change, in the order of the changes.
async fn events_never_precede_their_change_and_come_in_order(env: Env<'_>) {
    use OrderStatus::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let ctx = env.ctx().await;
    let orders = ctx.orders();
    let events = ctx.events();
    let owners = 8usize;
    let per_owner = 4usize;
    let saboteurs = 2usize;
    let id_of = |t: usize, i: usize| oid(&format!("o-{t}-{i}"));
    let mark = ctx.event_mark().await;
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let (orders, stop) = (orders.clone(), stop.clone());
        tokio::spawn(async move {
            let mut cursor = mark;
            let mut checked = 0usize;
            loop {
                let done = stop.load(Ordering::SeqCst);
                let page = events.read(cursor, 100).await.expect("EventLog::read");
                for e in &page {
                    cursor = e.id;
                    match &e.event {
                        DomainEvent::OrderCreated { order_id, .. } => {
                            let o = orders.get_order(order_id).await.expect("get_order");
                            assert!(
                                o.is_some(),
                                "OrderCreated({order_id}) was readable before the order existed (events must commit with their change)"
                            );
                            checked += 1;
                        }
                        DomainEvent::OrderStatusChanged { order_id, from, to } => {
                            let h = orders.history(order_id).await.expect("history");
                            assert!(
                                h.iter().any(|c| c.from == Some(*from) && c.to == *to),
                                "OrderStatusChanged({order_id}, {from} -> {to}) was readable while the order's history was {:?} (events must commit with their change)",
                                h.iter().map(|c| (c.from, c.to)).collect::<Vec<_>>()
                            );
                            checked += 1;
                        }
                        _ => {}
                    }
                }
                if done && page.is_empty() {
                    return checked;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    concurrently(owners + saboteurs, |t| {
        let orders = orders.clone();
        async move {
            if t >= owners {
                // A saboteur: cancels every third order it finds still cancellable.
                for pass in 0..12 {
                    for o in 0..owners {
                        for i in (0..per_owner).filter(|i| (o + i + pass + t) % 3 == 0) {
                            let id = id_of(o, i);
                            let Some(order) = orders.get_order(&id).await.expect("get_order")
                            else {
                                continue;
                            };
                            if !matches!(order.status, Created | PaymentPending) {
                                continue;
                            }
                            let cancel = Transition::new(order.status, Cancelled, "sabotage");
                            match orders.transition(&id, &cancel).await {
                                Ok(_) | Err(Error::Conflict { .. }) => {}
                                Err(e) => panic!(
                                    "transition({id}, {} -> CANCELLED) raced by its owner: expected Ok or Conflict, got {e:?}",
                                    order.status
                                ),
                            }
                        }
                    }
                    tokio::task::yield_now().await;
                }
                return;
            }
            let mut mine = Vec::with_capacity(per_owner);
            for i in 0..per_owner {
                let new = with_id(
                    new_order(&format!("k-{t}-{i}"), &format!("c{t}"), &[("A", 1, "1.00 USD")]),
                    id_of(t, i).as_str(),
                );
                let created = orders.create_order(new).await.expect("create_order");
                mine.push(created.into_order());
            }
            for to in WALK {
                for order in mine.iter_mut().filter(|o| o.status != Cancelled) {
                    let change = Transition::new(order.status, to, "walk");
                    match orders.transition(&order.id, &change).await {
                        Ok(moved) => *order = moved,
                        Err(Error::Conflict { .. }) => {
                            let now = orders
                                .get_order(&order.id)
                                .await
                                .expect("get_order")
                                .expect("the order exists");
                            assert_eq!(
                                now.status, Cancelled,
                                "{} -> {to} of {} lost its compare-and-set, so a saboteur must have cancelled it",
                                order.status, order.id
                            );
                            *order = now;
                        }
                        Err(e) => panic!(
                            "transition({}, {} -> {to}): unexpected error {e:?}",
                            order.id, order.status
                        ),
                    }
                }
            }
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let checked = super::check::join(observer, "the event observer").await;

    let mut seen: std::collections::BTreeMap<OrderId, Vec<DomainEvent>> = Default::default();
    let mut total = 0usize;
    for e in ctx.events_since(mark).await {
        let id = match &e {
            DomainEvent::OrderCreated { order_id, .. }
            | DomainEvent::OrderStatusChanged { order_id, .. } => order_id.clone(),
            _ => continue,
        };
        total += 1;
        seen.entry(id).or_default().push(e);
    }
    assert_eq!(checked, total, "the observer checked every order event");
    assert_eq!(seen.len(), owners * per_owner, "one OrderCreated per order");
    for t in 0..owners {
        for i in 0..per_owner {
            let id = id_of(t, i);
            let order = stored(&ctx, &id).await.expect("the order exists");
            assert!(
                matches!(order.status, Delivered | Cancelled),
                "{id} ended in {}",
                order.status
            );
            let mut expected = vec![created_event(&order)];
            for c in history(&ctx, &id).await.iter().skip(1) {
                let from = c
                    .from
                    .unwrap_or_else(|| panic!("{id}: a later history entry without `from`"));
                expected.push(status_event(&id, from, c.to));
            }
            assert_eq!(
                seen.get(&id),
                Some(&expected),
                "the events of {id} must be exactly its changes, in the order of its history"
            );
        }
    }
}

async fn returned_orders_read_back_equal(env: Env<'_>) {
    let ctx = env.ctx().await;
    ctx.advance(Duration::from_nanos(1_234_567_891));
    let order = create(&ctx, new_order("k-ns", "c1", &[("A", 1, "1.00 USD")])).await;
    assert_eq!(
        stored(&ctx, &order.id).await.as_ref(),
        Some(&order),
        "the order create_order returned must read back equal (clock at {})",
        ctx.now()
    );
    ctx.advance(Duration::from_nanos(987_654_321));
    let change = Transition::new(OrderStatus::Created, OrderStatus::Cancelled, "kit");
    let moved = must!(
        ctx.orders().transition(&order.id, &change).await,
        "transition"
    );
    assert_eq!(
        stored(&ctx, &order.id).await.as_ref(),
        Some(&moved),
        "the order transition returned must read back equal (clock at {})",
        ctx.now()
    );
}
