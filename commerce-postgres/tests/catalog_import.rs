//! The real Best Buy category tree (`../shared/data/bestbuy-categories.json`) imports,
//! re-imports idempotently, and subtree listings are served by the C-collated btree.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use commerce_core::catalog::{Category, CategoryPath, NewProduct, Slug, import_bestbuy_file};
use commerce_core::clock::ManualClock;
use commerce_core::id::{SellerId, Sku};
use commerce_core::store::{CatalogStore, CatalogStoreExt, ProductQuery};
use commerce_core::testkit::StoreBuilder;
use commerce_postgres::sqlx::{self, Connection, PgConnection};

fn tree_file() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var("COMMERCE_BESTBUY_CATEGORIES")
            .ok()
            .map(PathBuf::from),
        Some(manifest.join("../../shared/data/bestbuy-categories.json")),
        Some(manifest.join("../shared/data/bestbuy-categories.json")),
        Some(PathBuf::from(
            "/work/wt/shared/data/bestbuy-categories.json",
        )),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .expect("the Best Buy tree: set COMMERCE_BESTBUY_CATEGORIES or check out ../shared/data")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_tree_imports_and_subtrees_use_the_index() {
    let report = import_bestbuy_file(tree_file()).unwrap();
    let all: Vec<Category> = report.tree.iter().cloned().collect();
    assert!(
        all.len() > 1000,
        "the real tree has thousands of categories"
    );
    let b = common::PgBuilder::default();
    let pg = b.engine(Arc::new(ManualClock::default())).await.unwrap();
    let first = pg.catalog.put_categories(&all).await.unwrap();
    assert_eq!(
        (first.stored, first.unchanged, first.rejected.len()),
        (all.len() as u64, 0, 0)
    );
    let again = pg.catalog.put_categories(&all).await.unwrap();
    assert_eq!(
        (again.stored, again.unchanged, again.rejected.len()),
        (0, all.len() as u64, 0),
        "re-importing stores nothing"
    );
    let stored = pg.catalog.categories(None).await.unwrap();
    assert_eq!(stored, all, "stored in path order, exactly the tree");

    // the root with the most descendants
    let root = report
        .tree
        .roots()
        .max_by_key(|r| all.iter().filter(|c| r.path.contains(&c.path)).count())
        .unwrap()
        .path
        .clone();
    let under: Vec<Category> = all
        .iter()
        .filter(|c| root.contains(&c.path))
        .cloned()
        .collect();
    assert_eq!(pg.catalog.categories(Some(&root)).await.unwrap(), under);

    // one product in each of a few categories inside and outside the subtree
    let mut expected = Vec::new();
    for (i, c) in all.iter().step_by(all.len() / 40).enumerate() {
        let new = NewProduct::new(
            SellerId::new("s1").unwrap(),
            format!("Item {i}"),
            c.path.clone(),
            "Acme",
            Sku::new(format!("IMP-{i}")).unwrap(),
            "10.00 USD".parse().unwrap(),
        );
        let p = pg
            .catalog
            .insert_product(new, Slug::new(format!("item-{i}")).unwrap())
            .await
            .unwrap();
        if root.contains(&c.path) {
            expected.push(p.id);
        }
    }
    expected.sort();
    let listed: Vec<_> = pg
        .catalog
        .list_all_products(&ProductQuery {
            limit: 3,
            ..ProductQuery::in_category(root.clone())
        })
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(listed, expected);

    // the subtree predicate is served by the btree on (category, id)
    let (lower, upper) = root.subtree_range();
    let mut conn = PgConnection::connect(&common::database_url())
        .await
        .unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN SELECT id FROM \"{}\".products WHERE category = $1 OR (category >= $2 AND category < $3) ORDER BY id LIMIT 10",
        pg.schema()
    )))
    .bind(root.as_str())
    .bind(lower)
    .bind(upper)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("products_category"),
        "the category index is not used:\n{plan}"
    );
    assert!(CategoryPath::parse("Electronics > ").is_err());
    b.teardown().await.unwrap();
}
