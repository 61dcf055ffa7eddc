//! Co-purchase counts and shopper histories on PostgreSQL: [`PgCoPurchase`] and
//! [`PgHistory`], the durable [`CoPurchaseStore`] and [`HistoryStore`].
//!
//! Counts live in two tables: `co_purchase_popularity (product_id, orders)` and
//! `co_purchase_pairs (product_id, other_id, orders)` (both directions of a pair kept,
//! so "also bought" for one product is one index range scan, already ranked by the
//! index `(product_id, orders DESC, other_id)`). `co_purchase_orders` remembers the
//! orders counted: its primary key makes recording exactly once per order, also under
//! concurrent redelivery (the second insert waits for the first and then does nothing).
//! Every recording takes its row locks in one global order (popularity before pairs,
//! each sorted by key), so concurrent recorders never deadlock.

use std::collections::BTreeMap;

use async_trait::async_trait;
use commerce_core::activity::{
    Basket, HISTORY_CAPACITY, Interaction, InteractionKind, ProductCount, RecordOutcome,
};
use commerce_core::catalog::CategoryPath;
use commerce_core::id::{CustomerId, ProductId};
use commerce_core::store::{CoPurchaseStore, HistoryStore, check_limit};
use commerce_core::{Error, Result};
use sqlx::{PgPool, Postgres, Transaction};
use tracing::instrument;

use crate::error::DbResult;

/// [`CoPurchaseStore`] on PostgreSQL (tables from `migrations/0900_recommend.sql`, created by
/// [`PgCommerce::migrate`](crate::PgCommerce::migrate)).
#[derive(Debug, Clone)]
pub struct PgCoPurchase {
    pool: PgPool,
    schema: String,
}

impl PgCoPurchase {
    /// From an already validated schema.
    pub(crate) fn from_db(pool: PgPool, schema: String) -> Self {
        PgCoPurchase { pool, schema }
    }

    /// The store on `pool`, in `schema` (migrated by
    /// [`PgCommerce::migrate`](crate::PgCommerce::migrate)); `Validation` for a schema
    /// name that is not a plain identifier.
    pub fn new(pool: PgPool, schema: &str) -> Result<Self> {
        crate::validate_schema(schema)?;
        Ok(PgCoPurchase {
            pool,
            schema: schema.to_owned(),
        })
    }

    /// Counts the baskets of `baskets` that are new (their order ids were inserted now),
    /// in one transaction; returns one outcome per basket.
    async fn record_batch(&self, baskets: &[&Basket]) -> Result<Vec<RecordOutcome>> {
        let mut tx = self.pool.begin().await.db()?;
        // Order ids first: the ones that come back are new. Sorted, so that two
        // concurrent batches lock the ids in the same order.
        let mut ids: Vec<String> = baskets
            .iter()
            .map(|b| b.order_id().as_str().to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        let fresh: Vec<String> = sqlx::query_scalar(sql!(
            "INSERT INTO \"{s}\".co_purchase_orders (order_id)
             SELECT id FROM unnest($1::text[]) AS t(id) ORDER BY id
             ON CONFLICT (order_id) DO NOTHING
             RETURNING order_id",
            s = self.schema
        ))
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let mut fresh: std::collections::HashSet<String> = fresh.into_iter().collect();

        let mut outcomes = Vec::with_capacity(baskets.len());
        let mut popularity: BTreeMap<&str, i64> = BTreeMap::new();
        let mut pairs: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for basket in baskets {
            // `remove`: a basket repeated within the batch counts once.
            if fresh.remove(basket.order_id().as_str()) {
                for p in basket.products() {
                    *popularity.entry(p.as_str()).or_default() += 1;
                }
                for (x, y) in basket.pairs() {
                    *pairs.entry((x.as_str(), y.as_str())).or_default() += 1;
                }
                outcomes.push(RecordOutcome::Recorded);
            } else {
                outcomes.push(RecordOutcome::Duplicate);
            }
        }
        upsert_popularity(&self.schema, &mut tx, &popularity).await?;
        upsert_pairs(&self.schema, &mut tx, &pairs).await?;
        tx.commit().await.db()?;
        Ok(outcomes)
    }
}

async fn upsert_popularity(
    schema: &str,
    tx: &mut Transaction<'_, Postgres>,
    counts: &BTreeMap<&str, i64>,
) -> Result<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let (ids, adds): (Vec<&str>, Vec<i64>) = counts.iter().map(|(k, v)| (*k, *v)).unzip();
    sqlx::query(sql!(
        "INSERT INTO \"{s}\".co_purchase_popularity (product_id, orders)
         SELECT id, n FROM unnest($1::text[], $2::int8[]) AS t(id, n) ORDER BY id
         ON CONFLICT (product_id)
         DO UPDATE SET orders = \"{s}\".co_purchase_popularity.orders + EXCLUDED.orders",
        s = schema
    ))
    .bind(&ids)
    .bind(&adds)
    .execute(&mut **tx)
    .await
    .db()?;
    Ok(())
}

async fn upsert_pairs(
    schema: &str,
    tx: &mut Transaction<'_, Postgres>,
    counts: &BTreeMap<(&str, &str), i64>,
) -> Result<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut xs = Vec::with_capacity(counts.len());
    let mut ys = Vec::with_capacity(counts.len());
    let mut adds = Vec::with_capacity(counts.len());
    for ((x, y), n) in counts {
        xs.push(*x);
        ys.push(*y);
        adds.push(*n);
    }
    sqlx::query(sql!(
        "INSERT INTO \"{s}\".co_purchase_pairs (product_id, other_id, orders)
         SELECT x, y, n FROM unnest($1::text[], $2::text[], $3::int8[]) AS t(x, y, n)
         ORDER BY x, y
         ON CONFLICT (product_id, other_id)
         DO UPDATE SET orders = \"{s}\".co_purchase_pairs.orders + EXCLUDED.orders",
        s = schema
    ))
    .bind(&xs)
    .bind(&ys)
    .bind(&adds)
    .execute(&mut **tx)
    .await
    .db()?;
    Ok(())
}

fn product_counts(rows: Vec<(String, i64)>) -> Result<Vec<ProductCount>> {
    rows.into_iter()
        .map(|(id, n)| {
            Ok(ProductCount {
                product_id: ProductId::new(id)
                    .map_err(|e| Error::permanent("corrupt product id in co-purchase table", e))?,
                count: crate::error::non_negative(n, "co-purchase count")?,
            })
        })
        .collect()
}

#[async_trait]
impl CoPurchaseStore for PgCoPurchase {
    #[instrument(level = "debug", skip_all, fields(order = %basket.order_id()), err)]
    async fn record(&self, basket: &Basket) -> Result<RecordOutcome> {
        let mut out = self.record_batch(&[basket]).await?;
        Ok(out.pop().unwrap_or(RecordOutcome::Duplicate))
    }

    #[instrument(level = "debug", skip_all, fields(baskets = baskets.len()), err)]
    async fn record_all(&self, baskets: &[Basket]) -> Result<Vec<RecordOutcome>> {
        if baskets.is_empty() {
            return Ok(Vec::new());
        }
        let refs: Vec<&Basket> = baskets.iter().collect();
        self.record_batch(&refs).await
    }

    #[instrument(level = "debug", skip(self), err)]
    async fn also_bought(&self, product: &ProductId, limit: u32) -> Result<Vec<ProductCount>> {
        check_limit(limit)?;
        let rows: Vec<(String, i64)> = sqlx::query_as(sql!(
            "SELECT other_id, orders FROM \"{s}\".co_purchase_pairs
             WHERE product_id = $1
             ORDER BY orders DESC, other_id COLLATE \"C\"
             LIMIT $2",
            s = self.schema
        ))
        .bind(product.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .db()?;
        product_counts(rows)
    }

    #[instrument(level = "debug", skip(self), err)]
    async fn popular(&self, limit: u32) -> Result<Vec<ProductCount>> {
        check_limit(limit)?;
        let rows: Vec<(String, i64)> = sqlx::query_as(sql!(
            "SELECT product_id, orders FROM \"{s}\".co_purchase_popularity
             ORDER BY orders DESC, product_id COLLATE \"C\"
             LIMIT $1",
            s = self.schema
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .db()?;
        product_counts(rows)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn orders_recorded(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(sql!(
            "SELECT count(*) FROM \"{s}\".co_purchase_orders",
            s = self.schema
        ))
        .fetch_one(&self.pool)
        .await
        .db()?;
        crate::error::non_negative(n, "orders recorded")
    }
}

/// [`HistoryStore`] on PostgreSQL: one row per interaction, the newest
/// [`HISTORY_CAPACITY`] kept per shopper (older rows are trimmed as new ones arrive).
#[derive(Debug, Clone)]
pub struct PgHistory {
    pool: PgPool,
    schema: String,
}

impl PgHistory {
    /// From an already validated schema.
    pub(crate) fn from_db(pool: PgPool, schema: String) -> Self {
        PgHistory { pool, schema }
    }

    /// The store on `pool`, in `schema` (see [`PgCoPurchase::new`]).
    pub fn new(pool: PgPool, schema: &str) -> Result<Self> {
        crate::validate_schema(schema)?;
        Ok(PgHistory {
            pool,
            schema: schema.to_owned(),
        })
    }
}

fn parse_kind(kind: &str) -> Result<InteractionKind> {
    match kind {
        "viewed" => Ok(InteractionKind::Viewed),
        "carted" => Ok(InteractionKind::Carted),
        "bought" => Ok(InteractionKind::Bought),
        other => Err(Error::backend(
            false,
            format!("corrupt interaction kind {other:?} in shopper_history"),
        )),
    }
}

type HistoryRow = (
    String,
    String,
    String,
    String,
    chrono::DateTime<chrono::Utc>,
);

#[async_trait]
impl HistoryStore for PgHistory {
    #[instrument(level = "debug", skip_all, fields(customer = %customer, product = %interaction.product_id), err)]
    async fn record(&self, customer: &CustomerId, interaction: &Interaction) -> Result<()> {
        let mut tx = self.pool.begin().await.db()?;
        let inserted = sqlx::query(sql!(
            "INSERT INTO \"{s}\".shopper_history (customer_id, product_id, brand, category, kind, at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (customer_id, product_id, kind, at) DO NOTHING",
            s = self.schema
        ),
        )
        .bind(customer.as_str())
        .bind(interaction.product_id.as_str())
        .bind(&interaction.brand)
        .bind(interaction.category.as_str())
        .bind(interaction.kind.as_str())
        .bind(interaction.at)
        .execute(&mut *tx)
        .await
        .db()?
        .rows_affected();
        if inserted > 0 {
            sqlx::query(sql!(
                "DELETE FROM \"{s}\".shopper_history
                 WHERE customer_id = $1 AND seq IN (
                     SELECT seq FROM \"{s}\".shopper_history WHERE customer_id = $1
                     ORDER BY at DESC, seq DESC OFFSET $2)",
                s = self.schema
            ))
            .bind(customer.as_str())
            .bind(HISTORY_CAPACITY as i64)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        tx.commit().await.db()?;
        Ok(())
    }

    #[instrument(level = "debug", skip(self), err)]
    async fn recent(&self, customer: &CustomerId, limit: u32) -> Result<Vec<Interaction>> {
        check_limit(limit)?;
        let rows: Vec<HistoryRow> = sqlx::query_as(sql!(
            "SELECT product_id, brand, category, kind, at FROM \"{s}\".shopper_history
             WHERE customer_id = $1
             ORDER BY at DESC, seq DESC
             LIMIT $2",
            s = self.schema
        ))
        .bind(customer.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.into_iter()
            .map(|(product, brand, category, kind, at)| {
                Ok(Interaction {
                    product_id: ProductId::new(product)
                        .map_err(|e| Error::permanent("corrupt product id in history", e))?,
                    brand,
                    category: CategoryPath::parse(&category)
                        .map_err(|e| Error::permanent("corrupt category in history", e))?,
                    kind: parse_kind(&kind)?,
                    at,
                })
            })
            .collect()
    }
}
