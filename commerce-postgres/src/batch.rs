//! Group commit for concurrent requests: [`Batcher`] runs the requests that arrive while
//! a batch is in flight as the next batch, one statement and one commit for all of them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use commerce_core::{Error, Result};
use tokio::sync::oneshot;

/// Runs one batch: one answer per request, in request order; `Err` when the whole batch
/// failed (nothing of it committed).
pub(crate) type RunBatch<Req, Resp> = Arc<
    dyn Fn(Vec<Req>) -> Pin<Box<dyn Future<Output = Result<Vec<Result<Resp>>>> + Send>>
        + Send
        + Sync,
>;

struct Pending<Req, Resp> {
    request: Req,
    reply: oneshot::Sender<Result<Resp>>,
}

struct State<Req, Resp> {
    pending: Vec<Pending<Req, Resp>>,
    running: usize,
}

/// Collects concurrent requests into batches.
///
/// The first request starts a batch at once (no timer: a lone request pays no wait);
/// requests that arrive while `lanes` batches are in flight wait and go together in the
/// next one, up to `max_batch`. Each request gets its own answer; a batch that fails as
/// a whole (a lost connection) fails each of its requests with the same retryable or
/// permanent kind and the database error as the source. A request whose caller gave up
/// still runs (a retry of a pipeline step is idempotent).
pub(crate) struct Batcher<Req, Resp> {
    state: Mutex<State<Req, Resp>>,
    run: RunBatch<Req, Resp>,
    lanes: usize,
    max_batch: usize,
}

impl<Req, Resp> std::fmt::Debug for Batcher<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("lanes", &self.lanes)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

/// The same failure for every request of a failed batch, keeping the original error
/// (and its SQLSTATE) as the source.
pub(crate) fn shared_failure(e: Error) -> impl Fn() -> Error {
    let retryable = e.is_retryable();
    let message = format!("batched statement failed: {e}");
    let shared = Arc::new(e);
    move || {
        if retryable {
            Error::retryable(message.clone(), shared.clone())
        } else {
            Error::permanent(message.clone(), shared.clone())
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    pub(crate) fn new(lanes: usize, max_batch: usize, run: RunBatch<Req, Resp>) -> Arc<Self> {
        Arc::new(Batcher {
            state: Mutex::new(State {
                pending: Vec::new(),
                running: 0,
            }),
            run,
            lanes: lanes.max(1),
            max_batch: max_batch.max(1),
        })
    }

    /// Queues `request` and waits for its answer.
    pub(crate) async fn submit(self: &Arc<Self>, request: Req) -> Result<Resp> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = self
                .state
                .lock()
                .map_err(|_| Error::backend(false, "batcher lock poisoned"))?;
            state.pending.push(Pending { request, reply });
            let start = state.running < self.lanes;
            if start {
                state.running += 1;
            }
            start
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.drain().await });
        }
        answer
            .await
            .map_err(|_| Error::backend(true, "the batch was abandoned; retry"))?
    }

    /// Runs batches until nothing is pending.
    async fn drain(self: Arc<Self>) {
        loop {
            let batch: Vec<Pending<Req, Resp>> = {
                let Ok(mut state) = self.state.lock() else {
                    return;
                };
                if state.pending.is_empty() {
                    state.running -= 1;
                    return;
                }
                let n = state.pending.len().min(self.max_batch);
                state.pending.drain(..n).collect()
            };
            let (requests, replies): (Vec<Req>, Vec<_>) =
                batch.into_iter().map(|p| (p.request, p.reply)).unzip();
            let n = requests.len();
            match (self.run)(requests).await {
                Ok(answers) if answers.len() == n => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                }
                Ok(answers) => {
                    let e = Error::backend(
                        false,
                        format!("a batch of {n} returned {} answers", answers.len()),
                    );
                    let fail = shared_failure(e);
                    for reply in replies {
                        let _ = reply.send(Err(fail()));
                    }
                }
                Err(e) => {
                    let fail = shared_failure(e);
                    for reply in replies {
                        let _ = reply.send(Err(fail()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("SQLSTATE 57P01")]
    struct Lost;

    /// Every request of a failed batch keeps the kind and the original error (with its
    /// SQLSTATE) in its source chain.
    #[test]
    fn a_failed_batch_fails_each_request_with_the_original_source() {
        let fail = shared_failure(Error::retryable("connection lost", Lost));
        for _ in 0..3 {
            let e = fail();
            assert!(e.is_retryable());
            let mut chain = std::error::Error::source(&e);
            let mut found = false;
            while let Some(s) = chain {
                found |= s.downcast_ref::<Lost>().is_some();
                chain = s.source();
            }
            assert!(found, "the source chain of {e:?} lost the database error");
        }
        let fail = shared_failure(Error::permanent("syntax", Lost));
        assert!(!fail().is_retryable());
    }

    /// Concurrent submissions are answered each with its own result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_get_their_own_answers() {
        let run: RunBatch<u32, u32> = Arc::new(|batch: Vec<u32>| {
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                Ok(batch
                    .into_iter()
                    .map(|n| {
                        if n % 7 == 0 {
                            Err(Error::validation("n", "multiple of 7"))
                        } else {
                            Ok(n * 2)
                        }
                    })
                    .collect())
            })
        });
        let batcher = Batcher::new(2, 16, run);
        let tasks: Vec<_> = (1..=200u32)
            .map(|n| {
                let b = batcher.clone();
                tokio::spawn(async move { (n, b.submit(n).await) })
            })
            .collect();
        for t in tasks {
            let (n, r) = t.await.expect("task");
            match r {
                Ok(v) => assert_eq!(v, n * 2),
                Err(e) => assert!(n % 7 == 0, "{n}: {e}"),
            }
        }
    }
}
