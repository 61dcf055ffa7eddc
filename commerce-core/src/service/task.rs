//! Background loops (queue workers, the relay, the reaper) and how to stop them.

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// A service loop running on the tokio runtime.
///
/// [`BackgroundTask::shutdown`] asks the loop to stop and waits for it to finish its
/// current work. Dropping the handle also asks it to stop (without waiting).
#[derive(Debug)]
pub struct BackgroundTask<T> {
    stop: watch::Sender<bool>,
    handle: JoinHandle<T>,
}

impl<T: Send + 'static> BackgroundTask<T> {
    /// Spawns `f` with a [`Shutdown`] signal it must watch: an adapter's own loop (a
    /// cache invalidator, say) gets the same handle as the library's.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> commerce_core::Result<()> {
    /// use commerce_core::service::BackgroundTask;
    /// let task = BackgroundTask::spawn(|mut stop| async move {
    ///     let mut rounds = 0u32;
    ///     while !stop.is_stopping() {
    ///         rounds += 1;
    ///         tokio::select! {
    ///             _ = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
    ///             _ = stop.stopped() => {}
    ///         }
    ///     }
    ///     rounds
    /// });
    /// tokio::time::sleep(std::time::Duration::from_millis(20)).await; // the loop runs
    /// assert!(task.shutdown().await? >= 1);
    /// # Ok(()) }
    /// ```
    pub fn spawn<F, Fut>(f: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (stop, rx) = watch::channel(false);
        let handle = tokio::spawn(f(Shutdown(rx)));
        BackgroundTask { stop, handle }
    }

    /// Asks the loop to stop and waits for it; returns what the loop returned.
    pub async fn shutdown(self) -> Result<T> {
        let _ = self.stop.send(true);
        self.handle
            .await
            .map_err(|e| Error::permanent("background task panicked or was aborted", e))
    }

    /// Whether the loop has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// The stop signal a background loop watches.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Whether the loop has been asked to stop (or its handle was dropped).
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once the loop is asked to stop.
    pub async fn stopped(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}
