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
//! | `commerce_pipeline_steps_total` | counter | `step`, `outcome` | the pipeline's fused steps (`reserve`, `confirm`): `advanced`, `cancelled` (out of stock, lapsed) or `failed` |
//! | `commerce_pipeline_step_duration_seconds` | histogram | `step` | how long a fused step took, retries included |
//! | `commerce_pipeline_step_retries_total` | counter | `step` | retries of the pipeline's calls after a retryable error (`reserve`, `confirm payment`, `charge`, ...) |
//! | `commerce_pipeline_jobs_total` | counter | `outcome` | queue jobs settled by the workers: `acked`, `retried`, `dead_lettered`, `stale` |
//! | `commerce_relay_enqueued_total` | counter | | orders relayed from the outbox to the queue |
//! | `commerce_queue_wait_seconds` | histogram | | a job's age when a worker claims it (enqueue to claim) |
//! | `commerce_queue_claimed` | gauge | | jobs the worker pool holds at once |
//! | `commerce_relay_lag_seconds` | histogram | | from an `OrderCreated` event's commit to its job's enqueue |
//! | `commerce_queue_jobs` | gauge | `state` | jobs in the order queue by state (`ready`, `delayed`, `leased`, `dead`), sampled by [`QueueDepthMonitor`](crate::service::QueueDepthMonitor) |
//! | `commerce_reservations_total` | counter | `store`, `op`, `outcome` | reservation calls counted by the inventory stores themselves (`store`: `memory`, `postgres`; `op`: `reserve`, `reserve_batch` (the hot-SKU combined path), `reserve_order` (a fused step), `confirm`, `release`, `return`, `expire`; `outcome`: `ok` or the error kind, see [`error_kind`]) |
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

/// The pipeline's fused steps. Labels: `step`, `outcome`.
pub const PIPELINE_STEPS: &str = "commerce_pipeline_steps_total";
/// A fused step's latency in seconds. Labels: `step`.
pub const PIPELINE_STEP_DURATION: &str = "commerce_pipeline_step_duration_seconds";
/// Retries of the pipeline's calls. Labels: `step`.
pub const STEP_RETRIES: &str = "commerce_pipeline_step_retries_total";
/// Queue jobs settled by the workers. Labels: `outcome`.
pub const PIPELINE_JOBS: &str = "commerce_pipeline_jobs_total";
/// A job's age when claimed, in seconds.
pub const QUEUE_WAIT: &str = "commerce_queue_wait_seconds";
/// Jobs the worker pool holds at once.
pub const QUEUE_CLAIMED: &str = "commerce_queue_claimed";
/// Orders relayed from the outbox to the queue.
pub const RELAY_ENQUEUED: &str = "commerce_relay_enqueued_total";
/// Outbox-to-queue lag in seconds.
pub const RELAY_LAG: &str = "commerce_relay_lag_seconds";

/// Jobs in the order queue by state. Labels: `state`.
pub const QUEUE_JOBS: &str = "commerce_queue_jobs";
/// Reservation calls by store, operation and outcome. Labels: `store`, `op`, `outcome`.
pub const RESERVATIONS: &str = "commerce_reservations_total";

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
    describe_counter!(
        PIPELINE_STEPS,
        "The order pipeline's fused steps, by step and outcome"
    );
    describe_histogram!(
        PIPELINE_STEP_DURATION,
        Unit::Seconds,
        "Fused pipeline step latency, retries included"
    );
    describe_counter!(
        STEP_RETRIES,
        "Retries of the order pipeline's calls after retryable errors, by step"
    );
    describe_counter!(
        PIPELINE_JOBS,
        "Queue jobs settled by the workers, by outcome"
    );
    describe_counter!(
        RELAY_ENQUEUED,
        "Orders relayed from the outbox to the queue"
    );
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Age of queue jobs when a worker claims them"
    );
    metrics::describe_gauge!(QUEUE_CLAIMED, "Jobs the worker pool holds at once");
    describe_histogram!(
        RELAY_LAG,
        Unit::Seconds,
        "Outbox-to-queue lag of relayed orders"
    );
    metrics::describe_gauge!(QUEUE_JOBS, "Jobs in the order queue, by state");
    describe_counter!(
        RESERVATIONS,
        "Reservation calls by inventory store, operation and outcome"
    );
}

/// A short, stable label for an error's kind (`out_of_stock`, `not_found`, `conflict`,
/// `invalid_transition`, `validation`, `rate_limited`, `backend`, `other`).
pub fn error_kind(e: &crate::Error) -> &'static str {
    use crate::Error;
    match e {
        Error::OutOfStock { .. } => "out_of_stock",
        Error::NotFound { .. } => "not_found",
        Error::Conflict { .. } => "conflict",
        Error::InvalidTransition { .. } => "invalid_transition",
        Error::Validation { .. } => "validation",
        Error::RateLimited { .. } => "rate_limited",
        Error::Backend { .. } => "backend",
        _ => "other",
    }
}

/// Counts one reservation call of an inventory store by its outcome: `ok`, or the
/// [`error_kind`] of its error.
pub fn record_reservation<T>(store: &'static str, op: &'static str, result: &crate::Result<T>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => error_kind(e),
    };
    metrics::counter!(RESERVATIONS, "store" => store, "op" => op, "outcome" => outcome)
        .increment(1);
}

/// Counts a fused reservation step of an [`OrderSteps`](crate::store::OrderSteps) store
/// that reserves by itself (`op = "reserve_order"`): `ok` when the order advanced,
/// `cancelled` when it was cancelled (out of stock, not stocked), else the error kind.
pub fn record_reserve_step(
    store: &'static str,
    result: &crate::Result<crate::store::steps::StepOutcome>,
) {
    let outcome = match result {
        Ok(o) if o.is_cancelled() => "cancelled",
        Ok(_) => "ok",
        Err(e) => error_kind(e),
    };
    metrics::counter!(RESERVATIONS, "store" => store, "op" => "reserve_order", "outcome" => outcome)
        .increment(1);
}

/// Counts the reservations a store released as expired (`op = "expire"`): each released
/// reservation as `ok`, a failed call once by its [`error_kind`].
pub fn record_expired<T>(store: &'static str, result: &crate::Result<Vec<T>>) {
    let (outcome, n) = match result {
        Ok(released) => ("ok", released.len() as u64),
        Err(e) => (error_kind(e), 1),
    };
    if n > 0 {
        metrics::counter!(RESERVATIONS, "store" => store, "op" => "expire", "outcome" => outcome)
            .increment(n);
    }
}

/// Sets the queue-depth gauges ([`QUEUE_JOBS`]) from a [`QueueStats`](crate::store::QueueStats).
pub fn record_queue_depth(stats: &crate::store::QueueStats) {
    for (state, n) in [
        ("ready", stats.ready),
        ("delayed", stats.delayed),
        ("leased", stats.leased),
        ("dead", stats.dead),
    ] {
        metrics::gauge!(QUEUE_JOBS, "state" => state).set(n as f64);
    }
}

/// Counts a fused pipeline step and records its latency.
pub fn record_step(step: &'static str, outcome: &'static str, took: std::time::Duration) {
    metrics::counter!(PIPELINE_STEPS, "step" => step, "outcome" => outcome).increment(1);
    metrics::histogram!(PIPELINE_STEP_DURATION, "step" => step).record(took.as_secs_f64());
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
