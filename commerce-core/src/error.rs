//! The one error type of the commerce crates.
//!
//! Every store, service and adapter reports failures as an [`Error`]: a small set of
//! semantic kinds a caller can act on (show "out of stock", retry, reject the input),
//! with the backend's own error kept as a boxed source. Adapters map their driver's
//! errors into these kinds by error code (SQLSTATE, Redis error kind), never by
//! matching message text.

use std::fmt;

use crate::money::Currency;

/// Result alias used across the commerce crates.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error source, as carried by [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of thing an [`Error::NotFound`] or [`Error::Conflict`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntityKind {
    /// A product.
    Product,
    /// A product variant (by SKU).
    Variant,
    /// A product's URL slug.
    Slug,
    /// A category.
    Category,
    /// A cart.
    Cart,
    /// A line of a cart.
    CartItem,
    /// A stock level (SKU at a location).
    Stock,
    /// An inventory reservation.
    Reservation,
    /// An order.
    Order,
    /// A queued job.
    Job,
    /// An event consumer's checkpoint.
    Consumer,
    /// A promotion.
    Promotion,
    /// A coupon code.
    Coupon,
    /// A promotion redemption (the promotions an order holds).
    Redemption,
    /// A price list.
    PriceList,
    /// A refund (or an order's refund ledger).
    Refund,
    /// Anything else an adapter stores.
    Other,
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            EntityKind::Product => "product",
            EntityKind::Variant => "variant",
            EntityKind::Slug => "slug",
            EntityKind::Category => "category",
            EntityKind::Cart => "cart",
            EntityKind::CartItem => "cart item",
            EntityKind::Stock => "stock level",
            EntityKind::Reservation => "reservation",
            EntityKind::Order => "order",
            EntityKind::Job => "job",
            EntityKind::Consumer => "consumer",
            EntityKind::Promotion => "promotion",
            EntityKind::Coupon => "coupon code",
            EntityKind::Redemption => "promotion redemption",
            EntityKind::PriceList => "price list",
            EntityKind::Refund => "refund",
            EntityKind::Other => "entity",
        };
        f.write_str(name)
    }
}

/// The error of every commerce operation.
///
/// Match on the kind, not on the message. New kinds may be added in minor releases.
///
/// ```
/// use commerce_core::{Error, EntityKind};
///
/// let err = Error::not_found(EntityKind::Product, "p-1");
/// assert!(matches!(err, Error::NotFound { .. }));
/// assert!(!err.is_retryable());
/// assert_eq!(err.to_string(), "product not found: p-1");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The entity does not exist (or is not visible to the caller).
    #[error("{kind} not found: {id}")]
    NotFound {
        /// What was looked up.
        kind: EntityKind,
        /// Its identifier, as given.
        id: String,
    },

    /// The write conflicts with the current state: a unique key is taken, an optimistic
    /// version is stale, a compare-and-set lost, an idempotency key was reused with
    /// different content.
    #[error("{kind} conflict: {message}")]
    Conflict {
        /// What the conflict is about.
        kind: EntityKind,
        /// A human-readable explanation.
        message: String,
    },

    /// Not enough stock to reserve `requested` units of `sku`.
    #[error("out of stock: {sku} (requested {requested}, available {available})")]
    OutOfStock {
        /// The SKU that is short.
        sku: String,
        /// Units asked for.
        requested: u64,
        /// Units that were available when the request was evaluated.
        available: u64,
    },

    /// A state machine refused a transition (order status, product status, reservation).
    #[error("invalid {entity} transition from {from} to {to}")]
    InvalidTransition {
        /// Which state machine.
        entity: EntityKind,
        /// The current state.
        from: String,
        /// The requested state.
        to: String,
    },

    /// Input failed validation; nothing was written.
    #[error("invalid {field}: {reason}")]
    Validation {
        /// The offending field (dotted path for nested fields).
        field: String,
        /// Why it was rejected.
        reason: String,
    },

    /// Two amounts in different currencies were combined or compared.
    #[error("currency mismatch: {left} vs {right}")]
    CurrencyMismatch {
        /// The left operand's currency.
        left: Currency,
        /// The right operand's currency.
        right: Currency,
    },

    /// A promotion cannot be redeemed for this order: a usage limit or its budget is
    /// spent, its single-use code was used, or it is not active now. Nothing was held.
    #[error("promotion {promotion} unavailable: {reason}")]
    PromotionUnavailable {
        /// The promotion.
        promotion: String,
        /// Which limit refused it.
        reason: crate::promotion::Unavailable,
    },

    /// Too many requests from one user (a per-user rate limit); nothing was done.
    /// Repeating the call after `retry_after` may succeed.
    #[error("rate limited: retry after {} ms", retry_after.as_millis())]
    RateLimited {
        /// When the next request would be admitted.
        retry_after: std::time::Duration,
    },

    /// The backend (database, cache, network, index) failed.
    ///
    /// `retryable` says whether the same call may succeed if repeated (a dropped
    /// connection, a serialization failure, a timeout) or not (a schema error).
    #[error("backend error ({}): {message}", if *retryable { "retryable" } else { "permanent" })]
    Backend {
        /// Whether repeating the call can help.
        retryable: bool,
        /// A short description of what failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// A [`Error::NotFound`].
    pub fn not_found(kind: EntityKind, id: impl fmt::Display) -> Self {
        Error::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    /// A [`Error::Conflict`].
    pub fn conflict(kind: EntityKind, message: impl Into<String>) -> Self {
        Error::Conflict {
            kind,
            message: message.into(),
        }
    }

    /// A [`Error::Validation`].
    pub fn validation(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Validation {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A [`Error::InvalidTransition`].
    pub fn invalid_transition(
        entity: EntityKind,
        from: impl fmt::Display,
        to: impl fmt::Display,
    ) -> Self {
        Error::InvalidTransition {
            entity,
            from: from.to_string(),
            to: to.to_string(),
        }
    }

    /// A retryable [`Error::Backend`] (connection lost, timeout, serialization failure).
    pub fn retryable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            retryable: true,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A permanent [`Error::Backend`] (schema missing, permission denied, corrupt data).
    pub fn permanent(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            retryable: false,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A backend error without a source.
    pub fn backend(retryable: bool, message: impl Into<String>) -> Self {
        Error::Backend {
            retryable,
            message: message.into(),
            source: None,
        }
    }

    /// Whether repeating the same call may succeed.
    ///
    /// True only for retryable backend failures; a conflict, validation error or
    /// out-of-stock answer is a decision, not a failure, and repeating it is pointless.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Backend {
                retryable: true,
                ..
            }
        )
    }

    /// Whether this is a [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Whether this is a [`Error::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_only_for_retryable_backend_errors() {
        assert!(Error::backend(true, "timeout").is_retryable());
        assert!(!Error::backend(false, "schema").is_retryable());
        assert!(!Error::conflict(EntityKind::Order, "x").is_retryable());
        assert!(
            !Error::OutOfStock {
                sku: "a".into(),
                requested: 2,
                available: 1
            }
            .is_retryable()
        );
    }

    #[test]
    fn backend_error_keeps_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let err = Error::retryable("connection lost", io);
        let source = std::error::Error::source(&err).map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("reset"));
        assert_eq!(
            err.to_string(),
            "backend error (retryable): connection lost"
        );
    }
}
