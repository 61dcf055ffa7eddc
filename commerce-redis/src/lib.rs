//! commerce-core adapter (redis).
