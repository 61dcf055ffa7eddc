//! The out-of-stock protocol of `reserve()`: its SQLSTATEs mapped to typed errors.

use commerce_core::{EntityKind, Error};

use crate::error::{PgError, code, corrupt};

/// Maps the errors `reserve()` raises by SQLSTATE.
pub(crate) fn reserve_error(e: sqlx::Error) -> Error {
    let pg = PgError::Sqlx(e);
    match pg.code().as_deref() {
        Some(code::OUT_OF_STOCK) => {
            #[derive(serde::Deserialize)]
            struct Short {
                sku: String,
                requested: u64,
                available: u64,
            }
            let detail = match &pg {
                PgError::Sqlx(sqlx::Error::Database(d)) => d
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|d| d.detail())
                    .map(str::to_owned),
                _ => None,
            };
            match detail.and_then(|d| serde_json::from_str::<Short>(&d).ok()) {
                Some(s) => Error::OutOfStock {
                    sku: s.sku,
                    requested: s.requested,
                    available: s.available,
                },
                None => corrupt("reserve() raised out of stock without details"),
            }
        }
        Some(code::UNKNOWN_SKU) => {
            let sku = match &pg {
                PgError::Sqlx(sqlx::Error::Database(d)) => d
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|d| d.detail())
                    .map(str::to_owned),
                _ => None,
            };
            Error::not_found(EntityKind::Stock, sku.unwrap_or_default())
        }
        _ => pg.into(),
    }
}
