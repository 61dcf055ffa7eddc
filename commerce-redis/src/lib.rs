//! Redis adapter of the commerce crates: server-side carts, a read-through product
//! cache, rate limiting and flash-sale admission, on one Redis server or a Redis
//! Cluster.
//!
//! * [`RedisCarts`] — the [`CartStore`](commerce_core::store::CartStore): every write is
//!   one Lua script (atomic, sliding expiry, limits enforced, no lost update).
//! * [`CachedCatalog`] — a read-through product cache wrapping any
//!   [`CatalogStore`](commerce_core::store::CatalogStore) (TTLs, single-flight loads,
//!   negative caching, fall-through when Redis is down), kept fresh by
//!   [`CacheInvalidator`] from the domain events; also a
//!   [`ProductCache`](commerce_core::browse::ProductCache) for the product pages.
//! * [`RedisRateLimiter`] — a distributed GCRA limiter behind commerce-core's
//!   [`UserRateLimit`](commerce_core::resilience::UserRateLimit) (the in-process one is
//!   [`commerce_core::ratelimit::InProcessRateLimiter`]).
//! * [`FlashSaleGate`] — an atomic token gate that admits at most as many buyers as
//!   there is stock before they reach the inventory store.
//!
//! Everything is built on a [`RedisBackend`] made from a [`RedisConfig`]: one node
//! (a reconnecting [`ConnectionManager`](redis::aio::ConnectionManager)) or a cluster
//! ([`cluster_async`](redis::cluster_async)), and a validated key prefix that namespaces
//! every key. Keys that change together share a hash slot (`{cart id}` hash tags); no
//! path uses `KEYS`.
//!
//! ```no_run
//! # async fn demo() -> commerce_core::Result<()> {
//! use std::sync::Arc;
//! use commerce_core::clock::SystemClock;
//! use commerce_redis::{RedisCarts, RedisConfig};
//!
//! let redis = RedisConfig::from_urls("redis://127.0.0.1:6379")
//!     .with_prefix("shop")?
//!     .connect()
//!     .await?;
//! let carts = RedisCarts::new(redis.clone(), Arc::new(SystemClock));
//! # let _ = carts; Ok(()) }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub use redis;

/// The README's examples, compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod backend;
mod cache;
mod carts;
mod error;
mod flash;
mod nonces;
mod ratelimit;

pub use backend::{MAX_PREFIX_LEN, RedisBackend, RedisConfig, Topology, validate_prefix};
pub use cache::{CacheConfig, CacheInvalidator, CachedCatalog};
pub use carts::RedisCarts;
pub use flash::{AdmissionTicket, FlashSaleGate};
pub use nonces::RedisNonces;
pub use ratelimit::RedisRateLimiter;
