//! The conformance kit on one Redis server and on the local Redis Cluster: the carts, the
//! catalog behind the Redis cache, and the product cache.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use commerce_core::clock::ManualClock;
use commerce_core::memory::MemoryEngine;
use commerce_core::testkit::{self, CacheExpiry, ExpiryClock, StoreBuilder, StoresUnderTest};
use commerce_redis::{CacheConfig, CachedCatalog, RedisBackend, RedisCarts};

/// Carts on Redis, the memory catalog behind a Redis [`CachedCatalog`], and a second
/// [`CachedCatalog`] with a short time-to-live as the product cache (Redis expires its
/// entries by its own clock, so the kit waits in real time).
#[derive(Debug)]
struct Builder {
    cluster: bool,
    made: Mutex<Vec<RedisBackend>>,
}

impl Builder {
    fn new(cluster: bool) -> Self {
        Builder {
            cluster,
            made: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl StoreBuilder for Builder {
    async fn build(&self, clock: Arc<ManualClock>) -> commerce_core::Result<StoresUnderTest> {
        let redis = if self.cluster {
            common::cluster("kit").await
        } else {
            common::single("kit").await
        };
        self.made.lock().expect("lock").push(redis.clone());
        let engine = MemoryEngine::with_clock(clock.clone());
        let catalog = CachedCatalog::new(
            engine.catalog.clone(),
            redis.clone(),
            CacheConfig {
                // Generous: a loaded test machine must not turn hits into fall-throughs.
                command_timeout: std::time::Duration::from_secs(5),
                ..CacheConfig::default()
            },
        );
        let ttl = std::time::Duration::from_secs(2);
        let product_cache = CachedCatalog::new(
            engine.catalog.clone(),
            redis.clone(),
            CacheConfig {
                ttl,
                command_timeout: std::time::Duration::from_secs(5),
                ..CacheConfig::default()
            },
        );
        Ok(StoresUnderTest::new()
            .with_product_cache(
                Arc::new(product_cache),
                CacheExpiry {
                    ttl,
                    clock: ExpiryClock::Server,
                },
            )
            .with_carts(Arc::new(RedisCarts::new(redis, clock)))
            .with_catalog(Arc::new(catalog))
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
async fn conformance_single_and_cluster() {
    testkit::test_all(&Builder::new(false)).await;
    testkit::test_all(&Builder::new(true)).await;
}
