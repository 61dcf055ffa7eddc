use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::catalog::{
    AttributeValue, Category, CategoryPath, NewProduct, Product, ProductStatus, Slug,
};
use crate::error::{EntityKind, Error, Result};
use crate::id::{ProductId, Sku};
use crate::store::Page;

/// A catalog listing: optional filters, keyset-paginated by product id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductQuery {
    /// Only products in this category or under it.
    pub category: Option<CategoryPath>,
    /// Only products in this status.
    pub status: Option<ProductStatus>,
    /// Only products whose product-level attributes have all these values.
    pub attributes: Vec<(String, AttributeValue)>,
    /// Start after this product id (from [`Page::next`]).
    pub after: Option<ProductId>,
    /// Page size, 1 to [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE).
    pub limit: u32,
}

impl Default for ProductQuery {
    fn default() -> Self {
        ProductQuery {
            category: None,
            status: None,
            attributes: Vec::new(),
            after: None,
            limit: 100,
        }
    }
}

impl ProductQuery {
    /// Everything under `category`, 100 a page.
    pub fn in_category(category: CategoryPath) -> Self {
        ProductQuery {
            category: Some(category),
            ..Self::default()
        }
    }

    /// Whether `p` passes the filters (not the cursor). The reference semantics.
    pub fn matches(&self, p: &Product) -> bool {
        self.category
            .as_ref()
            .is_none_or(|c| c.contains(&p.category))
            && self.status.is_none_or(|s| s == p.status)
            && self
                .attributes
                .iter()
                .all(|(k, v)| p.attributes.get(k) == Some(v))
    }
}

/// Products, variants and categories.
///
/// Every write appends a [`DomainEvent::ProductChanged`](crate::event::DomainEvent) in
/// the same atomic step.
#[async_trait]
pub trait CatalogStore: Send + Sync + Debug + 'static {
    /// Creates a product from `new` under `slug`, at version 1, timestamped by the
    /// store's clock, and returns it as stored.
    ///
    /// # To ensure correctness
    /// * Validate with [`NewProduct::into_product`]; invalid input writes nothing.
    /// * Reject a taken product id with `Conflict { kind: Product }`, a taken slug with
    ///   `Conflict { kind: Slug }`, and a SKU that
    ///   belongs to another product with `Conflict { kind: Variant }`. Uniqueness holds
    ///   under concurrent inserts (a unique index, not a read-then-write).
    /// * Append `ProductChanged` atomically with the insert.
    async fn insert_product(&self, new: NewProduct, slug: Slug) -> Result<Product>;

    /// Creates many products at once, each exactly as
    /// [`insert_product`](Self::insert_product) would (version 1, the store clock's now,
    /// its `ProductChanged` event), and returns them as stored, in the order given. For
    /// bulk loads: a few statements and one commit instead of one per product.
    ///
    /// # To ensure correctness
    /// * Validate the whole batch before writing
    ///   ([`check_new_products`](crate::catalog::check_new_products)): at most
    ///   [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE) products, each valid, and no id, slug or
    ///   SKU twice in the batch (`Conflict` of that kind, as inserting them one by one
    ///   would give); an invalid batch writes nothing. No products: `Ok` with none.
    /// * A product that conflicts with a stored one is `Conflict` of the same kind as
    ///   in `insert_product`, and nothing of the batch is written (memory and PostgreSQL
    ///   write a batch atomically).
    /// * The default validates, checks every id, slug and SKU against the store, then
    ///   calls `insert_product` one by one: a concurrent writer or a backend failure
    ///   midway can leave the products before it stored. Stores with atomic writes
    ///   override it.
    async fn insert_products(&self, mut batch: Vec<(NewProduct, Slug)>) -> Result<Vec<Product>> {
        for (new, _) in &mut batch {
            new.id.get_or_insert_with(ProductId::generate);
        }
        let checked = crate::catalog::check_new_products(batch.clone(), Default::default())?;
        for p in &checked {
            if self.get_product(&p.id).await?.is_some() {
                return Err(Error::conflict(
                    EntityKind::Product,
                    format!("product {} exists", p.id),
                ));
            }
            if self.get_product_by_slug(&p.slug).await?.is_some() {
                return Err(Error::conflict(
                    EntityKind::Slug,
                    format!("slug {} is taken", p.slug),
                ));
            }
            for v in &p.variants {
                if self.get_product_by_sku(&v.sku).await?.is_some() {
                    return Err(Error::conflict(
                        EntityKind::Variant,
                        format!("SKU {} belongs to another product", v.sku),
                    ));
                }
            }
        }
        let mut out = Vec::with_capacity(batch.len());
        for (new, slug) in batch {
            out.push(self.insert_product(new, slug).await?);
        }
        Ok(out)
    }

    /// Replaces a product's content, under optimistic concurrency.
    ///
    /// # To ensure correctness
    /// * `product.version` must equal the stored version, else `Conflict { kind:
    ///   Product }` and nothing changes; on success the stored version is one higher,
    ///   `updated_at` is the store clock's now and `created_at` is unchanged.
    /// * A status change must be legal ([`ProductStatus::can_transition_to`]), else
    ///   `InvalidTransition`; slug and SKU uniqueness hold as in `insert_product`.
    /// * Unknown id: `NotFound { kind: Product }`.
    /// * Append `ProductChanged` atomically with the update.
    async fn update_product(&self, product: Product) -> Result<Product>;

    /// The product with `id`, if any.
    async fn get_product(&self, id: &ProductId) -> Result<Option<Product>>;

    /// The products with the given ids that exist, in the order of `ids`, each once (a
    /// repeated id is answered at its first position; missing ids are skipped). For a
    /// page that shows many products (recommendations, a cart): one call instead of one
    /// per product.
    ///
    /// # To ensure correctness
    /// * Each product is exactly what [`get_product`](Self::get_product) would return
    ///   at some instant during the call.
    /// * At most [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE) ids, else `Validation`; no ids
    ///   gives an empty list.
    ///
    /// The default calls `get_product` once per distinct id; a store with a batch read
    /// (one query, one pipeline) should override it.
    async fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        let ids = super::distinct_batch("ids", ids)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(p) = self.get_product(id).await? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// The product with `slug`, if any.
    async fn get_product_by_slug(&self, slug: &Slug) -> Result<Option<Product>>;

    /// The product that has a variant with `sku`, if any.
    async fn get_product_by_sku(&self, sku: &Sku) -> Result<Option<Product>>;

    /// Whether each SKU of `skus` is on sale: it names a variant of an
    /// [active](ProductStatus::Active) product. One answer per SKU, in the order of
    /// `skus`. The order pipeline checks an order's lines with it before reserving.
    ///
    /// # To ensure correctness
    /// * A SKU's answer is what [`get_product_by_sku`](Self::get_product_by_sku) would
    ///   say at some instant during the call: `true` exactly when it returns an active
    ///   product that has the variant.
    /// * At most [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE) SKUs, else `Validation`; no SKUs
    ///   gives an empty list.
    ///
    /// The default reads each product with `get_product_by_sku`; a store that can answer
    /// without reading whole products (one query for all SKUs) should override it.
    async fn skus_on_sale(&self, skus: &[Sku]) -> Result<Vec<bool>> {
        check_sku_batch(skus)?;
        let mut out = Vec::with_capacity(skus.len());
        for sku in skus {
            let product = self.get_product_by_sku(sku).await?;
            out.push(product.is_some_and(|p| p.is_active() && p.variant(sku).is_some()));
        }
        Ok(out)
    }

    /// Products matching `query` in ascending id order, after `query.after`.
    ///
    /// # To ensure correctness
    /// * Keyset pagination: following [`Page::next`] visits every matching product
    ///   exactly once if nothing changes meanwhile; `next` is `None` on the last page.
    /// * The category filter selects the subtree ([`CategoryPath::contains`]) without
    ///   scanning unrelated products (an ordered index or equivalent).
    async fn list_products(&self, query: &ProductQuery) -> Result<Page<Product, ProductId>>;

    /// Inserts categories, or gives an existing path a new id; returns what it stored,
    /// what was already so and what it refused (with a typed
    /// [`CategoryRejection`](crate::catalog::CategoryRejection)).
    ///
    /// # To ensure correctness
    /// * Decides exactly as [`plan_put_categories`](crate::catalog::plan_put_categories)
    ///   over the categories stored when it runs: an id already at another path
    ///   (`DuplicateId`), a path given two ids in one call (`DuplicatePath`, the first
    ///   keeps it) and an entry whose parent is neither stored nor accepted in this call
    ///   (`Orphan`, so the subtree of a refused entry is refused too) are refused.
    ///   Names that are invisible or carry bidirectional controls never reach it: a
    ///   [`CategoryPath`] cannot hold them.
    /// * The accepted entries are written all or nothing, atomically with the check
    ///   (concurrent calls cannot together break the rules); refused ones write nothing.
    /// * `stored` counts the categories written (new paths, paths given a new id);
    ///   re-importing the same tree stores 0 and counts every entry `unchanged`.
    async fn put_categories(
        &self,
        categories: &[Category],
    ) -> Result<crate::catalog::CategoryWrite>;

    /// The categories under `root` (itself included), or all of them, in path order.
    async fn categories(&self, root: Option<&CategoryPath>) -> Result<Vec<Category>>;
}

/// Conveniences on any [`CatalogStore`].
#[async_trait]
pub trait CatalogStoreExt: CatalogStore {
    /// Creates a product with a unique slug generated from its title: `title`, then
    /// `title-2` ... `title-20`, then a random suffix.
    ///
    /// ```
    /// # use commerce_core::{catalog::*, id::*, memory::MemoryEngine, store::CatalogStoreExt};
    /// # tokio_test_block_on(async {
    /// let engine = MemoryEngine::new();
    /// let new = NewProduct::new(
    ///     SellerId::new("s1")?, "Phone", CategoryPath::parse("Electronics > Phones")?,
    ///     "Acme", Sku::new("PH-1")?, "199.00 USD".parse()?,
    /// );
    /// let mut second = new.clone();
    /// second.variants[0].sku = Sku::new("PH-2")?;
    /// assert_eq!(engine.catalog.create_product(new).await?.slug.as_str(), "phone");
    /// assert_eq!(engine.catalog.create_product(second).await?.slug.as_str(), "phone-2");
    /// # Ok::<(), commerce_core::Error>(()) });
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f) }
    /// ```
    async fn create_product(&self, new: NewProduct) -> Result<Product> {
        let base = Slug::from_title(&new.title);
        let mut candidates: Vec<Slug> = std::iter::once(base.clone())
            .chain((2..=20).map(|n| base.with_suffix(n)))
            .collect();
        for _ in 0..3 {
            let mut bytes = [0u8; 4];
            getrandom::fill(&mut bytes).map_err(|e| Error::backend(false, e.to_string()))?;
            candidates.push(base.with_suffix(u32::from_le_bytes(bytes) % 1_000_000_000 + 21));
        }
        for slug in candidates {
            match self.insert_product(new.clone(), slug).await {
                Err(Error::Conflict {
                    kind: EntityKind::Slug,
                    ..
                }) => continue,
                other => return other,
            }
        }
        Err(Error::conflict(
            EntityKind::Slug,
            "no free slug found for this title",
        ))
    }

    /// Moves a product to `to` (read, check, compare-and-set on the version).
    async fn set_product_status(&self, id: &ProductId, to: ProductStatus) -> Result<Product> {
        let mut product = self
            .get_product(id)
            .await?
            .ok_or_else(|| Error::not_found(EntityKind::Product, id))?;
        product.status.transition_to(to)?;
        product.status = to;
        self.update_product(product).await
    }

    /// Every product matching `query`, following the pages.
    async fn list_all_products(&self, query: &ProductQuery) -> Result<Vec<Product>> {
        let mut query = query.clone();
        let mut out = Vec::new();
        loop {
            let page = self.list_products(&query).await?;
            out.extend(page.items);
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(out),
            }
        }
    }
}

impl<T: CatalogStore + ?Sized> CatalogStoreExt for T {}

/// Checks the length of a [`CatalogStore::skus_on_sale`] request: at most
/// [`MAX_PAGE_SIZE`](super::MAX_PAGE_SIZE) SKUs, else `Validation` on `skus`.
pub fn check_sku_batch(skus: &[Sku]) -> Result<()> {
    if skus.len() > super::MAX_PAGE_SIZE as usize {
        return Err(Error::validation(
            "skus",
            format!(
                "{} SKUs is more than {} in one call",
                skus.len(),
                super::MAX_PAGE_SIZE
            ),
        ));
    }
    Ok(())
}
