//! The two-step merge of the cluster (guest and customer carts live in different hash
//! slots): an interrupted merge resumes, and never applies twice.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use commerce_core::cart::{CartItem, CartLimits, CartOwner};
use commerce_core::clock::{Clock, ManualClock};
use commerce_core::id::{CartId, CustomerId, ProductId, Sku};
use commerce_core::store::CartStore;
use commerce_redis::RedisCarts;

fn item(sku: &str, quantity: u32, clock: &dyn Clock) -> CartItem {
    CartItem {
        product_id: ProductId::new(format!("p-{sku}")).expect("id"),
        sku: Sku::new(sku).expect("sku"),
        quantity,
        unit_price: "1.00 USD".parse().expect("money"),
        added_at: clock.now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_cluster_merge_resumes_once() {
    let redis = common::cluster("merge").await;
    let clock = Arc::new(ManualClock::default());
    let carts = RedisCarts::new(redis.clone(), clock.clone());
    let limits = CartLimits::default();
    let customer = CustomerId::new("c1").expect("customer");
    let owner = CartOwner::Customer(customer.clone());
    let guest = CartId::new_guest();
    for s in ["A", "B"] {
        carts
            .add_item(
                &guest,
                &CartOwner::Guest,
                item(s, 2, clock.as_ref()),
                &limits,
            )
            .await
            .expect("guest add");
    }
    let target = CartId::for_customer(&customer);
    carts
        .add_item(&target, &owner, item("A", 1, clock.as_ref()), &limits)
        .await
        .expect("customer add");

    // A merge that crashed right after claiming the guest cart (step 1 of 3).
    let mut conn = redis.connection();
    let guest_key = format!("{}:cart:{{{}}}", redis.prefix(), guest);
    let claim_key = format!("{}:cartclaim:{{{}}}", redis.prefix(), guest);
    redis::cmd("RENAME")
        .arg(&guest_key)
        .arg(&claim_key)
        .query_async::<()>(&mut conn)
        .await
        .expect("rename");
    redis::cmd("HSET")
        .arg(&claim_key)
        .arg("for")
        .arg("c:c1")
        .arg("tok")
        .arg("crashed-merge")
        .query_async::<()>(&mut conn)
        .await
        .expect("hset");
    assert_eq!(
        carts
            .get_cart(&guest, &CartOwner::Guest)
            .await
            .expect("get"),
        None,
        "a claimed guest cart is gone for readers"
    );

    // Another customer naming the same guest cart cannot take the claim.
    let (other, _) = carts
        .merge_carts(
            &guest,
            &CustomerId::new("c2").expect("c"),
            &BTreeMap::new(),
            &limits,
        )
        .await
        .expect("merge by someone else");
    assert!(other.items.is_empty());

    // The next merge for c1 resumes it.
    let (merged, report) = carts
        .merge_carts(&guest, &customer, &BTreeMap::new(), &limits)
        .await
        .expect("resumed merge");
    let q = |s: &str| merged.item(&Sku::new(s).expect("sku")).map(|i| i.quantity);
    assert_eq!((q("A"), q("B")), (Some(3), Some(2)));
    assert!(report.capped.is_empty() && report.dropped.is_empty());
    let exists: u64 = redis::cmd("EXISTS")
        .arg(&claim_key)
        .query_async(&mut conn)
        .await
        .expect("exists");
    assert_eq!(exists, 0, "the claim is dropped once applied");

    // A crash after applying but before dropping the claim: the retry must not add the
    // lines again.
    redis::cmd("HSET")
        .arg(&claim_key)
        .arg("for")
        .arg("c:c1")
        .arg("tok")
        .arg("crashed-merge")
        .arg("q:B")
        .arg("2")
        .arg("i:B")
        .arg("1")
        .arg("m:B")
        .arg(r#"{"amount":"1.00","currency":"USD"}"#)
        .arg("a:B")
        .arg("00000011893456000000000000")
        .arg("p:B")
        .arg("p-B")
        .arg("cur")
        .arg("USD")
        .query_async::<()>(&mut conn)
        .await
        .expect("hset");
    let (again, _) = carts
        .merge_carts(&guest, &customer, &BTreeMap::new(), &limits)
        .await
        .expect("retried merge");
    assert_eq!(again, merged, "applied once, not twice");
    assert_eq!(
        carts.get_cart(&target, &owner).await.expect("get"),
        Some(merged)
    );
    redis.delete_all().await.expect("cleanup");
}
