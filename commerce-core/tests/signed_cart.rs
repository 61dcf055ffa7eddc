//! Signed client carts: round trip, tampering, forged keys, rotation, expiry, replays
//! (also concurrent), malformed tokens, and the in-memory nonce store.

use std::sync::Arc;
use std::time::Duration;

use commerce_core::Error;
use commerce_core::clock::{Clock, ManualClock};
use commerce_core::memory::MemoryNonces;
use commerce_core::service::{CartSigner, CartSigningKey, ClientCart, SignedCartError};
use commerce_core::store::NonceStore;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(ManualClock::EPOCH))
}

fn key(id: &str, byte: u8) -> CartSigningKey {
    CartSigningKey::new(id, vec![byte; 32]).expect("key")
}

fn signer(clock: &Arc<ManualClock>, current: CartSigningKey) -> (CartSigner, Arc<MemoryNonces>) {
    let nonces = Arc::new(MemoryNonces::new(clock.clone()));
    let signer = CartSigner::new(
        current,
        Duration::from_secs(600),
        clock.clone(),
        nonces.clone(),
    );
    (signer, nonces)
}

fn cart() -> ClientCart {
    ClientCart::from_json(
        r#"{"items":[{"sku":"PH-1","quantity":2,"unit_price":{"amount":"9.99","currency":"USD"}}]}"#,
    )
    .expect("cart")
}

/// `token` with the character at `at` replaced by another base64url character.
fn flip(token: &str, at: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

#[tokio::test]
async fn a_token_opens_once_to_the_same_cart() {
    let clock = clock();
    let (signer, nonces) = signer(&clock, key("k1", 1));
    let token = signer.sign(&cart()).expect("sign");
    assert!(
        token.starts_with("k1."),
        "the key id leads the token: {token}"
    );
    assert_eq!(
        signer.peek(&token).expect("peek"),
        cart(),
        "peek does not consume"
    );
    assert_eq!(signer.open(&token).await.expect("open"), cart());
    assert_eq!(nonces.len(), 1);
    let replay = signer.open(&token).await;
    assert!(
        matches!(replay, Err(SignedCartError::Replayed)),
        "{replay:?}"
    );
    let as_error: Error = replay.expect_err("replay").into();
    assert!(matches!(as_error, Error::Conflict { .. }), "{as_error:?}");
    let second = signer.sign(&cart()).expect("sign again");
    assert_ne!(second, token, "every token has a fresh nonce");
    assert_eq!(
        signer.open(&second).await.expect("a new token opens"),
        cart()
    );
}

#[tokio::test]
async fn tampered_tokens_are_refused_and_consume_nothing() {
    let clock = clock();
    let (signer, nonces) = signer(&clock, key("k1", 1));
    let token = signer.sign(&cart()).expect("sign");
    let first_dot = token.find('.').expect("dot");
    let last_dot = token.rfind('.').expect("dot");
    for at in [
        first_dot + 1,
        (first_dot + last_dot) / 2,
        last_dot - 1,
        last_dot + 1,
        token.len() - 1,
    ] {
        let tampered = flip(&token, at);
        let r = signer.open(&tampered).await;
        assert!(
            matches!(
                r,
                Err(SignedCartError::BadSignature | SignedCartError::Malformed(_))
            ),
            "a change at byte {at} must be refused: {r:?}"
        );
    }
    // A payload with a higher quantity under the original MAC.
    let forged_cart =
        ClientCart::from_json(r#"{"items":[{"sku":"PH-1","quantity":99}]}"#).expect("cart");
    let (other, _) = self::signer(&clock, key("k1", 9));
    let forged = other.sign(&forged_cart).expect("sign with another secret");
    let spliced = format!(
        "{}{}",
        &forged[..forged.rfind('.').expect("dot")],
        &token[last_dot..]
    );
    let r = signer.open(&spliced).await;
    assert!(matches!(r, Err(SignedCartError::BadSignature)), "{r:?}");
    let r = signer.open(&forged).await;
    assert!(
        matches!(r, Err(SignedCartError::BadSignature)),
        "the same key id with another secret: {r:?}"
    );
    assert_eq!(nonces.len(), 0, "refused tokens consume no nonce");
    let as_error: Error = r.expect_err("refused").into();
    assert!(
        matches!(as_error, Error::Validation { ref field, .. } if field == "cart"),
        "{as_error:?}"
    );
    assert_eq!(
        signer.open(&token).await.expect("the original still opens"),
        cart()
    );
}

#[tokio::test]
async fn keys_rotate_by_id() {
    let clock = clock();
    let (old, _) = signer(&clock, key("k1", 1));
    let old_token = old.sign(&cart()).expect("sign");
    let (rotated, _) = signer(&clock, key("k2", 2));
    let rotated = rotated.with_previous_key(key("k1", 1));
    let new_token = rotated.sign(&cart()).expect("sign");
    assert!(new_token.starts_with("k2."), "signs with the current key");
    assert_eq!(
        rotated.open(&old_token).await.expect("old key accepted"),
        cart()
    );
    assert_eq!(rotated.open(&new_token).await.expect("new key"), cart());

    let (retired, _) = signer(&clock, key("k2", 2));
    let token = old.sign(&cart()).expect("sign");
    let r = retired.open(&token).await;
    assert!(
        matches!(r, Err(SignedCartError::UnknownKey(ref id)) if id == "k1"),
        "a retired key's tokens are refused: {r:?}"
    );
    let r = old.open(&new_token).await;
    assert!(matches!(r, Err(SignedCartError::UnknownKey(_))), "{r:?}");
}

#[tokio::test]
async fn tokens_expire_with_the_clock() {
    let clock = clock();
    let (signer, nonces) = signer(&clock, key("k1", 1));
    let token = signer.sign(&cart()).expect("sign");
    let kept = signer.sign(&cart()).expect("sign");
    clock.advance(Duration::from_secs(599));
    assert_eq!(signer.open(&kept).await.expect("alive 1 s before"), cart());
    clock.advance(Duration::from_secs(1));
    let r = signer.open(&token).await;
    assert!(
        matches!(r, Err(SignedCartError::Expired(at)) if at == clock.now()),
        "expired exactly at sign time + ttl: {r:?}"
    );
    assert_eq!(nonces.len(), 1, "an expired token consumes no nonce");
}

#[tokio::test]
async fn malformed_tokens_are_refused_with_a_reason() {
    let clock = clock();
    let (signer, _) = signer(&clock, key("k1", 1));
    let huge = format!("k1.{}.x", "A".repeat(200_000));
    for bad in [
        "",
        "k1",
        "k1.abc",
        "k1.a.b.c",
        "k1.!!!.AAAA",
        "k1.AAAA.!!!",
        huge.as_str(),
    ] {
        let r = signer.open(bad).await;
        assert!(
            matches!(
                r,
                Err(SignedCartError::Malformed(_) | SignedCartError::BadSignature)
            ),
            "{bad:.20}: {r:?}"
        );
    }
    let r = signer.open("nokey.AAAA.AAAA").await;
    assert!(matches!(r, Err(SignedCartError::UnknownKey(_))), "{r:?}");
}

#[test]
fn keys_are_validated() {
    assert!(matches!(
        CartSigningKey::new("k1", vec![0; 31]),
        Err(Error::Validation { .. })
    ));
    for id in ["", "has.dot", "has space", &"x".repeat(33)] {
        assert!(
            matches!(
                CartSigningKey::new(id, vec![0; 32]),
                Err(Error::Validation { .. })
            ),
            "{id:?}"
        );
    }
    let k = key("k1", 5);
    assert!(
        !format!("{k:?}").contains("5, 5"),
        "Debug does not print the secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_of_one_token_admit_exactly_one() {
    let clock = clock();
    let (signer, _) = signer(&clock, key("k1", 1));
    let token = signer.sign(&cart()).expect("sign");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (signer, token) = (signer.clone(), token.clone());
            tokio::spawn(async move { signer.open(&token).await.is_ok() })
        })
        .collect();
    let mut opened = 0;
    for t in tasks {
        if t.await.expect("task") {
            opened += 1;
        }
    }
    assert_eq!(opened, 1);
}

#[tokio::test]
async fn memory_nonces_forget_after_their_time() {
    let clock = clock();
    let nonces = MemoryNonces::new(clock.clone());
    let until = clock.now() + chrono::Duration::seconds(10);
    assert!(nonces.use_once("n1", until).await.expect("first"));
    assert!(!nonces.use_once("n1", until).await.expect("replay"));
    assert!(nonces.use_once("n2", until).await.expect("another"));
    clock.advance(Duration::from_secs(10));
    assert!(
        nonces
            .use_once("n1", clock.now() + chrono::Duration::seconds(10))
            .await
            .expect("after expiry")
    );
    for i in 0..3000 {
        nonces
            .use_once(&format!("x{i}"), clock.now())
            .await
            .expect("use");
    }
    assert!(
        nonces.len() < 3000,
        "expired nonces are swept: {} kept",
        nonces.len()
    );
}
