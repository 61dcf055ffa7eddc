//! CheckoutService: revalidation, totals, idempotency.

mod service_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use commerce_core::Error;
use commerce_core::cart::{CartLimits, CartOwner};
use commerce_core::id::{CartId, CustomerId, IdempotencyKey};
use commerce_core::order::OrderStatus;
use commerce_core::service::*;
use commerce_core::store::OrderQuery;
use rust_decimal_macros::dec;
use service_support::Fixture;

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).expect("key")
}

fn alice() -> (CustomerId, CartId, CartOwner) {
    let c = CustomerId::new("alice").expect("id");
    (c.clone(), CartId::for_customer(&c), CartOwner::Customer(c))
}

fn placed(outcome: CheckoutOutcome) -> (commerce_core::order::Order, bool) {
    match outcome {
        CheckoutOutcome::Placed { order, created, .. } => (order, created),
        CheckoutOutcome::NeedsReview(r) => panic!("unexpected review: {r:?}"),
    }
}

fn review(outcome: CheckoutOutcome) -> Revalidation {
    match outcome {
        CheckoutOutcome::NeedsReview(r) => r,
        CheckoutOutcome::Placed { order, .. } => panic!("unexpected order {}", order.id),
    }
}

#[tokio::test]
async fn totals_are_computed_in_money_with_shipping_and_tax() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 50).await;
    let checkout = CheckoutService::new(
        &f.stores,
        CheckoutConfig {
            flat_shipping: dec!(5.99),
            free_shipping_from: Some(dec!(50)),
            tax_rate: dec!(0.0825),
            ..CheckoutConfig::default()
        },
    );
    let carts = f.carts();
    let (c, id, owner) = alice();
    carts.add(&id, &owner, &a, 2).await.expect("add");
    let (order, created) = placed(
        checkout
            .checkout(&CheckoutRequest::server_cart(
                c.clone(),
                id.clone(),
                owner.clone(),
                key("k1"),
            ))
            .await
            .expect("checkout"),
    );
    assert!(created);
    let t = order.totals;
    assert_eq!(
        [t.subtotal, t.shipping, t.tax, t.total].map(|m| m.to_string()),
        ["20.00 USD", "5.99 USD", "1.65 USD", "27.64 USD"]
    );
    assert_eq!(order.status, OrderStatus::Created);
    assert_eq!(order.lines[0].title, "Product A-1");
    assert!(
        carts.get(&id, &owner).await.expect("get").is_none(),
        "the server cart is deleted once the order exists"
    );

    carts.add(&id, &owner, &a, 6).await.expect("add");
    let (order, _) = placed(
        checkout
            .checkout(&CheckoutRequest::server_cart(c, id, owner, key("k2")))
            .await
            .expect("checkout"),
    );
    let t = order.totals;
    assert_eq!(
        [t.subtotal, t.shipping, t.tax, t.total].map(|m| m.to_string()),
        ["60.00 USD", "0.00 USD", "4.95 USD", "64.95 USD"],
        "free shipping from 50"
    );
}

#[tokio::test]
async fn a_price_change_is_reported_per_line_and_can_be_accepted() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 50).await;
    let b = f.product("B-1", "4.00 USD", 50).await;
    let carts = f.carts();
    let checkout = f.checkout();
    let (c, id, owner) = alice();
    carts.add(&id, &owner, &a, 1).await.expect("add");
    carts.add(&id, &owner, &b, 1).await.expect("add");
    f.reprice(&a, "12.00 USD").await;

    let request = CheckoutRequest::server_cart(c, id.clone(), owner.clone(), key("k1"));
    let r = review(checkout.checkout(&request).await.expect("checkout"));
    let issues: Vec<_> = r.issues().collect();
    assert_eq!(issues.len(), 1, "only the changed line: {issues:?}");
    assert_eq!(issues[0].0, &a);
    match issues[0].1 {
        LineIssue::PriceChanged { was, now } => {
            assert_eq!(
                (was.to_string(), now.to_string()),
                ("10.00 USD".into(), "12.00 USD".into())
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        f.stores
            .orders
            .get_order_by_key(&key("k1"))
            .await
            .expect("read")
            .is_none(),
        "nothing is created while the shopper has not accepted"
    );
    assert!(carts.get(&id, &owner).await.expect("get").is_some());

    // Accepting a stale price does not help: the price moved again.
    let mut stale = request.clone();
    stale.accepted_prices = BTreeMap::from([(a.clone(), "11.00 USD".parse().expect("m"))]);
    assert!(matches!(
        checkout.checkout(&stale).await.expect("checkout"),
        CheckoutOutcome::NeedsReview(_)
    ));

    let (order, _) = placed(
        checkout
            .checkout(&request.clone().accepting(&r))
            .await
            .expect("checkout"),
    );
    assert_eq!(order.lines[0].unit_price.to_string(), "12.00 USD");
    assert_eq!(order.totals.total.to_string(), "16.00 USD");
}

#[tokio::test]
async fn price_drops_are_taken_unless_configured_otherwise() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 50).await;
    let carts = f.carts();
    let (c, id, owner) = alice();
    carts.add(&id, &owner, &a, 1).await.expect("add");
    f.reprice(&a, "8.00 USD").await;
    let strict = CheckoutService::new(
        &f.stores,
        CheckoutConfig {
            auto_accept_price_drops: false,
            ..CheckoutConfig::default()
        },
    );
    let request = CheckoutRequest::server_cart(c, id, owner, key("k1"));
    assert!(matches!(
        strict.checkout(&request).await.expect("checkout"),
        CheckoutOutcome::NeedsReview(_)
    ));
    let (order, _) = placed(f.checkout().checkout(&request).await.expect("checkout"));
    assert_eq!(order.totals.total.to_string(), "8.00 USD");
}

#[tokio::test]
async fn out_of_stock_and_unsold_lines_are_reported_per_line() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 5).await;
    let b = f.product("B-1", "4.00 USD", 5).await;
    let carts = f.carts();
    let (c, id, owner) = alice();
    carts.add(&id, &owner, &a, 4).await.expect("add");
    carts.add(&id, &owner, &b, 2).await.expect("add");
    // Someone buys 3 of A meanwhile.
    f.order("bob", &[(&a, 3)]).await;
    let pipeline = f.pipeline();
    let bobs = f
        .stores
        .orders
        .list_orders(&OrderQuery {
            limit: 10,
            ..OrderQuery::default()
        })
        .await
        .expect("list");
    pipeline.process(&bobs.items[0].id).await.expect("process");

    let r = review(
        f.checkout()
            .checkout(&CheckoutRequest::server_cart(c, id, owner, key("k1")))
            .await
            .expect("checkout"),
    );
    assert_eq!(
        r.lines[0].issues,
        vec![LineIssue::OutOfStock {
            requested: 4,
            available: 2
        }]
    );
    assert!(r.lines[1].issues.is_empty());
    assert_eq!(r.subtotal.map(|m| m.to_string()), Some("48.00 USD".into()));
}

#[tokio::test]
async fn a_retried_checkout_returns_the_same_order() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 5).await;
    let carts = f.carts();
    let checkout = f.checkout();
    let (c, id, owner) = alice();
    carts.add(&id, &owner, &a, 1).await.expect("add");
    let request = CheckoutRequest::server_cart(c.clone(), id, owner, key("k1"));
    let (first, created) = placed(checkout.checkout(&request).await.expect("checkout"));
    assert!(created);
    // The cart is gone now, but the key still answers.
    let (again, created) = placed(checkout.checkout(&request).await.expect("retry"));
    assert!(!created);
    assert_eq!(again.id, first.id);

    // Another customer cannot use the key.
    let bob = CustomerId::new("bob").expect("id");
    let stolen = CheckoutRequest::client_cart(
        bob,
        ClientCart::from_json(r#"{"items":[{"sku":"A-1","quantity":1}]}"#).expect("cart"),
        key("k1"),
    );
    assert!(matches!(
        checkout.checkout(&stolen).await,
        Err(Error::Conflict { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_checkouts_create_and_charge_one_order() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 5).await;
    let checkout = Arc::new(f.checkout());
    let cart = ClientCart::from_json(r#"{"items":[{"sku":"A-1","quantity":2}]}"#).expect("cart");
    let request =
        CheckoutRequest::client_cart(CustomerId::new("alice").expect("id"), cart, key("dup"));
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (checkout, request) = (checkout.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            placed(checkout.checkout(&request).await.expect("checkout"))
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for t in tasks {
        let (order, c) = t.await.expect("task");
        ids.insert(order.id);
        created += usize::from(c);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);
    let all = f
        .stores
        .orders
        .list_orders(&OrderQuery {
            limit: 100,
            ..OrderQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(all.items.len(), 1);

    // Processing the order from several workers at once charges it once.
    let pipeline = f.pipeline();
    let id = all.items[0].id.clone();
    let runs = (0..8).map(|_| {
        let (p, id) = (pipeline.clone(), id.clone());
        tokio::spawn(async move { p.process(&id).await })
    });
    for r in futures::future::join_all(runs).await {
        assert_eq!(
            r.expect("task").expect("process").status,
            OrderStatus::Preparing
        );
    }
    assert_eq!(f.payments.captures().len(), 1);
    assert_eq!(f.available(&a).await, 3);
    assert_eq!(f.stock(&a).await.sold(), 2);
    f.audit_clean().await;
}

#[tokio::test]
async fn missing_empty_and_foreign_carts_are_errors() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 5).await;
    let checkout = f.checkout();
    let (c, id, owner) = alice();
    assert!(matches!(
        checkout
            .checkout(&CheckoutRequest::server_cart(
                c.clone(),
                id.clone(),
                owner.clone(),
                key("k")
            ))
            .await,
        Err(Error::NotFound { .. })
    ));
    let empty = CheckoutRequest::client_cart(c.clone(), ClientCart::default(), key("k"));
    assert!(matches!(
        checkout.checkout(&empty).await,
        Err(Error::Validation { .. })
    ));
    // Bob cannot check out Alice's cart.
    f.carts().add(&id, &owner, &a, 1).await.expect("add");
    let bob = CustomerId::new("bob").expect("id");
    assert!(matches!(
        checkout
            .checkout(&CheckoutRequest::server_cart(bob, id, owner, key("k")))
            .await,
        Err(Error::NotFound { .. })
    ));
    // A client cart over the limits.
    let limited = CheckoutService::new(
        &f.stores,
        CheckoutConfig {
            limits: CartLimits {
                max_line_quantity: 2,
                ..CartLimits::default()
            },
            ..CheckoutConfig::default()
        },
    );
    let big = CheckoutRequest::client_cart(
        c,
        ClientCart::from_json(r#"{"items":[{"sku":"A-1","quantity":3}]}"#).expect("cart"),
        key("k"),
    );
    assert!(matches!(
        limited.checkout(&big).await,
        Err(Error::Validation { .. })
    ));
}

#[tokio::test]
async fn a_client_cart_is_charged_at_catalog_prices() {
    let f = Fixture::new();
    f.product("A-1", "10.00 USD", 5).await;
    let cart = ClientCart::from_json(
        r#"{"items":[{"sku":"A-1","quantity":2,"unit_price":{"amount":"10.00","currency":"USD"}}]}"#,
    )
    .expect("cart");
    let request = CheckoutRequest::client_cart(
        CustomerId::new("alice").expect("id"),
        cart.clone(),
        key("k1"),
    );
    let (order, _) = placed(f.checkout().checkout(&request).await.expect("checkout"));
    assert_eq!(order.totals.total.to_string(), "20.00 USD");

    // A client that lies about the price gets a review, never a cheaper order.
    let mut lying = cart;
    lying.items[0].unit_price = Some("0.01 USD".parse().expect("m"));
    let request =
        CheckoutRequest::client_cart(CustomerId::new("alice").expect("id"), lying, key("k2"));
    let r = review(f.checkout().checkout(&request).await.expect("checkout"));
    let (order, _) = placed(
        f.checkout()
            .checkout(&request.accepting(&r))
            .await
            .expect("checkout"),
    );
    assert_eq!(order.totals.total.to_string(), "20.00 USD");
}

/// Admits `budget` checkouts per customer, then limits; or fails every call.
#[derive(Debug)]
struct CountingLimiter {
    budget: u32,
    failing: bool,
    used: std::sync::Mutex<BTreeMap<String, u32>>,
}

#[async_trait::async_trait]
impl commerce_core::resilience::UserRateLimit for CountingLimiter {
    async fn admit(
        &self,
        action: commerce_core::resilience::LimitedAction,
        user: &str,
    ) -> commerce_core::Result<commerce_core::resilience::Admission> {
        assert_eq!(action, commerce_core::resilience::LimitedAction::Checkout);
        if self.failing {
            return Err(Error::backend(true, "limiter down"));
        }
        let mut used = self.used.lock().unwrap();
        let n = used.entry(user.to_owned()).or_default();
        *n += 1;
        Ok(if *n <= self.budget {
            commerce_core::resilience::Admission::Admitted
        } else {
            commerce_core::resilience::Admission::Limited {
                retry_after: std::time::Duration::from_secs(30),
            }
        })
    }
}

#[tokio::test]
async fn a_customer_over_the_checkout_rate_is_limited_and_nothing_is_created() {
    let f = Fixture::new();
    f.product("A-1", "10.00 USD", 50).await;
    let limiter = Arc::new(CountingLimiter {
        budget: 2,
        failing: false,
        used: Default::default(),
    });
    let checkout = f.checkout().with_rate_limit(limiter, f.clock.clone());
    let cart = || ClientCart::from_json(r#"{"items":[{"sku":"A-1","quantity":1}]}"#).expect("cart");
    let (alice, _, _) = alice();
    for k in ["k1", "k2"] {
        let request = CheckoutRequest::client_cart(alice.clone(), cart(), key(k));
        placed(checkout.checkout(&request).await.expect("within the rate"));
    }
    let request = CheckoutRequest::client_cart(alice.clone(), cart(), key("k3"));
    match checkout.checkout(&request).await {
        Err(Error::RateLimited { retry_after }) => {
            assert_eq!(retry_after, std::time::Duration::from_secs(30))
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(
        f.stores
            .orders
            .get_order_by_key(&key("k3"))
            .await
            .expect("read")
            .is_none(),
        "a limited checkout creates nothing"
    );
    // Another customer has their own budget.
    let bob = CustomerId::new("bob").expect("id");
    let request = CheckoutRequest::client_cart(bob, cart(), key("b1"));
    placed(
        checkout
            .checkout(&request)
            .await
            .expect("bob is not limited"),
    );
}

#[tokio::test]
async fn a_failing_rate_limiter_lets_checkout_through() {
    let f = Fixture::new();
    f.product("A-1", "10.00 USD", 5).await;
    let limiter = Arc::new(CountingLimiter {
        budget: 0,
        failing: true,
        used: Default::default(),
    });
    let checkout = f.checkout().with_rate_limit(limiter, f.clock.clone());
    let (alice, _, _) = alice();
    let request = CheckoutRequest::client_cart(
        alice,
        ClientCart::from_json(r#"{"items":[{"sku":"A-1","quantity":1}]}"#).expect("cart"),
        key("k1"),
    );
    let (_, created) = placed(checkout.checkout(&request).await.expect("fails open"));
    assert!(created);
}

/// A key reused for another basket is a conflict (as payment APIs do); the same basket
/// is a retry and gets the same order.
#[tokio::test]
async fn a_key_reused_for_another_basket_is_a_conflict() {
    let f = Fixture::new();
    f.product("A-1", "10.00 USD", 5).await;
    f.product("B-1", "4.00 USD", 5).await;
    let cart = |json: &str| ClientCart::from_json(json).expect("cart");
    let alice = || CustomerId::new("alice").expect("id");
    let first = CheckoutRequest::client_cart(
        alice(),
        cart(r#"{"items":[{"sku":"A-1","quantity":2}]}"#),
        key("k-basket"),
    );
    let (order, created) = placed(f.checkout().checkout(&first).await.expect("checkout"));
    assert!(created);
    let (again, created) = placed(f.checkout().checkout(&first).await.expect("retry"));
    assert_eq!((again.id, created), (order.id.clone(), false));
    for other in [
        r#"{"items":[{"sku":"B-1","quantity":2}]}"#,
        r#"{"items":[{"sku":"A-1","quantity":3}]}"#,
    ] {
        let request = CheckoutRequest::client_cart(alice(), cart(other), key("k-basket"));
        let err = f
            .checkout()
            .checkout(&request)
            .await
            .expect_err("another basket");
        assert!(
            matches!(err, commerce_core::Error::Conflict { .. }),
            "{other}: {err:?}"
        );
    }
}
