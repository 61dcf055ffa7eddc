//! `RedisNonces` on one server and on the cluster: a nonce is used once (also under 16
//! concurrent callers), a past-due nonce is not stored, and a `CartSigner` on it refuses
//! a replayed token.

mod common;

use std::sync::Arc;
use std::time::Duration;

use commerce_core::clock::{Clock, ManualClock};
use commerce_core::service::{CartSigner, CartSigningKey, ClientCart, SignedCartError};
use commerce_core::store::NonceStore;
use commerce_redis::{RedisBackend, RedisNonces};

async fn check(redis: RedisBackend) {
    let clock = Arc::new(ManualClock::new(ManualClock::EPOCH));
    let nonces = Arc::new(RedisNonces::new(redis.clone(), clock.clone()));
    let until = clock.now() + chrono::Duration::seconds(600);
    assert!(nonces.use_once("n1", until).await.expect("first"));
    assert!(!nonces.use_once("n1", until).await.expect("replay"));
    assert!(nonces.use_once("n2", until).await.expect("another"));
    assert!(
        matches!(
            nonces.use_once("", until).await,
            Err(commerce_core::Error::Validation { .. })
        ),
        "an empty nonce is refused"
    );

    let past = clock.now() - chrono::Duration::seconds(1);
    assert!(nonces.use_once("old", past).await.expect("past due"));
    assert!(
        nonces.use_once("old", until).await.expect("not stored"),
        "a past-due nonce is not remembered"
    );

    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let nonces = nonces.clone();
            tokio::spawn(async move { nonces.use_once("race", until).await.expect("use") })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.expect("task") {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one concurrent caller wins");

    let signer = CartSigner::new(
        CartSigningKey::new("k1", vec![3; 32]).expect("key"),
        Duration::from_secs(600),
        clock.clone(),
        nonces,
    );
    let cart = ClientCart::from_json(r#"{"items":[{"sku":"PH-1","quantity":1}]}"#).expect("cart");
    let token = signer.sign(&cart).expect("sign");
    assert_eq!(signer.open(&token).await.expect("open"), cart);
    assert!(matches!(
        signer.open(&token).await,
        Err(SignedCartError::Replayed)
    ));
    redis.delete_all().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nonces_are_used_once_on_a_server_and_a_cluster() {
    check(common::single("nonces").await).await;
    check(common::cluster("nonces").await).await;
}
