//! Group commit for concurrent requests: [`Batcher`] runs the requests that arrive while
//! a batch is in flight as the next batch, one statement and one commit for all of them.
//! [`KeyedReads`] does the same for reads by key: one statement for a batch's keys.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use commerce_core::{Error, Result};
use sqlx::PgPool;
use sqlx::postgres::PgRow;
use tokio::sync::oneshot;

use crate::error::DbResult;
use crate::steps::StepBatching;

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

/// A lane in use by a draining task; gives it back when dropped unless already
/// returned.
struct Lane<'a, Req, Resp> {
    state: &'a Mutex<State<Req, Resp>>,
    returned: bool,
}

impl<Req, Resp> Drop for Lane<'_, Req, Resp> {
    fn drop(&mut self) {
        if self.returned {
            return;
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.running = state.running.saturating_sub(1);
        if state.running == 0 {
            // No lane is left to run what is queued (a new one cannot be started from
            // here): those requests fail as retryable instead of waiting forever.
            for p in state.pending.drain(..) {
                let _ = p
                    .reply
                    .send(Err(Error::backend(true, "the batch's task stopped; retry")));
            }
        }
    }
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
        // Gives the lane back if this task is dropped mid-batch (its runtime shut down,
        // or it was aborted), so the next request starts a new lane instead of waiting
        // for one that never returns; requests queued meanwhile fail as retryable.
        let mut lane = Lane {
            state: &self.state,
            returned: false,
        };
        loop {
            let batch: Vec<Pending<Req, Resp>> = {
                let Ok(mut state) = self.state.lock() else {
                    return;
                };
                if state.pending.is_empty() {
                    state.running -= 1;
                    lane.returned = true;
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

/// Reads one answer per key of `keys`, in key order, with one statement; `Err` when
/// the statement failed, a per-key `Err` when only that key's row could not be decoded.
pub(crate) type FetchKeys<Out> = Arc<
    dyn Fn(Vec<String>) -> Pin<Box<dyn Future<Output = Result<Vec<Result<Out>>>> + Send>>
        + Send
        + Sync,
>;

/// Batched reads by key: concurrent requests (each a list of keys) that arrive while a
/// read is in flight are read together, one statement and one round trip for all of
/// their keys, and each request gets its own keys' answers, in order.
///
/// A request is read by a statement that starts after it was submitted, so it sees
/// every write that committed before it was made (read-your-writes holds), and one
/// request's keys are read by one statement (one snapshot).
pub(crate) type KeyedReads<Out> = Batcher<Vec<String>, Vec<Out>>;

/// A [`KeyedReads`] over `fetch`, grouped as `batching` says.
pub(crate) fn keyed_reads<Out: Send + 'static>(
    batching: StepBatching,
    fetch: FetchKeys<Out>,
) -> Arc<KeyedReads<Out>> {
    let run: RunBatch<Vec<String>, Vec<Out>> = Arc::new(move |batch: Vec<Vec<String>>| {
        let fetch = fetch.clone();
        Box::pin(async move {
            let lens: Vec<usize> = batch.iter().map(Vec::len).collect();
            let keys: Vec<String> = batch.into_iter().flatten().collect();
            let n = keys.len();
            let answers = fetch(keys).await?;
            if answers.len() != n {
                return Err(Error::backend(
                    false,
                    format!("a read of {n} keys returned {} answers", answers.len()),
                ));
            }
            let mut answers = answers.into_iter();
            Ok(lens
                .into_iter()
                .map(|len| answers.by_ref().take(len).collect::<Result<Vec<Out>>>())
                .collect())
        })
    });
    Batcher::new(batching.lanes, batching.max_batch, run)
}

/// A [`FetchKeys`] that runs `sql` on `pool` with the keys bound as `$1` (a `text[]`)
/// and lets `decode` turn the rows into one answer per key.
pub(crate) fn fetch_rows<Out: Send + 'static>(
    pool: PgPool,
    sql: String,
    decode: impl Fn(&[String], Vec<PgRow>) -> Result<Vec<Result<Out>>> + Send + Sync + 'static,
) -> FetchKeys<Out> {
    let decode = Arc::new(decode);
    let sql: Arc<str> = sql.into();
    Arc::new(move |keys: Vec<String>| {
        let (pool, sql, decode) = (pool.clone(), sql.clone(), decode.clone());
        Box::pin(async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(&*sql))
                .bind(&keys)
                .fetch_all(&pool)
                .await
                .db()?;
            decode(&keys, rows)
        })
    })
}

impl<Out: Send + 'static> Batcher<Vec<String>, Vec<Out>> {
    /// Reads `keys` (see [`KeyedReads`]): one answer per key, in order.
    pub(crate) async fn read_many(self: &Arc<Self>, keys: Vec<String>) -> Result<Vec<Out>> {
        let n = keys.len();
        let answers = self.submit(keys).await?;
        if answers.len() != n {
            return Err(Error::backend(
                false,
                format!("a read of {n} keys returned {} answers", answers.len()),
            ));
        }
        Ok(answers)
    }

    /// Reads one key (see [`KeyedReads`]).
    pub(crate) async fn read_one(self: &Arc<Self>, key: &str) -> Result<Out> {
        self.read_many(vec![key.to_owned()])
            .await?
            .pop()
            .ok_or_else(|| Error::backend(false, "a read of one key returned no answer"))
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

    /// A batch whose task dies mid-flight (its runtime shut down) fails its own
    /// requests as retryable, and the lane comes back: a request from another runtime
    /// is still answered, instead of waiting forever for a lane that never returns.
    #[test]
    fn a_batch_dropped_mid_flight_gives_its_lane_back() {
        let run: RunBatch<u32, u32> = Arc::new(|batch: Vec<u32>| {
            Box::pin(async move {
                if batch.contains(&0) {
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
                Ok(batch.into_iter().map(|n| Ok(n + 1)).collect())
            })
        });
        let batcher = Batcher::new(1, 16, run);
        let first = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let stuck = {
            let b = batcher.clone();
            first.spawn(async move { b.submit(0).await })
        };
        first.block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        });
        first.shutdown_background();
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        second.block_on(async {
            // Asked while the dying task may still hold the lane: answered either way,
            // at worst with a retryable error; the retry then gets its answer.
            let wait = std::time::Duration::from_secs(10);
            match tokio::time::timeout(wait, batcher.submit(41)).await {
                Err(_) => panic!("a request waited for a lane that never came back"),
                Ok(Ok(n)) => assert_eq!(n, 42),
                Ok(Err(e)) => {
                    assert!(e.is_retryable(), "{e}");
                    let again = tokio::time::timeout(wait, batcher.submit(41)).await;
                    assert_eq!(again.expect("the lane came back").expect("answer"), 42);
                }
            }
        });
        let _ = second.block_on(stuck);
    }

    /// Concurrent keyed reads each get their own keys' answers in order (duplicates
    /// across requests included), fewer statements run than requests, and a key that
    /// failed to decode fails only the requests that asked for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyed_reads_split_each_batch_back_into_its_requests() {
        let statements = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = statements.clone();
        let fetch: FetchKeys<usize> = Arc::new(move |keys: Vec<String>| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                Ok(keys
                    .iter()
                    .map(|k| {
                        if k == "bad" {
                            Err(Error::permanent("corrupt row", Lost))
                        } else {
                            Ok(k.len())
                        }
                    })
                    .collect())
            })
        });
        let reads = keyed_reads(
            StepBatching {
                lanes: 1,
                max_batch: 64,
            },
            fetch,
        );
        let tasks: Vec<_> = (0..300usize)
            .map(|n| {
                let reads = reads.clone();
                tokio::spawn(async move {
                    let keys: Vec<String> = (0..n % 4).map(|i| "k".repeat(n % 5 + i)).collect();
                    let keys = if n % 50 == 0 {
                        vec!["x".into(), "bad".into()]
                    } else {
                        keys
                    };
                    (keys.clone(), reads.submit(keys).await)
                })
            })
            .collect();
        for t in tasks {
            let (keys, got) = t.await.expect("task");
            if keys.iter().any(|k| k == "bad") {
                assert!(got.is_err(), "{keys:?} read a corrupt row");
            } else {
                let want: Vec<usize> = keys.iter().map(String::len).collect();
                assert_eq!(got.expect("read"), want, "{keys:?}");
            }
        }
        assert_eq!(reads.read_one("abc").await.expect("one"), 3);
        let ran = statements.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            ran < 300,
            "{ran} statements for 301 reads: nothing was batched"
        );
    }
}
