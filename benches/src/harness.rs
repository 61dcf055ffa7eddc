//! Settings, load generation, latency recording and the JSON report.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

/// The error type of scenarios.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// Result alias of scenarios.
pub type BenchResult<T> = Result<T, BenchError>;

/// What a scenario is asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Measurement time; `None` means the scenario's default.
    pub seconds: Option<f64>,
    /// Concurrent tasks; `None` means the scenario's default.
    pub concurrency: Option<usize>,
    /// Catalog size; `None` means the scenario's default.
    pub products: Option<u64>,
    /// A brief run that only shows the scenario works (CI).
    pub quick: bool,
    /// Which backend to run on (`memory`, `postgres`, `redis`, ...); `None`: the default.
    pub backend: Option<String>,
    /// PostgreSQL URL (`DATABASE_URL`).
    pub database_url: Option<String>,
    /// Redis URL (`REDIS_URL`).
    pub redis_url: Option<String>,
    /// Where to write plots (SVG), if the scenario draws any.
    pub plot_dir: Option<std::path::PathBuf>,
    /// Search shards (`--shards`, search scenarios); `None`: one index.
    pub shards: Option<usize>,
}

impl Settings {
    /// Measurement time: `--seconds`, else 1 s when quick, else `default`.
    pub fn seconds_or(&self, default: f64) -> Duration {
        let s = self
            .seconds
            .unwrap_or(if self.quick { 1.0 } else { default });
        Duration::from_secs_f64(s.max(0.05))
    }

    /// Concurrency: `--concurrency`, else `default`.
    pub fn concurrency_or(&self, default: usize) -> usize {
        self.concurrency.unwrap_or(default).max(1)
    }

    /// Catalog size: `--products`, else `quick_default` when quick, else `default`.
    pub fn products_or(&self, default: u64, quick_default: u64) -> u64 {
        self.products
            .unwrap_or(if self.quick { quick_default } else { default })
    }

    /// The backend: `--backend`, else `default`.
    pub fn backend_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.backend.as_deref().unwrap_or(default)
    }

    /// `DATABASE_URL`, or an error naming it.
    pub fn require_database_url(&self) -> BenchResult<&str> {
        self.database_url
            .as_deref()
            .ok_or_else(|| "this scenario needs DATABASE_URL".into())
    }

    /// `REDIS_URL`, or an error naming it.
    pub fn require_redis_url(&self) -> BenchResult<&str> {
        self.redis_url
            .as_deref()
            .ok_or_else(|| "this scenario needs REDIS_URL".into())
    }
}

/// How one operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done; counts towards `ops`.
    Ok,
    /// A legitimate "no" (out of stock, rate limited): counted as `rejected`.
    Rejected,
    /// A failure: counted as `errors`.
    Error,
}

/// Latencies in microseconds, 1 µs to 60 s, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty recorder.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts.
        Latencies(
            Histogram::new_with_bounds(1, 60_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).expect("3 significant digits are valid")),
        )
    }

    /// Records one duration.
    pub fn record(&mut self, d: Duration) {
        let micros = (d.as_micros() as u64).clamp(1, 60_000_000);
        self.0.saturating_record(micros);
    }

    /// Adds another recorder's samples.
    pub fn merge(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }

    /// The `q` quantile (0..=1) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a closed-loop run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Successful operations.
    pub ops: u64,
    /// Rejected operations.
    pub rejected: u64,
    /// Failed operations.
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency of every operation (successful or not).
    pub latencies: Latencies,
}

impl LoadResult {
    /// Successful operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A report with the standard fields filled in from this run.
    pub fn report(&self, scenario: &str, backend: &str) -> Report {
        Report::new(scenario, backend)
            .field("ops", self.ops)
            .field("seconds", round3(self.elapsed.as_secs_f64()))
            .field("ops_per_sec", round1(self.ops_per_sec()))
            .field("p50_ms", round3(self.latencies.quantile_ms(0.50)))
            .field("p90_ms", round3(self.latencies.quantile_ms(0.90)))
            .field("p99_ms", round3(self.latencies.quantile_ms(0.99)))
            .field("p999_ms", round3(self.latencies.quantile_ms(0.999)))
            .field("errors", self.errors)
            .field("rejected", self.rejected)
    }
}

/// Rounds to 3 decimals for readable JSON.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Rounds to 1 decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Runs `op` from `concurrency` tasks for `duration`, each task starting its next
/// operation when the previous one ends. `op(task, iteration)`.
pub async fn run_closed_loop<F, Fut>(concurrency: usize, duration: Duration, op: F) -> LoadResult
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    run_until(concurrency, duration, None, op).await
}

/// Like [`run_closed_loop`], but each task also stops after `max_ops_per_task`
/// operations (for fixed-size workloads such as "100,000 buyers").
pub async fn run_until<F, Fut>(
    concurrency: usize,
    duration: Duration,
    max_ops_per_task: Option<u64>,
    op: F,
) -> LoadResult
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = LoadResult::default();
            let mut i = 0u64;
            while Instant::now() < deadline && max_ops_per_task.is_none_or(|m| i < m) {
                let t0 = Instant::now();
                let outcome = op(task, i).await;
                r.latencies.record(t0.elapsed());
                match outcome {
                    Outcome::Ok => r.ops += 1,
                    Outcome::Rejected => r.rejected += 1,
                    Outcome::Error => r.errors += 1,
                }
                i += 1;
            }
            r
        }));
    }
    let mut total = LoadResult::default();
    for t in tasks {
        match t.await {
            Ok(r) => {
                total.ops += r.ops;
                total.rejected += r.rejected;
                total.errors += r.errors;
                total.latencies.merge(&r.latencies);
            }
            Err(_) => total.errors += 1,
        }
    }
    total.elapsed = start.elapsed();
    total
}

/// One JSON line of output: the standard fields first, then the scenario's own.
#[derive(Debug, Clone)]
pub struct Report(Map<String, Value>);

impl Report {
    /// A report for `scenario` on `backend`.
    pub fn new(scenario: &str, backend: &str) -> Self {
        let mut m = Map::new();
        m.insert("scenario".into(), json!(scenario));
        m.insert("backend".into(), json!(backend));
        Report(m)
    }

    /// Sets a field.
    pub fn field(mut self, key: &str, value: impl serde::Serialize) -> Self {
        self.0.insert(
            key.into(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    /// Sets `baseline_ops_per_sec` and `ratio` (ours / baseline).
    pub fn baseline(self, baseline_ops_per_sec: f64) -> Self {
        let ours = self.get_f64("ops_per_sec").unwrap_or(0.0);
        let ratio = if baseline_ops_per_sec > 0.0 {
            ours / baseline_ops_per_sec
        } else {
            0.0
        };
        self.field("baseline_ops_per_sec", round1(baseline_ops_per_sec))
            .field("ratio", round3(ratio))
    }

    /// A numeric field.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.0.get(key).and_then(Value::as_f64)
    }

    /// The field names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// A text field.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// The JSON line.
    pub fn to_line(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }
}
