//! The conformance kit (feature `testkit`): the suites every store implementation runs,
//! proptest strategies for every domain type, the model-based inventory tests and the
//! fuzz target bodies.
//!
//! # Running the kit against an adapter
//!
//! Implement [`StoreBuilder`]: `build` returns fresh, empty [`StoresUnderTest`] for one case,
//! reading time from the given [`ManualClock`](crate::clock::ManualClock) (the kit moves
//! it instead of sleeping). Stores that append events (catalog, inventory, orders) come
//! with the [`EventLog`](crate::store::EventLog) they append to, so the kit can check
//! that every change appends its event atomically. Then call the kit from one test on a
//! **multi-thread** runtime (the kit checks claims under real concurrency and refuses a
//! current-thread runtime):
//!
//! ```
//! use commerce_core::testkit::{self, MemoryBuilder};
//!
//! // #[tokio::test(flavor = "multi_thread")]
//! async fn conformance() {
//!     // Every area the builder provides:
//!     testkit::test_all(&MemoryBuilder).await;
//!     // Or one area:
//!     testkit::carts::test_all(&MemoryBuilder).await;
//! }
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
//! #     .block_on(testkit::queue::test_all(&MemoryBuilder));
//! ```
//!
//! Each case gets fresh stores and a fresh clock at 2030-01-01T00:00:00Z. A case that
//! fails does not stop the others: at the end the kit panics listing every failed case
//! as `area::case` with the reason (what was expected, what came back).
//!
//! The areas and what each checks are documented on their modules: [`catalog`],
//! [`carts`], [`inventory`] (with the model-based tests, see `inventory`'s docs),
//! [`orders`], [`events`], [`queue`], [`steps`], [`promotions`] (with its concurrent and
//! model-based tests), [`refunds`], [`checkout`], [`recommend`] (areas `co_purchase`
//! and `history`, against a brute-force count), [`product_cache`] (give the cache with
//! its [`CacheExpiry`]: the kit moves its clock or, for a cache on a server's clock,
//! waits) and [`search`] (run it on any [`SearchIndex`](crate::store::SearchIndex); the
//! in-memory reference is [`MemorySearchIndex`](crate::memory::MemorySearchIndex)).
//!
//! # Injecting faults and latency
//! [`faults`] wraps any store in a [`faults::Faulty`] that consults a shared
//! [`faults::Faults`] policy before each call: fail the next N calls, calls of named
//! methods (or with a given key argument), or a seeded random share of them, with a
//! retryable, permanent or timeout error; lose the answer of a call that took effect;
//! hang; add fixed or jittered latency. Tests of services use it instead of
//! hand-written forwarders.
//!
//! # Environment
//! * `COMMERCE_TESTKIT_CASES` — histories per model-based test (default 32; the
//!   concurrent one runs a quarter). Raise it for a long soak.
//! * `COMMERCE_TESTKIT_SEED` — replays the model-based tests' generated histories (the
//!   seed is printed on failure).
//! * `COMMERCE_TESTKIT_FILTER` — only cases whose `area::case` name contains this.
//! * `COMMERCE_TESTKIT_TIMEOUT_SECS` — a case running longer fails as hung (default 120).

mod builder;
pub mod carts;
pub mod catalog;
mod check;
pub mod checkout;
pub mod events;
pub mod faults;
mod fixtures;
pub mod fuzz;
pub mod inventory;
mod model;
pub mod orders;
pub mod product_cache;
pub mod promotions;
pub mod queue;
pub mod recommend;
pub mod refunds;
mod runner;
pub mod search;
mod spans;
pub mod steps;
pub mod strategies;

pub use builder::{Area, CacheExpiry, ExpiryClock, MemoryBuilder, StoreBuilder, StoresUnderTest};
pub use runner::{Failure, Report, Settings};
pub use spans::missing_spans;

/// Runs every area `builder` provides and returns the outcome without panicking.
pub async fn run<B: StoreBuilder>(builder: &B) -> Report {
    run_with(builder, &Settings::from_env()).await
}

/// [`run`] with explicit [`Settings`] (e.g. [`Settings::from_env_with_cases`]).
pub async fn run_with<B: StoreBuilder>(builder: &B, settings: &Settings) -> Report {
    let areas = runner::probe(builder).await;
    let mut report = Report {
        not_provided: Area::ALL
            .into_iter()
            .filter(|a| !areas.contains(a))
            .collect(),
        ..Report::default()
    };
    for area in areas {
        let cases = match area {
            Area::Catalog => catalog::cases(),
            Area::Carts => carts::cases(),
            Area::Inventory => inventory::cases(),
            Area::Orders => orders::cases(),
            Area::Events => events::cases(),
            Area::Queue => queue::cases(),
            Area::Steps => steps::cases(),
            Area::Promotions => promotions::cases(),
            Area::Refunds => refunds::cases(),
            Area::Checkout => checkout::cases(),
            Area::CoPurchase => recommend::co_purchase_cases(),
            Area::History => recommend::history_cases(),
            Area::ProductCache => product_cache::cases(),
            Area::Search => search::cases(),
        };
        runner::run_area(builder, settings, area, &cases, &mut report).await;
    }
    report
}

/// Runs every area `builder` provides (a store it does not return is skipped and named
/// in the summary); panics listing every failed case.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    let report = run_with(builder, settings).await;
    // A failure is printed once, by the panic of `assert_passed`.
    if report.failed.is_empty() {
        eprintln!("{report}");
    }
    report.assert_passed();
}
