//! Price lists and customer groups on PostgreSQL: [`PgPriceLists`].

use std::sync::Arc;

use async_trait::async_trait;
use commerce_core::Result;
use commerce_core::clock::Timestamp;
use commerce_core::id::{CustomerGroupId, CustomerId};
use commerce_core::promotion::PriceList;
use commerce_core::store::{PriceListStore, normalized_groups};
use sqlx::Row;

use crate::db::Db;
use crate::error::{DbResult, corrupt};

/// The [`PriceListStore`] on PostgreSQL (tables from
/// `migrations/0950_order_promotions.sql`): one row per list (its body as JSONB, its
/// window in columns for the "valid now" filter) and one row per customer with their
/// groups. Every write is one statement.
#[derive(Debug, Clone)]
pub struct PgPriceLists {
    db: Arc<Db>,
}

impl PgPriceLists {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        PgPriceLists { db }
    }
}

#[async_trait]
impl PriceListStore for PgPriceLists {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn put_price_list(&self, list: &PriceList) -> Result<()> {
        list.validate()?;
        let body = serde_json::to_value(list).map_err(corrupt)?;
        sqlx::query(sql!(
            "INSERT INTO {} (id, currency, starts_at, ends_at, body) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET currency = EXCLUDED.currency,
                 starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at, body = EXCLUDED.body",
            self.db.qualified("price_lists")
        ))
        .bind(list.id.as_str())
        .bind(list.currency.code())
        .bind(list.starts_at)
        .bind(list.ends_at)
        .bind(&body)
        .execute(&self.db.pool)
        .await
        .db()?;
        self.db.written();
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn active_price_lists(&self, now: Timestamp) -> Result<Vec<PriceList>> {
        let rows = sqlx::query(sql!(
            "SELECT body FROM {} WHERE (starts_at IS NULL OR starts_at <= $1)
               AND (ends_at IS NULL OR $1 < ends_at) ORDER BY id",
            self.db.qualified("price_lists")
        ))
        .bind(now)
        .fetch_all(&self.db.pool)
        .await
        .db()?;
        rows.iter()
            .map(|r| {
                let body: serde_json::Value = r.try_get("body").db()?;
                serde_json::from_value(body).map_err(corrupt)
            })
            .collect()
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn set_customer_groups(
        &self,
        customer: &CustomerId,
        groups: &[CustomerGroupId],
    ) -> Result<()> {
        let groups = normalized_groups(groups)?;
        let names: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
        let table = self.db.qualified("customer_groups");
        let query = if names.is_empty() {
            sqlx::query(sql!("DELETE FROM {table} WHERE customer_id = $1")).bind(customer.as_str())
        } else {
            sqlx::query(sql!(
                "INSERT INTO {table} (customer_id, groups) VALUES ($1, $2)
                 ON CONFLICT (customer_id) DO UPDATE SET groups = EXCLUDED.groups"
            ))
            .bind(customer.as_str())
            .bind(names)
        };
        query.execute(&self.db.pool).await.db()?;
        self.db.written();
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn customer_groups(&self, customer: &CustomerId) -> Result<Vec<CustomerGroupId>> {
        let row = sqlx::query(sql!(
            "SELECT groups FROM {} WHERE customer_id = $1",
            self.db.qualified("customer_groups")
        ))
        .bind(customer.as_str())
        .fetch_optional(&self.db.pool)
        .await
        .db()?;
        let Some(row) = row else {
            return Ok(Vec::new());
        };
        let names: Vec<String> = row.try_get("groups").db()?;
        names
            .into_iter()
            .map(|n| CustomerGroupId::new(n).map_err(corrupt))
            .collect()
    }
}
