//! commerce-core adapter (postgres).
