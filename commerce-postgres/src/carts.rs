//! Server-side carts: [`PgCarts`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use commerce_core::cart::{Cart, CartItem, CartLimits, CartOwner, MergeReport};
use commerce_core::clock::Timestamp;
use commerce_core::id::{CartId, CustomerId, Sku};
use commerce_core::store::CartStore;
use commerce_core::{EntityKind, Error, Result};
use sqlx::PgConnection;

use crate::db::Db;
use crate::error::{DbResult, corrupt};

/// The [`CartStore`] on PostgreSQL: one row per cart (JSONB body).
///
/// Every write runs the rules of [`Cart`] inside a transaction holding the cart's row
/// lock (`SELECT ... FOR UPDATE`), so concurrent writers queue instead of losing
/// updates; a cart created concurrently by two writers is retried once the first
/// insert commits. A merge locks both carts in id order.
#[derive(Debug)]
pub struct PgCarts {
    db: Arc<Db>,
}

/// Attempts of a write that lost a race to create the cart.
const CREATE_RETRIES: usize = 5;

impl PgCarts {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        PgCarts { db }
    }

    async fn load_locked(&self, conn: &mut PgConnection, id: &CartId) -> Result<Option<Cart>> {
        let body: Option<serde_json::Value> = sqlx::query_scalar(sql!(
            "SELECT body FROM {} WHERE id = $1 FOR UPDATE",
            self.db.t("carts")
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
                "UPDATE {} SET body = $2, expires_at = $3 WHERE id = $1",
                self.db.t("carts")
            )
        } else {
            sql!(
                "INSERT INTO {} (id, body, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                self.db.t("carts")
            )
        };
        let done = sqlx::query(q)
            .bind(cart.id.as_str())
            .bind(body)
            .bind(cart.expires_at)
            .execute(&mut *conn)
            .await
            .db()?;
        Ok(done.rows_affected() == 1)
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
    async fn get_cart(&self, id: &CartId, owner: &CartOwner) -> Result<Option<Cart>> {
        let now = self.db.now();
        let body: Option<serde_json::Value> = sqlx::query_scalar(sql!(
            "SELECT body FROM {} WHERE id = $1",
            self.db.t("carts")
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

    async fn clear_cart(&self, id: &CartId, owner: &CartOwner) -> Result<()> {
        let now = self.db.now();
        let mut tx = self.db.pool.begin().await.db()?;
        if let Some(c) = self.load_locked(&mut tx, id).await? {
            if !c.is_expired(now) && &c.owner == owner {
                sqlx::query(sql!("DELETE FROM {} WHERE id = $1", self.db.t("carts")))
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .db()?;
            }
        }
        tx.commit().await.db()?;
        Ok(())
    }

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
            sqlx::query(sql!("DELETE FROM {} WHERE id = $1", self.db.t("carts")))
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
}
