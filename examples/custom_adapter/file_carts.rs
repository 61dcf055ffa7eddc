//! `FileCarts`: a [`CartStore`] that keeps one JSON file per cart in a directory.
//!
//! The point is the path an integrator follows, on a backend small enough to read in one
//! sitting:
//!
//! * **Reuse the domain rules.** Every write loads the cart, applies the same-named
//!   method of [`Cart`] (`add_item`, `set_quantity`, `merge_from`, ...) and stores the
//!   result, so limits, merging, expiry and versions behave exactly like every other
//!   store. Only ownership, expiry-on-read and atomicity are this file's job.
//! * **Atomic writes.** A cart is written to a temporary file, flushed, and renamed over
//!   the old one: a reader sees the old cart or the new one, never half of one.
//! * **No lost update.** Writers of one cart are serialised by a lock (64 stripes,
//!   chosen by a hash of the cart id), held across read-modify-write. The lock lives in
//!   this process: two processes sharing the directory would need a file lock instead.
//! * **Crash-safe merge.** Merging touches two files. The customer's cart records the
//!   guest carts merged into it, and is written first (the commit point); the guest file
//!   is deleted after. If the process dies in between, the next merge sees the guest id
//!   already recorded and only deletes the leftover file: never merged twice.
//! * **Blocking I/O off the runtime.** File system calls run in
//!   `tokio::task::spawn_blocking`.
//! * **Errors by kind.** I/O failures map to [`Error::Backend`] by
//!   [`std::io::ErrorKind`], never by message text.

use std::collections::BTreeMap;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use commerce_core::cart::{Cart, CartAddresses, CartItem, CartLimits, CartOwner, MergeReport};
use commerce_core::clock::{Clock, Timestamp};
use commerce_core::id::{CartId, CustomerId, Sku};
use commerce_core::store::{CartStore, check_limit};
use commerce_core::{EntityKind, Error, Result};
use serde::{Deserialize, Serialize};
use tracing::instrument;

/// How many guest ids a customer cart remembers as merged (for crash recovery).
const REMEMBERED_MERGES: usize = 16;
const STRIPES: usize = 64;

/// What one file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    cart: Cart,
    /// Guest carts already merged into this one, newest last.
    #[serde(default)]
    merged_guests: Vec<CartId>,
}

/// The adapter's own error, mapped into [`Error`] in one place.
#[derive(Debug, thiserror::Error)]
enum FileError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cart file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl From<FileError> for Error {
    fn from(e: FileError) -> Self {
        match &e {
            FileError::Io { source, .. } => {
                // By kind: transient conditions are worth a retry, the rest are not.
                let retryable = matches!(
                    source.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::ResourceBusy
                        | io::ErrorKind::StorageFull
                );
                let message = e.to_string();
                if retryable {
                    Error::retryable(message, e)
                } else {
                    Error::permanent(message, e)
                }
            }
            FileError::Corrupt { .. } => Error::permanent(e.to_string(), e),
        }
    }
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    stripes: Vec<Mutex<()>>,
}

/// A [`CartStore`] on a directory of JSON files.
///
/// ```ignore
/// let carts = FileCarts::open("/var/lib/shop/carts", Arc::new(SystemClock))?;
/// ```
#[derive(Debug, Clone)]
pub struct FileCarts {
    inner: Arc<Inner>,
}

impl FileCarts {
    /// Uses (and creates if needed) `dir`.
    pub fn open(dir: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|source| FileError::Io {
            op: "create",
            path: dir.clone(),
            source,
        })?;
        Ok(FileCarts {
            inner: Arc::new(Inner {
                dir,
                clock,
                stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            }),
        })
    }

    /// Deletes the files of expired carts; returns how many.
    pub async fn purge_expired(&self) -> Result<usize> {
        self.blocking(|inner| {
            let now = inner.clock.now();
            let mut purged = 0;
            for id in inner.cart_ids()? {
                let _guard = inner.lock(&id);
                if inner.load(&id)?.is_some_and(|s| s.cart.is_expired(now)) {
                    inner.delete(&id)?;
                    purged += 1;
                }
            }
            Ok(purged)
        })
        .await
    }

    /// Runs `f` on a blocking thread.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::permanent("the blocking file task failed", e))?
    }

    /// Read-modify-write of one cart under its lock. `create` says whether a missing
    /// (or expired) cart starts empty; `f` gets the live cart and may fail, in which
    /// case nothing is written.
    async fn write<F>(
        &self,
        id: &CartId,
        owner: &CartOwner,
        limits: &CartLimits,
        create: bool,
        f: F,
    ) -> Result<Cart>
    where
        F: FnOnce(&mut Cart, Timestamp) -> Result<()> + Send + 'static,
    {
        let (id, owner, limits) = (id.clone(), owner.clone(), *limits);
        self.blocking(move |inner| {
            let _guard = inner.lock(&id);
            let now = inner.clock.now();
            let stored = inner.load(&id)?;
            let mut stored = match stored {
                Some(s) if !s.cart.is_expired(now) && s.cart.owner == owner => s,
                // A live cart of someone else: behave as if it did not exist, without
                // touching it.
                Some(s) if !s.cart.is_expired(now) => {
                    return Err(Error::not_found(EntityKind::Cart, &id));
                }
                _ if create => Stored {
                    cart: Cart::new(id.clone(), owner.clone(), now, &limits),
                    merged_guests: Vec::new(),
                },
                _ => return Err(Error::not_found(EntityKind::Cart, &id)),
            };
            f(&mut stored.cart, now)?;
            inner.save(&stored)?;
            Ok(stored.cart)
        })
        .await
    }
}

impl Inner {
    /// The ids of the cart files in the directory.
    fn cart_ids(&self) -> Result<Vec<CartId>, FileError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| FileError::Io {
            op: "list",
            path: self.dir.clone(),
            source,
        })?;
        Ok(entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                name.to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| CartId::new(n).ok())
            })
            .collect())
    }

    fn path(&self, id: &CartId) -> PathBuf {
        // Cart ids are `[A-Za-z0-9._:-]`: no separators, safe as file names.
        self.dir.join(format!("{id}.json"))
    }

    fn stripe(&self, id: &CartId) -> usize {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        (h.finish() % STRIPES as u64) as usize
    }

    fn lock(&self, id: &CartId) -> MutexGuard<'_, ()> {
        lock(&self.stripes[self.stripe(id)])
    }

    fn load(&self, id: &CartId) -> Result<Option<Stored>, FileError> {
        let path = self.path(id);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| FileError::Corrupt { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FileError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }

    /// Writes a temporary file next to the cart and renames it over the cart.
    fn save(&self, stored: &Stored) -> Result<(), FileError> {
        let path = self.path(&stored.cart.id);
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            stored.cart.id,
            uuid::Uuid::new_v4().simple()
        ));
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| FileError::Io { op, path, source }
        };
        let bytes = serde_json::to_vec(stored).map_err(|source| FileError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mut file = fs::File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(&bytes).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("sync", &tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        Ok(())
    }

    fn delete(&self, id: &CartId) -> Result<(), FileError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(FileError::Io {
                op: "delete",
                path,
                source,
            }),
        }
    }
}

fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    // The guarded value is `()`: a panic elsewhere cannot leave it inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl CartStore for FileCarts {
    #[instrument(level = "debug", skip_all, fields(cart_id = %id), err(level = "debug"))]
    async fn get_cart(&self, id: &CartId, owner: &CartOwner) -> Result<Option<Cart>> {
        let (id, owner) = (id.clone(), owner.clone());
        self.blocking(move |inner| {
            let now = inner.clock.now();
            Ok(inner
                .load(&id)?
                .map(|s| s.cart)
                .filter(|c| !c.is_expired(now) && c.owner == owner))
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(cart_id = %id, sku = %item.sku), err(level = "debug"))]
    async fn add_item(
        &self,
        id: &CartId,
        owner: &CartOwner,
        item: CartItem,
        limits: &CartLimits,
    ) -> Result<Cart> {
        let l = *limits;
        self.write(id, owner, limits, true, move |cart, now| {
            cart.add_item(item, now, &l)
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(cart_id = %id, sku = %sku), err(level = "debug"))]
    async fn set_quantity(
        &self,
        id: &CartId,
        owner: &CartOwner,
        sku: &Sku,
        quantity: u32,
        limits: &CartLimits,
    ) -> Result<Cart> {
        let (sku, l) = (sku.clone(), *limits);
        self.write(id, owner, limits, false, move |cart, now| {
            cart.set_quantity(&sku, quantity, now, &l)
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(cart_id = %id, sku = %sku), err(level = "debug"))]
    async fn remove_item(
        &self,
        id: &CartId,
        owner: &CartOwner,
        sku: &Sku,
        limits: &CartLimits,
    ) -> Result<Cart> {
        let (sku, l) = (sku.clone(), *limits);
        self.write(id, owner, limits, false, move |cart, now| {
            cart.remove_item(&sku, now, &l)
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(cart_id = %id), err(level = "debug"))]
    async fn set_addresses(
        &self,
        id: &CartId,
        owner: &CartOwner,
        addresses: CartAddresses,
        limits: &CartLimits,
    ) -> Result<Cart> {
        let l = *limits;
        self.write(id, owner, limits, false, move |cart, now| {
            cart.set_addresses(addresses, now, &l);
            Ok(())
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(cart_id = %id), err(level = "debug"))]
    async fn clear_cart(&self, id: &CartId, owner: &CartOwner) -> Result<()> {
        let (id, owner) = (id.clone(), owner.clone());
        self.blocking(move |inner| {
            let _guard = inner.lock(&id);
            let now = inner.clock.now();
            if inner
                .load(&id)?
                .is_some_and(|s| !s.cart.is_expired(now) && s.cart.owner == owner)
            {
                inner.delete(&id)?;
            }
            Ok(())
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(guest = %guest, customer = %customer), err(level = "debug"))]
    async fn merge_carts(
        &self,
        guest: &CartId,
        customer: &CustomerId,
        caps: &BTreeMap<Sku, u32>,
        limits: &CartLimits,
    ) -> Result<(Cart, MergeReport)> {
        let (guest, customer, caps, limits) =
            (guest.clone(), customer.clone(), caps.clone(), *limits);
        self.blocking(move |inner| {
            let target_id = CartId::for_customer(&customer);
            let owner = CartOwner::Customer(customer.clone());
            // Two locks, always in stripe order, so two merges cannot deadlock.
            let (a, b) = (inner.stripe(&guest), inner.stripe(&target_id));
            let _first = lock(&inner.stripes[a.min(b)]);
            let _second = (a != b).then(|| lock(&inner.stripes[a.max(b)]));
            let now = inner.clock.now();
            let mut target = match inner.load(&target_id)? {
                Some(s) if !s.cart.is_expired(now) && s.cart.owner == owner => s,
                Some(s) if !s.cart.is_expired(now) => {
                    return Err(Error::not_found(EntityKind::Cart, &target_id));
                }
                _ => Stored {
                    cart: Cart::new(target_id.clone(), owner, now, &limits),
                    merged_guests: Vec::new(),
                },
            };
            let guest_cart = inner
                .load(&guest)?
                .map(|s| s.cart)
                .filter(|c| !c.is_expired(now) && c.owner == CartOwner::Guest);
            let Some(guest_cart) = guest_cart else {
                return Ok((target.cart, MergeReport::default()));
            };
            if target.merged_guests.contains(&guest) {
                // A previous merge committed and died before deleting the guest file.
                inner.delete(&guest)?;
                return Ok((target.cart, MergeReport::default()));
            }
            let report = target.cart.merge_from(&guest_cart, &caps, now, &limits);
            target.merged_guests.push(guest.clone());
            let excess = target.merged_guests.len().saturating_sub(REMEMBERED_MERGES);
            target.merged_guests.drain(..excess);
            inner.save(&target)?; // the commit point
            inner.delete(&guest)?;
            Ok((target.cart, report))
        })
        .await
    }
    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_abandoned(&self, since: Timestamp, limit: u32) -> Result<Vec<Cart>> {
        let limit = check_limit(limit)?;
        self.blocking(move |inner| {
            let now = inner.clock.now();
            let mut found = Vec::new();
            for id in inner.cart_ids()? {
                if let Some(s) = inner.load(&id)? {
                    let c = s.cart;
                    if !c.is_expired(now) && !c.items.is_empty() && c.updated_at <= since {
                        found.push(c);
                    }
                }
            }
            found.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
            found.truncate(limit);
            Ok(found)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use commerce_core::clock::ManualClock;

    use super::*;

    /// A merge that committed the customer cart and died before deleting the guest file
    /// is finished by the next merge, without merging twice.
    #[test]
    fn an_interrupted_merge_is_not_repeated() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("temp dir");
            let clock = Arc::new(ManualClock::default());
            let carts = FileCarts::open(dir.path(), clock.clone()).expect("open");
            let limits = CartLimits::default();
            let guest = CartId::new_guest();
            let customer = CustomerId::new("c1").expect("valid");
            let item = CartItem {
                product_id: commerce_core::id::ProductId::new("p").expect("valid"),
                sku: Sku::new("A").expect("valid"),
                quantity: 2,
                unit_price: "1.00 USD".parse().expect("valid"),
                added_at: clock.now(),
            };
            carts
                .add_item(&guest, &CartOwner::Guest, item, &limits)
                .await
                .expect("add");
            let guest_file = carts.inner.path(&guest);
            let saved = fs::read(&guest_file).expect("guest file");
            let (merged, _) = carts
                .merge_carts(&guest, &customer, &BTreeMap::new(), &limits)
                .await
                .expect("merge");
            assert_eq!(merged.items[0].quantity, 2);
            // Simulate the crash: the guest file is back, the customer cart committed.
            fs::write(&guest_file, saved).expect("restore the guest file");
            let (again, report) = carts
                .merge_carts(&guest, &customer, &BTreeMap::new(), &limits)
                .await
                .expect("merge again");
            assert_eq!(
                again, merged,
                "the second merge must not add the lines again"
            );
            assert_eq!(report, MergeReport::default());
            assert!(!guest_file.exists(), "the leftover guest file is deleted");
        });
    }
}
