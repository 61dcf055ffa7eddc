use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tracing::instrument;

use super::{MemoryEventLog, lock};
use crate::catalog::{Category, CategoryPath, NewProduct, Product, Slug, check_new_products};
use crate::clock::Clock;
use crate::error::{EntityKind, Error, Result};
use crate::event::DomainEvent;
use crate::id::{ProductId, Sku};
use crate::store::{CatalogStore, Page, ProductQuery, check_limit};

#[derive(Debug, Default)]
struct State {
    products: BTreeMap<ProductId, Product>,
    by_slug: HashMap<Slug, ProductId>,
    by_sku: HashMap<Sku, ProductId>,
    /// `(category path, product id)`, ordered: a subtree is a range.
    by_category: BTreeSet<(CategoryPath, ProductId)>,
    categories: BTreeMap<CategoryPath, Category>,
}

impl State {
    /// Checks slug and SKU uniqueness for `p` (ignoring the product's own entries).
    fn check_unique(&self, p: &Product) -> Result<()> {
        if self.by_slug.get(&p.slug).is_some_and(|id| id != &p.id) {
            return Err(Error::conflict(
                EntityKind::Slug,
                format!("slug {} is taken", p.slug),
            ));
        }
        for v in &p.variants {
            if self.by_sku.get(&v.sku).is_some_and(|id| id != &p.id) {
                return Err(Error::conflict(
                    EntityKind::Variant,
                    format!("SKU {} belongs to another product", v.sku),
                ));
            }
        }
        Ok(())
    }

    fn unindex(&mut self, p: &Product) {
        self.by_slug.remove(&p.slug);
        for v in &p.variants {
            self.by_sku.remove(&v.sku);
        }
        self.by_category.remove(&(p.category.clone(), p.id.clone()));
    }

    fn index(&mut self, p: Product) {
        self.by_slug.insert(p.slug.clone(), p.id.clone());
        for v in &p.variants {
            self.by_sku.insert(v.sku.clone(), p.id.clone());
        }
        self.by_category.insert((p.category.clone(), p.id.clone()));
        self.products.insert(p.id.clone(), p);
    }

    /// Ids of the products in `category`'s subtree, ascending: two range scans.
    fn ids_under(&self, category: &CategoryPath) -> Vec<&ProductId> {
        let (lower, upper) = category.subtree_range();
        let own = self
            .by_category
            .range((category.clone(), min_id())..)
            .take_while(|(c, _)| c == category);
        let below = self.by_category.range(
            (CategoryPath::unchecked(lower), min_id())..(CategoryPath::unchecked(upper), min_id()),
        );
        let mut ids: Vec<&ProductId> = own.chain(below).map(|(_, id)| id).collect();
        ids.sort();
        ids
    }
}

/// The smallest product id in byte order (`-` is the lowest allowed byte).
fn min_id() -> ProductId {
    ProductId::unchecked("-")
}

/// The in-memory [`CatalogStore`].
#[derive(Debug)]
pub struct MemoryCatalog {
    clock: Arc<dyn Clock>,
    events: Arc<MemoryEventLog>,
    state: Mutex<State>,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new(clock: Arc<dyn Clock>, events: Arc<MemoryEventLog>) -> Self {
        MemoryCatalog {
            clock,
            events,
            state: Mutex::new(State::default()),
        }
    }

    /// Number of products.
    pub fn len(&self) -> usize {
        lock(&self.state).products.len()
    }

    /// Whether the catalog has no products.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl CatalogStore for MemoryCatalog {
    #[instrument(level = "debug", skip_all, fields(slug = %slug), err(level = "debug"))]
    async fn insert_product(&self, new: NewProduct, slug: Slug) -> Result<Product> {
        let product = new.into_product(slug, self.clock.now())?;
        let mut state = lock(&self.state);
        if state.products.contains_key(&product.id) {
            return Err(Error::conflict(
                EntityKind::Product,
                format!("product {} exists", product.id),
            ));
        }
        state.check_unique(&product)?;
        state.index(product.clone());
        self.events.push([DomainEvent::ProductChanged {
            product_id: product.id.clone(),
            version: product.version,
        }]);
        Ok(product)
    }

    #[instrument(level = "debug", skip_all, fields(products = batch.len()), err(level = "debug"))]
    async fn insert_products(&self, batch: Vec<(NewProduct, Slug)>) -> Result<Vec<Product>> {
        let products = check_new_products(batch, self.clock.now())?;
        let mut state = lock(&self.state);
        for product in &products {
            if state.products.contains_key(&product.id) {
                return Err(Error::conflict(
                    EntityKind::Product,
                    format!("product {} exists", product.id),
                ));
            }
            state.check_unique(product)?;
        }
        for product in &products {
            state.index(product.clone());
        }
        self.events
            .push(products.iter().map(|p| DomainEvent::ProductChanged {
                product_id: p.id.clone(),
                version: p.version,
            }));
        Ok(products)
    }

    #[instrument(level = "debug", skip_all, fields(product_id = %product.id), err(level = "debug"))]
    async fn update_product(&self, mut product: Product) -> Result<Product> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let stored = state
            .products
            .get(&product.id)
            .ok_or_else(|| Error::not_found(EntityKind::Product, &product.id))?
            .clone();
        if stored.version != product.version {
            return Err(Error::conflict(
                EntityKind::Product,
                format!(
                    "version {} is stale (stored {})",
                    product.version, stored.version
                ),
            ));
        }
        if stored.status != product.status {
            stored.status.transition_to(product.status)?;
        }
        product.version = stored.version + 1;
        product.created_at = stored.created_at;
        product.updated_at = now.max(stored.updated_at);
        product.validate()?;
        state.check_unique(&product)?;
        state.unindex(&stored);
        state.index(product.clone());
        self.events.push([DomainEvent::ProductChanged {
            product_id: product.id.clone(),
            version: product.version,
        }]);
        Ok(product)
    }

    async fn get_product(&self, id: &ProductId) -> Result<Option<Product>> {
        Ok(lock(&self.state).products.get(id).cloned())
    }

    async fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        let ids = crate::store::distinct_batch("ids", ids)?;
        let state = lock(&self.state);
        Ok(ids
            .into_iter()
            .filter_map(|id| state.products.get(id).cloned())
            .collect())
    }

    async fn get_product_by_slug(&self, slug: &Slug) -> Result<Option<Product>> {
        let state = lock(&self.state);
        Ok(state
            .by_slug
            .get(slug)
            .and_then(|id| state.products.get(id))
            .cloned())
    }

    async fn get_product_by_sku(&self, sku: &Sku) -> Result<Option<Product>> {
        let state = lock(&self.state);
        Ok(state
            .by_sku
            .get(sku)
            .and_then(|id| state.products.get(id))
            .cloned())
    }

    #[instrument(level = "debug", skip_all, fields(category = ?query.category), err(level = "debug"))]
    async fn list_products(&self, query: &ProductQuery) -> Result<Page<Product, ProductId>> {
        let limit = check_limit(query.limit)?;
        let state = lock(&self.state);
        let after = |id: &ProductId| query.after.as_ref().is_none_or(|a| id > a);
        let mut items: Vec<Product> = match &query.category {
            Some(category) => state
                .ids_under(category)
                .into_iter()
                .filter(|id| after(id))
                .filter_map(|id| state.products.get(id))
                .filter(|p| query.matches(p))
                .take(limit + 1)
                .cloned()
                .collect(),
            None => {
                let start = match &query.after {
                    Some(a) => std::ops::Bound::Excluded(a.clone()),
                    None => std::ops::Bound::Unbounded,
                };
                state
                    .products
                    .range((start, std::ops::Bound::Unbounded))
                    .map(|(_, p)| p)
                    .filter(|p| query.matches(p))
                    .take(limit + 1)
                    .cloned()
                    .collect()
            }
        };
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|p| p.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn put_categories(&self, categories: &[Category]) -> Result<u64> {
        let mut state = lock(&self.state);
        for c in categories {
            state.categories.insert(c.path.clone(), c.clone());
        }
        Ok(categories.len() as u64)
    }

    async fn categories(&self, root: Option<&CategoryPath>) -> Result<Vec<Category>> {
        let state = lock(&self.state);
        Ok(state
            .categories
            .values()
            .filter(|c| root.is_none_or(|r| r.contains(&c.path)))
            .cloned()
            .collect())
    }
}
