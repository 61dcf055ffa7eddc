//! CartService: prices, availability, limits, expiry, sign-in merge, client and hybrid
//! carts, and concurrent writers.

mod service_support;

use std::sync::Arc;
use std::time::Duration;

use commerce_core::Error;
use commerce_core::cart::{CartLimits, CartOwner};
use commerce_core::id::{CartId, CustomerId, Sku};
use commerce_core::service::*;
use service_support::Fixture;

fn customer(name: &str) -> (CustomerId, CartId, CartOwner) {
    let c = CustomerId::new(name).expect("id");
    (c.clone(), CartId::for_customer(&c), CartOwner::Customer(c))
}

#[tokio::test]
async fn add_snapshots_the_catalog_price_merges_lines_and_slides_the_expiry() {
    let f = Fixture::new();
    let sku = f.product("A-1", "10.00 USD", 50).await;
    let carts = f.carts();
    let id = CartId::new_guest();
    let cart = carts
        .add(&id, &CartOwner::Guest, &sku, 2)
        .await
        .expect("add");
    assert_eq!(cart.items[0].unit_price.to_string(), "10.00 USD");
    let first_expiry = cart.expires_at;

    f.reprice(&sku, "12.50 USD").await;
    f.clock.advance(Duration::from_secs(3600));
    let cart = carts
        .add(&id, &CartOwner::Guest, &sku, 3)
        .await
        .expect("add");
    assert_eq!(cart.items.len(), 1, "same SKU merges into one line");
    assert_eq!(cart.items[0].quantity, 5);
    assert_eq!(
        cart.items[0].unit_price.to_string(),
        "12.50 USD",
        "a new add takes the current price"
    );
    assert_eq!((cart.expires_at - first_expiry).num_seconds(), 3600);

    // The sliding expiry: 7 days after the last write, the cart is gone.
    f.clock.advance(Duration::from_secs(7 * 24 * 3600 - 1));
    assert!(
        carts
            .get(&id, &CartOwner::Guest)
            .await
            .expect("get")
            .is_some()
    );
    f.clock.advance(Duration::from_secs(1));
    assert!(
        carts
            .get(&id, &CartOwner::Guest)
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn add_refuses_unknown_skus_missing_stock_and_broken_limits_without_writing() {
    let f = Fixture::new();
    let sku = f.product("A-1", "10.00 USD", 5).await;
    let other = f.product("B-1", "1.00 USD", 500).await;
    let third = f.product("C-1", "1.00 USD", 500).await;
    let carts = CartService::new(
        &f.stores,
        CartLimits {
            max_line_quantity: 10,
            max_lines: 2,
            ..CartLimits::default()
        },
    );
    let id = CartId::new_guest();
    let g = CartOwner::Guest;

    let unknown = Sku::new("NOPE").expect("sku");
    assert!(matches!(
        carts.add(&id, &g, &unknown, 1).await,
        Err(Error::NotFound { .. })
    ));
    carts.add(&id, &g, &sku, 3).await.expect("add");
    match carts.add(&id, &g, &sku, 3).await {
        Err(Error::OutOfStock {
            requested,
            available,
            ..
        }) => assert_eq!((requested, available), (6, 5), "counts what the cart holds"),
        other => panic!("expected out of stock, got {other:?}"),
    }
    assert!(matches!(
        carts.add(&id, &g, &other, 11).await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        carts.add(&id, &g, &other, 0).await,
        Err(Error::Validation { .. })
    ));
    carts.add(&id, &g, &other, 10).await.expect("add");
    assert!(
        matches!(
            carts.add(&id, &g, &other, 1).await,
            Err(Error::Validation { .. })
        ),
        "line limit"
    );
    assert!(
        matches!(
            carts.add(&id, &g, &third, 1).await,
            Err(Error::Validation { .. })
        ),
        "cart limit"
    );
    let cart = carts.get(&id, &g).await.expect("get").expect("cart");
    assert_eq!(
        cart.items.iter().map(|i| i.quantity).collect::<Vec<_>>(),
        vec![3, 10],
        "failed adds changed nothing"
    );

    // Inactive product: not sold.
    let mut p = f
        .stores
        .catalog
        .get_product_by_sku(&third)
        .await
        .expect("read")
        .expect("p");
    p.status = commerce_core::catalog::ProductStatus::Archived;
    f.stores.catalog.update_product(p).await.expect("archive");
    let other_cart = CartId::new_guest();
    assert!(matches!(
        carts.add(&other_cart, &g, &third, 1).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn cart_ids_and_owners_must_agree() {
    let f = Fixture::new();
    let sku = f.product("A-1", "10.00 USD", 5).await;
    let carts = f.carts();
    let (_, alice_cart, alice) = customer("alice");
    // A guest cannot squat a customer's cart id, nor a customer use a guest id.
    assert!(matches!(
        carts.add(&alice_cart, &CartOwner::Guest, &sku, 1).await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        carts.add(&CartId::new_guest(), &alice, &sku, 1).await,
        Err(Error::Validation { .. })
    ));
    // Another customer's cart is invisible.
    carts.add(&alice_cart, &alice, &sku, 1).await.expect("add");
    let (_, _, bob) = customer("bob");
    assert!(matches!(
        carts.get(&alice_cart, &bob).await,
        Err(Error::Validation { .. })
    ));
}

#[tokio::test]
async fn update_remove_and_clear() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 5).await;
    let b = f.product("B-1", "2.00 USD", 5).await;
    let carts = f.carts();
    let (_, id, owner) = customer("alice");
    carts.add(&id, &owner, &a, 1).await.expect("add");
    carts.add(&id, &owner, &b, 1).await.expect("add");

    let cart = carts.set_quantity(&id, &owner, &a, 4).await.expect("set");
    assert_eq!(cart.item(&a).map(|i| i.quantity), Some(4));
    assert!(matches!(
        carts.set_quantity(&id, &owner, &a, 6).await,
        Err(Error::OutOfStock { .. })
    ));
    let cart = carts.set_quantity(&id, &owner, &a, 2).await.expect("lower");
    assert_eq!(cart.item(&a).map(|i| i.quantity), Some(2));
    let cart = carts
        .set_quantity(&id, &owner, &a, 0)
        .await
        .expect("zero removes");
    assert!(cart.item(&a).is_none());
    assert!(matches!(
        carts.set_quantity(&id, &owner, &a, 1).await,
        Err(Error::NotFound { .. })
    ));
    let cart = carts.remove(&id, &owner, &b).await.expect("remove");
    assert!(cart.items.is_empty());
    carts.clear(&id, &owner).await.expect("clear");
    carts.clear(&id, &owner).await.expect("clear is idempotent");
    assert!(carts.get(&id, &owner).await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_to_one_cart_all_count() {
    let f = Fixture::new();
    let sku = f.product("A-1", "10.00 USD", 1000).await;
    let others: Vec<Sku> =
        futures::future::join_all((0..8).map(|i| f.product_owned(format!("O-{i}")))).await;
    let carts = Arc::new(f.carts());
    let id = CartId::new_guest();
    let mut tasks = Vec::new();
    for t in 0..64 {
        let (carts, id, sku) = (carts.clone(), id.clone(), sku.clone());
        let other = others[t % others.len()].clone();
        tasks.push(tokio::spawn(async move {
            carts
                .add(&id, &CartOwner::Guest, &sku, 1)
                .await
                .expect("add");
            carts
                .add(&id, &CartOwner::Guest, &other, 1)
                .await
                .expect("add other");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let cart = carts
        .get(&id, &CartOwner::Guest)
        .await
        .expect("get")
        .expect("cart");
    assert_eq!(cart.item(&sku).map(|i| i.quantity), Some(64));
    assert_eq!(cart.items.len(), 9);
    assert_eq!(cart.total_quantity(), 128);
    assert_eq!(cart.version, 128, "one version per write");
}

impl Fixture {
    async fn product_owned(&self, sku: String) -> Sku {
        self.product(&sku, "1.00 USD", 1000).await
    }
}

#[tokio::test]
async fn sign_in_merges_by_the_documented_policy() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 8).await;
    let b = f.product("B-1", "5.00 USD", 100).await;
    let gone = f.product("C-1", "1.00 USD", 0).await;
    let carts = f.carts();
    let (alice, alice_cart, owner) = customer("alice");

    carts.add(&alice_cart, &owner, &a, 5).await.expect("add");
    carts.add(&alice_cart, &owner, &b, 1).await.expect("add");
    f.clock.advance(Duration::from_secs(60));
    f.reprice(&b, "4.00 USD").await;
    let guest = CartId::new_guest();
    carts
        .add(&guest, &CartOwner::Guest, &a, 6)
        .await
        .expect("add");
    carts
        .add(&guest, &CartOwner::Guest, &b, 2)
        .await
        .expect("add");
    f.restock(&gone, 1).await;
    carts
        .add(&guest, &CartOwner::Guest, &gone, 1)
        .await
        .expect("add");
    f.stores
        .inventory
        .adjust(
            &gone,
            &commerce_core::id::LocationId::new("main").expect("id"),
            -1,
            "damaged",
        )
        .await
        .expect("adjust");

    let (cart, report) = carts.sign_in(&guest, &alice).await.expect("merge");
    // a: 5 + 6 = 11 wanted, 8 available: capped at 8.
    assert_eq!(cart.item(&a).map(|i| i.quantity), Some(8));
    // b: adds up; the guest's later snapshot (4.00) wins.
    let line_b = cart.item(&b).expect("b");
    assert_eq!(
        (line_b.quantity, line_b.unit_price.to_string()),
        (3, "4.00 USD".into())
    );
    // c: no stock left: dropped.
    assert!(cart.item(&gone).is_none());
    assert_eq!(report.capped, vec![a.clone()]);
    assert_eq!(report.dropped, vec![gone.clone()]);
    // The guest cart is gone; signing in again merges nothing.
    assert!(
        carts
            .get(&guest, &CartOwner::Guest)
            .await
            .expect("get")
            .is_none()
    );
    let (again, report) = carts.sign_in(&guest, &alice).await.expect("merge again");
    assert_eq!(again.items, cart.items);
    assert!(report.capped.is_empty() && report.dropped.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_is_atomic_with_concurrent_guest_writes() {
    let f = Fixture::new();
    let sku = f.product("A-1", "10.00 USD", 1000).await;
    let carts = Arc::new(f.carts());
    let (alice, alice_cart, owner) = customer("alice");
    let guest = CartId::new_guest();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (carts, guest, sku, alice) = (carts.clone(), guest.clone(), sku.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            carts
                .add(&guest, &CartOwner::Guest, &sku, 1)
                .await
                .expect("add");
            if i % 10 == 0 {
                carts.sign_in(&guest, &alice).await.expect("merge");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Whatever interleaving happened, every unit is in exactly one of the two carts.
    let merged = carts
        .get(&alice_cart, &owner)
        .await
        .expect("get")
        .and_then(|c| c.item(&sku).map(|i| i.quantity))
        .unwrap_or(0);
    let left = carts
        .get(&guest, &CartOwner::Guest)
        .await
        .expect("get")
        .and_then(|c| c.item(&sku).map(|i| i.quantity))
        .unwrap_or(0);
    assert_eq!(
        merged + left,
        40,
        "merged {merged}, left in guest cart {left}"
    );
    let (cart, _) = carts.sign_in(&guest, &alice).await.expect("final merge");
    assert_eq!(cart.item(&sku).map(|i| i.quantity), Some(40));
}

#[tokio::test]
async fn client_carts_are_validated_and_priced_from_the_catalog_only() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 5).await;
    let b = f.product("B-1", "3.00 USD", 1).await;
    let carts = f.carts();
    // The client claims A costs one cent; the catalog says 10.00.
    let json = r#"{"items":[
        {"sku":"A-1","quantity":2,"unit_price":{"amount":"0.01","currency":"USD"}},
        {"sku":"B-1","quantity":2},
        {"sku":"ZZZ","quantity":1},
        {"sku":"A-1","quantity":1}
    ]}"#;
    let cart = ClientCart::from_json(json).expect("parse");
    let review = carts.price_client_cart(&cart).await.expect("price");
    assert_eq!(review.lines.len(), 3, "repeated SKUs are added up");
    let line_a = &review.lines[0];
    assert_eq!(line_a.quantity, 3);
    assert_eq!(
        line_a.unit_price.map(|p| p.to_string()),
        Some("10.00 USD".into())
    );
    assert_eq!(
        line_a.line_total.map(|p| p.to_string()),
        Some("30.00 USD".into())
    );
    assert!(matches!(
        line_a.issues[..],
        [LineIssue::PriceChanged { .. }]
    ));
    assert!(matches!(
        review.lines[1].issues[..],
        [LineIssue::OutOfStock {
            requested: 2,
            available: 1
        }]
    ));
    assert_eq!(review.lines[2].issues, vec![LineIssue::Unavailable]);
    assert_eq!(
        review.subtotal.map(|m| m.to_string()),
        Some("36.00 USD".into())
    );
    assert!(!review.is_ok());
    let _ = (&a, &b);

    // Malformed input is a typed error.
    for bad in [
        "not json",
        r#"{"items":[{"sku":"A-1","quantity":1,"discount":true}]}"#,
        r#"{"items":[{"sku":"bad sku","quantity":1}]}"#,
        r#"{"items":[{"sku":"A-1","quantity":-1}]}"#,
        r#"{"items":[{"sku":"A-1","quantity":1,"unit_price":{"amount":"0.001","currency":"USD"}}]}"#,
        r#"{"items":[],"total":"0"}"#,
    ] {
        assert!(
            matches!(ClientCart::from_json(bad), Err(Error::Validation { .. })),
            "{bad}"
        );
    }
    let huge = format!(
        r#"{{"items":[{}]}}"#,
        vec![r#"{"sku":"A-1","quantity":1}"#; 3000].join(",")
    );
    assert!(matches!(
        ClientCart::from_json(&huge),
        Err(Error::Validation { .. })
    ));
    for bad in [
        r#"{"items":[{"sku":"A-1","quantity":0}]}"#,
        r#"{"items":[{"sku":"A-1","quantity":60},{"sku":"A-1","quantity":60}]}"#,
    ] {
        let cart = ClientCart::from_json(bad).expect("parses");
        assert!(
            matches!(
                carts.price_client_cart(&cart).await,
                Err(Error::Validation { .. })
            ),
            "{bad}"
        );
    }
    let many = ClientCart {
        items: (0..101)
            .map(|i| ClientCartItem {
                sku: Sku::new(format!("S-{i}")).expect("sku"),
                quantity: 1,
                unit_price: None,
            })
            .collect(),
    };
    assert!(matches!(
        carts.price_client_cart(&many).await,
        Err(Error::Validation { .. })
    ));
}

#[tokio::test]
async fn a_client_cart_round_trips_and_imports_into_a_server_cart() {
    let f = Fixture::new();
    let a = f.product("A-1", "10.00 USD", 2).await;
    let b = f.product("B-1", "3.00 USD", 10).await;
    let carts = f.carts();
    let (_, id, owner) = customer("alice");
    carts.add(&id, &owner, &b, 1).await.expect("add");
    let exported = ClientCart::from_cart(&carts.get(&id, &owner).await.expect("g").expect("c"));
    let json = exported.to_json().expect("json");
    assert_eq!(ClientCart::from_json(&json).expect("parse"), exported);

    let client = ClientCart::from_json(
        r#"{"items":[
            {"sku":"A-1","quantity":5,"unit_price":{"amount":"0.50","currency":"USD"}},
            {"sku":"B-1","quantity":2},
            {"sku":"NOPE","quantity":1}
        ]}"#,
    )
    .expect("parse");
    let (cart, report) = carts
        .import_client_cart(&id, &owner, &client)
        .await
        .expect("import");
    let cart = cart.expect("cart");
    let line_a = cart.item(&a).expect("a");
    assert_eq!(line_a.quantity, 2, "capped at the units available");
    assert_eq!(
        line_a.unit_price.to_string(),
        "10.00 USD",
        "catalog price, not the client's"
    );
    assert_eq!(cart.item(&b).map(|i| i.quantity), Some(3));
    assert_eq!(report.capped, vec![a.clone()]);
    assert_eq!(report.dropped, vec![Sku::new("NOPE").expect("sku")]);
}
