//! Server-side carts: [`PgCarts`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use commerce_core::cart::{Cart, CartAddresses, CartItem, CartLimits, CartOwner, MergeReport};
use commerce_core::clock::Timestamp;
use commerce_core::id::{CartId, CustomerId, Sku};
use commerce_core::store::{CartStore, check_limit};
use commerce_core::{EntityKind, Error, Result};
use sqlx::PgConnection;

use crate::db::Db;
use crate::error::{DbResult, corrupt};

/// The [`CartStore`] on PostgreSQL: one row per cart (JSONB body, the serde form of
/// [`Cart`], saved addresses included; reading it back validates every address again,
/// so a tampered body is a `Corrupt` error, never an unvalidated address).
///
/// Every write runs the rules of [`Cart`] inside a transaction holding the cart's row
/// lock (`SELECT ... FOR UPDATE`), so concurrent writers queue instead of losing
/// updates; a cart created concurrently by two writers is retried once the first
/// insert commits. A merge locks both carts in id order.
#[derive(Debug)]
pub struct PgCarts {
    db: Arc<Db>,
}

/// One microsecond: sqlx truncates times to microseconds, so a stored time is at most
/// this much earlier than the exact one.
const MICROSECOND: chrono::Duration = chrono::Duration::microseconds(1);

/// Attempts of a write that lost a race to create the cart.
const CREATE_RETRIES: usize = 5;

impl PgCarts {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        PgCarts { db }
    }

    async fn load_locked(&self, conn: &mut PgConnection, id: &CartId) -> Result<Option<Cart>> {
        let body: Option<serde_json::Value> = sqlx::query_scalar(sql!(
            "SELECT body FROM {} WHERE id = $1 FOR UPDATE",
            self.db.qualified("carts")
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .db()?;
        body.map(|b| serde_json::from_value(b).map_err(corrupt))
            .transpose()
    }

    /// Inserts or replaces; `false` if an insert lost a race.
    async fn store(&self, conn: &mut PgConnection, cart: &Cart, existed: bool) -> Result<bool> {
        let body = serde_json::to_value(cart).map_err(corrupt)?;
        let q = if existed {
            sql!(
                "UPDATE {} SET body = $2, expires_at = $3, updated_at = $4, lines = $5
                 WHERE id = $1",
                self.db.qualified("carts")
            )
        } else {
            sql!(
                "INSERT INTO {} (id, body, expires_at, updated_at, lines)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO NOTHING",
                self.db.qualified("carts")
            )
        };
        let lines = i32::try_from(cart.items.len()).unwrap_or(i32::MAX);
        let done = sqlx::query(q)
            .bind(cart.id.as_str())
            .bind(body)
            .bind(cart.expires_at)
            .bind(cart.updated_at)
            .bind(lines)
            .execute(&mut *conn)
            .await
            .db()?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes up to `batch` expired carts (their `expires_at` at or before the clock's
    /// now); returns how many. Safe to run on several nodes at once: each run locks
    /// the rows it deletes with `FOR UPDATE SKIP LOCKED`, so concurrent sweepers take
    /// disjoint batches and never wait for a cart a shopper is writing (such a cart is
    /// left for a later run, and is re-checked after the write commits). Uses the
    /// `carts_expiry` index. A `batch` of 0 or above 10,000 is `Validation`.
    ///
    /// ```no_run
    /// # async fn demo(pg: commerce_postgres::PgCommerce) -> commerce_core::Result<()> {
    /// // A periodic job on every node: delete in batches until none are left.
    /// while pg.carts.delete_expired(500).await? == 500 {}
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    pub async fn delete_expired(&self, batch: u32) -> Result<u64> {
        if batch == 0 || batch > 10_000 {
            return Err(Error::validation(
                "batch",
                format!("{batch} is not between 1 and 10000"),
            ));
        }
        // A stored time may be up to 1 µs before the exact one: only rows whose stored
        // expiry is a whole microsecond before now are certainly expired.
        let cutoff = self.db.now() - MICROSECOND;
        let done = sqlx::query(sql!(
            "DELETE FROM {t} WHERE id IN (
                 SELECT id FROM {t} WHERE expires_at <= $1
                 ORDER BY expires_at LIMIT $2
                 FOR UPDATE SKIP LOCKED)",
            t = self.db.qualified("carts")
        ))
        .bind(cutoff)
        .bind(i64::from(batch))
        .execute(&self.db.pool)
        .await
        .db()?;
        Ok(done.rows_affected())
    }

    /// Runs [`PgCarts::delete_expired`] every `every` until `stop` resolves (on every
    /// node, if wished); each round deletes batches until one comes back short. Errors
    /// are logged and retried next round. Returns how many carts it deleted.
    ///
    /// ```no_run
    /// # async fn demo(pg: commerce_postgres::PgCommerce) {
    /// use std::time::Duration;
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let carts = pg.carts.clone();
    /// let sweeper = tokio::spawn(async move {
    ///     carts.sweep_expired(Duration::from_secs(60), 500, async { let _ = stopped.await; }).await
    /// });
    /// // ... on shutdown:
    /// let _ = stop.send(());
    /// let deleted = sweeper.await;
    /// # }
    /// ```
    pub async fn sweep_expired(
        &self,
        every: std::time::Duration,
        batch: u32,
        stop: impl std::future::Future<Output = ()> + Send,
    ) -> u64 {
        let mut deleted = 0u64;
        tokio::pin!(stop);
        loop {
            loop {
                match self.delete_expired(batch).await {
                    Ok(n) => {
                        deleted += n;
                        if n < u64::from(batch) {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cart sweeper: deleting expired carts failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = &mut stop => return deleted,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    async fn write(
        &self,
        id: &CartId,
        owner: &CartOwner,
        limits: &CartLimits,
        create: bool,
        f: impl Fn(&mut Cart, Timestamp) -> Result<()> + Send + Sync,
    ) -> Result<Cart> {
        for _ in 0..CREATE_RETRIES {
            let now = self.db.now();
            let mut tx = self.db.pool.begin().await.db()?;
            let stored = self.load_locked(&mut tx, id).await?;
            let existed = stored.is_some();
            let mut cart = match stored {
                Some(c) if !c.is_expired(now) && &c.owner == owner => c,
                Some(c) if create && c.is_expired(now) => {
                    Cart::new(id.clone(), owner.clone(), now, limits)
                }
                None if create => Cart::new(id.clone(), owner.clone(), now, limits),
                _ => return Err(Error::not_found(EntityKind::Cart, id)),
            };
            f(&mut cart, now)?;
            if self.store(&mut tx, &cart, existed).await? {
                tx.commit().await.db()?;
                return Ok(cart);
            }
            tx.rollback().await.db()?;
        }
        Err(Error::backend(
            true,
            "the cart was being created concurrently; retry",
        ))
    }
}

#[async_trait]
impl CartStore for PgCarts {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn get_cart(&self, id: &CartId, owner: &CartOwner) -> Result<Option<Cart>> {
        let now = self.db.now();
        let body: Option<serde_json::Value> = sqlx::query_scalar(sql!(
            "SELECT body FROM {} WHERE id = $1",
            self.db.qualified("carts")
        ))
        .bind(id.as_str())
        .fetch_optional(&self.db.pool)
        .await
        .db()?;
        let cart: Option<Cart> = body
            .map(|b| serde_json::from_value(b).map_err(corrupt))
            .transpose()?;
        Ok(cart.filter(|c| !c.is_expired(now) && &c.owner == owner))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn add_item(
        &self,
        id: &CartId,
        owner: &CartOwner,
        item: CartItem,
        limits: &CartLimits,
    ) -> Result<Cart> {
        self.write(id, owner, limits, true, |cart, now| {
            cart.add_item(item.clone(), now, limits)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn set_quantity(
        &self,
        id: &CartId,
        owner: &CartOwner,
        sku: &Sku,
        quantity: u32,
        limits: &CartLimits,
    ) -> Result<Cart> {
        self.write(id, owner, limits, false, |cart, now| {
            cart.set_quantity(sku, quantity, now, limits)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn remove_item(
        &self,
        id: &CartId,
        owner: &CartOwner,
        sku: &Sku,
        limits: &CartLimits,
    ) -> Result<Cart> {
        self.write(id, owner, limits, false, |cart, now| {
            cart.remove_item(sku, now, limits)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn set_addresses(
        &self,
        id: &CartId,
        owner: &CartOwner,
        addresses: CartAddresses,
        limits: &CartLimits,
    ) -> Result<Cart> {
        self.write(id, owner, limits, false, |cart, now| {
            cart.set_addresses(addresses.clone(), now, limits);
            Ok(())
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn clear_cart(&self, id: &CartId, owner: &CartOwner) -> Result<()> {
        let now = self.db.now();
        let mut tx = self.db.pool.begin().await.db()?;
        if let Some(c) = self.load_locked(&mut tx, id).await? {
            if !c.is_expired(now) && &c.owner == owner {
                sqlx::query(sql!(
                    "DELETE FROM {} WHERE id = $1",
                    self.db.qualified("carts")
                ))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .db()?;
            }
        }
        tx.commit().await.db()?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn merge_carts(
        &self,
        guest: &CartId,
        customer: &CustomerId,
        caps: &BTreeMap<Sku, u32>,
        limits: &CartLimits,
    ) -> Result<(Cart, MergeReport)> {
        let target_id = CartId::for_customer(customer);
        let owner = CartOwner::Customer(customer.clone());
        for _ in 0..CREATE_RETRIES {
            let now = self.db.now();
            let mut tx = self.db.pool.begin().await.db()?;
            // lock both rows in id order
            let mut ids = [guest.clone(), target_id.clone()];
            ids.sort();
            let mut loaded: BTreeMap<CartId, Cart> = BTreeMap::new();
            for id in &ids {
                if let Some(c) = self.load_locked(&mut tx, id).await? {
                    loaded.insert(id.clone(), c);
                }
            }
            let guest_cart = loaded
                .get(guest)
                .filter(|c| !c.is_expired(now) && c.owner == CartOwner::Guest)
                .cloned();
            let stored_target = loaded.get(&target_id).cloned();
            let existed = stored_target.is_some();
            let mut target = match stored_target {
                Some(c) if !c.is_expired(now) && c.owner == owner => c,
                Some(c) if !c.is_expired(now) => {
                    return Err(Error::not_found(EntityKind::Cart, &c.id));
                }
                _ => Cart::new(target_id.clone(), owner.clone(), now, limits),
            };
            let Some(g) = guest_cart else {
                tx.commit().await.db()?;
                return Ok((target, MergeReport::default()));
            };
            let report = target.merge_from(&g, caps, now, limits);
            sqlx::query(sql!(
                "DELETE FROM {} WHERE id = $1",
                self.db.qualified("carts")
            ))
            .bind(guest.as_str())
            .execute(&mut *tx)
            .await
            .db()?;
            if self.store(&mut tx, &target, existed).await? {
                tx.commit().await.db()?;
                return Ok((target, report));
            }
            tx.rollback().await.db()?;
        }
        Err(Error::backend(
            true,
            "the cart was being created concurrently; retry",
        ))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_abandoned(&self, since: Timestamp, limit: u32) -> Result<Vec<Cart>> {
        let limit = check_limit(limit)?;
        let now = self.db.now();
        // Stored times are truncated to microseconds (stored <= exact < stored + 1 µs):
        // the query over-selects by at most the boundary microsecond and the exact
        // check on the body decides; pages by (updated_at, id) until `limit` are found.
        let mut found: Vec<Cart> = Vec::with_capacity(limit);
        let mut after: Option<(Timestamp, String)> = None;
        loop {
            let rows: Vec<(String, Timestamp, serde_json::Value)> = sqlx::query_as(sql!(
                "SELECT id, updated_at, body FROM {} WHERE lines > 0
                   AND updated_at <= $1 AND expires_at > $2
                   AND ($3::timestamptz IS NULL OR (updated_at, id) > ($3, $4))
                 ORDER BY updated_at, id LIMIT $5",
                self.db.qualified("carts")
            ))
            .bind(since)
            .bind(now - MICROSECOND)
            .bind(after.as_ref().map(|(t, _)| *t))
            .bind(after.as_ref().map(|(_, id)| id.as_str()))
            .bind(limit as i64)
            .fetch_all(&self.db.pool)
            .await
            .db()?;
            let full_page = rows.len() == limit;
            after = rows.last().map(|(id, t, _)| (*t, id.clone()));
            for (_, _, body) in rows {
                let cart: Cart = serde_json::from_value(body).map_err(corrupt)?;
                if !cart.is_expired(now) && !cart.items.is_empty() && cart.updated_at <= since {
                    found.push(cart);
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
            }
            if !full_page {
                return Ok(found);
            }
        }
    }
}
