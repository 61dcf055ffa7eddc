//! Signed client carts: a [`ClientCart`] the client holds as an opaque token that the
//! server can check was issued by it, is unchanged, is not expired and is used once.
//!
//! A token is `<key id>.<payload>.<mac>`: the payload is base64url JSON of the cart,
//! its expiry and a random 128-bit nonce; the MAC is HMAC-SHA256 over `<key id>.<payload>`
//! under the key named by the key id. Keys rotate by id: a [`CartSigner`] signs with its
//! current key and also accepts tokens of the previous keys it was given. Opening a
//! token records its nonce in a [`NonceStore`] until the token expires, so a token is
//! accepted once; a client sends its token with a cart change and gets a new one back.
//!
//! Signing does not make a cart's prices trustworthy (they are re-read from the catalog
//! anyway, see [`ClientCart`]); it lets the server refuse carts it did not issue,
//! tampered carts and replays of an old cart.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::client_cart::{ClientCart, MAX_CLIENT_CART_BYTES};
use crate::clock::{self, Clock, Timestamp};
use crate::error::{EntityKind, Error};
use crate::store::NonceStore;

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted, in bytes (the HMAC-SHA256 output size).
pub const MIN_SECRET_BYTES: usize = 32;

/// Longest token accepted, in bytes: the largest client cart, base64url, plus room for
/// the key id, expiry, nonce and MAC.
const MAX_TOKEN_BYTES: usize = MAX_CLIENT_CART_BYTES / 3 * 4 + 512;

/// One signing key: an id (1 to 32 of `A-Z a-z 0-9 _ -`, carried in every token) and a
/// secret of at least [`MIN_SECRET_BYTES`] random bytes.
#[derive(Clone)]
pub struct CartSigningKey {
    id: String,
    secret: Vec<u8>,
}

impl fmt::Debug for CartSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("CartSigningKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl CartSigningKey {
    /// A key; a bad id or a short secret is a [`Error::Validation`].
    pub fn new(id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let id = id.into();
        let secret = secret.into();
        let id_ok = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok {
            return Err(Error::validation(
                "key_id",
                "1 to 32 of A-Z a-z 0-9 _ - expected",
            ));
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::validation(
                "secret",
                format!(
                    "{} bytes; at least {MIN_SECRET_BYTES} random bytes required",
                    secret.len()
                ),
            ));
        }
        Ok(CartSigningKey { id, secret })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, signed: &str) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(signed.as_bytes());
        mac
    }
}

/// Why a signed cart was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignedCartError {
    /// Not a token of this format (wrong shape, bad base64, oversized, bad JSON inside).
    #[error("not a signed cart: {0}")]
    Malformed(String),
    /// Signed with a key this signer does not have (retired, or never ours).
    #[error("signed with unknown key {0:?}")]
    UnknownKey(String),
    /// The MAC does not match: the token was altered or forged.
    #[error("the signature does not match (tampered or forged)")]
    BadSignature,
    /// The token expired at this time.
    #[error("expired at {0}")]
    Expired(Timestamp),
    /// The token was already used.
    #[error("already used (a replay)")]
    Replayed,
    /// The nonce store failed; the token was neither accepted nor consumed.
    #[error(transparent)]
    Store(Error),
}

impl From<SignedCartError> for Error {
    /// A replay is a [`Error::Conflict`] on the cart, a nonce-store failure is that
    /// failure, anything else is [`Error::Validation`] on field `cart`.
    fn from(e: SignedCartError) -> Self {
        match e {
            SignedCartError::Store(e) => e,
            SignedCartError::Replayed => Error::conflict(EntityKind::Cart, e.to_string()),
            other => Error::validation("cart", other.to_string()),
        }
    }
}

/// What a token carries.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    cart: ClientCart,
    exp: Timestamp,
    nonce: String,
}

/// Issues and opens signed client carts.
///
/// A token is `<key id>.<payload>.<mac>`: the payload is base64url JSON of the cart, its
/// expiry and a random 128-bit nonce; the MAC is HMAC-SHA256 over `<key id>.<payload>`
/// under the key named by the key id. The signer signs with its current key and also
/// accepts tokens of the previous keys it was given. Opening a token records its nonce
/// in a [`NonceStore`] until the token expires, so a token is accepted once; a client
/// sends its token with a cart change and gets a new one back. Signing does not make
/// prices trustworthy (checkout re-reads them); it refuses carts the server did not
/// issue, tampered carts and replays.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use commerce_core::clock::SystemClock;
/// use commerce_core::memory::MemoryNonces;
/// use commerce_core::service::{CartSigner, CartSigningKey, ClientCart, SignedCartError};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let clock = Arc::new(SystemClock);
/// let key = CartSigningKey::new("k2", [7u8; 32])?;
/// let signer = CartSigner::new(key, Duration::from_secs(3600), clock.clone(), Arc::new(MemoryNonces::new(clock)));
///
/// let cart = ClientCart::from_json(r#"{"items":[{"sku":"PH-1","quantity":2}]}"#)?;
/// let token = signer.sign(&cart)?;
/// assert_eq!(signer.open(&token).await?, cart);
/// assert!(matches!(signer.open(&token).await, Err(SignedCartError::Replayed)));
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct CartSigner {
    current: CartSigningKey,
    keys: BTreeMap<String, CartSigningKey>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    nonces: Arc<dyn NonceStore>,
}

impl CartSigner {
    /// Signs with `current`; tokens live `ttl`; nonces are remembered in `nonces`.
    pub fn new(
        current: CartSigningKey,
        ttl: Duration,
        clock: Arc<dyn Clock>,
        nonces: Arc<dyn NonceStore>,
    ) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(current.id.clone(), current.clone());
        CartSigner {
            current,
            keys,
            ttl,
            clock,
            nonces,
        }
    }

    /// Also accepts tokens signed with `previous` (during a rotation: deploy the new key
    /// as current with the old one here, then drop the old one once its tokens expire).
    pub fn with_previous_key(mut self, previous: CartSigningKey) -> Self {
        if previous.id != self.current.id {
            self.keys.insert(previous.id.clone(), previous);
        }
        self
    }

    /// A token for `cart`, signed with the current key, expiring `ttl` from now, with a
    /// fresh nonce. An oversized cart is a [`Error::Validation`].
    pub fn sign(&self, cart: &ClientCart) -> Result<String, Error> {
        let cart_json = cart.to_json()?;
        if cart_json.len() > MAX_CLIENT_CART_BYTES {
            return Err(Error::validation(
                "cart",
                format!(
                    "is {} bytes of JSON, at most {MAX_CLIENT_CART_BYTES} allowed",
                    cart_json.len()
                ),
            ));
        }
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::backend(true, format!("no randomness for a nonce: {e}")))?;
        let payload = Payload {
            cart: cart.clone(),
            exp: clock::add(self.clock.now(), self.ttl),
            nonce: nonce.iter().map(|b| format!("{b:02x}")).collect(),
        };
        let json = serde_json::to_vec(&payload)
            .map_err(|e| Error::backend(false, format!("cannot serialise the cart: {e}")))?;
        let signed = format!("{}.{}", self.current.id, URL_SAFE_NO_PAD.encode(json));
        let mac = self.current.mac(&signed).finalize().into_bytes();
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac)))
    }

    /// Checks `token` (format, key, signature, expiry, in that order) and consumes its
    /// nonce; gives the cart. Nothing is consumed unless every check passed.
    pub async fn open(&self, token: &str) -> Result<ClientCart, SignedCartError> {
        let payload = self.verify(token)?;
        match self.nonces.use_once(&payload.nonce, payload.exp).await {
            Ok(true) => Ok(payload.cart),
            Ok(false) => Err(SignedCartError::Replayed),
            Err(e) => Err(SignedCartError::Store(e)),
        }
    }

    /// Checks everything [`CartSigner::open`] checks except single use, without
    /// consuming the nonce (to show a cart without spending its token).
    pub fn peek(&self, token: &str) -> Result<ClientCart, SignedCartError> {
        self.verify(token).map(|p| p.cart)
    }

    fn verify(&self, token: &str) -> Result<Payload, SignedCartError> {
        let malformed = |why: &str| SignedCartError::Malformed(why.to_owned());
        if token.len() > MAX_TOKEN_BYTES {
            return Err(malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(key_id), Some(payload), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("expected <key id>.<payload>.<mac>"));
        };
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| SignedCartError::UnknownKey(key_id.chars().take(32).collect()))?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| malformed("the MAC is not base64url"))?;
        let signed = &token[..key_id.len() + 1 + payload.len()];
        key.mac(signed)
            .verify_slice(&mac)
            .map_err(|_| SignedCartError::BadSignature)?;
        // Authentic from here on: only our own output is parsed.
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| malformed("the payload is not base64url"))?;
        let payload: Payload = serde_json::from_slice(&json)
            .map_err(|e| SignedCartError::Malformed(format!("bad payload: {e}")))?;
        if payload.exp <= self.clock.now() {
            return Err(SignedCartError::Expired(payload.exp));
        }
        Ok(payload)
    }
}
