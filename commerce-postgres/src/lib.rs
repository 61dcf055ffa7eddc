//! commerce-core adapter (postgres).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod recommend;

pub use sqlx;
