//! TLS (`rustls` feature): the cart kit over `rediss://` against the TLS-only Redis of
//! `scripts/fixtures/tls.sh`, trusting its CA; without the CA, or without TLS, the same
//! server refuses the connection.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use commerce_core::clock::ManualClock;
use commerce_core::memory::MemoryEngine;
use commerce_core::testkit::{self, StoreBuilder, StoresUnderTest};
use commerce_redis::{RedisBackend, RedisCarts, RedisConfig};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run `bash scripts/test.sh`, or \
             `eval \"$(bash scripts/fixtures/tls.sh start)\"` first"
        )
    })
}

fn config() -> RedisConfig {
    let ca = std::fs::read(env("TLS_CA_CERT")).expect("read the fixture's CA certificate");
    RedisConfig::single(env("TLS_REDIS_URL"))
        .with_root_certificate(ca)
        .with_prefix(common::prefix("tls"))
        .expect("prefix")
        .with_response_timeout(std::time::Duration::from_secs(15))
}

#[derive(Debug, Default)]
struct TlsBuilder {
    made: Mutex<Vec<RedisBackend>>,
}

#[async_trait]
impl StoreBuilder for TlsBuilder {
    async fn build(&self, clock: Arc<ManualClock>) -> commerce_core::Result<StoresUnderTest> {
        let redis = config().connect().await?;
        self.made.lock().expect("lock").push(redis.clone());
        let engine = MemoryEngine::with_clock(clock.clone());
        Ok(StoresUnderTest::new()
            .with_carts(Arc::new(RedisCarts::new(redis, clock)))
            .with_events(engine.events.clone()))
    }

    async fn teardown(&self) -> commerce_core::Result<()> {
        let made: Vec<RedisBackend> = std::mem::take(&mut *self.made.lock().expect("lock"));
        for redis in made {
            redis.delete_all().await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cart_kit_passes_over_tls() {
    let redis = config().connect().await.expect("connect over TLS");
    redis.ping().await.expect("ping over TLS");
    testkit::carts::test_all(&TlsBuilder::default()).await;
}

#[tokio::test]
async fn the_tls_server_refuses_unverified_and_plain_connections() {
    // The system's roots do not include the fixture's CA: the handshake fails.
    let untrusted = RedisConfig::single(env("TLS_REDIS_URL"))
        .with_connection_timeout(std::time::Duration::from_secs(2))
        .connect()
        .await;
    assert!(
        untrusted.is_err(),
        "a certificate from an unknown CA must be refused"
    );
    // Plain text to the TLS port never gets an answer.
    let plain = env("TLS_REDIS_URL").replacen("rediss://", "redis://", 1);
    let plain = RedisConfig::single(plain)
        .with_connection_timeout(std::time::Duration::from_secs(2))
        .with_response_timeout(std::time::Duration::from_secs(2))
        .connect()
        .await;
    let refused = match plain {
        Err(_) => true,
        Ok(redis) => redis.ping().await.is_err(),
    };
    assert!(refused, "plain text to a TLS-only port must not work");
}
