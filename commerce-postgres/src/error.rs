//! The adapter's private error type and its mapping to [`commerce_core::Error`] by
//! SQLSTATE code (never by message text).

use commerce_core::EntityKind;
use commerce_core::Error;

/// What can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgError {
    /// A driver or server error.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be turned back into a domain value.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// SQLSTATE codes this crate acts on.
pub(crate) mod code {
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    pub const QUERY_CANCELED: &str = "57014";
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CRASH_SHUTDOWN: &str = "57P02";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const IDLE_SESSION_TIMEOUT: &str = "57P05";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// Raised by `reserve_redemption()`: a limit refused it (DETAIL is JSON).
    pub const PROMOTION_UNAVAILABLE: &str = "CM010";
}

impl PgError {
    /// The SQLSTATE of a server error.
    pub(crate) fn code(&self) -> Option<String> {
        match self {
            PgError::Sqlx(sqlx::Error::Database(d)) => d.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
}

impl From<PgError> for Error {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Sqlx(e) => map_sqlx(e),
            PgError::Migrate(e) => Error::permanent(format!("migration failed: {e}"), e),
            PgError::Corrupt(m) => Error::backend(false, format!("corrupt row: {m}")),
        }
    }
}

fn map_sqlx(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.into_owned()).unwrap_or_default();
            if code == code::UNIQUE_VIOLATION {
                return Error::Conflict {
                    kind: EntityKind::Other,
                    message: format!(
                        "unique constraint {} violated",
                        d.constraint().unwrap_or("?")
                    ),
                };
            }
            let message = format!("database error {code}: {}", d.message());
            by_sqlstate(&code, message, e)
        }
        sqlx::Error::PoolTimedOut => Error::retryable("no database connection free in time", e),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            Error::retryable("connection error", e)
        }
        sqlx::Error::WorkerCrashed | sqlx::Error::PoolClosed => {
            Error::retryable("connection pool unavailable", e)
        }
        _ => Error::permanent("database error", e),
    }
}

/// The kind of a server error by its SQLSTATE (`message` for the permanent ones).
fn by_sqlstate(
    code: &str,
    message: String,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    match code {
        code::SERIALIZATION_FAILURE | code::DEADLOCK_DETECTED => {
            Error::retryable("transaction aborted by a concurrent one; retry", source)
        }
        code::QUERY_CANCELED => Error::retryable("statement timeout or cancelled", source),
        code::LOCK_NOT_AVAILABLE => Error::retryable("lock not available in time", source),
        code::ADMIN_SHUTDOWN
        | code::CRASH_SHUTDOWN
        | code::CANNOT_CONNECT_NOW
        | code::IDLE_SESSION_TIMEOUT
        | code::TOO_MANY_CONNECTIONS => Error::retryable("connection lost", source),
        c if c.starts_with("08") => Error::retryable("connection error", source),
        c if c.starts_with("53") => Error::retryable("server out of resources", source),
        // data exceptions: strings the column cannot hold (NUL bytes, too long)
        c if c.starts_with("22") => Error::validation(
            "input",
            "a value cannot be stored (invalid characters or too long)",
        ),
        _ => Error::permanent(message, source),
    }
}

/// A failure that a batch function caught for one request and returned in its row:
/// the SQLSTATE and DETAIL.
#[derive(Debug, thiserror::Error)]
#[error("SQLSTATE {code}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
pub(crate) struct RowFailure {
    /// The SQLSTATE.
    pub code: String,
    /// The DETAIL, if any.
    pub detail: String,
}

impl RowFailure {
    /// The failure a batch function returned in `row` (its `code` and `detail` columns).
    pub(crate) fn of_row(row: &sqlx::postgres::PgRow) -> commerce_core::Result<Self> {
        use sqlx::Row;
        let column = |name: &str| -> commerce_core::Result<String> {
            Ok(row
                .try_get::<Option<String>, _>(name)
                .db()?
                .unwrap_or_default())
        };
        Ok(RowFailure {
            code: column("code")?,
            detail: column("detail")?,
        })
    }
}

/// Maps a failure returned in a batch row by its SQLSTATE, as a server error of that
/// code is mapped (`what` names the request in the permanent ones).
pub(crate) fn from_sqlstate(code: &str, detail: String, what: &str) -> Error {
    let failure = RowFailure {
        code: code.to_owned(),
        detail,
    };
    by_sqlstate(code, format!("{what} failed"), failure)
}

/// `.db()?` on driver results.
pub(crate) trait DbResult<T> {
    /// Maps the driver error into the domain error.
    fn db(self) -> commerce_core::Result<T>;
}

impl<T> DbResult<T> for Result<T, sqlx::Error> {
    fn db(self) -> commerce_core::Result<T> {
        self.map_err(|e| PgError::Sqlx(e).into())
    }
}

/// A corrupt-row error.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    PgError::Corrupt(what.to_string()).into()
}

/// A stored count or version, which is never negative: a negative one is corrupt data
/// (a typed error naming `what`), never clamped to 0.
/// The index of a 1-based `position` that a batch function returned, checked against
/// the `len` requests it was given (anything else is a corrupt answer from `what`).
pub(crate) fn position_index(
    position: i32,
    len: usize,
    what: &str,
) -> Result<usize, commerce_core::Error> {
    usize::try_from(position)
        .ok()
        .and_then(|p| p.checked_sub(1))
        .filter(|&p| p < len)
        .ok_or_else(|| corrupt(format!("{what} returned position {position}")))
}

pub(crate) fn non_negative(v: i64, what: &str) -> Result<u64, commerce_core::Error> {
    u64::try_from(v).map_err(|_| corrupt(format!("{what} is negative ({v})")))
}
