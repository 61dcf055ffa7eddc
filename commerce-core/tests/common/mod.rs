//! Fixtures shared by the recommend / page / resilience tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use commerce_core::Result;
use commerce_core::catalog::{CategoryPath, NewProduct, Product, ProductStatus};
use commerce_core::id::{LocationId, OrderId, ProductId, SellerId, Sku};
use commerce_core::memory::MemoryEngine;
use commerce_core::recommend::{Basket, ProductCount};
use commerce_core::store::search::{SearchHit, SearchQuery, SearchResults, Suggestion};
use commerce_core::store::{
    CatalogStore, CatalogStoreExt, CoPurchaseStore, InventoryStore, SearchIndex,
};

pub fn pid(s: &str) -> ProductId {
    ProductId::new(s).unwrap()
}

pub fn oid(s: &str) -> OrderId {
    OrderId::new(s).unwrap()
}

pub fn sku_of(id: &str) -> Sku {
    Sku::new(format!("{id}-1")).unwrap()
}

/// How a fixture product is stocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stock {
    Units(u32),
    None,
    Backorder,
}

/// Adds an ACTIVE product `id` with one variant `<id>-1` (and, with `extra_variant`, a
/// second, dearer one `<id>-2` that is never stocked).
pub async fn add_product(
    engine: &MemoryEngine,
    id: &str,
    brand: &str,
    category: &str,
    stock: Stock,
) -> Product {
    add_product_with(
        engine,
        id,
        brand,
        category,
        stock,
        ProductStatus::Active,
        false,
    )
    .await
}

pub async fn add_product_with(
    engine: &MemoryEngine,
    id: &str,
    brand: &str,
    category: &str,
    stock: Stock,
    status: ProductStatus,
    extra_variant: bool,
) -> Product {
    let sku = sku_of(id);
    let mut new = NewProduct::new(
        SellerId::new("seller").unwrap(),
        format!("{brand} {id}"),
        CategoryPath::parse(category).unwrap(),
        brand,
        sku.clone(),
        "20.00 USD".parse().unwrap(),
    );
    new.id = Some(pid(id));
    new.status = status;
    if extra_variant {
        let mut v = new.variants[0].clone();
        v.sku = Sku::new(format!("{id}-2")).unwrap();
        v.price = "35.00 USD".parse().unwrap();
        new.variants.push(v);
    }
    let product = engine.catalog.create_product(new).await.unwrap();
    let main = LocationId::new("main").unwrap();
    match stock {
        Stock::Units(n) => {
            engine
                .inventory
                .restock(&sku, &main, n, "fixture")
                .await
                .unwrap();
        }
        Stock::None => {}
        Stock::Backorder => engine.inventory.set_backorder(&sku, true).await.unwrap(),
    }
    product
}

/// A search index that only answers `similar`, from a fixed table, and records the
/// queries it was asked.
#[derive(Debug, Default)]
pub struct FakeIndex {
    pub similar: HashMap<ProductId, Vec<ProductId>>,
    pub queries: std::sync::Mutex<Vec<SearchQuery>>,
    pub delay: Option<Duration>,
    pub similar_calls: AtomicU64,
}

impl FakeIndex {
    pub fn with(pairs: &[(&str, &[&str])]) -> Self {
        FakeIndex {
            similar: pairs
                .iter()
                .map(|(k, v)| (pid(k), v.iter().map(|s| pid(s)).collect()))
                .collect(),
            ..Default::default()
        }
    }
}

fn hit(id: &ProductId) -> SearchHit {
    SearchHit {
        product_id: id.clone(),
        slug: commerce_core::catalog::Slug::new(id.as_str().to_ascii_lowercase()).unwrap(),
        title: id.to_string(),
        brand: "x".into(),
        category: CategoryPath::parse("X").unwrap(),
        price: "1.00 USD".parse().unwrap(),
        rating: None,
        score: 1.0,
        snippet: None,
    }
}

#[async_trait]
impl SearchIndex for FakeIndex {
    async fn upsert(&self, _: &[Product]) -> Result<()> {
        Ok(())
    }
    async fn remove(&self, _: &[ProductId]) -> Result<()> {
        Ok(())
    }
    async fn refresh(&self) -> Result<()> {
        Ok(())
    }
    async fn search(&self, query: &SearchQuery) -> Result<SearchResults> {
        self.queries.lock().unwrap().push(query.clone());
        Ok(SearchResults {
            total: 1,
            hits: vec![hit(&pid("found"))],
            ..Default::default()
        })
    }
    async fn autocomplete(&self, _: &str, _: u32) -> Result<Vec<Suggestion>> {
        Ok(Vec::new())
    }
    async fn similar(&self, id: &ProductId, limit: u32) -> Result<Vec<SearchHit>> {
        self.similar_calls.fetch_add(1, Ordering::SeqCst);
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        Ok(self
            .similar
            .get(id)
            .map(|v| v.iter().take(limit as usize).map(hit).collect())
            .unwrap_or_default())
    }
    async fn count(&self) -> Result<u64> {
        Ok(0)
    }
}

/// How a scripted test double (a recommender, a cache, a rate limit) misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Fail,
    Hang,
    Sleep(Duration),
}

/// A flag that, once set, makes every call of a wrapper fail.
#[derive(Debug, Default)]
pub struct Switch(pub AtomicBool);

impl Switch {
    pub fn on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub fn set(&self, v: bool) {
        self.0.store(v, Ordering::SeqCst)
    }
}

/// Products of the catalog by id, for quick asserts.
pub async fn product(engine: &MemoryEngine, id: &str) -> Product {
    engine.catalog.get_product(&pid(id)).await.unwrap().unwrap()
}

/// The inventory as a trait object.
pub fn inventory(engine: &MemoryEngine) -> Arc<dyn InventoryStore> {
    engine.inventory.clone()
}

/// The catalog as a trait object.
pub fn catalog(engine: &MemoryEngine) -> Arc<dyn CatalogStore> {
    engine.catalog.clone()
}

/// A brute-force reference for co-purchase counts: keeps the first basket of each
/// order and counts by scanning them all.
#[derive(Debug, Default)]
pub struct Model {
    baskets: Vec<Basket>,
}

impl Model {
    pub fn record(&mut self, basket: &Basket) {
        if !self
            .baskets
            .iter()
            .any(|b| b.order_id() == basket.order_id())
        {
            self.baskets.push(basket.clone());
        }
    }

    pub fn orders(&self) -> u64 {
        self.baskets.len() as u64
    }

    fn products(&self) -> std::collections::BTreeSet<ProductId> {
        self.baskets
            .iter()
            .flat_map(|b| b.products().iter().cloned())
            .collect()
    }

    pub fn also_bought(&self, x: &ProductId) -> Vec<ProductCount> {
        let mut v: Vec<ProductCount> = self
            .products()
            .into_iter()
            .filter(|y| y != x)
            .map(|y| ProductCount {
                count: self
                    .baskets
                    .iter()
                    .filter(|b| b.paired().contains(x) && b.paired().contains(&y))
                    .count() as u64,
                product_id: y,
            })
            .filter(|c| c.count > 0)
            .collect();
        v.sort_by(ProductCount::rank_cmp);
        v
    }

    pub fn popular(&self) -> Vec<ProductCount> {
        let mut v: Vec<ProductCount> = self
            .products()
            .into_iter()
            .map(|y| ProductCount {
                count: self
                    .baskets
                    .iter()
                    .filter(|b| b.products().contains(&y))
                    .count() as u64,
                product_id: y,
            })
            .collect();
        v.sort_by(ProductCount::rank_cmp);
        v
    }

    /// Asserts that `store` holds exactly these counts.
    pub async fn assert_store(&self, store: &dyn CoPurchaseStore) {
        for x in self.products() {
            assert_eq!(
                store.also_bought(&x, 1000).await.unwrap(),
                self.also_bought(&x),
                "also_bought({x})"
            );
        }
        assert_eq!(store.popular(1000).await.unwrap(), self.popular());
        assert_eq!(store.orders_recorded().await.unwrap(), self.orders());
    }
}
