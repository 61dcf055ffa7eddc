//! Empty on purpose: Cargo needs one library or binary target in a package, and this
//! package holds only examples. The examples share code through `shared/`, which each
//! includes with `#[path]`.
