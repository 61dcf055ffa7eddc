use std::fmt::Debug;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error::Result;

/// Remembers single-use nonces until they expire: the replay guard of signed client
/// carts ([`CartSigner`](crate::service::CartSigner)).
///
/// # To ensure correctness
/// * [`NonceStore::use_once`] is atomic: of any number of concurrent calls with one
///   nonce before `until`, exactly one returns `true`.
/// * A nonce is remembered at least until `until` (the store's clock); after that it
///   may be forgotten (the token carrying it has expired by then).
#[async_trait]
pub trait NonceStore: Send + Sync + Debug + 'static {
    /// Marks `nonce` used until `until`. `true` if it had not been used (or its record
    /// had expired), `false` if it had: a replay.
    async fn use_once(&self, nonce: &str, until: Timestamp) -> Result<bool>;
}
