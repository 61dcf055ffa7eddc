//! commerce-core adapter (search).
