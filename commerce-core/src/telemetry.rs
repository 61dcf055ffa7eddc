//! The metrics the crates record through the [`metrics`] facade, by name.
//!
//! Nothing is recorded until the host installs a recorder (for example
//! `metrics-exporter-prometheus`); without one every call is a no-op. Call [`describe`]
//! once after installing it to attach the descriptions and units below.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `commerce_guard_rejections_total` | counter | `section`, `reason` | a guarded part left out (`no_time_left`, `circuit_open`, `failed`, `timed_out`) |
//! | `commerce_breaker_transitions_total` | counter | `breaker`, `to` | a circuit breaker moved to `open`, `half_open` or `closed` |
//! | `commerce_cache_requests_total` | counter | `cache`, `result` | product cache lookups, `hit` or `miss` (`cache`: `memory`, `redis`) |
//! | `commerce_rate_limit_decisions_total` | counter | `limiter`, `action`, `decision` | per-user rate limit answers, `admitted` or `limited` |
//! | `commerce_flash_admissions_total` | counter | `outcome` | flash-sale gate answers, `admitted` or `sold_out` |
//! | `commerce_search_duration_seconds` | histogram | `kind` | search index calls (`search`, `suggest`, `similar`) |
//!
//! Also spans: the adapters' calls carry `tracing` spans (`#[instrument]`), at debug level.

/// A guarded part left out. Labels: `section`, `reason`.
pub const GUARD_REJECTIONS: &str = "commerce_guard_rejections_total";
/// A circuit breaker changed state. Labels: `breaker`, `to`.
pub const BREAKER_TRANSITIONS: &str = "commerce_breaker_transitions_total";
/// Product cache lookups. Labels: `cache`, `result` (`hit`, `miss`).
pub const CACHE_REQUESTS: &str = "commerce_cache_requests_total";
/// Rate limit decisions. Labels: `limiter`, `action`, `decision` (`admitted`, `limited`).
pub const RATE_LIMIT_DECISIONS: &str = "commerce_rate_limit_decisions_total";
/// Flash-sale gate answers. Labels: `outcome` (`admitted`, `sold_out`).
pub const FLASH_ADMISSIONS: &str = "commerce_flash_admissions_total";
/// Search index latency in seconds. Labels: `kind`.
pub const SEARCH_DURATION: &str = "commerce_search_duration_seconds";

/// Attaches the descriptions and units of every metric above to the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        GUARD_REJECTIONS,
        "Guarded parts left out, by section and reason"
    );
    describe_counter!(
        BREAKER_TRANSITIONS,
        "Circuit breaker state changes, by breaker and new state"
    );
    describe_counter!(
        CACHE_REQUESTS,
        "Product cache lookups, by cache and hit or miss"
    );
    describe_counter!(
        RATE_LIMIT_DECISIONS,
        "Per-user rate limit decisions, by limiter, action and decision"
    );
    describe_counter!(FLASH_ADMISSIONS, "Flash-sale gate answers, by outcome");
    describe_histogram!(
        SEARCH_DURATION,
        Unit::Seconds,
        "Search index call latency, by kind"
    );
}

/// Counts a rate-limit decision (for the limiters of every crate).
pub fn record_rate_limit(limiter: &'static str, action: &'static str, admitted: bool) {
    let decision = if admitted { "admitted" } else { "limited" };
    metrics::counter!(RATE_LIMIT_DECISIONS, "limiter" => limiter, "action" => action, "decision" => decision)
        .increment(1);
}

/// Counts a product cache lookup.
pub fn record_cache(cache: &'static str, hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!(CACHE_REQUESTS, "cache" => cache, "result" => result).increment(1);
}
