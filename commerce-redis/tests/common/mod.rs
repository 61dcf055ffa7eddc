//! Shared test helpers: server URLs from the environment, unique prefixes.
#![allow(dead_code)]

use commerce_redis::{RedisBackend, RedisConfig};

/// `REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `REDIS_CLUSTER_URLS`; panics with instructions when unset.
pub fn cluster_urls() -> Vec<String> {
    let urls = std::env::var("REDIS_CLUSTER_URLS").unwrap_or_default();
    let urls: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        !urls.is_empty(),
        "REDIS_CLUSTER_URLS is not set: run `bash scripts/test.sh`, or \
         `eval \"$(bash scripts/fixtures/redis-cluster.sh start)\"` first"
    );
    urls
}

/// A unique key prefix for one test.
pub fn prefix(name: &str) -> String {
    format!("t-{name}-{}", uuid::Uuid::new_v4().simple())
}

/// Connects to the shared single Redis with a fresh prefix.
pub async fn single(name: &str) -> RedisBackend {
    RedisConfig::single(redis_url())
        .with_prefix(prefix(name))
        .expect("valid prefix")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("Redis at {} is not reachable: {e}", redis_url()))
}

/// Connects to the test cluster with a fresh prefix.
pub async fn cluster(name: &str) -> RedisBackend {
    RedisConfig::cluster(cluster_urls())
        .with_prefix(prefix(name))
        .expect("valid prefix")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("the Redis Cluster is not reachable: {e}"))
}
