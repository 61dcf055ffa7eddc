//! Behaviour of `TantivySearch` against the `SearchIndex` contract.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_core::catalog::{
    AttributeValue, CategoryPath, NewProduct, Product, ProductStatus, Rating, Slug,
};
use commerce_core::clock::{Clock, SystemClock};
use commerce_core::id::{ProductId, SellerId, Sku};
use commerce_core::memory::MemoryEngine;
use commerce_core::money::Money;
use commerce_core::store::search::{
    Affinity, FacetRequest, PriceRange, SearchFilters, SearchQuery, SortOrder, SuggestionKind,
};
use commerce_core::store::{CatalogStore, CatalogStoreExt, SearchIndex};
use commerce_search::{SearchSync, TantivyConfig, TantivySearch, rebuild};

struct FixtureProduct {
    id: &'static str,
    title: &'static str,
    brand: &'static str,
    category: &'static str,
    price: &'static str,
    rating: Option<u8>,
    popularity: u64,
    colors: &'static [&'static str],
    stock: u32,
}

const fn p(
    id: &'static str,
    title: &'static str,
    brand: &'static str,
    category: &'static str,
    price: &'static str,
) -> FixtureProduct {
    FixtureProduct {
        id,
        title,
        brand,
        category,
        price,
        rating: None,
        popularity: 0,
        colors: &[],
        stock: 5,
    }
}

fn new_product(x: &FixtureProduct) -> NewProduct {
    let mut n = NewProduct::new(
        SellerId::new("s1").unwrap(),
        x.title,
        CategoryPath::parse(x.category).unwrap(),
        x.brand,
        Sku::new(format!("{}-0", x.id)).unwrap(),
        x.price.parse::<Money>().unwrap(),
    );
    n.id = Some(ProductId::new(x.id).unwrap());
    n.description = format!("The {} by {}.", x.title, x.brand);
    n.status = ProductStatus::Active;
    n.rating = x.rating.map(|r| Rating::from_tenths(r).unwrap());
    n.popularity = x.popularity;
    n.variants[0].inventory_count = x.stock;
    for (i, c) in x.colors.iter().enumerate() {
        if i > 0 {
            let mut v = n.variants[0].clone();
            v.sku = Sku::new(format!("{}-{i}", x.id)).unwrap();
            n.variants.push(v);
        }
        n.variants[i]
            .attributes
            .insert("color".into(), AttributeValue::from(*c));
    }
    n
}

fn product(x: &FixtureProduct) -> Product {
    new_product(x)
        .into_product(Slug::from_title(x.id), SystemClock.now())
        .unwrap()
}

fn catalog() -> Vec<FixtureProduct> {
    vec![
        FixtureProduct {
            rating: Some(47),
            popularity: 900,
            colors: &["Black", "Blue"],
            ..p(
                "iphone15",
                "Apple iPhone 15 Pro",
                "Apple",
                "Electronics > Phones > Smartphones",
                "999.00 USD",
            )
        },
        FixtureProduct {
            rating: Some(44),
            popularity: 800,
            colors: &["Graphite"],
            ..p(
                "galaxy24",
                "Samsung Galaxy S24",
                "Samsung",
                "Electronics > Phones > Smartphones",
                "799.00 USD",
            )
        },
        FixtureProduct {
            rating: Some(39),
            popularity: 300,
            colors: &["Black"],
            ..p(
                "pixel8",
                "Google Pixel 8",
                "Google",
                "Electronics > Phones > Smartphones",
                "699.00 USD",
            )
        },
        FixtureProduct {
            rating: Some(45),
            popularity: 700,
            colors: &["Silver"],
            stock: 0,
            ..p(
                "galaxytab",
                "Samsung Galaxy Tab S9",
                "Samsung",
                "Electronics > Tablets",
                "649.00 USD",
            )
        },
        FixtureProduct {
            rating: Some(48),
            popularity: 600,
            colors: &["Black", "Silver"],
            ..p(
                "wh1000",
                "Sony WH-1000XM5 Wireless Headphones",
                "Sony",
                "Electronics > Audio > Headphones",
                "349.00 USD",
            )
        },
        FixtureProduct {
            rating: Some(30),
            popularity: 100,
            ..p(
                "charger1",
                "USB Charger 65W",
                "Anker",
                "Electronics > Accessories",
                "39.00 USD",
            )
        },
        FixtureProduct {
            rating: Some(20),
            popularity: 5000,
            ..p(
                "charger2",
                "USB Chargor Cable",
                "Belkin",
                "Electronics > Accessories",
                "19.00 USD",
            )
        },
        FixtureProduct {
            rating: Some(42),
            popularity: 200,
            colors: &["White"],
            ..p(
                "fridge",
                "LG French Door Refrigerator",
                "LG",
                "Appliances > Refrigerators",
                "1899.00 USD",
            )
        },
    ]
}

async fn index() -> TantivySearch {
    let idx = TantivySearch::in_ram_with(TantivyConfig {
        commit_interval: None,
        writer_threads: 1,
        writer_memory: 32 << 20,
        ..TantivyConfig::default()
    })
    .unwrap();
    let products: Vec<Product> = catalog().iter().map(product).collect();
    idx.upsert(&products).await.unwrap();
    idx.refresh().await.unwrap();
    idx
}

fn ids(r: &commerce_core::store::search::SearchResults) -> Vec<&str> {
    r.hits.iter().map(|h| h.product_id.as_str()).collect()
}

#[tokio::test]
async fn typos_are_tolerated_and_exact_matches_rank_first() {
    let idx = index().await;
    let r = idx.search(&SearchQuery::text("iphnoe")).await.unwrap();
    assert_eq!(ids(&r).first(), Some(&"iphone15"), "{:?}", ids(&r));
    let r = idx
        .search(&SearchQuery::text("samsnug galaxy"))
        .await
        .unwrap();
    let got = ids(&r);
    assert!(
        got.len() >= 2 && got[..2].contains(&"galaxy24") && got[..2].contains(&"galaxytab"),
        "{got:?}"
    );
    // "charger" is exact in charger1, one typo away in charger2 (which is far more popular).
    let r = idx.search(&SearchQuery::text("charger")).await.unwrap();
    assert_eq!(ids(&r), ["charger1", "charger2"]);
    assert!(r.hits[0].score > r.hits[1].score);
    // Typos off: no fuzzy match.
    let mut q = SearchQuery::text("iphnoe ");
    q.typo_tolerance = false;
    assert_eq!(idx.search(&q).await.unwrap().total, 0);
    // Short words are exact: "appel" has 5 letters (one typo allowed), "aple" 4 (none).
    assert!(
        idx.search(&SearchQuery::text("appel "))
            .await
            .unwrap()
            .total
            >= 1
    );
    assert_eq!(
        idx.search(&SearchQuery::text("aple ")).await.unwrap().total,
        0
    );
}

#[tokio::test]
async fn title_outranks_brand_outranks_description() {
    let idx = index().await;
    // "Sony" is the brand of wh1000 and in its title; "headphones" only in one title.
    let r = idx.search(&SearchQuery::text("headphones")).await.unwrap();
    assert_eq!(ids(&r), ["wh1000"]);
    // Category words match.
    let r = idx.search(&SearchQuery::text("smartphones")).await.unwrap();
    assert_eq!(r.total, 3);
    // Variant attributes are searchable.
    let r = idx.search(&SearchQuery::text("graphite")).await.unwrap();
    assert_eq!(ids(&r), ["galaxy24"]);
}

#[tokio::test]
async fn user_text_is_never_an_error() {
    let idx = index().await;
    for text in [
        "\"(foo AND bar:[* TO ",
        "title:galaxy^2 OR -",
        "~!@#$%^&*()_+{}|:<>?",
        "",
        "   ",
        "ééé ñ 你好 🙂",
        &"x".repeat(10_000),
        "a b c d e f g h i j k l m n o p q r s t u v w x y z a b c d e f g h i j k",
    ] {
        idx.search(&SearchQuery::text(text)).await.unwrap();
        idx.autocomplete(text, 5).await.unwrap();
    }
    // Empty text browses everything.
    assert_eq!(idx.search(&SearchQuery::text("")).await.unwrap().total, 8);
}

#[tokio::test]
async fn only_active_products_are_searchable() {
    let idx = index().await;
    assert_eq!(idx.count().await.unwrap(), 8);
    let mut pixel = product(&catalog()[2]);
    pixel.status = ProductStatus::Archived;
    idx.upsert(&[pixel]).await.unwrap();
    idx.refresh().await.unwrap();
    assert_eq!(idx.count().await.unwrap(), 7);
    assert_eq!(
        idx.search(&SearchQuery::text("pixel")).await.unwrap().total,
        0
    );
    assert!(idx.autocomplete("google pix", 5).await.unwrap().is_empty());
    idx.remove(&[ProductId::new("fridge").unwrap()])
        .await
        .unwrap();
    idx.refresh().await.unwrap();
    assert_eq!(idx.count().await.unwrap(), 6);
    // Re-upserting replaces, never duplicates.
    idx.upsert(&[product(&catalog()[0])]).await.unwrap();
    idx.upsert(&[product(&catalog()[0])]).await.unwrap();
    idx.refresh().await.unwrap();
    assert_eq!(idx.count().await.unwrap(), 6);
}

#[tokio::test]
async fn filters() {
    let idx = index().await;
    let q = |filters: SearchFilters| SearchQuery {
        filters,
        limit: 100,
        ..SearchQuery::default()
    };
    let phones = CategoryPath::parse("Electronics > Phones").unwrap();
    let r = idx
        .search(&q(SearchFilters {
            category: Some(phones.clone()),
            ..SearchFilters::default()
        }))
        .await
        .unwrap();
    assert_eq!(r.total, 3);
    let r = idx
        .search(&q(SearchFilters {
            brands: vec!["Samsung".into(), "Sony".into()],
            ..SearchFilters::default()
        }))
        .await
        .unwrap();
    assert_eq!(r.total, 3);
    let r = idx
        .search(&q(SearchFilters {
            price: PriceRange {
                min: Some("649.00 USD".parse().unwrap()),
                max: Some("799.00 USD".parse().unwrap()),
            },
            ..SearchFilters::default()
        }))
        .await
        .unwrap();
    let mut got = ids(&r);
    got.sort();
    assert_eq!(got, ["galaxy24", "galaxytab", "pixel8"]);
    let r = idx
        .search(&q(SearchFilters {
            min_rating: Some(Rating::from_tenths(45).unwrap()),
            ..SearchFilters::default()
        }))
        .await
        .unwrap();
    assert_eq!(r.total, 3);
    let r = idx
        .search(&q(SearchFilters {
            attributes: vec![("color".into(), "Black".into())],
            ..SearchFilters::default()
        }))
        .await
        .unwrap();
    assert_eq!(r.total, 3);
    let r = idx
        .search(&q(SearchFilters {
            in_stock_only: true,
            brands: vec!["Samsung".into()],
            ..SearchFilters::default()
        }))
        .await
        .unwrap();
    assert_eq!(ids(&r), ["galaxy24"]);
    // Text and filters together.
    let mut tq = SearchQuery::text("samsung");
    tq.filters.category = Some(phones);
    assert_eq!(ids(&idx.search(&tq).await.unwrap()), ["galaxy24"]);
}

#[tokio::test]
async fn facets_count_the_current_query() {
    let idx = index().await;
    let mut q = SearchQuery::text("");
    q.facets = FacetRequest {
        brands: true,
        categories: true,
        price_buckets: vec!["100.00 USD".parse().unwrap(), "700.00 USD".parse().unwrap()],
        ratings: true,
        attributes: vec!["color".into()],
    };
    q.filters.category = Some(CategoryPath::parse("Electronics").unwrap());
    let r = idx.search(&q).await.unwrap();
    assert_eq!(r.total, 7);
    assert_eq!(r.facets.brands[0].value, "Samsung");
    assert_eq!(r.facets.brands[0].count, 2);
    let cats: BTreeMap<&str, u64> = r
        .facets
        .categories
        .iter()
        .map(|c| (c.value.as_str(), c.count))
        .collect();
    assert_eq!(
        cats,
        BTreeMap::from([
            ("Electronics > Accessories", 2),
            ("Electronics > Audio", 1),
            ("Electronics > Phones", 3),
            ("Electronics > Tablets", 1),
        ])
    );
    let prices: Vec<u64> = r.facets.prices.iter().map(|c| c.count).collect();
    assert_eq!(prices, [2, 3, 2]);
    assert_eq!(r.facets.prices[0].value, "<100.00");
    let ratings: Vec<(&str, u64)> = r
        .facets
        .ratings
        .iter()
        .map(|c| (c.value.as_str(), c.count))
        .collect();
    assert_eq!(ratings, [("4+", 4), ("3+", 6), ("2+", 7), ("1+", 7)]);
    let colors: BTreeMap<&str, u64> = r.facets.attributes["color"]
        .iter()
        .map(|c| (c.value.as_str(), c.count))
        .collect();
    assert_eq!(
        colors,
        BTreeMap::from([("Black", 3), ("Blue", 1), ("Graphite", 1), ("Silver", 2)])
    );
    // Without a category filter: the roots; with text: only the matches count.
    let mut q = SearchQuery::text("samsung");
    q.facets.categories = true;
    q.facets.brands = true;
    let r = idx.search(&q).await.unwrap();
    assert_eq!(r.facets.categories.len(), 1);
    assert_eq!(r.facets.categories[0].value, "Electronics");
    assert_eq!(r.facets.categories[0].count, 2);
    assert_eq!(r.facets.brands.len(), 1);
}

#[tokio::test]
async fn sorting() {
    let idx = index().await;
    let q = |sort| SearchQuery {
        sort,
        limit: 3,
        ..SearchQuery::default()
    };
    let r = idx.search(&q(SortOrder::PriceAscending)).await.unwrap();
    assert_eq!(ids(&r), ["charger2", "charger1", "wh1000"]);
    let r = idx.search(&q(SortOrder::PriceDescending)).await.unwrap();
    assert_eq!(ids(&r), ["fridge", "iphone15", "galaxy24"]);
    let r = idx.search(&q(SortOrder::Popularity)).await.unwrap();
    assert_eq!(ids(&r), ["charger2", "iphone15", "galaxy24"]);
    // Browse by relevance: all tie, popularity breaks the tie.
    let r = idx.search(&q(SortOrder::Relevance)).await.unwrap();
    assert_eq!(ids(&r), ["charger2", "iphone15", "galaxy24"]);
    let r = idx.search(&q(SortOrder::Newest)).await.unwrap();
    assert_eq!(r.hits.len(), 3);
}

#[tokio::test]
async fn offset_and_cursor_pages_agree() {
    let idx = index().await;
    for sort in [
        SortOrder::Relevance,
        SortOrder::PriceAscending,
        SortOrder::PriceDescending,
        SortOrder::Newest,
        SortOrder::Popularity,
    ] {
        let all = idx
            .search(&SearchQuery {
                sort,
                limit: 100,
                ..SearchQuery::default()
            })
            .await
            .unwrap();
        let all: Vec<String> = all.hits.iter().map(|h| h.product_id.to_string()).collect();
        assert_eq!(all.len(), 8);
        let mut by_cursor = Vec::new();
        let mut cursor = None;
        loop {
            let r = idx
                .search(&SearchQuery {
                    sort,
                    limit: 3,
                    cursor: cursor.clone(),
                    ..SearchQuery::default()
                })
                .await
                .unwrap();
            by_cursor.extend(r.hits.iter().map(|h| h.product_id.to_string()));
            match r.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(by_cursor, all, "{sort:?}");
        let mut by_offset = Vec::new();
        for offset in (0..8).step_by(3) {
            let r = idx
                .search(&SearchQuery {
                    sort,
                    limit: 3,
                    offset,
                    ..SearchQuery::default()
                })
                .await
                .unwrap();
            by_offset.extend(r.hits.iter().map(|h| h.product_id.to_string()));
        }
        assert_eq!(by_offset, all, "{sort:?}");
    }
    // A cursor the index did not make is bad input, not a first page.
    let r = idx
        .search(&SearchQuery {
            cursor: Some("not a cursor".into()),
            ..SearchQuery::default()
        })
        .await;
    assert!(
        matches!(r, Err(commerce_core::Error::Validation { ref field, .. }) if field == "cursor"),
        "{r:?}"
    );
}

#[tokio::test]
async fn snippets_highlight_matches() {
    let idx = index().await;
    let mut q = SearchQuery::text("wireless headphones");
    q.highlight = true;
    let r = idx.search(&q).await.unwrap();
    let s = r.hits[0].snippet.as_deref().unwrap();
    assert!(s.contains("<mark>Wireless</mark>"), "{s}");
    assert!(s.contains("<mark>Headphones</mark>"), "{s}");
    let r = idx.search(&SearchQuery::text("wireless")).await.unwrap();
    assert!(r.hits[0].snippet.is_none());
}

#[tokio::test]
async fn autocomplete_by_prefix() {
    let idx = index().await;
    let s = idx.autocomplete("sam", 10).await.unwrap();
    assert_eq!(s[0].text, "Samsung");
    assert_eq!(s[0].kind, SuggestionKind::Brand);
    let titles: Vec<&str> = s
        .iter()
        .filter(|x| x.kind == SuggestionKind::Title)
        .map(|x| x.text.as_str())
        .collect();
    assert_eq!(titles, ["Samsung Galaxy S24", "Samsung Galaxy Tab S9"]);
    // Each keystroke.
    for prefix in [
        "a",
        "ap",
        "app",
        "appl",
        "apple",
        "apple ",
        "apple i",
        "apple iphone 15 p",
    ] {
        let s = idx.autocomplete(prefix, 5).await.unwrap();
        assert!(
            s.iter().any(|x| x.text == "Apple iPhone 15 Pro"),
            "{prefix}: {s:?}"
        );
    }
    let s = idx.autocomplete("smart", 5).await.unwrap();
    assert_eq!(s[0].text, "Smartphones");
    assert_eq!(s[0].kind, SuggestionKind::Category);
    assert_eq!(idx.autocomplete("s", 2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn similar_products_share_content_and_category() {
    let idx = index().await;
    let s = idx
        .similar(&ProductId::new("galaxy24").unwrap(), 3)
        .await
        .unwrap();
    let got: Vec<&str> = s.iter().map(|h| h.product_id.as_str()).collect();
    assert!(!got.contains(&"galaxy24"));
    assert_eq!(got.len(), 3);
    assert!(
        got[..2].contains(&"galaxytab") || got[..2].contains(&"pixel8"),
        "{got:?}"
    );
    assert!(got.iter().all(|id| *id != "fridge"), "{got:?}");
    assert!(
        idx.similar(&ProductId::new("nope").unwrap(), 3)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn personalisation_reranks_by_affinity() {
    let idx = index().await;
    let mut q = SearchQuery::text("smartphones");
    let plain = idx.search(&q).await.unwrap();
    assert_ne!(ids(&plain)[0], "pixel8");
    q.personalization = Some(Affinity {
        brands: BTreeMap::from([("Google".to_owned(), 1.0)]),
        categories: BTreeMap::new(),
    });
    let r = idx.search(&q).await.unwrap();
    assert_eq!(ids(&r)[0], "pixel8");
    // Category affinity applies to the subtree.
    let mut q = SearchQuery::text("samsung");
    q.personalization = Some(Affinity {
        brands: BTreeMap::new(),
        categories: BTreeMap::from([(CategoryPath::parse("Electronics > Tablets").unwrap(), 1.0)]),
    });
    assert_eq!(ids(&idx.search(&q).await.unwrap())[0], "galaxytab");
    q.personalization.as_mut().unwrap().categories =
        BTreeMap::from([(CategoryPath::parse("Electronics > Phones").unwrap(), 1.0)]);
    assert_eq!(ids(&idx.search(&q).await.unwrap())[0], "galaxy24");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_and_readers() {
    let idx = Arc::new(index().await);
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let idx = idx.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u32 {
                let id: &'static str = Box::leak(format!("c{t}-{i}").into_boxed_str());
                let x = p(
                    id,
                    "Concurrent Gadget",
                    "Acme",
                    "Electronics > Gadgets",
                    "10.00 USD",
                );
                idx.upsert(&[product(&x)]).await.unwrap();
                idx.search(&SearchQuery::text("gadget")).await.unwrap();
                if i % 10 == 0 {
                    idx.refresh().await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    idx.refresh().await.unwrap();
    assert_eq!(idx.count().await.unwrap(), 8 + 200);
    assert_eq!(
        idx.search(&SearchQuery::text("gadget"))
            .await
            .unwrap()
            .total,
        200
    );
}

#[tokio::test]
async fn survives_a_crash_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let config = TantivyConfig {
        commit_interval: None,
        writer_threads: 1,
        writer_memory: 32 << 20,
        ..TantivyConfig::default()
    };
    {
        let idx = TantivySearch::open_or_create_with(dir.path(), config.clone()).unwrap();
        idx.upsert(&[product(&catalog()[0])]).await.unwrap();
        idx.refresh().await.unwrap();
        idx.upsert(&[product(&catalog()[1])]).await.unwrap();
        // Dropped without a commit: the "crash".
    }
    let idx = TantivySearch::open_or_create_with(dir.path(), config).unwrap();
    assert_eq!(idx.count().await.unwrap(), 1);
    assert_eq!(
        ids(&idx.search(&SearchQuery::text("iphone")).await.unwrap()),
        ["iphone15"]
    );
    assert!(
        idx.search(&SearchQuery::text("galaxy"))
            .await
            .unwrap()
            .hits
            .is_empty()
    );
    // Autocomplete is rebuilt from the committed documents.
    assert_eq!(idx.autocomplete("apple", 5).await.unwrap()[0].text, "Apple");
}

#[tokio::test]
async fn background_commit_makes_writes_visible() {
    let idx = TantivySearch::in_ram_with(TantivyConfig {
        commit_interval: Some(Duration::from_millis(100)),
        writer_threads: 1,
        writer_memory: 32 << 20,
        ..TantivyConfig::default()
    })
    .unwrap();
    idx.upsert(&[product(&catalog()[0])]).await.unwrap();
    let start = Instant::now();
    while idx.count().await.unwrap() == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "never committed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("visible after {:?}", start.elapsed());
}

async fn engine_with_products() -> (MemoryEngine, Vec<Product>) {
    let engine = MemoryEngine::new();
    let mut out = Vec::new();
    for x in catalog() {
        out.push(
            engine
                .catalog
                .create_product(new_product(&x))
                .await
                .unwrap(),
        );
    }
    (engine, out)
}

#[tokio::test]
async fn sync_from_events() {
    let (engine, products) = engine_with_products().await;
    let idx = Arc::new(index_empty());
    let sync = SearchSync::new(engine.events.clone(), engine.catalog.clone(), idx.clone()).unwrap();
    assert_eq!(sync.run_once().await.unwrap(), 8);
    // Deterministic bound: once a round has run, the change is searchable.
    assert_eq!(idx.count().await.unwrap(), 8);
    assert_eq!(sync.run_once().await.unwrap(), 0);

    let mut phone = products[0].clone();
    phone.title = "Apple iPhone 16 Pro Max".into();
    engine.catalog.update_product(phone).await.unwrap();
    engine
        .catalog
        .set_product_status(&products[7].id, ProductStatus::Archived)
        .await
        .unwrap();
    assert_eq!(sync.run_once().await.unwrap(), 2);
    assert_eq!(
        ids(&idx.search(&SearchQuery::text("max")).await.unwrap()),
        ["iphone15"]
    );
    assert_eq!(
        idx.search(&SearchQuery::text("refrigerator"))
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(idx.count().await.unwrap(), 7);
}

#[tokio::test]
async fn sync_takes_in_stock_from_live_inventory() {
    use commerce_core::id::LocationId;
    use commerce_core::store::InventoryStore;
    let (engine, products) = engine_with_products().await;
    let idx = Arc::new(index_empty());
    let sync = SearchSync::new(engine.events.clone(), engine.catalog.clone(), idx.clone())
        .unwrap()
        .with_inventory(engine.inventory.clone());
    sync.run_once().await.unwrap();
    let in_stock = |brand: &str| {
        let mut q = SearchQuery::text("");
        q.filters.in_stock_only = true;
        q.filters.brands = vec![brand.to_owned()];
        q
    };
    // The catalog says 5 units, but live stock is what counts: none yet.
    assert_eq!(idx.search(&in_stock("LG")).await.unwrap().total, 0);
    let fridge = &products[7].variants[0].sku;
    let here = LocationId::new("main").unwrap();
    engine
        .inventory
        .restock(fridge, &here, 3, "test")
        .await
        .unwrap();
    sync.run_once().await.unwrap();
    assert_eq!(idx.search(&in_stock("LG")).await.unwrap().total, 1);
    engine
        .inventory
        .adjust(fridge, &here, -3, "test")
        .await
        .unwrap();
    sync.run_once().await.unwrap();
    assert_eq!(idx.search(&in_stock("LG")).await.unwrap().total, 0);
}

#[tokio::test]
async fn compact_keeps_every_document() {
    let idx = index_empty();
    for x in catalog() {
        idx.upsert(&[product(&x)]).await.unwrap();
        idx.refresh().await.unwrap();
    }
    assert!(idx.searcher().segment_readers().len() > 1);
    idx.compact().unwrap();
    assert_eq!(idx.searcher().segment_readers().len(), 1);
    assert_eq!(idx.count().await.unwrap(), 8);
    assert_eq!(
        ids(&idx.search(&SearchQuery::text("iphone")).await.unwrap()),
        ["iphone15"]
    );
}

fn index_empty() -> TantivySearch {
    TantivySearch::in_ram_with(TantivyConfig {
        commit_interval: None,
        writer_threads: 1,
        writer_memory: 32 << 20,
        ..TantivyConfig::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_loop_visibility_delay() {
    let (engine, products) = engine_with_products().await;
    let idx = Arc::new(index_empty());
    let sync = SearchSync::new(engine.events.clone(), engine.catalog.clone(), idx.clone()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        sync.run(async {
            let _ = stopped.await;
        })
        .await
    });
    let mut worst = Duration::ZERO;
    for (i, p) in products.iter().enumerate().take(5) {
        let mut changed = engine.catalog.get_product(&p.id).await.unwrap().unwrap();
        let word = format!("zzmarker{i}");
        changed.title = format!("{} {word}", changed.title);
        let start = Instant::now();
        engine.catalog.update_product(changed).await.unwrap();
        loop {
            if idx.search(&SearchQuery::text(&word)).await.unwrap().total == 1 {
                break;
            }
            // Generous, not the bound: the documented bound is measured and printed.
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "change never became visible"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        worst = worst.max(start.elapsed());
    }
    eprintln!(
        "worst visibility delay through SearchSync::run: {worst:?} (documented bound: 2 s, measured by the search-lag benchmark)"
    );
    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test]
async fn rebuild_from_any_catalog() {
    let (engine, products) = engine_with_products().await;
    engine
        .catalog
        .set_product_status(&products[0].id, ProductStatus::Archived)
        .await
        .unwrap();
    let idx = index_empty();
    // Stale content that the rebuild must drop.
    idx.upsert(&[product(&p(
        "stale",
        "Stale Thing",
        "Old",
        "Misc",
        "1.00 USD",
    ))])
    .await
    .unwrap();
    idx.refresh().await.unwrap();
    let n = rebuild(engine.catalog.as_ref(), &idx, false).await.unwrap();
    assert_eq!(n, 7);
    assert_eq!(idx.count().await.unwrap(), 7);
    assert_eq!(
        idx.search(&SearchQuery::text("stale")).await.unwrap().total,
        0
    );
    assert!(idx.autocomplete("stale", 5).await.unwrap().is_empty());
}

#[tokio::test]
async fn autocomplete_finds_words_inside_titles_with_one_typo() {
    let idx = index().await;
    // A word in the middle of the title.
    let s = idx.autocomplete("iph", 5).await.unwrap();
    assert!(s.iter().any(|x| x.text == "Apple iPhone 15 Pro"), "{s:?}");
    assert!(s.iter().all(|x| x.kind == SuggestionKind::Title));
    // Words in any order, each a prefix of a word of its own.
    let s = idx.autocomplete("15 apple", 5).await.unwrap();
    assert_eq!(s[0].text, "Apple iPhone 15 Pro");
    // One typo from the 4th character on.
    let s = idx.autocomplete("samsnug", 5).await.unwrap();
    assert_eq!(s[0].text, "Samsung");
    let s = idx.autocomplete("iphpne", 5).await.unwrap();
    assert!(s.iter().any(|x| x.text == "Apple iPhone 15 Pro"), "{s:?}");
    assert!(idx.autocomplete("ipn", 5).await.unwrap().is_empty());
    // Popular first: the brand (all its products' popularity) before each title.
    let s = idx.autocomplete("galaxy", 5).await.unwrap();
    let weights: Vec<f32> = s.iter().map(|x| x.score).collect();
    assert!(weights.windows(2).all(|w| w[0] >= w[1]), "{s:?}");
}

mod sharded {
    use super::*;
    use commerce_core::catalog::CategoryTree;
    use commerce_core::sample::SampleCatalog;
    use commerce_core::store::search::SearchResults;
    use commerce_search::{ShardedSearch, sample_product};

    fn config() -> TantivyConfig {
        TantivyConfig {
            commit_interval: None,
            writer_threads: 1,
            writer_memory: 32 << 20,
            ..TantivyConfig::default()
        }
    }

    /// Hits (id and score), total, facets and cursor: everything a page shows.
    fn page(r: &SearchResults) -> (Vec<(String, u32)>, u64, String, bool) {
        (
            r.hits
                .iter()
                .map(|h| (h.product_id.as_str().to_owned(), h.score.to_bits()))
                .collect(),
            r.total,
            format!("{:?}", r.facets),
            r.next_cursor.is_some(),
        )
    }

    /// A seeded random catalog in one index and in 4 shards: every query (text, typos,
    /// filters, facets, each sort, offsets and cursors) gives the same page.
    #[tokio::test]
    async fn sharded_index_answers_as_one_index() {
        for seed in [3u64, 11, 29] {
            let sample = SampleCatalog::new(&CategoryTree::generated(), seed);
            let n = 1_500 + seed * 17;
            let products: Vec<Product> = (0..n).map(|i| sample_product(&sample, i)).collect();
            let one = TantivySearch::in_ram_with(config()).unwrap();
            let four = ShardedSearch::in_ram(4, config()).unwrap();
            for chunk in products.chunks(400) {
                one.upsert(chunk).await.unwrap();
                four.upsert(chunk).await.unwrap();
            }
            one.refresh().await.unwrap();
            four.refresh().await.unwrap();
            assert_eq!(four.count().await.unwrap(), n);
            assert!(
                four.shards()
                    .iter()
                    .all(|s| s.searcher().num_docs() > n / 8)
            );

            let p0 = &products[(seed as usize * 7) % products.len()];
            let word = p0.title.split(' ').nth(3).unwrap_or("pro").to_owned();
            let mut texts = vec![
                String::new(),
                p0.brand.clone(),
                format!("{} {}", p0.brand, word),
                word.clone(),
                format!("{}x", p0.brand.to_lowercase()), // a typo
                p0.title.clone(),
            ];
            texts.push(word[..word.len().min(3)].to_owned()); // a prefix
            let category = p0.category.parent().unwrap_or_else(|| p0.category.clone());
            let facets = FacetRequest {
                brands: true,
                categories: true,
                price_buckets: vec![
                    Money::from_minor_units(50_000, p0.base_price.currency()).unwrap(),
                ],
                ratings: true,
                attributes: vec!["color".into()],
            };
            for text in &texts {
                for sort in [
                    SortOrder::Relevance,
                    SortOrder::PriceAscending,
                    SortOrder::PriceDescending,
                    SortOrder::Newest,
                    SortOrder::Popularity,
                ] {
                    for filtered in [false, true] {
                        let mut q = SearchQuery::text(text.clone());
                        q.sort = sort;
                        q.limit = 7;
                        q.facets = facets.clone();
                        if filtered {
                            q.filters.category = Some(category.clone());
                        }
                        // Three pages by offset, then three by cursor.
                        for offset in [0, 7, 14] {
                            q.offset = offset;
                            let a = one.search(&q).await.unwrap();
                            let b = four.search(&q).await.unwrap();
                            assert_eq!(page(&a), page(&b), "seed {seed} {text:?} {sort:?}");
                        }
                        q.offset = 0;
                        for _ in 0..3 {
                            let a = one.search(&q).await.unwrap();
                            let b = four.search(&q).await.unwrap();
                            assert_eq!(page(&a), page(&b), "seed {seed} {text:?} {sort:?}");
                            match a.next_cursor {
                                Some(c) => q.cursor = Some(c),
                                None => break,
                            }
                        }
                    }
                }
            }
            // Autocomplete is one store fed by every shard.
            for typed in [&p0.brand[..2], word.as_str(), p0.title.as_str()] {
                assert_eq!(
                    one.autocomplete(typed, 10).await.unwrap(),
                    four.autocomplete(typed, 10).await.unwrap(),
                    "{typed}"
                );
            }
            // Removal reaches the product's shard.
            four.remove(std::slice::from_ref(&p0.id)).await.unwrap();
            four.refresh().await.unwrap();
            assert_eq!(four.count().await.unwrap(), n - 1);
            let similar = four.similar(&products[1].id, 5).await.unwrap();
            assert!(similar.iter().all(|h| h.product_id != products[1].id));
            assert!(!similar.is_empty());
        }
        assert!(ShardedSearch::in_ram(0, config()).is_err());
    }

    /// Category listings from the listing views (one index and 4 shards) give the same
    /// pages as the collector, on a seeded random catalog in several segments with
    /// updated and removed products: every sort, filters on brand, price (in two
    /// currencies), rating and stock, offsets and cursors.
    #[tokio::test]
    async fn listing_views_answer_as_the_collector() {
        use commerce_core::money::Currency;
        for seed in [5u64, 23] {
            let sample = SampleCatalog::new(&CategoryTree::generated(), seed);
            let n = 2_000 + seed * 13;
            let mut products: Vec<Product> = (0..n).map(|i| sample_product(&sample, i)).collect();
            // One product in eleven is priced in euros.
            for p in products.iter_mut().step_by(11) {
                let eur =
                    |m: Money| Money::from_minor_units(m.to_minor_units(), Currency::EUR).unwrap();
                p.base_price = eur(p.base_price);
                for v in &mut p.variants {
                    v.price = eur(v.price);
                }
            }
            let plain = TantivySearch::in_ram_with(TantivyConfig {
                listing_views: false,
                ..config()
            })
            .unwrap();
            let one = TantivySearch::in_ram_with(config()).unwrap();
            let four = ShardedSearch::in_ram(4, config()).unwrap();
            // Several commits: several segments.
            for chunk in products.chunks(500) {
                for idx in [&plain as &dyn SearchIndex, &one, &four] {
                    idx.upsert(chunk).await.unwrap();
                    idx.refresh().await.unwrap();
                }
            }
            // Updates (a new price, out of stock) and removals: deleted documents in the
            // old segments.
            let mut changed = Vec::new();
            for p in products.iter().step_by(7).take(150) {
                let mut p = p.clone();
                for v in &mut p.variants {
                    v.price = Money::from_minor_units(
                        v.price.to_minor_units() / 2 + 1,
                        v.price.currency(),
                    )
                    .unwrap();
                    v.inventory_count = 0;
                }
                p.popularity += 1_000;
                changed.push(p);
            }
            let removed: Vec<ProductId> = products
                .iter()
                .skip(3)
                .step_by(13)
                .take(80)
                .map(|p| p.id.clone())
                .collect();
            for idx in [&plain as &dyn SearchIndex, &one, &four] {
                idx.upsert(&changed).await.unwrap();
                idx.remove(&removed).await.unwrap();
                idx.refresh().await.unwrap();
            }
            assert!(one.searcher().segment_readers().len() > 1);
            assert!(one.prepare_listings().unwrap() > 0);

            let p0 = &products[(seed as usize * 5) % products.len()];
            let mut categories = vec![p0.category.clone()];
            categories.extend(p0.category.ancestors());
            categories.push(CategoryPath::parse("No Such Category").unwrap());
            let usd = |c| Money::from_minor_units(c, Currency::USD).unwrap();
            let eur = |c| Money::from_minor_units(c, Currency::EUR).unwrap();
            let filters = [
                SearchFilters::default(),
                SearchFilters {
                    brands: vec![p0.brand.clone(), "No Such Brand".into()],
                    ..SearchFilters::default()
                },
                SearchFilters {
                    price: PriceRange {
                        min: Some(usd(5_000)),
                        max: Some(usd(60_000)),
                    },
                    ..SearchFilters::default()
                },
                SearchFilters {
                    price: PriceRange {
                        min: None,
                        max: Some(eur(40_000)),
                    },
                    min_rating: Some(Rating::from_tenths(30).unwrap()),
                    ..SearchFilters::default()
                },
                SearchFilters {
                    price: PriceRange {
                        min: Some(usd(20_000)),
                        max: None,
                    },
                    in_stock_only: true,
                    ..SearchFilters::default()
                },
            ];
            let mut compared = 0;
            for category in &categories {
                for (fi, filter) in filters.iter().enumerate() {
                    for sort in [
                        SortOrder::Relevance,
                        SortOrder::PriceAscending,
                        SortOrder::PriceDescending,
                        SortOrder::Newest,
                        SortOrder::Popularity,
                    ] {
                        let mut q = commerce_search::listing::category_listing(
                            category.clone(),
                            sort,
                            Currency::USD,
                        );
                        q.filters = SearchFilters {
                            category: Some(category.clone()),
                            ..filter.clone()
                        };
                        q.limit = 9;
                        for offset in [0, 9, 30] {
                            q.offset = offset;
                            let a = plain.search(&q).await.unwrap();
                            let b = one.search(&q).await.unwrap();
                            let c = four.search(&q).await.unwrap();
                            assert_eq!(
                                page(&a),
                                page(&b),
                                "seed {seed} {category} filter {fi} {sort:?} offset {offset}"
                            );
                            assert_eq!(
                                page(&a),
                                page(&c),
                                "seed {seed} {category} filter {fi} {sort:?} offset {offset}, 4 shards"
                            );
                            compared += a.hits.len();
                        }
                        q.offset = 0;
                        let (mut qa, mut qb, mut qc) = (q.clone(), q.clone(), q.clone());
                        for step in 0..5 {
                            let a = plain.search(&qa).await.unwrap();
                            let b = one.search(&qb).await.unwrap();
                            let c = four.search(&qc).await.unwrap();
                            assert_eq!(
                                page(&a),
                                page(&b),
                                "seed {seed} {category} filter {fi} {sort:?} cursor page {step}"
                            );
                            assert_eq!(
                                page(&a),
                                page(&c),
                                "seed {seed} {category} filter {fi} {sort:?} cursor page {step}, 4 shards"
                            );
                            match (a.next_cursor, b.next_cursor, c.next_cursor) {
                                (Some(x), Some(y), Some(z)) => {
                                    qa.cursor = Some(x);
                                    qb.cursor = Some(y);
                                    qc.cursor = Some(z);
                                }
                                _ => break,
                            }
                        }
                    }
                }
            }
            assert!(compared > 1_000, "{compared}");
        }
    }
}

mod pruning {
    use super::*;
    use commerce_core::catalog::CategoryTree;
    use commerce_core::sample::SampleCatalog;
    use commerce_core::store::search::{Affinity, SearchResults};
    use commerce_search::sample_product;

    fn hits(r: &SearchResults) -> Vec<(String, u32)> {
        r.hits
            .iter()
            .map(|h| (h.product_id.as_str().to_owned(), h.score.to_bits()))
            .collect()
    }

    /// Documents that cannot reach a full page are not scored (their ceiling stands
    /// in): a small page must still be exactly the start of a large one, with the same
    /// scores, whatever the words, typos, filters and personalization.
    #[tokio::test]
    async fn a_small_page_is_the_start_of_a_large_one() {
        let sample = SampleCatalog::new(&CategoryTree::generated(), 17);
        let products: Vec<Product> = (0..3_000).map(|i| sample_product(&sample, i)).collect();
        let index = TantivySearch::in_ram_with(TantivyConfig {
            commit_interval: None,
            writer_threads: 1,
            writer_memory: 32 << 20,
            ..TantivyConfig::default()
        })
        .unwrap();
        index.upsert(&products).await.unwrap();
        index.refresh().await.unwrap();
        let mut compared = 0;
        for p in products.iter().step_by(211) {
            let noun = p
                .category
                .name()
                .split(' ')
                .next_back()
                .unwrap_or("")
                .to_owned();
            let title_word = p.title.split(' ').nth(1).unwrap_or("pro").to_owned();
            for text in [
                format!("{} {noun} ", p.brand),
                format!("{title_word} {noun} "),
                format!("{} {title_word}", p.brand.to_lowercase()),
                format!("{noun} "),
            ] {
                for personal in [false, true] {
                    let mut q = SearchQuery::text(text.clone());
                    if personal {
                        let mut a = Affinity::default();
                        a.brands.insert(p.brand.clone(), 1.0);
                        q.personalization = Some(a);
                    }
                    q.limit = 100;
                    let large = index.search(&q).await.unwrap();
                    for (offset, limit) in [(0, 3), (0, 10), (10, 5)] {
                        q.offset = offset;
                        q.limit = limit;
                        let small = index.search(&q).await.unwrap();
                        let want: Vec<_> = hits(&large)
                            .into_iter()
                            .skip(offset as usize)
                            .take(limit as usize)
                            .collect();
                        assert_eq!(hits(&small), want, "{text:?} {offset} {limit}");
                        assert_eq!(small.total, large.total);
                    }
                    compared += usize::from(large.total > 20);
                }
            }
        }
        assert!(compared > 10, "enough queries fill more than a page");
    }
}
