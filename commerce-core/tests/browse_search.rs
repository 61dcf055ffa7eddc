//! Search for a shopper: per-user rate limits (failing open), personalisation from
//! history (left out when slow).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::browse::{ProductPageRequest, ProductPages, SearchPages, SearchResponse};
use commerce_core::clock::ManualClock;
use commerce_core::id::CustomerId;
use commerce_core::memory::MemoryEngine;
use commerce_core::recommend::{Interaction, InteractionKind, MemoryHistory, Personalizer};
use commerce_core::resilience::{Admission, LimitedAction, OmissionReason, Section, UserRateLimit};
use commerce_core::store::HistoryStore;
use commerce_core::store::search::{Affinity, SearchQuery};
use commerce_core::{Error, Result};
use common::{FakeIndex, Fault, Stock, add_product};

/// Allows `per_user` searches per user, then refuses; or fails.
#[derive(Debug)]
struct Quota {
    per_user: u32,
    used: Mutex<HashMap<(LimitedAction, String), u32>>,
    fault: Fault,
}

#[async_trait]
impl UserRateLimit for Quota {
    async fn admit(&self, action: LimitedAction, user: &str) -> Result<Admission> {
        match self.fault {
            Fault::Fail => return Err(Error::backend(true, "redis down")),
            Fault::Hang => std::future::pending::<()>().await,
            _ => {}
        }
        let mut used = self.used.lock().unwrap();
        let n = used.entry((action, user.to_owned())).or_default();
        if *n >= self.per_user {
            return Ok(Admission::Limited {
                retry_after: Duration::from_secs(1),
            });
        }
        *n += 1;
        Ok(Admission::Admitted)
    }
}

fn quota(per_user: u32, fault: Fault) -> Arc<Quota> {
    Arc::new(Quota {
        per_user,
        used: Mutex::new(HashMap::new()),
        fault,
    })
}

fn served(r: SearchResponse) -> commerce_core::browse::SearchPage {
    match r {
        SearchResponse::Served(p) => p,
        other => panic!("expected results, got {other:?}"),
    }
}

#[tokio::test]
async fn each_user_has_their_own_search_quota() {
    let clock = Arc::new(ManualClock::default());
    let index = Arc::new(FakeIndex::default());
    let search = SearchPages::new(index.clone(), clock).with_rate_limit(quota(2, Fault::None));
    for _ in 0..2 {
        let page = served(
            search
                .search("alice", None, SearchQuery::text("tv"))
                .await
                .unwrap(),
        );
        assert_eq!(page.results.hits.len(), 1);
        assert!(page.omitted.is_empty());
    }
    assert_eq!(
        search
            .search("alice", None, SearchQuery::text("tv"))
            .await
            .unwrap(),
        SearchResponse::Limited {
            retry_after: Duration::from_secs(1)
        }
    );
    assert_eq!(
        index.queries.lock().unwrap().len(),
        2,
        "a refused search is not run"
    );
    served(
        search
            .search("bob", None, SearchQuery::text("tv"))
            .await
            .unwrap(),
    );
}

#[tokio::test(start_paused = true)]
async fn a_broken_limiter_lets_searches_through() {
    for fault in [Fault::Fail, Fault::Hang] {
        let clock = Arc::new(ManualClock::default());
        let search = SearchPages::new(Arc::new(FakeIndex::default()), clock)
            .with_rate_limit(quota(0, fault));
        let page = served(
            search
                .search("alice", None, SearchQuery::text("tv"))
                .await
                .unwrap(),
        );
        assert_eq!(page.omitted.len(), 1);
        assert_eq!(page.omitted[0].section, Section::RateLimit);
        if fault == Fault::Hang {
            assert_eq!(
                page.omitted[0].reason,
                OmissionReason::TimedOut { after_ms: 10 }
            );
        }
    }
}

#[tokio::test]
async fn searches_are_personalised_from_history() {
    let engine = MemoryEngine::new();
    let tv = add_product(&engine, "tv", "Vista", "TV > OLED", Stock::Units(1)).await;
    let history = Arc::new(MemoryHistory::new());
    let me = CustomerId::new("me").unwrap();
    history
        .record(
            &me,
            &Interaction::new(&tv, InteractionKind::Bought, engine.clock.now()),
        )
        .await
        .unwrap();
    let index = Arc::new(FakeIndex::default());
    let search = SearchPages::new(index.clone(), engine.clock.clone())
        .with_personalizer(Personalizer::new(history, engine.clock.clone()));

    let page = served(
        search
            .search("me", Some(&me), SearchQuery::text("tv"))
            .await
            .unwrap(),
    );
    assert!(page.personalized);
    let sent = index.queries.lock().unwrap().last().cloned().unwrap();
    let affinity = sent.personalization.unwrap();
    assert_eq!(affinity.brands["Vista"], 1.0);
    assert_eq!(
        affinity.categories[&commerce_core::catalog::CategoryPath::parse("TV > OLED").unwrap()],
        1.0
    );

    // No history: not personalised. A query carrying its own affinity keeps it.
    let stranger = CustomerId::new("stranger").unwrap();
    let page = served(
        search
            .search("s", Some(&stranger), SearchQuery::text("tv"))
            .await
            .unwrap(),
    );
    assert!(!page.personalized);
    let mut own = SearchQuery::text("tv");
    own.personalization = Some(Affinity::default());
    let page = served(search.search("me", Some(&me), own).await.unwrap());
    assert!(page.personalized);
    let sent = index.queries.lock().unwrap().last().cloned().unwrap();
    assert_eq!(sent.personalization, Some(Affinity::default()));
}

/// A history store that hangs.
#[derive(Debug)]
struct HungHistory;

#[async_trait]
impl HistoryStore for HungHistory {
    async fn record(&self, _: &CustomerId, _: &Interaction) -> Result<()> {
        std::future::pending().await
    }
    async fn recent(&self, _: &CustomerId, _: u32) -> Result<Vec<Interaction>> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_history_leaves_search_and_pages_unpersonalised_but_on_time() {
    let engine = MemoryEngine::new();
    let tv = add_product(&engine, "tv", "Vista", "TV > OLED", Stock::Units(1)).await;
    let me = CustomerId::new("me").unwrap();
    let index = Arc::new(FakeIndex::default());
    let search = SearchPages::new(index.clone(), engine.clock.clone()).with_personalizer(
        Personalizer::new(Arc::new(HungHistory), engine.clock.clone()),
    );
    let start = tokio::time::Instant::now();
    let page = served(
        search
            .search("me", Some(&me), SearchQuery::text("tv"))
            .await
            .unwrap(),
    );
    assert_eq!(start.elapsed(), Duration::from_millis(20));
    assert!(!page.personalized);
    assert_eq!(page.omitted[0].section, Section::Personalization);
    assert_eq!(
        index
            .queries
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .personalization,
        None
    );

    // The product page's view tracking is cut off the same way.
    let pages = ProductPages::new(
        engine.catalog.clone(),
        engine.inventory.clone(),
        engine.clock.clone(),
    )
    .with_view_tracking(Arc::new(HungHistory));
    let mut req = ProductPageRequest::by_id(tv.id.clone());
    req.customer = Some(me);
    let page = pages.load(&req).await.unwrap();
    assert_eq!(page.omitted[0].section, Section::ViewTracking);
    assert_eq!(page.elapsed, Duration::from_millis(20));
}

#[test]
fn the_services_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SearchPages>();
    send_sync::<ProductPages>();
    send_sync::<commerce_core::recommend::Recommender>();
    send_sync::<commerce_core::recommend::CoPurchaseUpdater>();

    // Their futures can be spawned on a multi-thread runtime.
    fn send<T: Send>(_: T) {}
    let engine = MemoryEngine::new();
    let search = SearchPages::new(Arc::new(FakeIndex::default()), engine.clock.clone());
    send(search.search("u", None, SearchQuery::text("x")));
    let pages = ProductPages::new(
        engine.catalog.clone(),
        engine.inventory.clone(),
        engine.clock.clone(),
    );
    let req = ProductPageRequest::by_id(common::pid("p"));
    send(pages.load(&req));
    let recommender = commerce_core::recommend::Recommender::new(
        Arc::new(commerce_core::recommend::MemoryCoPurchase::new()),
        engine.catalog.clone(),
        engine.inventory.clone(),
        engine.clock.clone(),
    );
    let p = common::pid("p");
    send(recommender.also_bought(&p, &[], 5));
    let updater = commerce_core::recommend::CoPurchaseUpdater::new(
        engine.events.clone(),
        engine.orders.clone(),
        Arc::new(commerce_core::recommend::MemoryCoPurchase::new()),
    );
    send(updater.run(Duration::from_millis(1), async {}));
}
