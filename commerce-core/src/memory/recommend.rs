//! In-memory co-purchase counts and histories: the reference implementations.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use tracing::instrument;

use crate::activity::{Basket, HISTORY_CAPACITY, Interaction, ProductCount, RecordOutcome};
use crate::error::Result;
use crate::id::{CustomerId, OrderId, ProductId};
use crate::store::{CoPurchaseStore, HistoryStore, check_limit};

/// Product ids interned as `u32` so that pair counts cost a few bytes each.
#[derive(Debug, Default)]
struct State {
    orders: HashSet<OrderId>,
    ids: Vec<ProductId>,
    index: HashMap<ProductId, u32>,
    /// `pairs[x][y]`: orders holding both (x's row lists what was also bought).
    pairs: HashMap<u32, HashMap<u32, u64>>,
    popularity: HashMap<u32, u64>,
    /// Popularity ranked: count descending, then id ascending.
    ranked: BTreeSet<(Reverse<u64>, ProductId)>,
    /// The exact best [`TOP`] of every row longer than that, best first (count
    /// descending, then id ascending), kept up to date by `record`: a hot product's
    /// row holds thousands of partners, and ranking them on every read is the cost of
    /// a recommendation.
    tops: HashMap<u32, Vec<(u64, u32)>>,
}

/// Entries of a row kept ranked (reads asking for at most this many use them).
const TOP: usize = 64;

impl State {
    fn intern(&mut self, id: &ProductId) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        // More than 4 billion distinct products do not fit in memory anyway.
        let i = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        self.ids.push(id.clone());
        self.index.insert(id.clone(), i);
        i
    }

    /// Whether `(count, a)` ranks before `(other_count, b)`.
    fn before(&self, count: u64, a: u32, other_count: u64, b: u32) -> bool {
        match count.cmp(&other_count) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.ids.get(a as usize) < self.ids.get(b as usize),
        }
    }

    /// Adds one to `pairs[x][y]` and keeps `tops[x]` exact. Counts only grow, so only
    /// `y` can move: up within the top, or into it in place of the last.
    fn increment(&mut self, x: u32, y: u32) {
        let row = self.pairs.entry(x).or_default();
        let count = row.entry(y).or_default();
        *count += 1;
        let count = *count;
        let long = row.len() > TOP;
        let Some(mut top) = self.tops.remove(&x) else {
            if long {
                // The row just outgrew TOP: rank it once.
                let mut all: Vec<(u64, u32)> =
                    self.pairs[&x].iter().map(|(&y, &c)| (c, y)).collect();
                all.sort_by(|a, b| {
                    b.0.cmp(&a.0)
                        .then_with(|| self.ids.get(a.1 as usize).cmp(&self.ids.get(b.1 as usize)))
                });
                all.truncate(TOP);
                self.tops.insert(x, all);
            }
            return;
        };
        let mut at = match top.iter().position(|&(_, id)| id == y) {
            Some(i) => {
                top[i].0 = count;
                i
            }
            None => match top.last() {
                Some(&(c, id)) if top.len() >= TOP && !self.before(count, y, c, id) => {
                    self.tops.insert(x, top);
                    return;
                }
                _ => {
                    if top.len() >= TOP {
                        top.pop();
                    }
                    top.push((count, y));
                    top.len() - 1
                }
            },
        };
        while at > 0 && self.before(top[at].0, top[at].1, top[at - 1].0, top[at - 1].1) {
            top.swap(at, at - 1);
            at -= 1;
        }
        self.tops.insert(x, top);
    }
}

/// The in-memory [`CoPurchaseStore`]: a read-write lock over interned counts, held only
/// inside one call, so every call is atomic and linearizable.
///
/// `also_bought` reads the best 64 of a long row from a ranking kept up to date on
/// every write (a hot product's row holds thousands of partners), and selects the top
/// `limit` of a short row (or for a larger `limit`) in linear time; recording a basket
/// of `n` paired products costs `n × (n − 1)` hash-map increments, each also moving the
/// partner within its row's ranking (at most 64 steps).
///
/// ```
/// use commerce_core::id::{OrderId, ProductId};
/// use commerce_core::recommend::{Basket, MemoryCoPurchase, RecordOutcome};
/// use commerce_core::store::CoPurchaseStore;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryCoPurchase::new();
/// let p = |s: &str| ProductId::new(s).unwrap();
/// let basket = Basket::new(OrderId::new("o-1")?, [p("phone"), p("case")]);
/// assert_eq!(store.record(&basket).await?, RecordOutcome::Recorded);
/// assert_eq!(store.record(&basket).await?, RecordOutcome::Duplicate);
/// let also = store.also_bought(&p("phone"), 10).await?;
/// assert_eq!((also[0].product_id.as_str(), also[0].count), ("case", 1));
/// # Ok::<(), commerce_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct MemoryCoPurchase {
    state: RwLock<State>,
}

impl MemoryCoPurchase {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl CoPurchaseStore for MemoryCoPurchase {
    #[instrument(level = "debug", skip_all, fields(order = %basket.order_id(), products = basket.products().len()))]
    async fn record(&self, basket: &Basket) -> Result<RecordOutcome> {
        let mut state = self.write();
        if !state.orders.insert(basket.order_id().clone()) {
            return Ok(RecordOutcome::Duplicate);
        }
        let all: Vec<u32> = basket.products().iter().map(|p| state.intern(p)).collect();
        for (&i, id) in all.iter().zip(basket.products()) {
            let count = state.popularity.entry(i).or_default();
            let old = *count;
            *count += 1;
            state.ranked.remove(&(Reverse(old), id.clone()));
            state.ranked.insert((Reverse(old + 1), id.clone()));
        }
        let paired = &all[..basket.paired().len()];
        for &x in paired {
            for &y in paired {
                if x != y {
                    state.increment(x, y);
                }
            }
        }
        Ok(RecordOutcome::Recorded)
    }

    #[instrument(level = "trace", skip(self), err(level = "debug"))]
    async fn also_bought(&self, product: &ProductId, limit: u32) -> Result<Vec<ProductCount>> {
        let limit = check_limit(limit)?;
        let state = self.read();
        let Some(&x) = state.index.get(product) else {
            return Ok(Vec::new());
        };
        if let Some(top) = state.tops.get(&x).filter(|t| limit <= t.len()) {
            return Ok(top
                .iter()
                .take(limit)
                .filter_map(|&(count, y)| {
                    Some(ProductCount {
                        product_id: state.ids.get(y as usize)?.clone(),
                        count,
                    })
                })
                .collect());
        }
        let Some(row) = state.pairs.get(&x) else {
            return Ok(Vec::new());
        };
        // Select on borrowed ids; clone only the winners.
        let mut items: Vec<(u64, &ProductId)> = row
            .iter()
            .filter_map(|(&y, &count)| state.ids.get(y as usize).map(|id| (count, id)))
            .collect();
        let rank =
            |a: &(u64, &ProductId), b: &(u64, &ProductId)| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1));
        if items.len() > limit {
            items.select_nth_unstable_by(limit, rank);
            items.truncate(limit);
        }
        items.sort_by(rank);
        Ok(items
            .into_iter()
            .map(|(count, id)| ProductCount {
                product_id: id.clone(),
                count,
            })
            .collect())
    }

    #[instrument(level = "trace", skip(self), err(level = "debug"))]
    async fn popular(&self, limit: u32) -> Result<Vec<ProductCount>> {
        let limit = check_limit(limit)?;
        Ok(self
            .read()
            .ranked
            .iter()
            .take(limit)
            .map(|(Reverse(count), id)| ProductCount {
                product_id: id.clone(),
                count: *count,
            })
            .collect())
    }

    async fn orders_recorded(&self) -> Result<u64> {
        Ok(self.read().orders.len() as u64)
    }
}

/// The in-memory [`HistoryStore`]: the newest [`HISTORY_CAPACITY`] interactions per
/// shopper.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    state: Mutex<HistoryState>,
}

#[derive(Debug, Default)]
struct HistoryState {
    seq: u64,
    /// Oldest first by `(at, seq)`.
    by_customer: HashMap<CustomerId, VecDeque<(u64, Interaction)>>,
}

impl MemoryHistory {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HistoryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl HistoryStore for MemoryHistory {
    #[instrument(level = "trace", skip(self, interaction), fields(kind = interaction.kind.as_str()))]
    async fn record(&self, customer: &CustomerId, interaction: &Interaction) -> Result<()> {
        let mut state = self.lock();
        state.seq += 1;
        let seq = state.seq;
        let list = state.by_customer.entry(customer.clone()).or_default();
        if list.iter().any(|(_, i)| i == interaction) {
            return Ok(());
        }
        let at = list.partition_point(|(s, i)| (i.at, *s) <= (interaction.at, seq));
        list.insert(at, (seq, interaction.clone()));
        while list.len() > HISTORY_CAPACITY {
            list.pop_front();
        }
        Ok(())
    }

    #[instrument(level = "trace", skip(self), err(level = "debug"))]
    async fn recent(&self, customer: &CustomerId, limit: u32) -> Result<Vec<Interaction>> {
        let limit = check_limit(limit)?;
        Ok(self
            .lock()
            .by_customer
            .get(customer)
            .map(|l| l.iter().rev().take(limit).map(|(_, i)| i.clone()).collect())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows far longer than the kept ranking: every read of up to 64 partners equals
    /// the ranking of the whole row (count descending, then id ascending).
    #[tokio::test]
    async fn kept_rankings_match_the_whole_rows() {
        let store = MemoryCoPurchase::new();
        let p = |i: u64| ProductId::new(format!("p{i}")).unwrap();
        let mut expected: HashMap<ProductId, HashMap<ProductId, u64>> = HashMap::new();
        let mut h: u64 = 7;
        for o in 0..4_000u64 {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            // A few hot products in most baskets; partners from 300 products.
            let mut ids = vec![p(h % 3)];
            for k in 0..(1 + h % 4) {
                ids.push(p(3 + (h >> (8 + k * 9)) % 300));
            }
            let basket = Basket::new(OrderId::new(format!("o{o}")).unwrap(), ids);
            if store.record(&basket).await.unwrap() == RecordOutcome::Recorded {
                let paired = basket.paired();
                for x in paired {
                    for y in paired {
                        if x != y {
                            *expected
                                .entry(x.clone())
                                .or_default()
                                .entry(y.clone())
                                .or_default() += 1;
                        }
                    }
                }
            }
        }
        let mut checked = 0;
        for (x, row) in &expected {
            let mut want: Vec<(u64, ProductId)> =
                row.iter().map(|(y, &c)| (c, y.clone())).collect();
            want.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            for limit in [1u32, 10, 33, 64, 65, 200] {
                let got: Vec<(u64, ProductId)> = store
                    .also_bought(x, limit)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| (c.count, c.product_id))
                    .collect();
                let n = (limit as usize).min(want.len());
                assert_eq!(got, want[..n].to_vec(), "{x} limit {limit}");
                checked += 1;
            }
        }
        assert!(checked > 1_000);
        assert!(store.read().tops.len() >= 3, "the hot rows keep a ranking");
    }
}
