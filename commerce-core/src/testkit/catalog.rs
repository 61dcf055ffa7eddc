//! The [`CatalogStore`](crate::store::CatalogStore) suite, with the `ProductChanged`
//! events it appends.
//!
//! Checks: inserts return exactly [`NewProduct::into_product`] at the store clock's now
//! and append one event; invalid input and conflicts (`Product` id, `Slug`, `Variant`)
//! write nothing; slug/SKU/id uniqueness under concurrent inserts; `create_product` finds
//! free slugs under concurrency; optimistic updates (version + 1, `created_at` kept,
//! `updated_at` = now, stale versions refused, exactly one of N concurrent updates wins);
//! status transitions; uniqueness on update (freed slugs and SKUs can be reused);
//! keyset pagination visits every product exactly once; status/attribute filters;
//! category subtrees without sibling-prefix traps (`A > B` never lists `A > Bc` or
//! `A > B & C`); categories by subtree; and that an event is never visible before its
//! change, with exactly one event per successful write; `get_products` (the batch read)
//! answers what `get_product` does, in order, once per id; `skus_on_sale` answers what
//! `get_product_by_sku` says, per SKU and in order, through status changes and a
//! removed variant.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::builder::{Area, StoreBuilder};
use super::check::{assert_err, concurrently, join, must};
use super::fixtures::{new_product, path, pid, sku};
use super::runner::{Case, Ctx, Env, Settings, cases, run_one_area};
use crate::catalog::{
    AttributeValue, Category, CategoryTree, NewProduct, Product, ProductStatus, Slug,
};
use crate::error::{EntityKind, Error};
use crate::event::DomainEvent;
use crate::id::{CategoryId, ProductId};
use crate::store::{CatalogStoreExt, ProductQuery};

/// Runs every catalog case against `builder`'s stores; panics listing the failed cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    run_one_area(builder, settings, Area::Catalog, cases()).await;
}

pub(crate) fn cases() -> Vec<Case> {
    cases![
        insert_returns_the_stored_product,
        insert_rejects_invalid_input_and_writes_nothing,
        insert_conflicts_write_nothing,
        bulk_insert_stores_what_single_inserts_store,
        bulk_insert_conflicts_write_nothing,
        concurrent_inserts_keep_ids_unique,
        concurrent_inserts_keep_slugs_unique,
        concurrent_inserts_keep_skus_unique,
        create_product_finds_free_slugs_concurrently,
        update_bumps_version_and_keeps_created_at,
        update_rejects_a_stale_version,
        concurrent_updates_exactly_one_wins,
        update_enforces_status_transitions,
        update_of_unknown_product_is_not_found,
        update_keeps_slugs_and_skus_unique,
        update_rejects_invalid_content,
        lookups_of_missing_products_are_none,
        batch_reads_match_single_reads,
        skus_on_sale_match_the_product_reads,
        listing_visits_every_product_exactly_once,
        listing_filters_by_status_and_attributes,
        category_listing_selects_exactly_the_subtree,
        listing_rejects_bad_limits,
        categories_are_listed_by_subtree,
        put_categories_refuses_hostile_trees,
        events_never_precede_their_change,
    ]
}

fn slug(s: &str) -> Slug {
    Slug::new(s).unwrap_or_else(|e| panic!("test slug {s:?}: {e}"))
}

fn changed(id: &str, version: u64) -> DomainEvent {
    DomainEvent::ProductChanged {
        product_id: pid(id),
        version,
    }
}

async fn insert(ctx: &Ctx, id: &str, s: &str, category: &str, skus: &[&str]) -> Product {
    let new = new_product(id, &format!("Product {id}"), category, skus);
    must!(
        ctx.catalog().insert_product(new, slug(s)).await,
        "insert_product({id}, slug {s})"
    )
}

async fn stored(ctx: &Ctx, id: &str) -> Option<Product> {
    must!(
        ctx.catalog().get_product(&pid(id)).await,
        "get_product({id})"
    )
}

async fn insert_returns_the_stored_product(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    ctx.advance(Duration::from_secs(5));
    let now = ctx.now();
    let mark = ctx.event_mark().await;
    let mut new = new_product(
        "p-1",
        "Phone One",
        "Electronics > Phones",
        &["PH-1", "PH-1-B"],
    );
    new.description = "A phone.\nWith two lines.".into();
    new.images = vec!["https://img.example/p1.jpg".into()];
    new.attributes
        .insert("color".into(), AttributeValue::Text("Black".into()));
    new.attributes
        .insert("screen_inches".into(), AttributeValue::Number(6.5));
    new.attributes
        .insert("waterproof".into(), AttributeValue::Bool(true));
    let expected = must!(
        new.clone().into_product(slug("phone-one"), now),
        "reference into_product"
    );
    let p = must!(
        catalog.insert_product(new, slug("phone-one")).await,
        "insert_product"
    );
    assert_eq!(
        p, expected,
        "insert_product must return NewProduct::into_product(slug, store clock now): version 1, created_at = updated_at = now"
    );
    assert_eq!(
        stored(&ctx, "p-1").await.as_ref(),
        Some(&expected),
        "get_product after insert"
    );
    assert_eq!(
        must!(
            catalog.get_product_by_slug(&slug("phone-one")).await,
            "get_product_by_slug"
        )
        .as_ref(),
        Some(&expected),
        "get_product_by_slug after insert"
    );
    for s in ["PH-1", "PH-1-B"] {
        assert_eq!(
            must!(
                catalog.get_product_by_sku(&sku(s)).await,
                "get_product_by_sku"
            )
            .as_ref(),
            Some(&expected),
            "get_product_by_sku({s}) must find the product of every variant"
        );
    }
    assert_eq!(
        ctx.events_since(mark).await,
        vec![changed("p-1", 1)],
        "insert_product must append exactly one ProductChanged(version 1)"
    );
}

async fn insert_rejects_invalid_input_and_writes_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let mark = ctx.event_mark().await;
    let base = new_product("p-bad", "Bad", "A > B", &["BAD-1", "BAD-2"]);

    let mut empty_title = base.clone();
    empty_title.title = String::new();
    assert_err!(
        catalog.insert_product(empty_title, slug("bad")).await,
        Error::Validation { .. },
        "insert_product with an empty title"
    );

    let mut repeated = base.clone();
    repeated.variants[1].sku = sku("BAD-1");
    assert_err!(
        catalog.insert_product(repeated, slug("bad")).await,
        Error::Validation { .. },
        "insert_product with a SKU repeated within the product"
    );

    let mut euro = base.clone();
    euro.variants[1].price = "1.00 EUR".parse().expect("valid");
    assert_err!(
        catalog.insert_product(euro, slug("bad")).await,
        Error::CurrencyMismatch { .. },
        "insert_product with a variant in another currency"
    );

    let mut no_variants = base.clone();
    no_variants.variants.clear();
    assert_err!(
        catalog.insert_product(no_variants, slug("bad")).await,
        Error::Validation { .. },
        "insert_product without variants"
    );

    assert_eq!(
        stored(&ctx, "p-bad").await,
        None,
        "a rejected insert wrote the product"
    );
    assert_eq!(
        must!(catalog.get_product_by_slug(&slug("bad")).await, "by slug"),
        None,
        "a rejected insert took its slug"
    );
    for s in ["BAD-1", "BAD-2"] {
        assert_eq!(
            must!(catalog.get_product_by_sku(&sku(s)).await, "by sku"),
            None,
            "a rejected insert took SKU {s}"
        );
    }
    assert_eq!(
        ctx.events_since(mark).await,
        vec![],
        "a rejected insert appended an event"
    );
}

async fn bulk_insert_stores_what_single_inserts_store(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    ctx.advance(Duration::from_secs(5));
    let now = ctx.now();
    let mark = ctx.event_mark().await;
    let batch: Vec<(NewProduct, Slug)> = (0..40)
        .map(|i| {
            let mut new = new_product(
                &format!("b-{i:02}"),
                &format!("Bulk {i}"),
                if i % 2 == 0 { "A > B" } else { "A > C" },
                &[&format!("BK-{i}"), &format!("BK-{i}-X")],
            );
            new.attributes
                .insert("n".into(), AttributeValue::Number(f64::from(i)));
            (new, slug(&format!("bulk-{i}")))
        })
        .collect();
    let expected: Vec<Product> = batch
        .iter()
        .map(|(new, s)| must!(new.clone().into_product(s.clone(), now), "into_product"))
        .collect();
    let stored_batch = must!(
        catalog.insert_products(batch).await,
        "insert_products(40 products)"
    );
    assert_eq!(
        stored_batch, expected,
        "insert_products must return each NewProduct::into_product(slug, now), in order"
    );
    for p in &expected {
        assert_eq!(
            stored(&ctx, p.id.as_str()).await.as_ref(),
            Some(p),
            "get_product after insert_products"
        );
        assert_eq!(
            must!(
                catalog.get_product_by_sku(&p.variants[1].sku).await,
                "by sku"
            )
            .as_ref(),
            Some(p),
            "get_product_by_sku after insert_products"
        );
    }
    let listed = must!(
        catalog
            .list_all_products(&ProductQuery::in_category(path("A > B")))
            .await,
        "list A > B"
    );
    assert_eq!(
        listed.len(),
        20,
        "the subtree listing sees the bulk-inserted products"
    );
    let events = ctx.events_since(mark).await;
    assert_eq!(
        events.len(),
        40,
        "one ProductChanged per product: {events:?}"
    );
    for p in &expected {
        assert!(
            events.contains(&changed(p.id.as_str(), 1)),
            "insert_products appends ProductChanged for {}",
            p.id
        );
    }
    assert_eq!(
        must!(catalog.insert_products(Vec::new()).await, "empty batch"),
        vec![],
        "an empty batch stores nothing"
    );
}

async fn bulk_insert_conflicts_write_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let first = insert(&ctx, "p-1", "one", "A", &["A-1"]).await;
    let mark = ctx.event_mark().await;
    let fresh = |id: &str, sku: &str| (new_product(id, "Fresh", "A", &[sku]), slug(id));
    type Batch = Vec<(NewProduct, Slug)>;
    let cases: Vec<(&str, Batch, EntityKind)> = vec![
        (
            "a stored product id",
            vec![
                fresh("n-1", "N-1"),
                (new_product("p-1", "X", "A", &["N-2"]), slug("n-2")),
            ],
            EntityKind::Product,
        ),
        (
            "a stored slug",
            vec![
                fresh("n-1", "N-1"),
                (new_product("n-2", "X", "A", &["N-2"]), slug("one")),
            ],
            EntityKind::Slug,
        ),
        (
            "a stored SKU",
            vec![fresh("n-1", "N-1"), fresh("n-2", "A-1")],
            EntityKind::Variant,
        ),
        (
            "an id twice in the batch",
            vec![
                fresh("n-1", "N-1"),
                (new_product("n-1", "X", "A", &["N-2"]), slug("n-2")),
            ],
            EntityKind::Product,
        ),
        (
            "a slug twice in the batch",
            vec![
                fresh("n-1", "N-1"),
                (new_product("n-2", "X", "A", &["N-2"]), slug("n-1")),
            ],
            EntityKind::Slug,
        ),
        (
            "a SKU twice in the batch",
            vec![fresh("n-1", "N-1"), fresh("n-2", "N-1")],
            EntityKind::Variant,
        ),
    ];
    for (what, batch, kind) in cases {
        match catalog.insert_products(batch).await {
            Err(Error::Conflict { kind: k, .. }) if k == kind => {}
            other => panic!(
                "insert_products with {what}: expected Conflict {{ {kind:?} }}, got {other:?}"
            ),
        }
        for id in ["n-1", "n-2"] {
            assert_eq!(
                stored(&ctx, id).await,
                None,
                "a batch with {what} wrote {id}"
            );
        }
    }
    let mut invalid = new_product("n-2", "X", "A", &["N-2"]);
    invalid.title = String::new();
    assert_err!(
        catalog
            .insert_products(vec![fresh("n-1", "N-1"), (invalid, slug("n-2"))])
            .await,
        Error::Validation { .. },
        "insert_products with an invalid product"
    );
    assert_eq!(
        stored(&ctx, "n-1").await,
        None,
        "an invalid batch wrote n-1"
    );
    assert_eq!(
        stored(&ctx, "p-1").await,
        Some(first),
        "the stored product changed"
    );
    assert_eq!(
        ctx.events_since(mark).await,
        vec![],
        "refused batches appended events"
    );
}

async fn insert_conflicts_write_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let first = insert(&ctx, "p-1", "one", "A", &["A-1", "A-2"]).await;
    let mark = ctx.event_mark().await;

    let same_id = new_product("p-1", "Other", "A", &["B-1"]);
    assert_err!(
        catalog.insert_product(same_id, slug("other")).await,
        Error::Conflict {
            kind: EntityKind::Product,
            ..
        },
        "insert_product with a taken product id"
    );
    let same_slug = new_product("p-2", "Other", "A", &["B-1"]);
    assert_err!(
        catalog.insert_product(same_slug, slug("one")).await,
        Error::Conflict {
            kind: EntityKind::Slug,
            ..
        },
        "insert_product with a taken slug"
    );
    let same_sku = new_product("p-3", "Other", "A", &["B-1", "A-2"]);
    assert_err!(
        catalog.insert_product(same_sku, slug("three")).await,
        Error::Conflict {
            kind: EntityKind::Variant,
            ..
        },
        "insert_product with a SKU of another product"
    );

    assert_eq!(
        stored(&ctx, "p-1").await,
        Some(first),
        "the first product changed"
    );
    for id in ["p-2", "p-3"] {
        assert_eq!(
            stored(&ctx, id).await,
            None,
            "a conflicting insert wrote {id}"
        );
    }
    for s in ["other", "three"] {
        assert_eq!(
            must!(catalog.get_product_by_slug(&slug(s)).await, "by slug"),
            None,
            "a conflicting insert took slug {s}"
        );
    }
    assert_eq!(
        must!(catalog.get_product_by_sku(&sku("B-1")).await, "by sku"),
        None,
        "a conflicting insert took SKU B-1"
    );
    assert_eq!(
        ctx.events_since(mark).await,
        vec![],
        "conflicting inserts appended events"
    );
}

/// Runs `n` concurrent inserts made by `make(i)`; checks exactly one wins and the others
/// fail with a conflict of `kind`.
async fn one_insert_wins(
    ctx: &Ctx,
    n: usize,
    kind: EntityKind,
    make: fn(usize) -> (NewProduct, Slug),
) -> Product {
    let mark = ctx.event_mark().await;
    let catalog = ctx.catalog();
    let results = concurrently(n, |i| {
        let catalog = catalog.clone();
        let (new, s) = make(i);
        async move { catalog.insert_product(new, s).await }
    })
    .await;
    let winners: Vec<&Product> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "{n} concurrent inserts competing for one {kind}: exactly one must win, got {results:#?}"
    );
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, Error::Conflict { kind: k, .. } if *k == kind),
                "a losing concurrent insert must be Conflict {{ kind: {kind:?} }}, got {e:?}"
            );
        }
    }
    let winner = winners[0].clone();
    assert_eq!(
        ctx.events_since(mark).await,
        vec![changed(winner.id.as_str(), 1)],
        "exactly the winning insert appends an event"
    );
    winner
}

async fn concurrent_inserts_keep_ids_unique(env: Env<'_>) {
    let ctx = env.ctx().await;
    let winner = one_insert_wins(&ctx, 16, EntityKind::Product, |i| {
        (
            new_product("p-same", "Same", "A", &[&format!("S-{i}")]),
            slug(&format!("s-{i}")),
        )
    })
    .await;
    assert_eq!(stored(&ctx, "p-same").await, Some(winner));
}

async fn concurrent_inserts_keep_slugs_unique(env: Env<'_>) {
    let ctx = env.ctx().await;
    let winner = one_insert_wins(&ctx, 16, EntityKind::Slug, |i| {
        (
            new_product(&format!("p-{i}"), "Same", "A", &[&format!("S-{i}")]),
            slug("same"),
        )
    })
    .await;
    assert_eq!(
        must!(
            ctx.catalog().get_product_by_slug(&slug("same")).await,
            "by slug"
        ),
        Some(winner)
    );
}

async fn concurrent_inserts_keep_skus_unique(env: Env<'_>) {
    let ctx = env.ctx().await;
    let winner = one_insert_wins(&ctx, 16, EntityKind::Variant, |i| {
        (
            new_product(&format!("p-{i}"), "Same", "A", &["SAME"]),
            slug(&format!("s-{i}")),
        )
    })
    .await;
    assert_eq!(
        must!(
            ctx.catalog().get_product_by_sku(&sku("SAME")).await,
            "by sku"
        ),
        Some(winner)
    );
}

async fn create_product_finds_free_slugs_concurrently(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let n = 12;
    let results = concurrently(n, |i| {
        let catalog = catalog.clone();
        let new = new_product(&format!("p-{i:02}"), "Gadget", "A", &[&format!("G-{i}")]);
        async move { catalog.create_product(new).await }
    })
    .await;
    let slugs: BTreeSet<String> = results
        .iter()
        .map(|r| must!(r.as_ref(), "create_product").slug.to_string())
        .collect();
    let expected: BTreeSet<String> = std::iter::once("gadget".to_owned())
        .chain((2..=n).map(|k| format!("gadget-{k}")))
        .collect();
    assert_eq!(
        slugs, expected,
        "{n} concurrent create_product calls with one title must get gadget, gadget-2 ... gadget-{n} (a taken slug is Conflict {{ kind: Slug }})"
    );
}

async fn update_bumps_version_and_keeps_created_at(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let original = insert(&ctx, "p-1", "one", "A", &["A-1"]).await;
    ctx.advance(Duration::from_secs(60));
    let now = ctx.now();
    let mark = ctx.event_mark().await;
    let mut edit = original.clone();
    edit.title = "Renamed".into();
    edit.created_at = original.created_at + chrono::Duration::seconds(999);
    edit.updated_at = original.created_at;
    let updated = must!(catalog.update_product(edit.clone()).await, "update_product");
    let mut expected = edit;
    expected.version = 2;
    expected.created_at = original.created_at;
    expected.updated_at = now;
    assert_eq!(
        updated, expected,
        "update_product must store the content with version + 1, the original created_at and updated_at = now"
    );
    assert_eq!(stored(&ctx, "p-1").await, Some(expected));
    assert_eq!(
        ctx.events_since(mark).await,
        vec![changed("p-1", 2)],
        "update_product appends ProductChanged(version 2)"
    );
}

async fn update_rejects_a_stale_version(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let v1 = insert(&ctx, "p-1", "one", "A", &["A-1"]).await;
    let mut edit = v1.clone();
    edit.title = "Second".into();
    let v2 = must!(catalog.update_product(edit).await, "first update");
    let mark = ctx.event_mark().await;
    for version in [1, 3, 99] {
        let mut stale = v1.clone();
        stale.title = "Stale".into();
        stale.version = version;
        assert_err!(
            catalog.update_product(stale).await,
            Error::Conflict {
                kind: EntityKind::Product,
                ..
            },
            "update_product with version {version} while the stored version is 2"
        );
    }
    assert_eq!(
        stored(&ctx, "p-1").await,
        Some(v2),
        "a stale update changed the product"
    );
    assert_eq!(
        ctx.events_since(mark).await,
        vec![],
        "a stale update appended an event"
    );
}

async fn concurrent_updates_exactly_one_wins(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let v1 = insert(&ctx, "p-1", "one", "A", &["A-1"]).await;
    let mark = ctx.event_mark().await;
    let results = concurrently(16, |i| {
        let catalog = catalog.clone();
        let mut edit = v1.clone();
        edit.title = format!("Title {i}");
        async move { catalog.update_product(edit).await }
    })
    .await;
    let winners: Vec<&Product> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "16 concurrent updates from version 1: exactly one must win, got {results:#?}"
    );
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    Error::Conflict {
                        kind: EntityKind::Product,
                        ..
                    }
                ),
                "a losing update must be Conflict {{ kind: Product }}, got {e:?}"
            );
        }
    }
    assert_eq!(stored(&ctx, "p-1").await.as_ref(), Some(winners[0]));
    assert_eq!(ctx.events_since(mark).await, vec![changed("p-1", 2)]);
}

async fn update_enforces_status_transitions(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let draft = insert(&ctx, "p-1", "one", "A", &["A-1"]).await;
    assert_eq!(draft.status, ProductStatus::Draft);
    let mut activate = draft.clone();
    activate.status = ProductStatus::Active;
    let active = must!(catalog.update_product(activate).await, "DRAFT -> ACTIVE");
    assert_eq!(active.status, ProductStatus::Active);
    let mark = ctx.event_mark().await;
    let mut back = active.clone();
    back.status = ProductStatus::Draft;
    assert_err!(
        catalog.update_product(back).await,
        Error::InvalidTransition {
            entity: EntityKind::Product,
            ..
        },
        "ACTIVE -> DRAFT must be an invalid transition"
    );
    assert_eq!(
        stored(&ctx, "p-1").await,
        Some(active),
        "a refused transition changed the product"
    );
    assert_eq!(ctx.events_since(mark).await, vec![]);
    let archived = must!(
        catalog
            .set_product_status(&pid("p-1"), ProductStatus::Archived)
            .await,
        "ACTIVE -> ARCHIVED"
    );
    assert_eq!(
        (archived.status, archived.version),
        (ProductStatus::Archived, 3)
    );
    must!(
        catalog
            .set_product_status(&pid("p-1"), ProductStatus::Active)
            .await,
        "ARCHIVED -> ACTIVE"
    );
    assert_err!(
        catalog
            .set_product_status(&pid("p-1"), ProductStatus::Draft)
            .await,
        Error::InvalidTransition { .. },
        "ACTIVE -> DRAFT through set_product_status"
    );
}

async fn update_of_unknown_product_is_not_found(env: Env<'_>) {
    let ctx = env.ctx().await;
    let ghost = must!(
        new_product("p-ghost", "Ghost", "A", &["G-1"]).into_product(slug("ghost"), ctx.now()),
        "reference product"
    );
    let mark = ctx.event_mark().await;
    assert_err!(
        ctx.catalog().update_product(ghost).await,
        Error::NotFound {
            kind: EntityKind::Product,
            ..
        },
        "update_product of a product never inserted"
    );
    assert_eq!(
        stored(&ctx, "p-ghost").await,
        None,
        "update_product created a product"
    );
    assert_eq!(ctx.events_since(mark).await, vec![]);
}

async fn update_keeps_slugs_and_skus_unique(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let p1 = insert(&ctx, "p-1", "one", "A", &["A-1"]).await;
    let p2 = insert(&ctx, "p-2", "two", "A", &["B-1"]).await;

    let mut steal_slug = p2.clone();
    steal_slug.slug = slug("one");
    assert_err!(
        catalog.update_product(steal_slug).await,
        Error::Conflict {
            kind: EntityKind::Slug,
            ..
        },
        "update_product taking another product's slug"
    );
    let mut steal_sku = p2.clone();
    steal_sku.variants.push(p1.variants[0].clone());
    assert_err!(
        catalog.update_product(steal_sku).await,
        Error::Conflict {
            kind: EntityKind::Variant,
            ..
        },
        "update_product taking another product's SKU"
    );
    assert_eq!(
        stored(&ctx, "p-2").await,
        Some(p2.clone()),
        "a conflicting update changed p-2"
    );

    let mut reslug = p2.clone();
    reslug.slug = slug("two-new");
    let p2 = must!(catalog.update_product(reslug).await, "change own slug");
    assert_eq!(
        must!(
            catalog.get_product_by_slug(&slug("two")).await,
            "by old slug"
        ),
        None,
        "the old slug must be free after a slug change"
    );
    assert_eq!(
        must!(
            catalog.get_product_by_slug(&slug("two-new")).await,
            "by new slug"
        ),
        Some(p2.clone())
    );

    let mut resku = p1.clone();
    resku.variants[0].sku = sku("A-2");
    let p1 = must!(catalog.update_product(resku).await, "replace own SKU");
    assert_eq!(
        must!(catalog.get_product_by_sku(&sku("A-1")).await, "by old SKU"),
        None,
        "a removed variant's SKU must be free"
    );
    assert_eq!(
        must!(catalog.get_product_by_sku(&sku("A-2")).await, "by new SKU"),
        Some(p1)
    );
    let mut take_freed = p2.clone();
    let mut variant = take_freed.variants[0].clone();
    variant.sku = sku("A-1");
    take_freed.variants.push(variant);
    let p2 = must!(
        catalog.update_product(take_freed).await,
        "taking a freed SKU"
    );
    assert_eq!(
        must!(
            catalog.get_product_by_sku(&sku("A-1")).await,
            "by freed SKU"
        ),
        Some(p2)
    );
    let again = new_product("p-3", "Three", "A", &["C-1"]);
    must!(
        catalog.insert_product(again, slug("two")).await,
        "inserting under a freed slug"
    );
}

async fn update_rejects_invalid_content(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let p = insert(&ctx, "p-1", "one", "A", &["A-1"]).await;
    let mark = ctx.event_mark().await;
    let mut bad = p.clone();
    bad.title = "   ".into();
    assert_err!(
        catalog.update_product(bad).await,
        Error::Validation { .. },
        "update_product with a blank title"
    );
    let mut bad = p.clone();
    bad.variants.clear();
    assert_err!(
        catalog.update_product(bad).await,
        Error::Validation { .. },
        "update_product without variants"
    );
    assert_eq!(
        stored(&ctx, "p-1").await,
        Some(p),
        "an invalid update changed the product"
    );
    assert_eq!(ctx.events_since(mark).await, vec![]);
}

async fn lookups_of_missing_products_are_none(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    insert(&ctx, "p-1", "one", "A", &["A-1"]).await;
    assert_eq!(stored(&ctx, "p-2").await, None);
    assert_eq!(
        must!(catalog.get_product_by_slug(&slug("two")).await, "by slug"),
        None
    );
    assert_eq!(
        must!(catalog.get_product_by_sku(&sku("B-1")).await, "by sku"),
        None
    );
}

async fn batch_reads_match_single_reads(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    insert(&ctx, "p-1", "one", "A", &["A-1"]).await;
    insert(&ctx, "p-2", "two", "A > B", &["B-1", "B-2"]).await;
    insert(&ctx, "p-3", "three", "C", &["C-1"]).await;
    let active = must!(
        catalog
            .set_product_status(&pid("p-3"), ProductStatus::Active)
            .await,
        "activate p-3"
    );
    // Read once through the single read first (a cache then holds some of them).
    assert_eq!(stored(&ctx, "p-3").await, Some(active));
    let asked = [pid("p-3"), pid("p-9"), pid("p-1"), pid("p-3"), pid("p-2")];
    let batch = must!(
        catalog.get_products(&asked).await,
        "get_products(p-3, p-9, p-1, p-3, p-2)"
    );
    let mut expected = Vec::new();
    for id in ["p-3", "p-1", "p-2"] {
        expected.extend(stored(&ctx, id).await);
    }
    assert_eq!(
        batch, expected,
        "get_products must answer p-3, p-1, p-2 (missing p-9 skipped, repeated p-3 once) as get_product does"
    );
    assert_eq!(
        must!(catalog.get_products(&[]).await, "get_products([])"),
        vec![]
    );
    let too_many: Vec<ProductId> = (0..=crate::store::MAX_PAGE_SIZE)
        .map(|i| pid(&format!("p-{i}")))
        .collect();
    assert_err!(
        catalog.get_products(&too_many).await,
        Error::Validation { .. },
        "get_products of {} ids",
        too_many.len()
    );
}

/// What `get_product_by_sku` says about `s`: an active product that has the variant.
async fn on_sale_by_product(ctx: &Ctx, s: &str) -> bool {
    must!(
        ctx.catalog().get_product_by_sku(&sku(s)).await,
        "get_product_by_sku({s})"
    )
    .is_some_and(|p| p.is_active() && p.variant(&sku(s)).is_some())
}

async fn skus_on_sale_match_the_product_reads(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    insert(&ctx, "p-1", "one", "A", &["A-1"]).await;
    insert(&ctx, "p-2", "two", "A", &["B-1", "B-2"]).await;
    insert(&ctx, "p-3", "three", "C", &["C-1"]).await;
    for id in ["p-2", "p-3"] {
        must!(
            catalog
                .set_product_status(&pid(id), ProductStatus::Active)
                .await,
            "activate {id}"
        );
    }
    let asked = ["B-1", "A-1", "Z-9", "C-1", "B-1", "B-2"];
    let check = |want: [bool; 6], what: &'static str| {
        let ctx = &ctx;
        async move {
            let skus: Vec<_> = asked.iter().map(|s| sku(s)).collect();
            let got = must!(
                ctx.catalog().skus_on_sale(&skus).await,
                "skus_on_sale ({what})"
            );
            let mut by_product = Vec::new();
            for s in asked {
                by_product.push(on_sale_by_product(ctx, s).await);
            }
            assert_eq!(by_product, want, "get_product_by_sku of {asked:?} ({what})");
            assert_eq!(
                got, want,
                "skus_on_sale({asked:?}) must answer as get_product_by_sku ({what})"
            );
        }
    };
    check(
        [true, false, false, true, true, true],
        "p-1 draft, p-2 and p-3 active",
    )
    .await;
    must!(
        catalog
            .set_product_status(&pid("p-3"), ProductStatus::Archived)
            .await,
        "archive p-3"
    );
    let mut p2 = stored(&ctx, "p-2")
        .await
        .unwrap_or_else(|| panic!("p-2 is stored"));
    p2.variants.retain(|v| v.sku.as_str() != "B-2");
    must!(catalog.update_product(p2).await, "remove B-2 from p-2");
    check(
        [true, false, false, false, true, false],
        "p-3 archived, B-2 removed",
    )
    .await;
    must!(
        catalog
            .set_product_status(&pid("p-3"), ProductStatus::Active)
            .await,
        "re-activate p-3"
    );
    check([true, false, false, true, true, false], "p-3 active again").await;
    assert_eq!(
        must!(catalog.skus_on_sale(&[]).await, "skus_on_sale([])"),
        Vec::<bool>::new()
    );
    let too_many: Vec<_> = (0..=crate::store::MAX_PAGE_SIZE)
        .map(|i| sku(&format!("S-{i}")))
        .collect();
    assert_err!(
        catalog.skus_on_sale(&too_many).await,
        Error::Validation { .. },
        "skus_on_sale of {} SKUs",
        too_many.len()
    );
}

/// Follows the pages of `query` and checks keyset order; returns the ids seen.
async fn follow_pages(ctx: &Ctx, query: &ProductQuery) -> Vec<ProductId> {
    let catalog = ctx.catalog();
    let mut query = query.clone();
    let mut seen: Vec<ProductId> = Vec::new();
    for round in 0.. {
        assert!(round < 10_000, "pagination does not end");
        let page = must!(
            catalog.list_products(&query).await,
            "list_products({query:?})"
        );
        assert!(
            page.items.len() <= query.limit as usize,
            "a page holds at most `limit` items"
        );
        for p in &page.items {
            assert!(
                seen.last().is_none_or(|last| last < &p.id)
                    && query.after.as_ref().is_none_or(|a| a < &p.id),
                "list_products must return ascending ids after the cursor; got {} after {:?}",
                p.id,
                seen.last()
            );
            assert!(
                query.matches(p),
                "list_products returned {} which does not match {query:?}",
                p.id
            );
            seen.push(p.id.clone());
        }
        match page.next {
            Some(next) => {
                assert_eq!(
                    Some(&next),
                    page.items.last().map(|p| &p.id),
                    "next must be the last id of the page"
                );
                query.after = Some(next);
            }
            None => break,
        }
    }
    seen
}

async fn listing_visits_every_product_exactly_once(env: Env<'_>) {
    let ctx = env.ctx().await;
    let n = 23usize;
    // Inserted out of id order.
    for i in (0..n).map(|i| (i * 7) % n) {
        insert(
            &ctx,
            &format!("p-{i:03}"),
            &format!("s-{i}"),
            "A",
            &[&format!("S-{i}")],
        )
        .await;
    }
    let all: Vec<ProductId> = (0..n).map(|i| pid(&format!("p-{i:03}"))).collect();
    for limit in [1, 5, 22, 23, 24, 1000] {
        let query = ProductQuery {
            limit,
            ..ProductQuery::default()
        };
        assert_eq!(
            follow_pages(&ctx, &query).await,
            all,
            "following pages of {limit} must visit every product exactly once, in id order"
        );
    }
    // A last page that is exactly full has no `next`.
    let page = must!(
        ctx.catalog()
            .list_products(&ProductQuery {
                limit: 3,
                after: Some(pid("p-019")),
                ..ProductQuery::default()
            })
            .await,
        "last full page"
    );
    assert_eq!(page.items.len(), 3);
    assert_eq!(
        page.next, None,
        "next must be None on the last page, even when it is full"
    );
    let page = must!(
        ctx.catalog()
            .list_products(&ProductQuery {
                after: Some(pid("p-999")),
                ..ProductQuery::default()
            })
            .await,
        "after the last id"
    );
    assert!(page.items.is_empty() && page.next.is_none());
}

async fn listing_filters_by_status_and_attributes(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let mut products = Vec::new();
    for i in 0..12 {
        let mut new = new_product(&format!("p-{i:02}"), "Thing", "A > B", &[&format!("S-{i}")]);
        let color = ["red", "blue", "green"][i % 3];
        new.attributes
            .insert("color".into(), AttributeValue::Text(color.into()));
        new.attributes
            .insert("waterproof".into(), AttributeValue::Bool(i % 2 == 0));
        new.attributes
            .insert("size".into(), AttributeValue::Number((i % 4) as f64 + 0.5));
        new.status = [
            ProductStatus::Draft,
            ProductStatus::Active,
            ProductStatus::Archived,
            ProductStatus::Active,
        ][i % 4];
        products.push(must!(
            catalog.insert_product(new, slug(&format!("s-{i}"))).await,
            "insert"
        ));
    }
    let queries = [
        ProductQuery {
            status: Some(ProductStatus::Active),
            limit: 2,
            ..ProductQuery::default()
        },
        ProductQuery {
            attributes: vec![("color".into(), AttributeValue::Text("red".into()))],
            limit: 1,
            ..ProductQuery::default()
        },
        ProductQuery {
            status: Some(ProductStatus::Active),
            attributes: vec![
                ("waterproof".into(), AttributeValue::Bool(false)),
                ("size".into(), AttributeValue::Number(1.5)),
            ],
            category: Some(path("A")),
            limit: 2,
            ..ProductQuery::default()
        },
        ProductQuery {
            attributes: vec![("color".into(), AttributeValue::Text("purple".into()))],
            ..ProductQuery::default()
        },
    ];
    for query in queries {
        let expected: Vec<ProductId> = products
            .iter()
            .filter(|p| query.matches(p))
            .map(|p| p.id.clone())
            .collect();
        assert_eq!(
            follow_pages(&ctx, &query).await,
            expected,
            "list_products({query:?}) must list exactly the products ProductQuery::matches accepts"
        );
    }
}

/// Categories with products, full of sibling-prefix traps for `A > B`.
const TRAPS: [&str; 14] = [
    "A",
    "A > B",
    "A > B > C",
    "A > B > C > D",
    "A > B > Cx",
    "A > Bc",
    "A > B & C",
    "A > B-C",
    "A > B C",
    "A > B =",
    "A > b",
    "AB",
    "A B",
    "B > A > B",
];

async fn category_listing_selects_exactly_the_subtree(env: Env<'_>) {
    let ctx = env.ctx().await;
    let mut products = Vec::new();
    for (i, category) in TRAPS.iter().enumerate() {
        for k in 0..2 {
            // Ids interleave categories, so id order is not category order.
            let id = format!("p-{k}-{:02}", TRAPS.len() - i);
            products.push(
                insert(
                    &ctx,
                    &id,
                    &format!("s-{k}-{i}"),
                    category,
                    &[&format!("S-{k}-{i}")],
                )
                .await,
            );
        }
    }
    for root in ["A", "A > B", "A > B > C", "A > Bc", "A > b", "AB", "B", "Z"] {
        let root = path(root);
        let expected: Vec<ProductId> = {
            let mut ids: Vec<ProductId> = products
                .iter()
                .filter(|p| root.contains(&p.category))
                .map(|p| p.id.clone())
                .collect();
            ids.sort();
            ids
        };
        for limit in [1, 3, 100] {
            let query = ProductQuery {
                limit,
                ..ProductQuery::in_category(root.clone())
            };
            let got = follow_pages(&ctx, &query).await;
            assert_eq!(
                got, expected,
                "listing category {root} (page size {limit}) must return exactly its subtree (CategoryPath::contains), never siblings sharing a prefix"
            );
        }
    }
}

async fn listing_rejects_bad_limits(env: Env<'_>) {
    let ctx = env.ctx().await;
    for limit in [0, crate::store::MAX_PAGE_SIZE + 1] {
        assert_err!(
            ctx.catalog()
                .list_products(&ProductQuery {
                    limit,
                    ..ProductQuery::default()
                })
                .await,
            Error::Validation { .. },
            "list_products with limit {limit}"
        );
    }
}

async fn categories_are_listed_by_subtree(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let mut tree = CategoryTree::generated();
    for (i, t) in TRAPS.iter().enumerate() {
        tree.insert(Category {
            id: CategoryId::new(format!("trap{i}")).expect("valid"),
            path: path(t),
        });
        // Every parent too: put_categories refuses orphans.
        for (j, a) in path(t).ancestors().into_iter().enumerate() {
            tree.insert(Category {
                id: CategoryId::new(format!("trap{i}-{j}")).expect("valid"),
                path: a,
            });
        }
    }
    let all: Vec<Category> = tree.iter().cloned().collect();
    let written = must!(catalog.put_categories(&all).await, "put_categories");
    assert_eq!(
        (written.stored, written.unchanged, written.rejected),
        (all.len() as u64, 0, Vec::new()),
        "put_categories reports how many it stored"
    );
    let listed = must!(catalog.categories(None).await, "categories(None)");
    assert_eq!(
        listed, all,
        "categories(None) must list every category in byte-wise path order"
    );
    let again = must!(
        catalog.put_categories(&all).await,
        "re-importing the same tree"
    );
    assert_eq!(
        (again.stored, again.unchanged),
        (0, all.len() as u64),
        "re-importing the same tree stores nothing and counts every entry unchanged"
    );
    assert_eq!(
        must!(catalog.categories(None).await, "categories after re-import"),
        all,
        "re-importing the same tree must be idempotent"
    );
    for root in [
        "A > B",
        "Electronics",
        "Electronics > Phones",
        "A > Bc",
        "Nowhere",
    ] {
        let root = path(root);
        let expected: Vec<Category> = tree.subtree(&root).cloned().collect();
        assert_eq!(
            must!(catalog.categories(Some(&root)).await, "categories({root})"),
            expected,
            "categories({root}) must list the root and its subtree in path order, and nothing else"
        );
    }
    let renamed = Category {
        id: CategoryId::new("new-id").expect("valid"),
        path: path("A > B"),
    };
    assert_eq!(
        must!(
            catalog.put_categories(std::slice::from_ref(&renamed)).await,
            "replacing a category"
        )
        .stored,
        1,
        "giving a path a new id stores it"
    );
    let under = must!(
        catalog.categories(Some(&path("A > B"))).await,
        "after replace"
    );
    assert_eq!(
        under.first(),
        Some(&renamed),
        "put_categories replaces the category with the same path"
    );
    assert_eq!(
        must!(catalog.categories(None).await, "all after replace").len(),
        all.len()
    );
}

/// `put_categories` refuses duplicate ids, duplicate paths and orphans (also the
/// children of a refused entry) with typed reasons, writes the rest, and reports what it
/// stored.
async fn put_categories_refuses_hostile_trees(env: Env<'_>) {
    use crate::catalog::CategoryRejection as R;
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let cat = |id: &str, p: &str| Category {
        id: CategoryId::new(id).expect("valid"),
        path: path(p),
    };
    let first = must!(
        catalog
            .put_categories(&[cat("a", "A"), cat("b", "A > B")])
            .await,
        "put_categories"
    );
    assert_eq!((first.stored, first.rejected.len()), (2, 0));
    let batch = [
        cat("c", "A > C"),
        cat("a", "A > D"),     // id a is stored at A
        cat("c", "A > E"),     // id c given earlier in this batch
        cat("f", "A > C"),     // path A > C given to c earlier in this batch
        cat("g", "X > G"),     // no X
        cat("h", "A > D > H"), // parent A > D refused above
        cat("c", "A > C"),     // a repeat: unchanged
        cat("b", "A > B"),     // as stored: unchanged
    ];
    let report = must!(catalog.put_categories(&batch).await, "hostile batch");
    let reasons: Vec<(String, R)> = report
        .rejected
        .iter()
        .map(|r| (r.category.path.to_string(), r.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                "A > D".to_owned(),
                R::DuplicateId {
                    id: "a".to_owned(),
                    kept_path: "A".to_owned()
                }
            ),
            (
                "A > E".to_owned(),
                R::DuplicateId {
                    id: "c".to_owned(),
                    kept_path: "A > C".to_owned()
                }
            ),
            (
                "A > C".to_owned(),
                R::DuplicatePath {
                    kept_id: "c".to_owned()
                }
            ),
            (
                "X > G".to_owned(),
                R::Orphan {
                    parent: "X".to_owned()
                }
            ),
            (
                "A > D > H".to_owned(),
                R::Orphan {
                    parent: "A > D".to_owned()
                }
            ),
        ],
        "each refused entry with its typed reason, in input order"
    );
    assert_eq!(
        (report.stored, report.unchanged),
        (1, 2),
        "only A > C is stored; the repeat and the stored entry are unchanged"
    );
    let listed: Vec<(String, String)> = must!(catalog.categories(None).await, "categories")
        .into_iter()
        .map(|c| (c.id.to_string(), c.path.to_string()))
        .collect();
    assert_eq!(
        listed,
        [("a", "A"), ("b", "A > B"), ("c", "A > C")]
            .map(|(i, p)| (i.to_owned(), p.to_owned()))
            .to_vec(),
        "nothing refused was written"
    );
    // Moving an id: allowed when the same call gives its old path another id.
    let moved = must!(
        catalog
            .put_categories(&[cat("b2", "A > B"), cat("b", "A > C > B")])
            .await,
        "moving an id"
    );
    assert_eq!((moved.stored, moved.rejected.len()), (2, 0), "{moved:?}");
}

async fn events_never_precede_their_change(env: Env<'_>) {
    let ctx = env.ctx().await;
    let catalog = ctx.catalog();
    let events = ctx.events();
    let writers = 6usize;
    let updates = 8u64;
    for w in 0..writers {
        insert(
            &ctx,
            &format!("p-{w}"),
            &format!("s-{w}"),
            "A",
            &[&format!("S-{w}")],
        )
        .await;
    }
    let mark = ctx.event_mark().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let observer = {
        let catalog = catalog.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut cursor = mark;
            let mut checked = 0usize;
            loop {
                let done = stop.load(std::sync::atomic::Ordering::SeqCst);
                let page = events.read(cursor, 100).await.expect("EventLog::read");
                for e in &page {
                    cursor = e.id;
                    if let DomainEvent::ProductChanged {
                        product_id,
                        version,
                    } = &e.event
                    {
                        let p = catalog
                            .get_product(product_id)
                            .await
                            .expect("get_product")
                            .expect("the product of an event exists");
                        assert!(
                            p.version >= *version,
                            "event ProductChanged({product_id}, version {version}) was readable while the store still showed version {} (events must commit with their change)",
                            p.version
                        );
                        checked += 1;
                    }
                }
                if done && page.is_empty() {
                    return checked;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    concurrently(writers, |w| {
        let catalog = catalog.clone();
        async move {
            let id = pid(&format!("p-{w}"));
            for k in 0..updates {
                let mut p = catalog
                    .get_product(&id)
                    .await
                    .expect("get")
                    .expect("exists");
                p.popularity = k;
                catalog.update_product(p).await.expect("update_product");
            }
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let checked = join(observer, "the event observer").await;
    assert_eq!(checked, writers * updates as usize);
    let mut seen: BTreeMap<ProductId, Vec<u64>> = BTreeMap::new();
    for e in ctx.events_since(mark).await {
        if let DomainEvent::ProductChanged {
            product_id,
            version,
        } = e
        {
            seen.entry(product_id).or_default().push(version);
        }
    }
    for w in 0..writers {
        assert_eq!(
            seen.get(&pid(&format!("p-{w}"))),
            Some(&(2..=updates + 1).collect::<Vec<_>>()),
            "each successful update appends exactly one ProductChanged, in version order"
        );
    }
    assert_eq!(seen.len(), writers);
}
