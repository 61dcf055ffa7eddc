//! The [`ProductCache`] suite (area `product_cache`): one case per sentence of the
//! trait's contract.
//!
//! Checks: a key never put misses (by id and by slug); a product put is got by its id
//! and its slug, equal to what was put; a key never returns another product (a renamed
//! product misses under its old slug, a slug taken over names the new holder); an
//! older version never replaces a newer one, while the same or a newer version does;
//! `invalidate` removes the product under every key (other products stay) until the
//! next `put`, which is cached whatever its version; invalidating a product that is not
//! cached succeeds and changes nothing; an entry is served until its time-to-live after
//! the `put` that cached it and never after, after which any version may be put; a
//! `put` of the same version restarts the time-to-live while a rejected older one does
//! not; 16 concurrent puts of versions 1 to 16 leave version 16.
//!
//! The builder says how long its cache keeps an entry and by which clock
//! ([`CacheExpiry`]): a cache on the kit's clock is checked to the
//! millisecond; one on a server's clock (Redis `EX`) by waiting in real time, so give it
//! a time-to-live of a second or two.

use std::sync::Arc;
use std::time::Duration;

use super::builder::{Area, CacheExpiry, ExpiryClock, StoreBuilder};
use super::check::{concurrently, must};
use super::fixtures::{new_product, pid};
use super::runner::{Case, Ctx, Env, Settings, cases, run_one_area};
use crate::catalog::{Product, ProductStatus, Slug};
use crate::store::{ProductCache, ProductKey};

/// Runs every product cache case against `builder`'s cache; panics listing the failed
/// cases.
pub async fn test_all<B: StoreBuilder>(builder: &B) {
    test_all_with(builder, &Settings::from_env()).await;
}

/// [`test_all`] with explicit [`Settings`].
pub async fn test_all_with<B: StoreBuilder>(builder: &B, settings: &Settings) {
    run_one_area(builder, settings, Area::ProductCache, cases()).await;
}

pub(crate) fn cases() -> Vec<Case> {
    cases![
        a_key_never_put_misses,
        a_product_put_is_got_by_id_and_by_slug,
        a_key_never_returns_another_product,
        an_older_version_never_replaces_a_newer_one,
        the_same_or_a_newer_version_replaces_the_cached_one,
        invalidate_removes_every_key_until_the_next_put,
        invalidating_a_product_not_cached_changes_nothing,
        an_entry_is_served_until_its_ttl_and_never_after,
        a_put_restarts_the_ttl_and_a_rejected_one_does_not,
        concurrent_puts_keep_the_newest_version,
    ]
}

fn slug(s: &str) -> Slug {
    Slug::new(s).unwrap_or_else(|e| panic!("test slug {s:?}: {e}"))
}

/// Product `id` at `version`, with `slug` and `title`, created at the case's now.
fn product(ctx: &Ctx, id: &str, s: &str, version: u64, title: &str) -> Product {
    let mut new = new_product(
        id,
        title,
        "Electronics > Audio",
        &[&format!("SKU-{}", id.to_uppercase())],
    );
    new.status = ProductStatus::Active;
    let mut p = new
        .into_product(slug(s), ctx.now())
        .unwrap_or_else(|e| panic!("test product {id}: {e}"));
    p.version = version;
    p
}

fn by_id(p: &Product) -> ProductKey {
    ProductKey::Id(p.id.clone())
}

fn by_slug(p: &Product) -> ProductKey {
    ProductKey::Slug(p.slug.clone())
}

async fn get(cache: &dyn ProductCache, key: &ProductKey) -> Option<Product> {
    must!(cache.get(key).await, "get({key})")
}

async fn put(cache: &dyn ProductCache, p: &Product) {
    must!(cache.put(p).await, "put({} v{})", p.id, p.version);
}

/// Lets `by` pass on the cache's clock: the kit's clock is moved; a server's clock is
/// waited for (the kit's clock is moved too, harmlessly).
async fn pass(ctx: &Ctx, expiry: &CacheExpiry, by: Duration) {
    ctx.advance(by);
    if expiry.clock == ExpiryClock::Server {
        tokio::time::sleep(by).await;
    }
}

async fn a_key_never_put_misses(env: Env<'_>) {
    let ctx = env.ctx().await;
    let (cache, _) = ctx.product_cache();
    assert_eq!(
        get(&*cache, &ProductKey::Id(pid("pc-none"))).await,
        None,
        "an id never put"
    );
    assert_eq!(
        get(&*cache, &ProductKey::Slug(slug("pc-none"))).await,
        None,
        "a slug never put"
    );
    let a = product(&ctx, "pc-a", "pc-a", 1, "Cached A");
    put(&*cache, &a).await;
    assert_eq!(
        get(&*cache, &ProductKey::Id(pid("pc-b"))).await,
        None,
        "another id misses after a put"
    );
}

async fn a_product_put_is_got_by_id_and_by_slug(env: Env<'_>) {
    let ctx = env.ctx().await;
    let (cache, _) = ctx.product_cache();
    let a = product(&ctx, "pc-a", "pc-a-slug", 1, "Cached A");
    let b = product(&ctx, "pc-b", "pc-b-slug", 3, "Cached B");
    put(&*cache, &a).await;
    put(&*cache, &b).await;
    for p in [&a, &b] {
        assert_eq!(get(&*cache, &by_id(p)).await.as_ref(), Some(p), "by id");
        assert_eq!(get(&*cache, &by_slug(p)).await.as_ref(), Some(p), "by slug");
    }
}

async fn a_key_never_returns_another_product(env: Env<'_>) {
    let ctx = env.ctx().await;
    let (cache, _) = ctx.product_cache();
    let a1 = product(&ctx, "pc-a", "old-name", 1, "Old name");
    put(&*cache, &a1).await;
    // Renamed: the old slug no longer names it.
    let mut a2 = a1.clone();
    a2.version = 2;
    a2.slug = slug("new-name");
    a2.title = "New name".into();
    put(&*cache, &a2).await;
    assert_eq!(
        get(&*cache, &ProductKey::Slug(slug("old-name"))).await,
        None,
        "a renamed product under its old slug"
    );
    assert_eq!(
        get(&*cache, &ProductKey::Slug(slug("new-name"))).await,
        Some(a2.clone()),
        "a renamed product under its new slug"
    );
    // Another product takes the old slug: the slug names it, the id still names a2.
    let b = product(&ctx, "pc-b", "old-name", 1, "Takes the old name");
    put(&*cache, &b).await;
    assert_eq!(
        get(&*cache, &ProductKey::Slug(slug("old-name"))).await,
        Some(b.clone()),
        "a slug taken over names its new holder"
    );
    assert_eq!(get(&*cache, &by_id(&a2)).await, Some(a2.clone()));
    for key in [
        by_id(&a2),
        by_slug(&a2),
        by_id(&b),
        by_slug(&b),
        ProductKey::Slug(slug("old-name")),
    ] {
        if let Some(found) = get(&*cache, &key).await {
            assert!(
                key.matches(&found),
                "get({key}) returned {} (slug {}), which the key does not name",
                found.id,
                found.slug
            );
        }
    }
}

async fn an_older_version_never_replaces_a_newer_one(env: Env<'_>) {
    let ctx = env.ctx().await;
    let (cache, _) = ctx.product_cache();
    let v1 = product(&ctx, "pc-a", "pc-a", 1, "Version one");
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.title = "Version two".into();
    put(&*cache, &v2).await;
    put(&*cache, &v1).await;
    assert_eq!(
        get(&*cache, &by_id(&v1)).await,
        Some(v2.clone()),
        "after putting v2 then v1, by id"
    );
    assert_eq!(
        get(&*cache, &by_slug(&v1)).await,
        Some(v2.clone()),
        "after putting v2 then v1, by slug"
    );
}

async fn the_same_or_a_newer_version_replaces_the_cached_one(env: Env<'_>) {
    let ctx = env.ctx().await;
    let (cache, _) = ctx.product_cache();
    let v1 = product(&ctx, "pc-a", "pc-a", 1, "Version one");
    put(&*cache, &v1).await;
    let mut again = v1.clone();
    again.title = "Version one, refilled".into();
    put(&*cache, &again).await;
    assert_eq!(
        get(&*cache, &by_id(&v1)).await,
        Some(again.clone()),
        "the same version put again replaces it"
    );
    let mut v5 = v1.clone();
    v5.version = 5;
    v5.title = "Version five".into();
    put(&*cache, &v5).await;
    assert_eq!(
        get(&*cache, &by_slug(&v1)).await,
        Some(v5),
        "a newer version replaces it"
    );
}

async fn invalidate_removes_every_key_until_the_next_put(env: Env<'_>) {
    let ctx = env.ctx().await;
    let (cache, _) = ctx.product_cache();
    let a = product(&ctx, "pc-a", "pc-a", 4, "Cached A");
    let b = product(&ctx, "pc-b", "pc-b", 1, "Cached B");
    put(&*cache, &a).await;
    put(&*cache, &b).await;
    must!(cache.invalidate(&a.id).await, "invalidate({})", a.id);
    assert_eq!(
        get(&*cache, &by_id(&a)).await,
        None,
        "by id after invalidate"
    );
    assert_eq!(
        get(&*cache, &by_slug(&a)).await,
        None,
        "by slug after invalidate"
    );
    assert_eq!(
        get(&*cache, &by_id(&a)).await,
        None,
        "a second get still misses (a get never fills)"
    );
    assert_eq!(
        get(&*cache, &by_id(&b)).await,
        Some(b.clone()),
        "other products stay cached"
    );
    // The version is forgotten too: the next put is cached whatever its version.
    let mut older = a.clone();
    older.version = 2;
    older.title = "Older than the invalidated one".into();
    put(&*cache, &older).await;
    assert_eq!(get(&*cache, &by_id(&a)).await, Some(older.clone()));
    assert_eq!(get(&*cache, &by_slug(&a)).await, Some(older));
}

async fn invalidating_a_product_not_cached_changes_nothing(env: Env<'_>) {
    let ctx = env.ctx().await;
    let (cache, _) = ctx.product_cache();
    must!(
        cache.invalidate(&pid("pc-never")).await,
        "invalidate on an empty cache"
    );
    let a = product(&ctx, "pc-a", "pc-a", 1, "Cached A");
    put(&*cache, &a).await;
    must!(
        cache.invalidate(&pid("pc-never")).await,
        "invalidate of a product never put"
    );
    must!(cache.invalidate(&a.id).await, "invalidate");
    must!(cache.invalidate(&a.id).await, "invalidate twice");
    assert_eq!(get(&*cache, &by_id(&a)).await, None);
    put(&*cache, &a).await;
    must!(
        cache.invalidate(&pid("pc-never")).await,
        "invalidate of a product never put"
    );
    assert_eq!(
        get(&*cache, &by_id(&a)).await,
        Some(a.clone()),
        "invalidating another id leaves it cached"
    );
}

async fn an_entry_is_served_until_its_ttl_and_never_after(env: Env<'_>) {
    let ctx = env.ctx().await;
    let (cache, expiry) = ctx.product_cache();
    let v2 = product(&ctx, "pc-a", "pc-a", 2, "Expires");
    put(&*cache, &v2).await;
    match expiry.clock {
        ExpiryClock::Injected => {
            ctx.advance(expiry.ttl - Duration::from_millis(1));
            assert_eq!(
                get(&*cache, &by_id(&v2)).await,
                Some(v2.clone()),
                "a millisecond before its time-to-live"
            );
            ctx.advance(Duration::from_millis(1));
        }
        ExpiryClock::Server => {
            assert_eq!(get(&*cache, &by_id(&v2)).await, Some(v2.clone()));
            pass(&ctx, &expiry, expiry.ttl + Duration::from_millis(500)).await;
        }
    }
    assert_eq!(
        get(&*cache, &by_id(&v2)).await,
        None,
        "by id at its time-to-live ({:?})",
        expiry.ttl
    );
    assert_eq!(
        get(&*cache, &by_slug(&v2)).await,
        None,
        "by slug at its time-to-live"
    );
    // Expired counts as absent: an older version may be put.
    let mut v1 = v2.clone();
    v1.version = 1;
    v1.title = "Older, after expiry".into();
    put(&*cache, &v1).await;
    assert_eq!(get(&*cache, &by_id(&v1)).await, Some(v1));
}

async fn a_put_restarts_the_ttl_and_a_rejected_one_does_not(env: Env<'_>) {
    let ctx = env.ctx().await;
    let (cache, expiry) = ctx.product_cache();
    let step = expiry.ttl * 6 / 10;
    let a = product(&ctx, "pc-a", "pc-a", 3, "Refilled");
    put(&*cache, &a).await;
    pass(&ctx, &expiry, step).await;
    put(&*cache, &a).await;
    pass(&ctx, &expiry, step).await;
    assert_eq!(
        get(&*cache, &by_id(&a)).await,
        Some(a.clone()),
        "1.2 time-to-lives after the first put, 0.6 after the second"
    );
    pass(&ctx, &expiry, step).await;
    assert_eq!(
        get(&*cache, &by_id(&a)).await,
        None,
        "1.2 time-to-lives after the last put"
    );
    // A rejected older put does not keep the newer entry alive.
    let b = product(&ctx, "pc-b", "pc-b", 5, "Newer");
    put(&*cache, &b).await;
    pass(&ctx, &expiry, step).await;
    let mut older = b.clone();
    older.version = 4;
    put(&*cache, &older).await;
    assert_eq!(
        get(&*cache, &by_id(&b)).await,
        Some(b.clone()),
        "the older put is rejected"
    );
    pass(&ctx, &expiry, step).await;
    assert_eq!(
        get(&*cache, &by_id(&b)).await,
        None,
        "1.2 time-to-lives after the accepted put (a rejected put does not restart it)"
    );
}

async fn concurrent_puts_keep_the_newest_version(env: Env<'_>) {
    let ctx = env.ctx().await;
    let (cache, _) = ctx.product_cache();
    let base = product(&ctx, "pc-hot", "pc-hot", 1, "Hot");
    let versions: Arc<Vec<Product>> = Arc::new(
        (1..=16u64)
            .map(|v| {
                let mut p = base.clone();
                p.version = v;
                p.title = format!("Hot v{v}");
                p
            })
            .collect(),
    );
    // Task i puts version (7i mod 16) + 1: every version once, out of order.
    concurrently(16, |i| {
        let (cache, versions) = (cache.clone(), versions.clone());
        async move {
            let at = (i * 7) % 16;
            must!(cache.put(&versions[at]).await, "put v{}", at + 1);
        }
    })
    .await;
    let newest = versions[15].clone();
    assert_eq!(
        get(&*cache, &by_id(&base)).await,
        Some(newest.clone()),
        "after 16 concurrent puts, by id"
    );
    assert_eq!(
        get(&*cache, &by_slug(&base)).await,
        Some(newest),
        "after 16 concurrent puts, by slug"
    );
}
