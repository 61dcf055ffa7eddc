//! The conformance kit's search area on the tantivy index: in memory, on disk, with
//! background commits, and sharded.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use commerce_core::clock::ManualClock;
use commerce_core::testkit::{self, StoreBuilder, StoresUnderTest};
use commerce_search::{ShardedSearch, TantivyConfig, TantivySearch};

/// How the builder makes each case's index.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// In memory, committing only on `refresh`.
    InRam,
    /// In a temporary directory, with the default background commits.
    OnDisk,
    /// Three in-memory shards.
    Sharded,
}

#[derive(Debug)]
struct Builder {
    kind: Kind,
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

impl Builder {
    fn new(kind: Kind) -> Self {
        Builder {
            kind,
            dirs: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl StoreBuilder for Builder {
    async fn build(&self, _clock: Arc<ManualClock>) -> commerce_core::Result<StoresUnderTest> {
        let config = TantivyConfig {
            writer_threads: 1,
            writer_memory: 32 << 20,
            ..TantivyConfig::default()
        };
        let stores = StoresUnderTest::new();
        Ok(match self.kind {
            Kind::InRam => {
                stores.with_search(Arc::new(TantivySearch::in_ram_with(TantivyConfig {
                    commit_interval: None,
                    ..config
                })?))
            }
            Kind::OnDisk => {
                let dir = tempfile::tempdir()
                    .map_err(|e| commerce_core::Error::permanent("temp dir", e))?;
                let index = TantivySearch::open_or_create_with(dir.path(), config)?;
                self.dirs.lock().expect("lock").push(dir);
                stores.with_search(Arc::new(index))
            }
            Kind::Sharded => stores.with_search(Arc::new(ShardedSearch::in_ram(3, config)?)),
        })
    }

    async fn teardown(&self) -> commerce_core::Result<()> {
        self.dirs.lock().expect("lock").clear();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tantivy_in_ram_passes_the_search_area() {
    testkit::search::test_all(&Builder::new(Kind::InRam)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tantivy_on_disk_passes_the_search_area() {
    testkit::search::test_all(&Builder::new(Kind::OnDisk)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sharded_tantivy_passes_the_search_area() {
    testkit::search::test_all(&Builder::new(Kind::Sharded)).await;
}
