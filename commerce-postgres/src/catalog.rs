//! Products, variants and categories: [`PgCatalog`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use commerce_core::EntityKind;
use commerce_core::catalog::{
    Category, CategoryPath, NewProduct, Product, ProductStatus, Slug, check_new_products,
};
use commerce_core::event::DomainEvent;
use commerce_core::id::{CategoryId, ProductId, Sku};
use commerce_core::store::{
    CatalogStore, Page, ProductQuery, check_limit, check_sku_batch, distinct_batch,
};
use commerce_core::{Error, Result};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::batch::{FetchKeys, KeyedReads, fetch_rows, keyed_reads};
use crate::db::Db;
use crate::error::{DbResult, PgError, code, corrupt};

/// The [`CatalogStore`] on PostgreSQL.
///
/// * Tables `products` (JSONB `attributes` with a GIN `jsonb_path_ops` index serving
///   attribute filters; `category COLLATE "C"` with a btree `(category, id)` serving
///   subtree ranges), `variants` (SKU primary key: a SKU belongs to one product) and
///   `categories`.
/// * Unique ids, slugs and SKUs are unique indexes; a violation is mapped by its
///   constraint name to `Conflict { Product | Slug | Variant }`.
/// * Updates are optimistic: they succeed only at the stored version, under a row lock.
/// * Reads may be routed to a replica pool ([`PgCommerce::with_replica`](crate::PgCommerce::with_replica)):
///   product pages, listings and categories; writes always go to the primary.
/// * Reads by SKU (`get_product_by_sku`, `skus_on_sale`) are grouped: the lookups that
///   arrive while one is in flight are read together by the next statement.
#[derive(Debug)]
pub struct PgCatalog {
    db: Arc<Db>,
    read_pool: PgPool,
    by_slug_sql: String,
    by_sku: Arc<KeyedReads<Option<Product>>>,
    on_sale: Arc<KeyedReads<bool>>,
}

/// The stored product as one JSON document: the body with its variants and the
/// authoritative status, version and timestamps from their columns, decoded in one pass.
const PRODUCT_COLUMNS: &str = "p.body || jsonb_build_object(
    'variants', COALESCE((SELECT jsonb_agg(v.body ORDER BY v.position) FROM {variants} v
                          WHERE v.product_id = p.id), '[]'::jsonb),
    'status', p.status, 'version', p.version,
    'created_at', p.created_at, 'updated_at', p.updated_at) AS product";

fn product_from(row: &PgRow) -> Result<Product> {
    let product: sqlx::types::Json<Product> = row
        .try_get("product")
        .map_err(|e| corrupt(format!("stored product: {e}")))?;
    Ok(product.0)
}

/// Reads the product of each SKU with one statement (an index lookup per SKU: a
/// LATERAL subquery that is not flattened, whatever the plan guesses of the array);
/// a product that does not decode fails only its own SKUs.
fn fetch_products_by_sku(db: &Db, pool: &PgPool) -> FetchKeys<Option<Product>> {
    let sql = format!(
        "SELECT k.ord, x.product FROM unnest($1::text[]) WITH ORDINALITY AS k(sku, ord)
         CROSS JOIN LATERAL (
             SELECT {} FROM {} p
              WHERE p.id = (SELECT u.product_id FROM {} u WHERE u.sku = k.sku)
             OFFSET 0) x",
        PRODUCT_COLUMNS.replace("{variants}", &db.qualified("variants")),
        db.qualified("products"),
        db.qualified("variants"),
    );
    fetch_rows(pool.clone(), sql, |keys, rows| {
        let mut out: Vec<Result<Option<Product>>> = keys.iter().map(|_| Ok(None)).collect();
        for row in &rows {
            let ord: i64 = row.try_get("ord").db()?;
            let slot = usize::try_from(ord - 1)
                .ok()
                .and_then(|i| out.get_mut(i))
                .ok_or_else(|| corrupt(format!("product row for position {ord}")))?;
            *slot = product_from(row).map(Some);
        }
        Ok(out)
    })
}

/// `skus_on_sale()` (migration 1006) for all the keys of a batch.
fn fetch_on_sale(db: &Db, pool: &PgPool) -> FetchKeys<bool> {
    let sql = format!(
        "SELECT ord, on_sale FROM {}($1::text[]) ORDER BY ord",
        db.qualified("skus_on_sale")
    );
    fetch_rows(pool.clone(), sql, |keys, rows| {
        if rows.len() != keys.len() {
            return Err(corrupt(format!(
                "skus_on_sale answered {} rows for {} SKUs",
                rows.len(),
                keys.len()
            )));
        }
        Ok(rows
            .iter()
            .map(|row| row.try_get::<bool, _>("on_sale").db())
            .collect())
    })
}

/// Maps a unique violation to `Conflict` of the kind its constraint names; `p` is the
/// product written, when there is one (a bulk insert names none).
fn conflict_of(e: sqlx::Error, p: Option<&Product>) -> Error {
    let pg = PgError::from(e);
    if pg.code().as_deref() == Some(code::UNIQUE_VIOLATION) {
        let constraint = match &pg {
            PgError::Sqlx(sqlx::Error::Database(d)) => d.constraint().map(str::to_owned),
            _ => None,
        };
        return match constraint.as_deref() {
            Some("products_slug_key") => Error::conflict(
                EntityKind::Slug,
                match p {
                    Some(p) => format!("slug {} is taken", p.slug),
                    None => "a slug of the batch is taken".to_owned(),
                },
            ),
            Some("variants_pkey") => Error::conflict(
                EntityKind::Variant,
                "a SKU of this product belongs to another product",
            ),
            _ => Error::conflict(
                EntityKind::Product,
                match p {
                    Some(p) => format!("product {} exists", p.id),
                    None => "a product of the batch exists".to_owned(),
                },
            ),
        };
    }
    pg.into()
}

impl PgCatalog {
    pub(crate) fn new(db: Arc<Db>, read_pool: Option<PgPool>) -> Self {
        let by_slug_sql = format!(
            "SELECT {} FROM {} p WHERE p.slug = $1",
            PRODUCT_COLUMNS.replace("{variants}", &db.qualified("variants")),
            db.qualified("products")
        );
        let read_pool = read_pool.unwrap_or_else(|| db.pool.clone());
        PgCatalog {
            by_sku: keyed_reads(db.batching, fetch_products_by_sku(&db, &read_pool)),
            on_sale: keyed_reads(db.batching, fetch_on_sale(&db, &read_pool)),
            read_pool,
            db,
            by_slug_sql,
        }
    }

    fn select(&self) -> String {
        format!(
            "SELECT {} FROM {} p",
            PRODUCT_COLUMNS.replace("{variants}", &self.db.qualified("variants")),
            self.db.qualified("products")
        )
    }

    async fn write_product(
        &self,
        conn: &mut PgConnection,
        p: &Product,
        insert: bool,
    ) -> Result<()> {
        let mut body = serde_json::to_value(p).map_err(corrupt)?;
        if let Some(o) = body.as_object_mut() {
            o.remove("variants");
        }
        let attributes = serde_json::to_value(&p.attributes).map_err(corrupt)?;
        let q = if insert {
            sql!(
                "INSERT INTO {} (id, slug, category, status, version, attributes, body,
                                 created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                self.db.qualified("products")
            )
        } else {
            sql!(
                "UPDATE {} SET slug = $2, category = $3, status = $4, version = $5,
                        attributes = $6, body = $7, created_at = $8, updated_at = $9
                 WHERE id = $1",
                self.db.qualified("products")
            )
        };
        sqlx::query(q)
            .bind(p.id.as_str())
            .bind(p.slug.as_str())
            .bind(p.category.as_str())
            .bind(p.status.as_str())
            .bind(p.version as i64)
            .bind(&attributes)
            .bind(&body)
            .bind(p.created_at)
            .bind(p.updated_at)
            .execute(&mut *conn)
            .await
            .map_err(|e| conflict_of(e, Some(p)))?;
        if !insert {
            sqlx::query(sql!(
                "DELETE FROM {} WHERE product_id = $1",
                self.db.qualified("variants")
            ))
            .bind(p.id.as_str())
            .execute(&mut *conn)
            .await
            .db()?;
        }
        let skus: Vec<&str> = p.variants.iter().map(|v| v.sku.as_str()).collect();
        let bodies = p
            .variants
            .iter()
            .map(|v| serde_json::to_value(v).map_err(corrupt))
            .collect::<Result<Vec<_>>>()?;
        sqlx::query(sql!(
            "INSERT INTO {} (sku, product_id, position, body)
             SELECT s, $3, n::int, b FROM unnest($1::text[], $2::jsonb[]) WITH ORDINALITY AS t(s, b, n)",
            self.db.qualified("variants")
        ))
        .bind(skus)
        .bind(bodies)
        .bind(p.id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|e| conflict_of(e, Some(p)))?;
        self.db
            .append_in(
                conn,
                p.updated_at,
                &[DomainEvent::ProductChanged {
                    product_id: p.id.clone(),
                    version: p.version,
                }],
            )
            .await?;
        Ok(())
    }
}

impl PgCatalog {
    /// Inserts new products and their variants with one statement each (arrays
    /// unnested), and their events with one more.
    async fn write_products(&self, conn: &mut PgConnection, products: &[Product]) -> Result<()> {
        let mut ids = Vec::with_capacity(products.len());
        let mut slugs = Vec::with_capacity(products.len());
        let mut categories = Vec::with_capacity(products.len());
        let mut statuses = Vec::with_capacity(products.len());
        let mut attributes = Vec::with_capacity(products.len());
        let mut bodies = Vec::with_capacity(products.len());
        let mut stamps = Vec::with_capacity(products.len());
        let (mut skus, mut owners, mut positions, mut variants) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for p in products {
            let mut body = serde_json::to_value(p).map_err(corrupt)?;
            if let Some(o) = body.as_object_mut() {
                o.remove("variants");
            }
            ids.push(p.id.as_str());
            slugs.push(p.slug.as_str());
            categories.push(p.category.as_str());
            statuses.push(p.status.as_str());
            attributes.push(serde_json::to_value(&p.attributes).map_err(corrupt)?);
            bodies.push(body);
            stamps.push(p.created_at);
            for (n, v) in p.variants.iter().enumerate() {
                skus.push(v.sku.as_str());
                owners.push(p.id.as_str());
                positions.push(i32::try_from(n + 1).map_err(corrupt)?);
                variants.push(serde_json::to_value(v).map_err(corrupt)?);
            }
        }
        sqlx::query(sql!(
            "INSERT INTO {} (id, slug, category, status, version, attributes, body,
                             created_at, updated_at)
             SELECT i, s, c, st, 1, a, b, t, t
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                           $6::jsonb[], $7::timestamptz[]) AS u(i, s, c, st, a, b, t)",
            self.db.qualified("products")
        ))
        .bind(ids)
        .bind(slugs)
        .bind(categories)
        .bind(statuses)
        .bind(attributes)
        .bind(bodies)
        .bind(stamps)
        .execute(&mut *conn)
        .await
        .map_err(|e| conflict_of(e, None))?;
        sqlx::query(sql!(
            "INSERT INTO {} (sku, product_id, position, body)
             SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::jsonb[])",
            self.db.qualified("variants")
        ))
        .bind(skus)
        .bind(owners)
        .bind(positions)
        .bind(variants)
        .execute(&mut *conn)
        .await
        .map_err(|e| conflict_of(e, None))?;
        let at = products
            .iter()
            .map(|p| p.updated_at)
            .max()
            .unwrap_or_else(|| self.db.now());
        let events: Vec<DomainEvent> = products
            .iter()
            .map(|p| DomainEvent::ProductChanged {
                product_id: p.id.clone(),
                version: p.version,
            })
            .collect();
        self.db.append_in(conn, at, &events).await?;
        Ok(())
    }
}

#[async_trait]
impl CatalogStore for PgCatalog {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn insert_product(&self, new: NewProduct, slug: Slug) -> Result<Product> {
        let product = new.into_product(slug, self.db.now())?;
        let mut tx = self.db.pool.begin().await.db()?;
        self.write_product(&mut tx, &product, true).await?;
        tx.commit().await.db()?;
        self.db.written();
        Ok(product)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(products = batch.len()), err(level = "debug"))]
    async fn insert_products(&self, batch: Vec<(NewProduct, Slug)>) -> Result<Vec<Product>> {
        let products = check_new_products(batch, self.db.now())?;
        if products.is_empty() {
            return Ok(products);
        }
        let mut tx = self.db.pool.begin().await.db()?;
        self.write_products(&mut tx, &products).await?;
        tx.commit().await.db()?;
        self.db.written();
        Ok(products)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn update_product(&self, mut product: Product) -> Result<Product> {
        let now = self.db.now();
        let mut tx = self.db.pool.begin().await.db()?;
        let stored: Option<(
            String,
            i64,
            chrono::DateTime<chrono::Utc>,
            chrono::DateTime<chrono::Utc>,
        )> = sqlx::query_as(sql!(
            "SELECT status, version, created_at, updated_at FROM {} WHERE id = $1 FOR UPDATE",
            self.db.qualified("products")
        ))
        .bind(product.id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let Some((status, version, created_at, updated_at)) = stored else {
            return Err(Error::not_found(EntityKind::Product, &product.id));
        };
        let version = crate::error::non_negative(version, "product version")?;
        if version != product.version {
            return Err(Error::conflict(
                EntityKind::Product,
                format!("version {} is stale (stored {version})", product.version),
            ));
        }
        let status = ProductStatus::parse(&status)?;
        if status != product.status {
            status.transition_to(product.status)?;
        }
        product.version = version + 1;
        product.created_at = created_at;
        product.updated_at = now.max(updated_at);
        product.validate()?;
        self.write_product(&mut tx, &product, false).await?;
        tx.commit().await.db()?;
        self.db.written();
        Ok(product)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn get_product(&self, id: &ProductId) -> Result<Option<Product>> {
        let row = sqlx::query(sql!("{} WHERE p.id = $1", self.select()))
            .bind(id.as_str())
            .fetch_optional(&self.read_pool)
            .await
            .db()?;
        row.as_ref().map(product_from).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn get_products(&self, ids: &[ProductId]) -> Result<Vec<Product>> {
        let ids = distinct_batch("ids", ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let rows = sqlx::query(sql!("{} WHERE p.id = ANY($1)", self.select()))
            .bind(&names)
            .fetch_all(&self.read_pool)
            .await
            .db()?;
        let mut found: HashMap<ProductId, Product> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let p = product_from(row)?;
            found.insert(p.id.clone(), p);
        }
        Ok(ids.into_iter().filter_map(|id| found.remove(id)).collect())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn get_product_by_slug(&self, slug: &Slug) -> Result<Option<Product>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(self.by_slug_sql.as_str()))
            .bind(slug.as_str())
            .fetch_optional(&self.read_pool)
            .await
            .db()?;
        row.as_ref().map(product_from).transpose()
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn get_product_by_sku(&self, sku: &Sku) -> Result<Option<Product>> {
        self.by_sku.read_one(sku.as_str()).await
    }

    /// One statement for all SKUs (`skus_on_sale()`, migration 1006): index lookups,
    /// no product documents built, grouped with concurrent calls. Read where
    /// `get_product_by_sku` reads.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn skus_on_sale(&self, skus: &[Sku]) -> Result<Vec<bool>> {
        check_sku_batch(skus)?;
        if skus.is_empty() {
            return Ok(Vec::new());
        }
        self.on_sale
            .read_many(skus.iter().map(|s| s.as_str().to_owned()).collect())
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_products(&self, query: &ProductQuery) -> Result<Page<Product, ProductId>> {
        let limit = check_limit(query.limit)?;
        let (cat, lower, upper) = match &query.category {
            Some(c) => {
                let (l, u) = c.subtree_range();
                (Some(c.as_str().to_owned()), Some(l), Some(u))
            }
            None => (None, None, None),
        };
        let attrs = if query.attributes.is_empty() {
            None
        } else {
            let mut m = serde_json::Map::new();
            for (k, v) in &query.attributes {
                if m.contains_key(k) && m.get(k) != Some(&serde_json::to_value(v).map_err(corrupt)?)
                {
                    // two different values for one attribute: nothing can match
                    return Ok(Page::empty());
                }
                m.insert(k.clone(), serde_json::to_value(v).map_err(corrupt)?);
            }
            Some(serde_json::Value::Object(m))
        };
        // Only the filters in use go into the SQL, so the planner can serve the category
        // range from `products_category` and attribute filters from the GIN index.
        let mut conds: Vec<String> = Vec::new();
        let mut n = 0;
        let mut p = || {
            n += 1;
            format!("${n}")
        };
        if cat.is_some() {
            let (a, b, c) = (p(), p(), p());
            conds.push(format!(
                "(p.category = {a} OR (p.category >= {b} AND p.category < {c}))"
            ));
        }
        if query.status.is_some() {
            conds.push(format!("p.status = {}", p()));
        }
        if attrs.is_some() {
            conds.push(format!("p.attributes @> {}", p()));
        }
        if query.after.is_some() {
            conds.push(format!("p.id > {}", p()));
        }
        let limit_param = p();
        let where_clause = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let text = format!(
            "{} {where_clause} ORDER BY p.id LIMIT {limit_param}",
            self.select()
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(text));
        if let (Some(c), Some(l), Some(u)) = (cat, lower, upper) {
            q = q.bind(c).bind(l).bind(u);
        }
        if let Some(s) = query.status {
            q = q.bind(s.as_str());
        }
        if let Some(a) = attrs {
            q = q.bind(a);
        }
        if let Some(after) = &query.after {
            q = q.bind(after.as_str().to_owned());
        }
        let rows = q
            .bind(limit as i64 + 1)
            .fetch_all(&self.read_pool)
            .await
            .db()?;
        let mut items = rows.iter().map(product_from).collect::<Result<Vec<_>>>()?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|p| p.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn put_categories(
        &self,
        categories: &[Category],
    ) -> Result<commerce_core::catalog::CategoryWrite> {
        if categories.is_empty() {
            return Ok(commerce_core::catalog::CategoryWrite::default());
        }
        let (paths, ids) = commerce_core::catalog::categories_to_read(categories);
        let paths: Vec<&str> = paths.iter().map(CategoryPath::as_str).collect();
        let ids: Vec<&str> = ids.iter().map(CategoryId::as_str).collect();
        let mut tx = self.db.pool.begin().await.db()?;
        // Category writes are rare: one writer at a time, so the check below sees what
        // the write lands on (reads go on).
        sqlx::query(sql!(
            "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
            self.db.qualified("categories")
        ))
        .execute(&mut *tx)
        .await
        .db()?;
        let rows: Vec<(String, String)> = sqlx::query_as(sql!(
            "SELECT path, id FROM {} WHERE path = ANY($1) OR id = ANY($2)",
            self.db.qualified("categories")
        ))
        .bind(&paths)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let mut stored = commerce_core::catalog::StoredCategories::default();
        for (path, id) in rows {
            let (path, id) = (
                CategoryPath::parse(&path).map_err(corrupt)?,
                CategoryId::new(id).map_err(corrupt)?,
            );
            if paths.contains(&path.as_str()) {
                stored.by_path.insert(path.clone(), id.clone());
            }
            if ids.contains(&id.as_str()) {
                stored.by_id.insert(id, path);
            }
        }
        let (write, report) = commerce_core::catalog::plan_put_categories(categories, &stored);
        if !write.is_empty() {
            let paths: Vec<&str> = write.iter().map(|c| c.path.as_str()).collect();
            let ids: Vec<&str> = write.iter().map(|c| c.id.as_str()).collect();
            sqlx::query(sql!(
                "INSERT INTO {t} (path, id) SELECT * FROM unnest($1::text[], $2::text[])
                 ON CONFLICT (path) DO UPDATE SET id = EXCLUDED.id",
                t = self.db.qualified("categories")
            ))
            .bind(paths)
            .bind(ids)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        tx.commit().await.db()?;
        Ok(report)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn categories(&self, root: Option<&CategoryPath>) -> Result<Vec<Category>> {
        let (r, lower, upper) = match root {
            Some(c) => {
                let (l, u) = c.subtree_range();
                (Some(c.as_str().to_owned()), Some(l), Some(u))
            }
            None => (None, None, None),
        };
        let rows: Vec<(String, String)> = sqlx::query_as(sql!(
            "SELECT path, id FROM {} WHERE $1::text IS NULL OR path = $1
                OR (path >= $2 AND path < $3) ORDER BY path",
            self.db.qualified("categories")
        ))
        .bind(r)
        .bind(lower)
        .bind(upper)
        .fetch_all(&self.read_pool)
        .await
        .db()?;
        rows.into_iter()
            .map(|(path, id)| {
                Ok(Category {
                    id: CategoryId::new(id)?,
                    path: CategoryPath::parse(&path)?,
                })
            })
            .collect()
    }
}
