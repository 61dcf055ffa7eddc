//! The adapter's private error type: Redis failures mapped to [`commerce_core::Error`] by
//! error *kind* and by the codes our Lua scripts raise, never by message text.

use commerce_core::money::Currency;
use commerce_core::{EntityKind, Error};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Error codes raised by the Lua scripts (`redis.error_reply("<CODE> <detail>")`).
pub(crate) mod code {
    /// Cart missing, expired or owned by someone else. Detail: the cart id.
    pub const CART_NOT_FOUND: &str = "CARTNOTFOUND";
    /// Line missing. Detail: the SKU.
    pub const ITEM_NOT_FOUND: &str = "CARTITEMNOTFOUND";
    /// A limit or validation rule. Detail: `<field> <reason>`.
    pub const VALIDATION: &str = "CARTINVALID";
    /// Mixed currencies. Detail: `<cart currency> <item currency>`.
    pub const CURRENCY: &str = "CARTCURRENCY";
}

/// What went wrong talking to Redis, before it becomes a [`commerce_core::Error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisFailure {
    /// The client or server reported an error.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// Stored data that does not decode (written by something else, or tampered with).
    #[error("corrupt data under {key}: {what}")]
    Corrupt { key: String, what: String },
}

impl RedisFailure {
    pub(crate) fn corrupt(key: impl Into<String>, what: impl Into<String>) -> Self {
        RedisFailure::Corrupt {
            key: key.into(),
            what: what.into(),
        }
    }
}

/// Whether a Redis error is worth retrying: I/O, connection loss, timeouts, cluster
/// reconfiguration, a server still loading its data.
pub(crate) fn is_retryable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Io
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::BusyLoading
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                        | ServerErrorKind::ReadOnly
                )
        )
}

fn split_detail(detail: Option<&str>) -> (String, String) {
    let detail = detail.unwrap_or("").trim();
    match detail.split_once(' ') {
        Some((a, b)) => (a.to_owned(), b.to_owned()),
        None => (detail.to_owned(), String::new()),
    }
}

impl From<RedisFailure> for Error {
    fn from(f: RedisFailure) -> Self {
        match f {
            RedisFailure::Redis(e) => {
                let (first, rest) = split_detail(e.detail());
                match e.code() {
                    Some(code::CART_NOT_FOUND) => Error::not_found(EntityKind::Cart, first),
                    Some(code::ITEM_NOT_FOUND) => Error::not_found(EntityKind::CartItem, first),
                    Some(code::VALIDATION) => Error::validation(first, rest),
                    Some(code::CURRENCY) => {
                        match (Currency::parse(&first), Currency::parse(rest.trim())) {
                            (Ok(left), Ok(right)) => Error::CurrencyMismatch { left, right },
                            _ => Error::permanent("redis: bad currency in script error", e),
                        }
                    }
                    _ if is_retryable(&e) => Error::retryable("redis unavailable", e),
                    _ => Error::permanent("redis error", e),
                }
            }
            corrupt @ RedisFailure::Corrupt { .. } => {
                Error::permanent("corrupt data in redis", corrupt)
            }
        }
    }
}

/// Maps a Redis error to the domain error.
pub(crate) fn map(e: RedisError) -> Error {
    RedisFailure::Redis(e).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_codes_become_typed_errors() {
        let e = redis::make_extension_error(
            code::VALIDATION.into(),
            Some("quantity 0 units on one line".into()),
        );
        assert!(matches!(map(e), Error::Validation { field, .. } if field == "quantity"));
        let e = redis::make_extension_error(code::CURRENCY.into(), Some("USD EUR".into()));
        assert!(matches!(map(e), Error::CurrencyMismatch { .. }));
        let e = redis::make_extension_error(code::CART_NOT_FOUND.into(), Some("g-1".into()));
        assert!(matches!(
            map(e),
            Error::NotFound {
                kind: EntityKind::Cart,
                ..
            }
        ));
        let io = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(map(io).is_retryable());
    }
}
