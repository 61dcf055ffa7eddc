//! Assertion helpers of the cases: every failure says what was expected and what came.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Barrier;

/// `must!(expr, "context {}", x)`: the `Ok` value, or a panic naming the context and
/// the error.
macro_rules! must {
    ($result:expr, $($ctx:tt)+) => {
        match $result {
            Ok(v) => v,
            Err(e) => panic!("{}: unexpected error: {} ({:?})", format_args!($($ctx)+), e, e),
        }
    };
}
pub(crate) use must;

/// `assert_err!(expr, Error::NotFound { kind: EntityKind::Cart, .. }, "context")`: the
/// error if it matches the pattern, or a panic naming the context, the expected pattern
/// and what came instead.
macro_rules! assert_err {
    ($result:expr, $pat:pat, $($ctx:tt)+) => {
        match $result {
            Err(e) if matches!(e, $pat) => e,
            other => panic!(
                "{}: expected Err({}), got {:?}",
                format_args!($($ctx)+),
                stringify!($pat),
                other
            ),
        }
    };
}
pub(crate) use assert_err;

/// Runs `n` copies of `task(i)` on the runtime's worker threads, released together by a
/// barrier so they really overlap, and returns their outputs in index order. A panic in
/// any task is re-raised (after every task finished) with the task index.
pub(crate) async fn concurrently<T, F, Fut>(n: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let fut = task(i);
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    let mut panicked = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(v) => out.push(Some(v)),
            Err(e) => {
                out.push(None);
                if panicked.is_none() {
                    let message = if e.is_panic() {
                        let payload = e.into_panic();
                        payload
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_default()
                    } else {
                        e.to_string()
                    };
                    panicked = Some(format!("concurrent task {i} of {n} failed: {message}"));
                }
            }
        }
    }
    if let Some(message) = panicked {
        panic!("{message}");
    }
    out.into_iter().flatten().collect()
}

/// Awaits a spawned task, re-raising its panic message (with `what`) if it panicked.
pub(crate) async fn join<T>(handle: tokio::task::JoinHandle<T>, what: &str) -> T {
    match handle.await {
        Ok(v) => v,
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("{what} failed: {message}")
        }
        Err(e) => panic!("{what} failed: {e}"),
    }
}
