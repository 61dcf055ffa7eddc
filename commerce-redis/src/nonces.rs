//! [`RedisNonces`]: the replay guard of signed client carts, shared by every node.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use commerce_core::clock::{Clock, Timestamp};
use commerce_core::store::NonceStore;
use commerce_core::{Error, Result};

use crate::backend::RedisBackend;
use crate::error::map;

/// Longest nonce accepted, in bytes.
const MAX_NONCE_BYTES: usize = 256;

/// The [`NonceStore`] on Redis (one node or a cluster): one key per nonce,
/// `<prefix>:nonce:{<nonce>}`, written with `SET NX PX` so exactly one caller wins, and
/// expiring when the token does (the time left by the injected clock).
///
/// ```no_run
/// # async fn demo() -> commerce_core::Result<()> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use commerce_core::clock::SystemClock;
/// use commerce_core::service::{CartSigner, CartSigningKey};
/// use commerce_redis::{RedisConfig, RedisNonces};
///
/// let redis = RedisConfig::single("redis://127.0.0.1:6379").connect().await?;
/// let clock = Arc::new(SystemClock);
/// let signer = CartSigner::new(
///     CartSigningKey::new("k1", [7u8; 32])?,
///     Duration::from_secs(3600),
///     clock.clone(),
///     Arc::new(RedisNonces::new(redis, clock)),
/// );
/// # let _ = signer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisNonces {
    redis: RedisBackend,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RedisNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisNonces")
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

impl RedisNonces {
    /// Nonces on `redis`, their lifetimes measured by `clock`.
    pub fn new(redis: RedisBackend, clock: Arc<dyn Clock>) -> Self {
        RedisNonces { redis, clock }
    }
}

#[async_trait]
impl NonceStore for RedisNonces {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn use_once(&self, nonce: &str, until: Timestamp) -> Result<bool> {
        if nonce.is_empty() || nonce.len() > MAX_NONCE_BYTES {
            return Err(Error::validation(
                "nonce",
                format!("1 to {MAX_NONCE_BYTES} bytes expected"),
            ));
        }
        let left = (until - self.clock.now()).num_milliseconds();
        if left <= 0 {
            // Past its time: nothing to remember (the token has expired).
            return Ok(true);
        }
        let mut conn = self.redis.conn();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.redis.key("nonce", nonce))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(left)
            .query_async(&mut conn)
            .await
            .map_err(map)?;
        Ok(set.is_some())
    }
}
