//! The Recommender: filtering, cold start, the blend, personalisation, degraded
//! sources.

mod common;

use std::sync::Arc;
use std::time::Duration;

use commerce_core::Error;
use commerce_core::catalog::ProductStatus;
use commerce_core::id::CustomerId;
use commerce_core::memory::MemoryEngine;
use commerce_core::recommend::{
    Basket, Interaction, InteractionKind, MemoryCoPurchase, MemoryHistory, ProductRecommender,
    RecommendRequest, Recommendation, Recommender, RecommenderConfig, Source,
};
use commerce_core::resilience::{BreakerConfig, OmissionReason, Section};
use commerce_core::store::{CoPurchaseStore, HistoryStore};
use commerce_core::testkit::faults::{FaultKind, Faults, Faulty, Rule};
use common::{
    FakeIndex, Stock, add_product, add_product_with, catalog, inventory, oid, pid, product,
};

fn ids(recs: &[Recommendation]) -> Vec<&str> {
    recs.iter().map(|r| r.product.product_id.as_str()).collect()
}

/// A catalog around a phone:
/// * bought with the phone: case ×3, charger ×2, cable ×2 (out of stock), stand ×1
///   (draft), strap ×1 (backorder only)
/// * best sellers otherwise: case, phone, charger, ..., tv (bought alone, often)
async fn shop() -> (MemoryEngine, Arc<MemoryCoPurchase>) {
    let engine = MemoryEngine::new();
    add_product(
        &engine,
        "phone",
        "Acme",
        "Phones > Smartphones",
        Stock::Units(5),
    )
    .await;
    add_product(&engine, "case", "Acme", "Phones > Cases", Stock::Units(5)).await;
    add_product(
        &engine,
        "charger",
        "Volt",
        "Phones > Chargers",
        Stock::Units(5),
    )
    .await;
    add_product(&engine, "cable", "Volt", "Phones > Cables", Stock::None).await;
    add_product_with(
        &engine,
        "stand",
        "Acme",
        "Phones > Stands",
        Stock::Units(5),
        ProductStatus::Draft,
        false,
    )
    .await;
    add_product(
        &engine,
        "strap",
        "Acme",
        "Phones > Straps",
        Stock::Backorder,
    )
    .await;
    add_product(&engine, "tv", "Vista", "TV > OLED", Stock::Units(5)).await;
    add_product(&engine, "lamp", "Lux", "Home > Lamps", Stock::Units(5)).await;
    add_product(
        &engine,
        "newbie",
        "Acme",
        "Phones > Smartphones",
        Stock::Units(5),
    )
    .await;

    let counts = Arc::new(MemoryCoPurchase::new());
    let baskets: &[&[&str]] = &[
        &["phone", "case", "charger", "cable"],
        &["phone", "case", "charger", "stand"],
        &["phone", "case", "cable", "strap"],
        &["tv"],
        &["tv"],
        &["tv"],
        &["tv"],
        &["lamp", "tv"],
    ];
    for (i, b) in baskets.iter().enumerate() {
        counts
            .record(&Basket::new(
                oid(&format!("o{i}")),
                b.iter().map(|p| pid(p)),
            ))
            .await
            .unwrap();
    }
    (engine, counts)
}

fn recommender(engine: &MemoryEngine, counts: Arc<dyn CoPurchaseStore>) -> Recommender {
    Recommender::new(
        counts,
        catalog(engine),
        inventory(engine),
        engine.clock.clone(),
    )
}

#[tokio::test]
async fn also_bought_ranks_by_count_and_leaves_out_what_cannot_be_sold() {
    let (engine, counts) = shop().await;
    let r = recommender(&engine, counts);
    let recs = r.also_bought(&pid("phone"), &[], 3).await.unwrap();
    // cable: out of stock; stand: draft; strap: backorder is sellable.
    assert_eq!(ids(&recs), ["case", "charger", "strap"]);
    assert_eq!(recs[0].score, 3.0);
    assert!(recs.iter().all(|r| r.sources == [Source::AlsoBought]));
    // The cart is left out; the gap is filled by best sellers.
    let recs = r
        .also_bought(&pid("phone"), &[pid("case")], 3)
        .await
        .unwrap();
    assert_eq!(ids(&recs), ["charger", "strap", "tv"]);
    assert_eq!(recs[2].sources, [Source::Popular]);
    assert_eq!(recs[2].score, 5.0);
    assert_eq!(recs[0].product.price, "20.00 USD".parse().unwrap());
}

#[tokio::test]
async fn a_new_product_gets_best_sellers() {
    let (engine, counts) = shop().await;
    let r = recommender(&engine, counts);
    let recs = r.also_bought(&pid("newbie"), &[], 3).await.unwrap();
    // Popularity: case 3, phone 3, tv 5, charger 2, ... (cable: out of stock).
    assert_eq!(ids(&recs), ["tv", "case", "phone"]);
    assert!(recs.iter().all(|r| r.sources == [Source::Popular]));
    assert!(matches!(
        r.also_bought(&pid("newbie"), &[], 0).await,
        Err(Error::Validation { .. })
    ));
}

#[tokio::test]
async fn the_blend_fuses_co_purchase_content_and_popularity() {
    let (engine, counts) = shop().await;
    let index = Arc::new(FakeIndex::with(&[
        ("phone", &["newbie", "charger", "cable"]),
        ("newbie", &["phone", "lamp"]),
    ]));
    let r = recommender(&engine, counts).with_search(index.clone());
    let out = r
        .recommend(&RecommendRequest::for_product(pid("phone"), 4))
        .await
        .unwrap();
    assert!(out.omitted.is_empty());
    // charger (also-bought #3 after the tie with cable, similar #2, popular #5)
    // overtakes case (also-bought #1, popular #2); strap (also-bought #5, popular #8)
    // still beats newbie (similar #1 only).
    assert_eq!(ids(&out.items), ["charger", "case", "strap", "newbie"]);
    assert_eq!(
        out.items[0].sources,
        [Source::AlsoBought, Source::Similar, Source::Popular]
    );
    assert_eq!(out.items[3].sources, [Source::Similar]);
    assert!(out.items.windows(2).all(|w| w[0].score >= w[1].score));

    // Cold start: similar products and best sellers.
    let out = r
        .recommend(&RecommendRequest::for_product(pid("newbie"), 3))
        .await
        .unwrap();
    assert_eq!(ids(&out.items), ["phone", "lamp", "tv"]);

    // A cart as anchors: neither the anchors nor the excluded appear.
    let req = RecommendRequest {
        anchors: vec![pid("phone"), pid("newbie")],
        exclude: vec![pid("charger")],
        customer: None,
        limit: 10,
    };
    let out = r.recommend(&req).await.unwrap();
    let got = ids(&out.items);
    for never in ["phone", "newbie", "charger", "cable", "stand"] {
        assert!(!got.contains(&never), "{never} in {got:?}");
    }
    assert!(got.contains(&"case") && got.contains(&"lamp") && got.contains(&"tv"));

    let too_many = RecommendRequest {
        anchors: (0..11).map(|i| pid(&format!("a{i}"))).collect(),
        limit: 5,
        ..Default::default()
    };
    assert!(matches!(
        r.recommend(&too_many).await,
        Err(Error::Validation { .. })
    ));
}

#[tokio::test]
async fn history_re_ranks_and_bought_products_sink() {
    let (engine, counts) = shop().await;
    let history = Arc::new(MemoryHistory::new());
    let r = recommender(&engine, counts).with_history(history.clone());
    let me = CustomerId::new("me").unwrap();
    let req = RecommendRequest::for_product(pid("phone"), 3);
    let plain = r.recommend(&req).await.unwrap();
    assert_eq!(ids(&plain.items), ["case", "charger", "strap"]);

    // A taste for Volt lifts the charger above the case.
    let now = engine.clock.now();
    let charger = product(&engine, "charger").await;
    history
        .record(
            &me,
            &Interaction::new(&charger, InteractionKind::Carted, now),
        )
        .await
        .unwrap();
    let mine = r
        .recommend(&req.clone().for_customer(me.clone()))
        .await
        .unwrap();
    assert_eq!(ids(&mine.items), ["charger", "case", "strap"]);

    // Having bought the charger, it sinks.
    history
        .record(
            &me,
            &Interaction::new(&charger, InteractionKind::Bought, now),
        )
        .await
        .unwrap();
    let mine = r
        .recommend(&req.clone().for_customer(me.clone()))
        .await
        .unwrap();
    assert_eq!(
        mine.items.last().unwrap().product.product_id,
        pid("charger")
    );

    // The affinity for search favours the brand and category.
    let affinity = r.profile(&me).await.unwrap().affinity;
    assert_eq!(affinity.brands["Volt"], 1.0);
    assert!(affinity.categories.len() >= 2);
}

fn fast_config() -> RecommenderConfig {
    RecommenderConfig {
        source_deadline: Duration::from_millis(40),
        breaker: BreakerConfig {
            failure_threshold: 2,
            cool_down: Duration::from_secs(30),
            max_cool_down: Duration::from_secs(30),
        },
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_or_failing_source_is_left_out_and_reported() {
    let (engine, counts) = shop().await;
    let faults = Faults::new();
    faults.add(Rule::hang().on("also_bought"));
    let faulty = Faulty::new(counts, faults.clone());
    let mut index = FakeIndex::with(&[("phone", &["newbie", "charger"])]);
    index.delay = Some(Duration::from_secs(5));
    let r = recommender(&engine, faulty.clone())
        .with_search(Arc::new(index))
        .with_config(fast_config());
    let start = tokio::time::Instant::now();
    let out = r
        .recommend(&RecommendRequest::for_product(pid("phone"), 3))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(40));
    let sections: Vec<_> = out.omitted.iter().map(|o| o.section.clone()).collect();
    assert_eq!(sections, [Section::AlsoBought, Section::Similar]);
    assert!(
        out.omitted
            .iter()
            .all(|o| o.reason == OmissionReason::TimedOut { after_ms: 40 })
    );
    // Best sellers still fill the block.
    assert_eq!(ids(&out.items), ["tv", "case", "charger"]);

    // Failing now: after the threshold its breaker opens and it is not called.
    faults.set(Rule::fail(FaultKind::Retryable).on("also_bought"));
    let out = r
        .recommend(&RecommendRequest::for_product(pid("phone"), 3))
        .await
        .unwrap();
    assert!(matches!(
        out.omitted[0].reason,
        OmissionReason::Failed { .. }
    ));
    let calls = faults.calls("also_bought");
    let out = r
        .recommend(&RecommendRequest::for_product(pid("phone"), 3))
        .await
        .unwrap();
    assert_eq!(out.omitted[0].reason, OmissionReason::CircuitOpen);
    assert_eq!(faults.calls("also_bought"), calls, "not called while open");
}
