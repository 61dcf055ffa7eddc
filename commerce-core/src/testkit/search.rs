//! The [`SearchIndex`] suite (area `search`): one case per group of sentences of the
//! trait's contract, on a catalog of eleven products (ten active, one draft) whose
//! expected answers are written out by hand.
//!
//! Checks: only active products are searchable and counted, and upserting another
//! status removes one; an upsert replaces the earlier version (old words and filter
//! values no longer find it, one hit per product); removing unknown ids and empty
//! writes change nothing; text without words browses everything and syntax characters
//! are text; exact word matching (case-insensitive; title, brand, category, text
//! attributes of product and variants, description), every word else any word, the
//! last word as a prefix, typos only with typo tolerance; every filter (category
//! subtree and not a sibling sharing a prefix, exact brands, inclusive price ranges on
//! the lowest variant price in one currency, empty ranges, minimum rating, attributes
//! of product and variants, in stock) alone and combined; hits carry the product's
//! fields; each explicit sort gives its exact order; offset pages and cursor pages are
//! slices of one order without repeats or gaps and `total` counts every match; every
//! facet's counts, order and labels, over all matches; personalization keeps the
//! matches, total and facets; highlighting; autocomplete (prefixes of distinct words,
//! each kind, limits, gone with its product) and similar products (never itself, only
//! searchable ones, limits, unknown ids); bad queries (limit, offset, a foreign cursor,
//! mixed currencies, unordered price buckets) are `Validation`.
//!
//! Only what the contract guarantees is asserted: sets, counts and explicit orders,
//! never scores or the order of relevance.

use std::collections::BTreeSet;

use super::builder::{Area, StoreBuilder};
use super::check::{assert_err, must};
use super::fixtures::{money, path, pid, sku};
use super::runner::{Case, Ctx, Env, Settings, cases, run_one_area};
use crate::catalog::{
    AttributeValue, NewProduct, Product, ProductStatus, ProductVariant, Rating, Slug,
};
use crate::error::Error;
use crate::id::SellerId;
use crate::money::Money;
use crate::store::SearchIndex;
use crate::store::search::{
    Affinity, FacetCount, FacetRequest, PriceRange, SearchFilters, SearchQuery, SearchResults,
    SortOrder, SuggestionKind,
};

/// Runs every search case against `builder`'s index; panics listing the failed cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    run_one_area(builder, settings, Area::Search, cases()).await;
}

pub(crate) fn cases() -> Vec<Case> {
    cases![
        only_active_products_are_searchable,
        an_upsert_replaces_the_earlier_version,
        removing_unknown_products_and_empty_writes_change_nothing,
        text_without_words_browses_and_syntax_is_text,
        words_match_in_every_field_case_insensitively,
        every_word_else_any_word,
        the_last_word_matches_as_a_prefix_and_typos_only_when_tolerated,
        each_filter_holds,
        filters_combine_with_text,
        hits_carry_the_products_fields,
        explicit_sorts_give_their_exact_order,
        offset_pages_are_slices_of_one_order,
        cursor_pages_visit_every_match_once,
        facets_count_every_match,
        category_facets_count_the_children_of_the_filter,
        personalization_only_reranks,
        highlighting_marks_the_matched_words,
        autocomplete_suggests_by_word_prefixes,
        similar_products_exclude_the_product_and_unsearchable_ones,
        bad_queries_are_validation_errors,
    ]
}

/// The ids of the ten active products.
const ACTIVE: [&str; 10] = [
    "s-zephyr", "s-boom", "h-zephyr", "h-quiet", "a-cable", "p-pixel", "p-galaxy", "p-iphone",
    "c-case", "e-euro",
];

/// One product of the catalog; `i` orders the creation times (a minute apart).
#[allow(clippy::too_many_arguments)]
fn product(
    ctx: &Ctx,
    i: i64,
    id: &str,
    title: &str,
    brand: &str,
    category: &str,
    price: &str,
    rating: Option<u8>,
    popularity: u64,
    stock: u32,
    description: &str,
) -> Product {
    let mut new = NewProduct::new(
        SellerId::new("seller-1").unwrap_or_else(|e| panic!("{e}")),
        title,
        path(category),
        brand,
        sku(&format!("SKU-{}", id.to_uppercase())),
        money(price),
    );
    new.id = Some(pid(id));
    new.status = ProductStatus::Active;
    new.rating = rating.map(|r| Rating::from_tenths(r).unwrap_or_else(|e| panic!("{e}")));
    new.popularity = popularity;
    new.description = description.to_owned();
    new.variants[0].inventory_count = stock;
    let at = ctx.now() + chrono::Duration::minutes(i);
    new.into_product(Slug::new(id).unwrap_or_else(|e| panic!("{e}")), at)
        .unwrap_or_else(|e| panic!("test product {id}: {e}"))
}

fn text(s: &str) -> AttributeValue {
    AttributeValue::Text(s.to_owned())
}

/// The catalog: ten active products and a draft.
fn catalog(ctx: &Ctx) -> Vec<Product> {
    let mut s_zephyr = product(
        ctx,
        0,
        "s-zephyr",
        "Zephyr Wireless Speaker",
        "Acme",
        "Audio > Speakers",
        "49.00 USD",
        Some(45),
        50,
        5,
        "Portable sound for any room",
    );
    s_zephyr.attributes.insert("color".into(), text("Black"));
    let mut s_boom = product(
        ctx,
        1,
        "s-boom",
        "Boombox Classic",
        "Retrowave",
        "Audio > Speakers",
        "120.00 USD",
        Some(32),
        10,
        0,
        "A zephyr of nostalgia",
    );
    s_boom.attributes.insert("color".into(), text("Red"));
    let mut h_zephyr = product(
        ctx,
        2,
        "h-zephyr",
        "Zephyr Studio Headphones",
        "Acme",
        "Audio > Headphones",
        "89.99 USD",
        Some(40),
        30,
        3,
        "Closed back",
    );
    h_zephyr.attributes.insert("color".into(), text("White"));
    // Two variants, the second cheaper: listed at 279.00.
    let mut h_quiet = product(
        ctx,
        3,
        "h-quiet",
        "Quietcomfort Headphones",
        "Bose",
        "Audio > Headphones",
        "299.00 USD",
        Some(48),
        90,
        1,
        "Noise cancelling",
    );
    h_quiet.variants[0]
        .attributes
        .insert("color".into(), text("Black"));
    h_quiet.variants.push(ProductVariant {
        sku: sku("SKU-H-QUIET-SILVER"),
        attributes: [("color".to_owned(), text("Silver"))].into_iter().collect(),
        price: money("279.00 USD"),
        inventory_count: 0,
        weight_grams: None,
        dimensions: None,
    });
    let a_cable = product(
        ctx,
        4,
        "a-cable",
        "Audio Cable",
        "Acme",
        "Audio",
        "9.99 USD",
        None,
        5,
        100,
        "Gold plated",
    );
    let mut p_pixel = product(
        ctx,
        5,
        "p-pixel",
        "Pixel Phone",
        "Google",
        "Phones > Android",
        "599.00 USD",
        Some(41),
        70,
        2,
        "Camera first",
    );
    p_pixel.attributes.insert("color".into(), text("Black"));
    let mut p_galaxy = product(
        ctx,
        6,
        "p-galaxy",
        "Galaxy Phone",
        "Samsung",
        "Phones > Android",
        "499.00 USD",
        Some(39),
        80,
        0,
        "Big screen",
    );
    p_galaxy.attributes.insert("color".into(), text("Blue"));
    p_galaxy.variants.push(ProductVariant {
        sku: sku("SKU-P-GALAXY-256"),
        attributes: [
            ("color".to_owned(), text("Green")),
            ("storage".to_owned(), AttributeValue::Number(256.0)),
        ]
        .into_iter()
        .collect(),
        price: money("549.00 USD"),
        inventory_count: 0,
        weight_grams: None,
        dimensions: None,
    });
    let mut p_iphone = product(
        ctx,
        7,
        "p-iphone",
        "iPhone",
        "Apple",
        "Phones > Apple",
        "799.00 USD",
        Some(46),
        100,
        4,
        "",
    );
    p_iphone.attributes.insert("color".into(), text("Black"));
    let mut c_case = product(
        ctx,
        8,
        "c-case",
        "Phone Case",
        "Acme",
        "Phones Accessories",
        "19.00 USD",
        Some(25),
        15,
        9,
        "Slim fit",
    );
    c_case.attributes.insert("color".into(), text("Black"));
    let e_euro = product(
        ctx,
        9,
        "e-euro",
        "Euro Speaker",
        "Acme",
        "Audio > Speakers",
        "59.00 EUR",
        Some(42),
        20,
        1,
        "",
    );
    let mut d_draft = product(
        ctx,
        10,
        "d-draft",
        "Zephyr Prototype",
        "Acme",
        "Audio > Speakers",
        "39.00 USD",
        None,
        999,
        1,
        "Not for sale",
    );
    d_draft.status = ProductStatus::Draft;
    vec![
        s_zephyr, s_boom, h_zephyr, h_quiet, a_cable, p_pixel, p_galaxy, p_iphone, c_case, e_euro,
        d_draft,
    ]
}

/// A fresh index holding the catalog (refreshed); returns it with the products.
async fn loaded(env: &Env<'_>) -> (Ctx, std::sync::Arc<dyn SearchIndex>, Vec<Product>) {
    let ctx = env.ctx().await;
    let index = ctx.search();
    let products = catalog(&ctx);
    must!(index.upsert(&products).await, "upsert the catalog");
    must!(index.refresh().await, "refresh");
    (ctx, index, products)
}

async fn search(index: &dyn SearchIndex, q: &SearchQuery) -> SearchResults {
    must!(index.search(q).await, "search({q:?})")
}

fn ids(r: &SearchResults) -> Vec<String> {
    r.hits.iter().map(|h| h.product_id.to_string()).collect()
}

fn set(r: &SearchResults) -> BTreeSet<String> {
    ids(r).into_iter().collect()
}

fn names(expected: &[&str]) -> BTreeSet<String> {
    expected.iter().map(|s| (*s).to_owned()).collect()
}

/// Every match of `q` on one page of 100 (the catalog is small).
fn all_of(q: SearchQuery) -> SearchQuery {
    SearchQuery { limit: 100, ..q }
}

/// Exact word matching: no typos, and a trailing blank so no prefix matching either.
fn exact(words: &str) -> SearchQuery {
    all_of(SearchQuery {
        text: format!("{words} "),
        typo_tolerance: false,
        ..SearchQuery::default()
    })
}

fn filtered(filters: SearchFilters) -> SearchQuery {
    all_of(SearchQuery {
        filters,
        ..SearchQuery::default()
    })
}

/// Asserts that `q` matches exactly `expected`, on one page, with `total` saying so.
async fn assert_matches(index: &dyn SearchIndex, q: &SearchQuery, expected: &[&str], what: &str) {
    let r = search(index, q).await;
    assert_eq!(set(&r), names(expected), "{what}: the matches");
    assert_eq!(
        r.hits.len(),
        expected.len(),
        "{what}: one hit per product ({:?})",
        ids(&r)
    );
    assert_eq!(r.total, expected.len() as u64, "{what}: total");
}

async fn count(index: &dyn SearchIndex) -> u64 {
    must!(index.count().await, "count")
}

async fn only_active_products_are_searchable(env: Env<'_>) {
    let (_ctx, index, products) = loaded(&env).await;
    let index = &*index;
    assert_eq!(count(index).await, 10, "count: the ten active products");
    assert_matches(index, &all_of(SearchQuery::default()), &ACTIVE, "browse").await;
    assert_matches(index, &exact("prototype"), &[], "a draft's own word").await;
    // Archiving one removes it from the results and the count.
    let mut archived = products[0].clone();
    archived.status = ProductStatus::Archived;
    archived.version += 1;
    must!(index.upsert(&[archived]).await, "upsert archived");
    must!(index.refresh().await, "refresh");
    assert_eq!(count(index).await, 9, "count after archiving s-zephyr");
    assert_matches(index, &exact("wireless"), &[], "an archived product's word").await;
    let similar = must!(index.similar(&products[2].id, 20).await, "similar");
    assert!(
        similar.iter().all(|h| h.product_id.as_str() != "s-zephyr"),
        "similar never returns an archived product: {similar:?}"
    );
    // Active again: back.
    must!(index.upsert(&products[..1]).await, "upsert active");
    must!(index.refresh().await, "refresh");
    assert_eq!(count(index).await, 10);
    assert_matches(index, &exact("wireless"), &["s-zephyr"], "active again").await;
}

async fn an_upsert_replaces_the_earlier_version(env: Env<'_>) {
    let (_ctx, index, products) = loaded(&env).await;
    let index = &*index;
    let mut renamed = products[0].clone();
    renamed.version += 1;
    renamed.title = "Nimbus Speaker".into();
    renamed.brand = "Nimbo".into();
    renamed.description = "Clouds of sound".into();
    renamed.variants[0].price = money("15.00 USD");
    renamed.base_price = money("15.00 USD");
    renamed.attributes.insert("color".into(), text("Orange"));
    must!(index.upsert(std::slice::from_ref(&renamed)).await, "upsert");
    must!(index.refresh().await, "refresh");
    assert_eq!(count(index).await, 10, "still ten products");
    assert_matches(
        index,
        &exact("zephyr"),
        &["s-boom", "h-zephyr"],
        "an old title word",
    )
    .await;
    assert_matches(index, &exact("nimbus"), &["s-zephyr"], "a new title word").await;
    assert_matches(
        index,
        &exact("clouds"),
        &["s-zephyr"],
        "a new description word",
    )
    .await;
    let acme = SearchFilters {
        brands: vec!["Acme".into()],
        ..SearchFilters::default()
    };
    assert_matches(
        index,
        &filtered(acme),
        &["h-zephyr", "a-cable", "c-case", "e-euro"],
        "the old brand",
    )
    .await;
    let black = SearchFilters {
        attributes: vec![("color".into(), "Black".into())],
        ..SearchFilters::default()
    };
    assert_matches(
        index,
        &filtered(black),
        &["h-quiet", "p-pixel", "p-iphone", "c-case"],
        "the old attribute value",
    )
    .await;
    let cheap = SearchFilters {
        price: PriceRange {
            min: None,
            max: Some(money("15.00 USD")),
        },
        ..SearchFilters::default()
    };
    assert_matches(
        index,
        &filtered(cheap),
        &["s-zephyr", "a-cable"],
        "the new price",
    )
    .await;
    let browse = search(index, &all_of(SearchQuery::default())).await;
    let hit = browse
        .hits
        .iter()
        .find(|h| h.product_id.as_str() == "s-zephyr")
        .unwrap_or_else(|| panic!("s-zephyr not browsed: {:?}", ids(&browse)));
    assert_eq!(
        (hit.title.as_str(), hit.brand.as_str(), hit.price),
        ("Nimbus Speaker", "Nimbo", money("15.00 USD")),
        "the hit shows the new version"
    );
    // The same version upserted twice is still one product.
    must!(
        index.upsert(&[renamed.clone(), renamed]).await,
        "upsert twice"
    );
    must!(index.refresh().await, "refresh");
    assert_matches(
        index,
        &exact("nimbus"),
        &["s-zephyr"],
        "upserted twice in one call",
    )
    .await;
    assert_eq!(count(index).await, 10);
}

async fn removing_unknown_products_and_empty_writes_change_nothing(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    must!(
        index.remove(&[pid("no-such-product")]).await,
        "remove an unknown id"
    );
    must!(index.remove(&[]).await, "remove nothing");
    must!(index.upsert(&[]).await, "upsert nothing");
    must!(index.refresh().await, "refresh");
    must!(index.refresh().await, "refresh twice");
    assert_eq!(count(index).await, 10);
    assert_matches(index, &all_of(SearchQuery::default()), &ACTIVE, "browse").await;
    must!(
        index
            .remove(&[pid("s-zephyr"), pid("no-such-product"), pid("s-zephyr")])
            .await,
        "remove a product, an unknown id and the product again"
    );
    must!(index.refresh().await, "refresh");
    assert_eq!(count(index).await, 9);
    assert_matches(index, &exact("wireless"), &[], "a removed product's word").await;
    let suggestions = must!(index.autocomplete("zephyr wire", 10).await, "autocomplete");
    assert!(
        suggestions
            .iter()
            .all(|s| s.text != "Zephyr Wireless Speaker"),
        "a removed product's title is not suggested: {suggestions:?}"
    );
}

async fn text_without_words_browses_and_syntax_is_text(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    for blank in ["", "   ", "((( --- )))", "\"", "*", "\t\n"] {
        assert_matches(
            index,
            &all_of(SearchQuery::text(blank)),
            &ACTIVE,
            &format!("text {blank:?}"),
        )
        .await;
    }
    for syntax in [
        "title:zephyr AND (speaker OR \"x\") -boom",
        "*~^[]{}\\ ! && || +zephyr",
        "zephyr\"",
        "\\",
        "NOT",
        "'; DROP TABLE products; --",
        "<mark>zephyr</mark>",
    ] {
        must!(
            index.search(&SearchQuery::text(syntax)).await,
            "text {syntax:?} is never an error"
        );
    }
    assert_matches(
        index,
        &exact("(zephyr)"),
        &["s-zephyr", "s-boom", "h-zephyr"],
        "a word in parentheses",
    )
    .await;
}

async fn words_match_in_every_field_case_insensitively(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    let zephyr = ["s-zephyr", "s-boom", "h-zephyr"];
    assert_matches(index, &exact("zephyr"), &zephyr, "title and description").await;
    assert_matches(index, &exact("ZEPHYR"), &zephyr, "upper case").await;
    assert_matches(index, &exact("zEpHyR"), &zephyr, "mixed case").await;
    assert_matches(index, &exact("bose"), &["h-quiet"], "brand").await;
    assert_matches(
        index,
        &exact("android"),
        &["p-pixel", "p-galaxy"],
        "category",
    )
    .await;
    assert_matches(
        index,
        &exact("silver"),
        &["h-quiet"],
        "a variant's text attribute",
    )
    .await;
    assert_matches(
        index,
        &exact("white"),
        &["h-zephyr"],
        "a product's text attribute",
    )
    .await;
    assert_matches(index, &exact("nostalgia"), &["s-boom"], "description").await;
    assert_matches(index, &exact("walrus"), &[], "a word nowhere").await;
}

async fn every_word_else_any_word(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    assert_matches(
        index,
        &exact("zephyr headphones"),
        &["h-zephyr"],
        "every word",
    )
    .await;
    assert_matches(
        index,
        &exact("headphones zephyr"),
        &["h-zephyr"],
        "every word, in another order",
    )
    .await;
    assert_matches(
        index,
        &exact("zephyr pixel"),
        &["s-zephyr", "s-boom", "h-zephyr", "p-pixel"],
        "no product has both: any word",
    )
    .await;
    assert_matches(
        index,
        &exact("walrus narwhal"),
        &[],
        "neither word anywhere",
    )
    .await;
}

async fn the_last_word_matches_as_a_prefix_and_typos_only_when_tolerated(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    let typing = all_of(SearchQuery {
        text: "zeph".into(),
        typo_tolerance: false,
        ..SearchQuery::default()
    });
    let r = search(index, &typing).await;
    assert!(
        set(&r).is_superset(&names(&["s-zephyr", "h-zephyr"])),
        "\"zeph\" as typed finds the titles starting with it: {:?}",
        ids(&r)
    );
    assert_matches(index, &exact("zeph"), &[], "\"zeph \" (a finished word)").await;
    let typo = all_of(SearchQuery::text("samsnug"));
    let r = search(index, &typo).await;
    assert!(
        set(&r).contains("p-galaxy"),
        "\"samsnug\" with typo tolerance finds the Samsung: {:?}",
        ids(&r)
    );
    assert_matches(
        index,
        &exact("samsnug"),
        &[],
        "\"samsnug \" without typo tolerance",
    )
    .await;
}

async fn each_filter_holds(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    let f = SearchFilters::default;
    let usd = |min: Option<&str>, max: Option<&str>| PriceRange {
        min: min.map(money),
        max: max.map(money),
    };
    let checks: Vec<(&str, SearchFilters, Vec<&str>)> = vec![
        (
            "category Audio",
            SearchFilters {
                category: Some(path("Audio")),
                ..f()
            },
            vec![
                "s-zephyr", "s-boom", "h-zephyr", "h-quiet", "a-cable", "e-euro",
            ],
        ),
        (
            "category Audio > Headphones",
            SearchFilters {
                category: Some(path("Audio > Headphones")),
                ..f()
            },
            vec!["h-zephyr", "h-quiet"],
        ),
        (
            "category Phones (not Phones Accessories)",
            SearchFilters {
                category: Some(path("Phones")),
                ..f()
            },
            vec!["p-pixel", "p-galaxy", "p-iphone"],
        ),
        (
            "category with no products",
            SearchFilters {
                category: Some(path("Garden")),
                ..f()
            },
            vec![],
        ),
        (
            "brands Acme or Bose",
            SearchFilters {
                brands: vec!["Acme".into(), "Bose".into()],
                ..f()
            },
            vec![
                "s-zephyr", "h-zephyr", "a-cable", "c-case", "e-euro", "h-quiet",
            ],
        ),
        (
            "brand acme (brands are exact)",
            SearchFilters {
                brands: vec!["acme".into()],
                ..f()
            },
            vec![],
        ),
        (
            "price 49.00 to 120.00 USD (inclusive)",
            SearchFilters {
                price: usd(Some("49.00 USD"), Some("120.00 USD")),
                ..f()
            },
            vec!["s-zephyr", "s-boom", "h-zephyr"],
        ),
        (
            "price from 500.00 USD",
            SearchFilters {
                price: usd(Some("500.00 USD"), None),
                ..f()
            },
            vec!["p-pixel", "p-iphone"],
        ),
        (
            "price up to 279.00 USD (the lowest variant price)",
            SearchFilters {
                price: usd(None, Some("279.00 USD")),
                ..f()
            },
            vec![
                "s-zephyr", "s-boom", "h-zephyr", "h-quiet", "a-cable", "c-case",
            ],
        ),
        (
            "price 0 to 100 EUR (its currency only)",
            SearchFilters {
                price: usd(Some("0.00 EUR"), Some("100.00 EUR")),
                ..f()
            },
            vec!["e-euro"],
        ),
        (
            "price up to -1.00 USD",
            SearchFilters {
                price: usd(None, Some("-1.00 USD")),
                ..f()
            },
            vec![],
        ),
        (
            "price from 100.00 to 50.00 USD",
            SearchFilters {
                price: usd(Some("100.00 USD"), Some("50.00 USD")),
                ..f()
            },
            vec![],
        ),
        (
            "rating at least 4.0 (unrated never)",
            SearchFilters {
                min_rating: Some(Rating::from_tenths(40).unwrap_or_else(|e| panic!("{e}"))),
                ..f()
            },
            vec![
                "s-zephyr", "h-zephyr", "h-quiet", "p-pixel", "p-iphone", "e-euro",
            ],
        ),
        (
            "color Black (product or variant)",
            SearchFilters {
                attributes: vec![("color".into(), "Black".into())],
                ..f()
            },
            vec!["s-zephyr", "h-quiet", "p-pixel", "p-iphone", "c-case"],
        ),
        (
            "color Silver (a variant's)",
            SearchFilters {
                attributes: vec![("color".into(), "Silver".into())],
                ..f()
            },
            vec!["h-quiet"],
        ),
        (
            "storage 256 (a number's text)",
            SearchFilters {
                attributes: vec![("storage".into(), "256".into())],
                ..f()
            },
            vec!["p-galaxy"],
        ),
        (
            "color Blue and storage 256",
            SearchFilters {
                attributes: vec![
                    ("color".into(), "Blue".into()),
                    ("storage".into(), "256".into()),
                ],
                ..f()
            },
            vec!["p-galaxy"],
        ),
        (
            "color Black and storage 256",
            SearchFilters {
                attributes: vec![
                    ("color".into(), "Black".into()),
                    ("storage".into(), "256".into()),
                ],
                ..f()
            },
            vec![],
        ),
        (
            "in stock",
            SearchFilters {
                in_stock_only: true,
                ..f()
            },
            vec![
                "s-zephyr", "h-zephyr", "h-quiet", "a-cable", "p-pixel", "p-iphone", "c-case",
                "e-euro",
            ],
        ),
    ];
    for (what, filters, expected) in checks {
        assert_matches(index, &filtered(filters), &expected, what).await;
    }
}

async fn filters_combine_with_text(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    let q = SearchQuery {
        filters: SearchFilters {
            category: Some(path("Audio")),
            brands: vec!["Acme".into()],
            in_stock_only: true,
            ..SearchFilters::default()
        },
        ..exact("speaker")
    };
    assert_matches(
        index,
        &q,
        &["s-zephyr", "e-euro"],
        "speaker, Audio, Acme, in stock",
    )
    .await;
    let q = SearchQuery {
        filters: SearchFilters {
            price: PriceRange {
                min: None,
                max: Some(money("100.00 USD")),
            },
            ..SearchFilters::default()
        },
        ..exact("zephyr")
    };
    assert_matches(
        index,
        &q,
        &["s-zephyr", "h-zephyr"],
        "zephyr up to 100.00 USD",
    )
    .await;
}

async fn hits_carry_the_products_fields(env: Env<'_>) {
    let (_ctx, index, products) = loaded(&env).await;
    let r = search(&*index, &all_of(SearchQuery::default())).await;
    assert_eq!(r.hits.len(), 10);
    for h in &r.hits {
        let p = products
            .iter()
            .find(|p| p.id == h.product_id)
            .unwrap_or_else(|| panic!("a hit for an unknown product {}", h.product_id));
        assert_eq!(
            (&h.slug, &h.title, &h.brand, &h.category, h.price, h.rating),
            (
                &p.slug,
                &p.title,
                &p.brand,
                &p.category,
                p.min_price(),
                p.rating
            ),
            "the hit of {}",
            p.id
        );
    }
    let quiet = r
        .hits
        .iter()
        .find(|h| h.product_id.as_str() == "h-quiet")
        .map(|h| h.price);
    assert_eq!(quiet, Some(money("279.00 USD")), "the lowest variant price");
}

async fn explicit_sorts_give_their_exact_order(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let orders: [(SortOrder, [&str; 10]); 4] = [
        (
            SortOrder::PriceAscending,
            [
                "a-cable", "c-case", "s-zephyr", "e-euro", "h-zephyr", "s-boom", "h-quiet",
                "p-galaxy", "p-pixel", "p-iphone",
            ],
        ),
        (
            SortOrder::PriceDescending,
            [
                "p-iphone", "p-pixel", "p-galaxy", "h-quiet", "s-boom", "h-zephyr", "e-euro",
                "s-zephyr", "c-case", "a-cable",
            ],
        ),
        (
            SortOrder::Newest,
            [
                "e-euro", "c-case", "p-iphone", "p-galaxy", "p-pixel", "a-cable", "h-quiet",
                "h-zephyr", "s-boom", "s-zephyr",
            ],
        ),
        (
            SortOrder::Popularity,
            [
                "p-iphone", "h-quiet", "p-galaxy", "p-pixel", "s-zephyr", "h-zephyr", "e-euro",
                "c-case", "s-boom", "a-cable",
            ],
        ),
    ];
    for (sort, expected) in orders {
        let r = search(
            &*index,
            &all_of(SearchQuery {
                sort,
                ..SearchQuery::default()
            }),
        )
        .await;
        assert_eq!(ids(&r), expected, "{sort:?}");
        // With text: the order of the sort, not of relevance.
        let r = search(
            &*index,
            &SearchQuery {
                sort,
                ..exact("acme")
            },
        )
        .await;
        let want: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|id| ["s-zephyr", "h-zephyr", "a-cable", "c-case", "e-euro"].contains(id))
            .collect();
        assert_eq!(ids(&r), want, "\"acme\" by {sort:?}");
    }
}

/// The ids of `q` page by page by offset, pages of `size`.
async fn by_offset(index: &dyn SearchIndex, q: &SearchQuery, size: u32) -> Vec<String> {
    let mut out = Vec::new();
    for page in 0..20u32 {
        let r = search(
            index,
            &SearchQuery {
                offset: page * size,
                limit: size,
                ..q.clone()
            },
        )
        .await;
        assert_eq!(r.total, 10, "total on page {page} by offset of {q:?}");
        assert!(r.hits.len() <= size as usize);
        if r.hits.is_empty() {
            return out;
        }
        out.extend(ids(&r));
    }
    panic!("more than 20 pages of {size} for ten products");
}

async fn offset_pages_are_slices_of_one_order(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    for sort in [
        SortOrder::Relevance,
        SortOrder::PriceAscending,
        SortOrder::PriceDescending,
        SortOrder::Newest,
        SortOrder::Popularity,
    ] {
        let q = SearchQuery {
            sort,
            ..SearchQuery::default()
        };
        let whole = ids(&search(index, &all_of(q.clone())).await);
        assert_eq!(whole.len(), 10);
        for size in [1, 3, 4] {
            assert_eq!(
                by_offset(index, &q, size).await,
                whole,
                "{sort:?}: pages of {size} by offset"
            );
        }
        let past = search(
            index,
            &SearchQuery {
                offset: 50,
                ..q.clone()
            },
        )
        .await;
        assert_eq!(
            (past.hits.len(), past.total),
            (0, 10),
            "{sort:?}: an offset past the end"
        );
    }
    let whole = search(index, &all_of(SearchQuery::default())).await;
    assert_eq!(
        whole.next_cursor, None,
        "a page that is not full has no cursor"
    );
}

async fn cursor_pages_visit_every_match_once(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    for (sort, text) in [
        (SortOrder::Relevance, ""),
        (SortOrder::Relevance, "phone speaker headphones "),
        (SortOrder::PriceAscending, ""),
        (SortOrder::PriceDescending, ""),
        (SortOrder::Newest, ""),
        (SortOrder::Popularity, "zephyr pixel phone "),
    ] {
        let q = SearchQuery {
            sort,
            text: text.into(),
            typo_tolerance: false,
            ..SearchQuery::default()
        };
        let whole = search(index, &all_of(q.clone())).await;
        for size in [1u32, 3, 5] {
            let mut seen = Vec::new();
            let mut cursor = None;
            for page in 0.. {
                assert!(
                    page <= 12,
                    "{sort:?} {text:?}: more than 12 pages of {size}"
                );
                let r = search(
                    index,
                    &SearchQuery {
                        limit: size,
                        cursor: cursor.clone(),
                        // Ignored with a cursor.
                        offset: if cursor.is_some() { 2 } else { 0 },
                        ..q.clone()
                    },
                )
                .await;
                assert_eq!(
                    r.total, whole.total,
                    "{sort:?} {text:?}: total on page {page}"
                );
                seen.extend(ids(&r));
                if r.hits.len() < size as usize {
                    assert_eq!(r.next_cursor, None, "a page that is not full has no cursor");
                }
                match r.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(
                seen,
                ids(&whole),
                "{sort:?} {text:?}: following cursors by pages of {size}"
            );
        }
    }
}

fn counts(pairs: &[(&str, u64)]) -> Vec<FacetCount> {
    pairs
        .iter()
        .map(|(value, count)| FacetCount {
            value: (*value).to_owned(),
            count: *count,
        })
        .collect()
}

fn all_facets(bounds: &[Money]) -> FacetRequest {
    FacetRequest {
        brands: true,
        categories: true,
        price_buckets: bounds.to_vec(),
        ratings: true,
        attributes: vec!["color".into(), "size".into()],
    }
}

async fn facets_count_every_match(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    let bounds = [money("50.00 USD"), money("100.00 USD"), money("500.00 USD")];
    // A page of one: the facets still count every match.
    let r = search(
        index,
        &SearchQuery {
            facets: all_facets(&bounds),
            limit: 1,
            ..SearchQuery::default()
        },
    )
    .await;
    assert_eq!(r.total, 10);
    assert_eq!(
        r.facets.brands,
        counts(&[
            ("Acme", 5),
            ("Apple", 1),
            ("Bose", 1),
            ("Google", 1),
            ("Retrowave", 1),
            ("Samsung", 1)
        ]),
        "brands, most first, then by name"
    );
    assert_eq!(
        r.facets.categories,
        counts(&[("Audio", 6), ("Phones", 3), ("Phones Accessories", 1)]),
        "categories: the roots without a category filter"
    );
    let labels = [
        format!("<{}", bounds[0].amount()),
        format!("{}-{}", bounds[0].amount(), bounds[1].amount()),
        format!("{}-{}", bounds[1].amount(), bounds[2].amount()),
        format!(">={}", bounds[2].amount()),
    ];
    assert_eq!(
        r.facets.prices,
        counts(&[
            (&labels[0], 3),
            (&labels[1], 2),
            (&labels[2], 3),
            (&labels[3], 2)
        ]),
        "price buckets (by the lowest variant price, in minor units)"
    );
    assert_eq!(
        r.facets.ratings,
        counts(&[("4+", 6), ("3+", 8), ("2+", 9), ("1+", 9)]),
        "ratings"
    );
    let mut attributes = std::collections::BTreeMap::new();
    attributes.insert(
        "color".to_owned(),
        counts(&[
            ("Black", 5),
            ("Blue", 1),
            ("Green", 1),
            ("Red", 1),
            ("Silver", 1),
            ("White", 1),
        ]),
    );
    attributes.insert("size".to_owned(), Vec::new());
    assert_eq!(
        r.facets.attributes, attributes,
        "attributes: every asked name, its values most first"
    );
    // With text and a filter: counts over the matches only.
    let r = search(
        index,
        &SearchQuery {
            facets: all_facets(&bounds),
            limit: 1,
            filters: SearchFilters {
                price: PriceRange {
                    min: None,
                    max: Some(money("200.00 USD")),
                },
                ..SearchFilters::default()
            },
            ..exact("zephyr")
        },
    )
    .await;
    assert_eq!(r.total, 3);
    assert_eq!(
        r.facets.brands,
        counts(&[("Acme", 2), ("Retrowave", 1)]),
        "brands of \"zephyr\" up to 200.00 USD"
    );
    assert_eq!(r.facets.categories, counts(&[("Audio", 3)]));
    assert_eq!(
        r.facets.prices,
        counts(&[
            (&labels[0], 1),
            (&labels[1], 1),
            (&labels[2], 1),
            (&labels[3], 0)
        ]),
        "every bucket listed, zeros included"
    );
    assert_eq!(
        r.facets.ratings,
        counts(&[("4+", 2), ("3+", 3), ("2+", 3), ("1+", 3)])
    );
    // Facets not asked for are empty.
    let r = search(index, &SearchQuery::default()).await;
    assert_eq!(
        r.facets,
        crate::store::search::Facets::default(),
        "no facets asked, none counted"
    );
}

async fn category_facets_count_the_children_of_the_filter(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    let facets = FacetRequest {
        categories: true,
        ..FacetRequest::default()
    };
    let r = search(
        index,
        &SearchQuery {
            facets: facets.clone(),
            filters: SearchFilters {
                category: Some(path("Audio")),
                ..SearchFilters::default()
            },
            ..SearchQuery::default()
        },
    )
    .await;
    assert_eq!(r.total, 6, "six products in Audio");
    assert_eq!(
        r.facets.categories,
        counts(&[("Audio > Speakers", 3), ("Audio > Headphones", 2)]),
        "the children of Audio (the cable directly in Audio is in none)"
    );
    let r = search(
        index,
        &SearchQuery {
            facets,
            filters: SearchFilters {
                category: Some(path("Audio > Headphones")),
                ..SearchFilters::default()
            },
            ..SearchQuery::default()
        },
    )
    .await;
    assert_eq!(r.total, 2);
    assert_eq!(
        r.facets.categories,
        vec![],
        "a leaf category has no children"
    );
}

async fn personalization_only_reranks(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    let mut affinity = Affinity::default();
    affinity.brands.insert("Samsung".into(), 1.0);
    affinity.categories.insert(path("Phones > Apple"), 0.8);
    for text in ["", "phone ", "zephyr pixel "] {
        let plain = SearchQuery {
            facets: FacetRequest {
                brands: true,
                ..FacetRequest::default()
            },
            ..exact(text)
        };
        let mine = SearchQuery {
            personalization: Some(affinity.clone()),
            ..plain.clone()
        };
        let a = search(index, &plain).await;
        let b = search(index, &mine).await;
        assert_eq!(set(&a), set(&b), "{text:?}: the same matches");
        assert_eq!(a.total, b.total, "{text:?}: the same total");
        assert_eq!(a.facets, b.facets, "{text:?}: the same facets");
    }
}

async fn highlighting_marks_the_matched_words(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    let r = search(
        index,
        &SearchQuery {
            highlight: true,
            ..exact("zephyr")
        },
    )
    .await;
    assert_eq!(r.total, 3);
    for h in &r.hits {
        if h.title.to_lowercase().contains("zephyr") {
            let snippet = h.snippet.as_deref().unwrap_or_else(|| {
                panic!("{}: no snippet though highlight was asked", h.product_id)
            });
            assert!(
                snippet.to_lowercase().contains("<mark>zephyr</mark>"),
                "{}: the snippet {snippet:?} does not mark the word",
                h.product_id
            );
        }
    }
    let r = search(index, &exact("zephyr")).await;
    assert!(
        r.hits.iter().all(|h| h.snippet.is_none()),
        "no snippets unless asked: {:?}",
        r.hits
    );
}

async fn autocomplete_suggests_by_word_prefixes(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    let has = |list: &[crate::store::search::Suggestion], kind, text: &str| {
        list.iter().any(|s| s.kind == kind && s.text == text)
    };
    for typed in ["zep", "ZEP", "zephyr", "studio zep"] {
        let s = must!(
            index.autocomplete(typed, 10).await,
            "autocomplete({typed:?})"
        );
        assert!(s.len() <= 10, "{typed:?}: at most the limit");
        let want = if typed == "studio zep" {
            vec!["Zephyr Studio Headphones"]
        } else {
            vec!["Zephyr Wireless Speaker", "Zephyr Studio Headphones"]
        };
        for title in want {
            assert!(
                has(&s, SuggestionKind::Title, title),
                "{typed:?} suggests the title {title:?}: {s:?}"
            );
        }
        assert!(
            !s.iter().any(|s| s.text == "Zephyr Prototype"),
            "{typed:?}: a draft's title is never suggested: {s:?}"
        );
    }
    let s = must!(index.autocomplete("acm", 10).await, "autocomplete");
    assert!(has(&s, SuggestionKind::Brand, "Acme"), "a brand: {s:?}");
    let s = must!(index.autocomplete("headph", 10).await, "autocomplete");
    assert!(
        has(&s, SuggestionKind::Category, "Headphones"),
        "a category name: {s:?}"
    );
    let mut texts: Vec<(SuggestionKind, &str)> =
        s.iter().map(|s| (s.kind, s.text.as_str())).collect();
    let before = texts.len();
    texts.sort_by_key(|(k, t)| (format!("{k:?}"), t.to_string()));
    texts.dedup();
    assert_eq!(texts.len(), before, "each text once per kind: {s:?}");
    let one = must!(index.autocomplete("zep", 1).await, "autocomplete");
    assert_eq!(one.len(), 1, "a limit of 1: {one:?}");
    for (typed, limit) in [("zep", 0), ("", 10), ("   ", 10), ("--- !!", 10)] {
        let s = must!(index.autocomplete(typed, limit).await, "autocomplete");
        assert!(s.is_empty(), "{typed:?} limit {limit}: none, got {s:?}");
    }
    let many = must!(index.autocomplete("a", 1000).await, "autocomplete");
    assert!(
        many.len() as u32 <= crate::store::search::MAX_SUGGESTIONS,
        "at most {} suggestions",
        crate::store::search::MAX_SUGGESTIONS
    );
}

async fn similar_products_exclude_the_product_and_unsearchable_ones(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    let similar = must!(index.similar(&pid("h-zephyr"), 10).await, "similar");
    let found: BTreeSet<String> = similar.iter().map(|h| h.product_id.to_string()).collect();
    assert!(
        !found.contains("h-zephyr"),
        "never the product itself: {found:?}"
    );
    assert!(
        found.is_subset(&names(&ACTIVE)),
        "only searchable products: {found:?}"
    );
    assert!(
        found.contains("h-quiet") && found.contains("s-zephyr"),
        "the other headphones and the other Zephyr are similar: {found:?}"
    );
    assert!(similar.len() <= 10);
    let one = must!(index.similar(&pid("h-zephyr"), 1).await, "similar");
    assert_eq!(one.len(), 1, "a limit of 1");
    for (id, limit) in [("h-zephyr", 0), ("no-such-product", 10), ("d-draft", 10)] {
        let none = must!(
            index.similar(&pid(id), limit).await,
            "similar({id}, {limit})"
        );
        assert!(
            none.is_empty(),
            "similar({id}, {limit}): none, got {none:?}"
        );
    }
}

async fn bad_queries_are_validation_errors(env: Env<'_>) {
    let (_ctx, index, _) = loaded(&env).await;
    let index = &*index;
    let q = SearchQuery::default;
    let bad: Vec<(&str, SearchQuery)> = vec![
        ("limit 0", SearchQuery { limit: 0, ..q() }),
        ("limit 101", SearchQuery { limit: 101, ..q() }),
        (
            "limit u32::MAX",
            SearchQuery {
                limit: u32::MAX,
                ..q()
            },
        ),
        (
            "offset 10001",
            SearchQuery {
                offset: 10_001,
                ..q()
            },
        ),
        (
            "offset u32::MAX",
            SearchQuery {
                offset: u32::MAX,
                ..q()
            },
        ),
        (
            "a foreign cursor",
            SearchQuery {
                cursor: Some("not-a-cursor".into()),
                ..q()
            },
        ),
        (
            "an empty cursor",
            SearchQuery {
                cursor: Some(String::new()),
                ..q()
            },
        ),
        (
            "a dotted cursor",
            SearchQuery {
                cursor: Some("0.0.0.0.0".into()),
                ..q()
            },
        ),
        (
            "a price range in two currencies",
            SearchQuery {
                filters: SearchFilters {
                    price: PriceRange {
                        min: Some(money("1.00 USD")),
                        max: Some(money("100.00 EUR")),
                    },
                    ..SearchFilters::default()
                },
                ..q()
            },
        ),
        (
            "price buckets descending",
            SearchQuery {
                facets: FacetRequest {
                    price_buckets: vec![money("100.00 USD"), money("50.00 USD")],
                    ..FacetRequest::default()
                },
                ..q()
            },
        ),
        (
            "price buckets repeated",
            SearchQuery {
                facets: FacetRequest {
                    price_buckets: vec![money("50.00 USD"), money("50.00 USD")],
                    ..FacetRequest::default()
                },
                ..q()
            },
        ),
        (
            "price buckets in two currencies",
            SearchQuery {
                facets: FacetRequest {
                    price_buckets: vec![money("50.00 USD"), money("100.00 EUR")],
                    ..FacetRequest::default()
                },
                ..q()
            },
        ),
    ];
    for (what, query) in bad {
        assert_err!(
            index.search(&query).await,
            Error::Validation { .. },
            "search with {what}"
        );
    }
    assert_eq!(count(index).await, 10, "bad queries change nothing");
    // The edges that are fine.
    for (what, query) in [
        ("limit 100", SearchQuery { limit: 100, ..q() }),
        (
            "offset 10000",
            SearchQuery {
                offset: 10_000,
                ..q()
            },
        ),
    ] {
        must!(index.search(&query).await, "search with {what}");
    }
}
