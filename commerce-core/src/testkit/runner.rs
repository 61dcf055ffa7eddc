//! Running cases: fresh stores per case, panics caught and reported by case name.

use std::any::Any;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::builder::{Area, StoreBuilder, StoresUnderTest};
use crate::clock::{Clock, ManualClock, Timestamp};
use crate::event::{DomainEvent, EventEnvelope};
use crate::id::EventId;
use crate::store::{
    CartStore, CatalogStore, EventLog, InventoryStore, OrderQueue, OrderStore, PromotionStore,
    RefundLedger,
};

/// Knobs read from the environment, so a failing run can be reproduced or widened
/// without changing code.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `COMMERCE_TESTKIT_CASES`: generated histories per model-based test (default 32;
    /// the concurrent model test runs a quarter as many, at least 2).
    pub cases: u32,
    /// `COMMERCE_TESTKIT_SEED`: the seed of each case's generated data (default: a
    /// random one per case, printed with its failure).
    pub seed: Option<u64>,
    /// `COMMERCE_TESTKIT_FILTER`: run only cases whose full name (`inventory::...`)
    /// contains this text.
    pub filter: Option<String>,
    /// `COMMERCE_TESTKIT_TIMEOUT_SECS`: a case running longer fails as hung (default 120).
    pub case_timeout: Duration,
}

impl Settings {
    /// Reads the environment (32 model-based histories unless `COMMERCE_TESTKIT_CASES`
    /// says otherwise).
    pub fn from_env() -> Self {
        Self::from_env_with_cases(32)
    }

    /// Reads the environment, with `cases` model-based histories unless
    /// `COMMERCE_TESTKIT_CASES` says otherwise: an adapter whose cases are slow (a fresh
    /// schema per history) picks a smaller default for CI and keeps the variable for
    /// soaks.
    ///
    /// ```
    /// let settings = commerce_core::testkit::Settings::from_env_with_cases(8);
    /// assert!(settings.cases >= 1);
    /// ```
    pub fn from_env_with_cases(cases: u32) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Settings {
            cases: var("COMMERCE_TESTKIT_CASES")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(cases)
                .max(1),
            seed: var("COMMERCE_TESTKIT_SEED").and_then(|v| v.trim().parse().ok()),
            filter: var("COMMERCE_TESTKIT_FILTER"),
            case_timeout: Duration::from_secs(
                var("COMMERCE_TESTKIT_TIMEOUT_SECS")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(120),
            ),
        }
    }
}

/// What one case may use: the builder (to make fresh stores) and the settings.
#[derive(Clone, Copy)]
pub(crate) struct Env<'a> {
    builder: &'a dyn StoreBuilder,
    settings: &'a Settings,
    case: &'static str,
    seed: u64,
}

impl Env<'_> {
    /// Fresh stores on a fresh clock at [`ManualClock::EPOCH`].
    pub(crate) async fn ctx(&self) -> Ctx {
        let clock = Arc::new(ManualClock::default());
        let stores = self
            .builder
            .build(clock.clone())
            .await
            .unwrap_or_else(|e| panic!("StoreBuilder::build failed: {e} ({e:?})"));
        Ctx { clock, stores }
    }

    pub(crate) fn settings(&self) -> &Settings {
        self.settings
    }

    /// The seed of this case's generated data: `COMMERCE_TESTKIT_SEED`, else random
    /// (reported with a failure).
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn case(&self) -> &'static str {
        self.case
    }
}

/// The stores of one case and its clock.
pub(crate) struct Ctx {
    pub clock: Arc<ManualClock>,
    pub stores: StoresUnderTest,
}

fn missing(what: &str) -> ! {
    panic!(
        "the builder provides no {what}; return it from StoreBuilder::build (StoresUnderTest::with_...)"
    )
}

impl Ctx {
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub(crate) fn catalog(&self) -> Arc<dyn CatalogStore> {
        self.stores
            .catalog
            .clone()
            .unwrap_or_else(|| missing("CatalogStore"))
    }

    pub(crate) fn carts(&self) -> Arc<dyn CartStore> {
        self.stores
            .carts
            .clone()
            .unwrap_or_else(|| missing("CartStore"))
    }

    pub(crate) fn inventory(&self) -> Arc<dyn InventoryStore> {
        self.stores
            .inventory
            .clone()
            .unwrap_or_else(|| missing("InventoryStore"))
    }

    pub(crate) fn orders(&self) -> Arc<dyn OrderStore> {
        self.stores
            .orders
            .clone()
            .unwrap_or_else(|| missing("OrderStore"))
    }

    pub(crate) fn steps(&self) -> Arc<dyn crate::store::OrderSteps> {
        self.stores
            .steps
            .clone()
            .unwrap_or_else(|| missing("OrderSteps"))
    }

    pub(crate) fn queue(&self) -> Arc<dyn OrderQueue> {
        self.stores
            .queue
            .clone()
            .unwrap_or_else(|| missing("OrderQueue"))
    }

    pub(crate) fn promotions(&self) -> Arc<dyn PromotionStore> {
        self.stores
            .promotions
            .clone()
            .unwrap_or_else(|| missing("PromotionStore"))
    }

    pub(crate) fn price_lists(&self) -> Arc<dyn crate::store::PriceListStore> {
        self.stores
            .price_lists
            .clone()
            .unwrap_or_else(|| missing("PriceListStore"))
    }

    pub(crate) fn refunds(&self) -> Arc<dyn RefundLedger> {
        self.stores
            .refunds
            .clone()
            .unwrap_or_else(|| missing("RefundLedger"))
    }

    pub(crate) fn co_purchase(&self) -> Arc<dyn crate::store::CoPurchaseStore> {
        self.stores
            .co_purchase
            .clone()
            .unwrap_or_else(|| missing("CoPurchaseStore"))
    }

    pub(crate) fn history(&self) -> Arc<dyn crate::store::HistoryStore> {
        self.stores
            .history
            .clone()
            .unwrap_or_else(|| missing("HistoryStore"))
    }

    pub(crate) fn product_cache(
        &self,
    ) -> (
        Arc<dyn crate::store::ProductCache>,
        super::builder::CacheExpiry,
    ) {
        self.stores
            .product_cache
            .clone()
            .unwrap_or_else(|| missing("ProductCache"))
    }

    pub(crate) fn search(&self) -> Arc<dyn crate::store::SearchIndex> {
        self.stores
            .search
            .clone()
            .unwrap_or_else(|| missing("SearchIndex"))
    }

    pub(crate) fn events(&self) -> Arc<dyn EventLog> {
        self.stores
            .events
            .clone()
            .unwrap_or_else(|| missing("EventLog (the log the stores append to)"))
    }

    /// The id of the newest event in the log (0 when empty): events after it are new.
    pub(crate) async fn event_mark(&self) -> EventId {
        read_all_after(&*self.events(), EventId(0))
            .await
            .last()
            .map_or(EventId(0), |e| e.id)
    }

    /// Every event after `mark`, checking ids increase.
    pub(crate) async fn events_since(&self, mark: EventId) -> Vec<DomainEvent> {
        read_all_after(&*self.events(), mark)
            .await
            .into_iter()
            .map(|e| e.event)
            .collect()
    }
}

/// Reads every event after `after`, page by page, checking ids strictly increase.
pub(crate) async fn read_all_after(log: &dyn EventLog, after: EventId) -> Vec<EventEnvelope> {
    let mut out: Vec<EventEnvelope> = Vec::new();
    let mut cursor = after;
    loop {
        let page = log
            .read(cursor, 500)
            .await
            .unwrap_or_else(|e| panic!("EventLog::read({cursor}, 500) failed: {e}"));
        let Some(last) = page.last() else {
            return out;
        };
        for e in &page {
            assert!(
                e.id > cursor,
                "EventLog::read after {cursor} returned id {} (ids must increase strictly)",
                e.id
            );
            cursor = e.id;
        }
        assert!(last.id == cursor);
        out.extend(page);
    }
}

pub(crate) type CaseFn = for<'a> fn(Env<'a>) -> BoxFuture<'a, ()>;

/// One named case of an area.
#[derive(Clone, Copy)]
pub(crate) struct Case {
    pub name: &'static str,
    pub run: CaseFn,
}

/// `cases![a, b]`: the cases made from the async fns `a(env: Env<'_>)`, `b(...)`.
macro_rules! cases {
    ($($f:ident),* $(,)?) => {
        vec![$(
            $crate::testkit::runner::Case {
                name: stringify!($f),
                run: {
                    fn run<'a>(env: $crate::testkit::runner::Env<'a>) -> ::futures::future::BoxFuture<'a, ()> {
                        ::std::boxed::Box::pin($f(env))
                    }
                    run
                },
            }
        ),*]
    };
}
pub(crate) use cases;

/// A failed case.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `area::case`.
    pub case: String,
    /// The seed its generated data came from (`COMMERCE_TESTKIT_SEED` reproduces it).
    pub seed: u64,
    /// The panic message (or the timeout); for a model-based case, with the shrunk
    /// history.
    pub message: String,
}

/// The outcome of running some areas.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Names of the cases that passed.
    pub passed: Vec<String>,
    /// The cases that failed, with why.
    pub failed: Vec<Failure>,
    /// Areas the builder provides no store for.
    pub not_provided: Vec<Area>,
}

impl Report {
    /// Panics listing every failed case, if any.
    pub fn assert_passed(&self) {
        if !self.failed.is_empty() {
            panic!("{self}");
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.passed.len() + self.failed.len();
        if self.failed.is_empty() {
            write!(f, "conformance kit: all {total} cases passed")?;
        } else {
            writeln!(
                f,
                "conformance kit: {} of {total} cases FAILED:",
                self.failed.len()
            )?;
            for failure in &self.failed {
                writeln!(
                    f,
                    "--- {} (seed {}; rerun: COMMERCE_TESTKIT_FILTER={} COMMERCE_TESTKIT_SEED={}) ---\n{}",
                    failure.case, failure.seed, failure.case, failure.seed, failure.message
                )?;
            }
        }
        if !self.not_provided.is_empty() {
            let names: Vec<_> = self.not_provided.iter().map(|a| a.name()).collect();
            write!(f, " (not provided: {})", names.join(", "))?;
        }
        Ok(())
    }
}

thread_local! {
    /// Above 0 while this thread polls a kit case: its panics are caught and reported
    /// once, in the kit's summary, not also printed by the panic hook.
    static QUIET: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Installs (once) a panic hook that stays silent for panics of kit cases (see
/// [`Quiet`]) and hands every other panic to the hook that was there before.
fn quiet_case_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(std::cell::Cell::get) == 0 {
                previous(info);
            }
        }));
    });
}

/// A case's future, polled with [`QUIET`] raised.
struct Quiet<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for Quiet<F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        struct Lower;
        impl Drop for Lower {
            fn drop(&mut self) {
                QUIET.with(|q| q.set(q.get().saturating_sub(1)));
            }
        }
        QUIET.with(|q| q.set(q.get() + 1));
        let _lower = Lower;
        self.0.as_mut().poll(cx)
    }
}

/// `COMMERCE_TESTKIT_SEED`, else a random seed.
fn case_seed(settings: &Settings) -> u64 {
    settings.seed.unwrap_or_else(|| {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            bytes = uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or_default();
        }
        u64::from_le_bytes(bytes)
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

fn require_multi_thread() {
    let flavor = tokio::runtime::Handle::try_current()
        .map(|h| h.runtime_flavor())
        .unwrap_or_else(|_| {
            panic!("the conformance kit must run inside a tokio runtime: use #[tokio::test(flavor = \"multi_thread\")]")
        });
    assert!(
        flavor == tokio::runtime::RuntimeFlavor::MultiThread,
        "the conformance kit tests real concurrency and needs a multi-thread runtime: \
         use #[tokio::test(flavor = \"multi_thread\")] (found {flavor:?})"
    );
}

/// Runs `cases` of `area`, each with fresh stores, and adds the outcomes to `report`.
pub(crate) async fn run_area(
    builder: &dyn StoreBuilder,
    settings: &Settings,
    area: Area,
    cases: &[Case],
    report: &mut Report,
) {
    require_multi_thread();
    quiet_case_panics();
    for case in cases {
        let name = format!("{}::{}", area.name(), case.name);
        if settings
            .filter
            .as_ref()
            .is_some_and(|f| !name.contains(f.as_str()))
        {
            continue;
        }
        let seed = case_seed(settings);
        let env = Env {
            builder,
            settings,
            case: case.name,
            seed,
        };
        let run = Quiet(Box::pin(AssertUnwindSafe((case.run)(env)).catch_unwind()));
        let outcome = tokio::time::timeout(settings.case_timeout, run).await;
        let teardown = builder.teardown().await;
        let message = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(payload)) => Some(panic_message(&*payload)),
            Err(_) => Some(format!(
                "did not finish within {:?} (deadlock or lost wake-up?)",
                settings.case_timeout
            )),
        };
        let message = match (message, teardown) {
            (None, Ok(())) => None,
            (None, Err(e)) => Some(format!("StoreBuilder::teardown failed: {e}")),
            (Some(m), _) => Some(m),
        };
        match message {
            None => report.passed.push(name),
            Some(message) => report.failed.push(Failure {
                case: name,
                seed,
                message,
            }),
        }
    }
}

/// Builds once to see which areas the builder provides (checking stores that append
/// events come with their log).
pub(crate) async fn probe(builder: &dyn StoreBuilder) -> Vec<Area> {
    let stores = builder
        .build(Arc::new(ManualClock::default()))
        .await
        .unwrap_or_else(|e| panic!("StoreBuilder::build failed: {e} ({e:?})"));
    let areas = stores.areas();
    drop(stores);
    if let Err(e) = builder.teardown().await {
        panic!("StoreBuilder::teardown failed: {e}");
    }
    for area in &areas {
        assert!(
            !area.needs_events() || areas.contains(&Area::Events),
            "the builder provides a {area} store but no EventLog: stores that append events \
             must come with the log they append to (StoresUnderTest::with_events), so the kit can \
             check that every change appends its event atomically"
        );
    }
    areas
}

/// Runs one area's cases, panicking with every failure if any case fails.
pub(crate) async fn run_one_area(
    builder: &dyn StoreBuilder,
    settings: &Settings,
    area: Area,
    cases: Vec<Case>,
) {
    require_multi_thread();
    let areas = probe(builder).await;
    assert!(
        areas.contains(&area),
        "the builder provides no store for the {area} area (it provides {areas:?})"
    );
    let mut report = Report::default();
    run_area(builder, settings, area, &cases, &mut report).await;
    // A failure is printed once, by the panic of `assert_passed`.
    if report.failed.is_empty() {
        eprintln!("{report}");
    }
    report.assert_passed();
}
