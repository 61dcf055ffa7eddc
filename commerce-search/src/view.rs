//! Listing views: per segment, the products grouped by category (price ascending within
//! a group) and three sorted orders (popularity, newest, price), held in memory so a
//! category listing (no text) costs a pass over the subtree's groups for the facet
//! counts (contiguous arrays, no posting lists, no per-document column decoding) and a
//! walk of the first positions of the requested order for the page, instead of a
//! collector visiting every product of the subtree.
//!
//! A view is built once per segment (segments never change; deletions are read from the
//! segment's live-document set at query time), so a listing is exactly as fresh as the
//! index: no staleness beyond the index's own commit interval. Views of segments that
//! are gone after a commit or merge are dropped. A large segment's view is built in the
//! background; until it is ready, listings use the collector.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use commerce_core::store::search::{SearchQuery, SortOrder};
use tantivy::columnar::{ColumnValues, StrColumn};
use tantivy::fastfield::AliveBitSet;
use tantivy::index::SegmentId;
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, DocId, DocSet, Searcher, SegmentOrdinal, SegmentReader, TERMINATED};

use crate::collect::{Gathered, SortKey, ord_counts};
use crate::schema::{Fields, names};

/// Segments up to this many documents get their view built inline by the first listing
/// that needs it (milliseconds); larger ones in the background.
const INLINE_BUILD_DOCS: u32 = 200_000;

/// No brand / category / currency.
const NONE: u32 = u32::MAX;

type Values = Arc<dyn ColumnValues<u64>>;

/// `v` as the sort code of its `f64` (what [`SortKey`] compares): equal codes for
/// values the `f64` cannot tell apart, so the view's orders match the collector's.
fn code(v: u64) -> u64 {
    v as f64 as u64
}

/// The view of one segment.
pub(crate) struct SegmentView {
    max_doc: u32,
    /// Category dictionary ordinal per document ([`NONE`]: none).
    cat: Vec<u32>,
    /// Currency index (into `currencies`) per document (`u8::MAX`: none).
    currency: Vec<u8>,
    currencies: Vec<String>,
    /// The category strings by ordinal (sorted: the dictionary's order).
    categories: Vec<String>,
    /// Group `g` (category ordinal) is `starts[g]..starts[g + 1]` of the `g_*` arrays,
    /// by price ascending.
    starts: Vec<u32>,
    g_price: Vec<u64>,
    g_doc: Vec<u32>,
    g_brand: Vec<u32>,
    /// Rating as stored (0: unrated, else tenths + 1) in the low 7 bits; 0x80: in stock.
    g_meta: Vec<u8>,
    g_currency: Vec<u8>,
    /// Documents by (popularity descending, key ascending).
    by_popularity: Vec<u32>,
    /// Documents by (creation descending, key ascending).
    by_created: Vec<u32>,
    /// Documents by (price ascending, key ascending).
    by_price: Vec<u32>,
    key: Values,
    popularity: Values,
    price: Values,
    created: Values,
    rating: Values,
    in_stock: Values,
    brand: Option<StrColumn>,
}

impl std::fmt::Debug for SegmentView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentView")
            .field("max_doc", &self.max_doc)
            .finish_non_exhaustive()
    }
}

fn values(reader: &SegmentReader, field: &str) -> tantivy::Result<Values> {
    Ok(reader.fast_fields().u64(field)?.first_or_default_col(0))
}

fn first_ord(column: &Option<StrColumn>, doc: DocId) -> u32 {
    column
        .as_ref()
        .and_then(|c| c.term_ords(doc).next())
        .map_or(NONE, |o| u32::try_from(o).unwrap_or(NONE))
}

impl SegmentView {
    /// Reads the segment's columns and builds the view.
    pub(crate) fn build(reader: &SegmentReader, fields: &Fields) -> tantivy::Result<Self> {
        let ff = reader.fast_fields();
        let max_doc = reader.max_doc();
        let n = max_doc as usize;
        let key = values(reader, names::KEY)?;
        let popularity = values(reader, names::POPULARITY)?;
        let price = values(reader, names::PRICE)?;
        let created = values(reader, names::CREATED)?;
        let rating = values(reader, names::RATING)?;
        let in_stock = values(reader, names::IN_STOCK)?;
        let brand = ff.str(names::BRAND)?;
        let category_column = ff.str(names::CATEGORY_PATH)?;

        let mut categories = Vec::new();
        if let Some(c) = &category_column {
            let mut s = String::new();
            for ord in 0..c.num_terms() as u64 {
                s.clear();
                c.ord_to_str(ord, &mut s)?;
                categories.push(s.clone());
            }
        }
        let cat: Vec<u32> = (0..max_doc)
            .map(|d| first_ord(&category_column, d))
            .collect();

        // Currency per document, from the inverted index (the field is not fast).
        let mut currency = vec![u8::MAX; n];
        let mut currencies = Vec::new();
        let inverted = reader.inverted_index(fields.currency)?;
        let mut terms = inverted.terms().stream()?;
        while terms.advance() {
            let Ok(i) = u8::try_from(currencies.len()) else {
                break;
            };
            if i == u8::MAX {
                break;
            }
            currencies.push(String::from_utf8_lossy(terms.key()).into_owned());
            let mut postings =
                inverted.read_postings_from_terminfo(terms.value(), IndexRecordOption::Basic)?;
            while postings.doc() != TERMINATED {
                if let Some(slot) = currency.get_mut(postings.doc() as usize) {
                    *slot = i;
                }
                postings.advance();
            }
        }

        // Groups by category, price ascending (then key, for a stable layout).
        let groups = categories.len();
        let mut starts = vec![0u32; groups + 1];
        for &c in &cat {
            if (c as usize) < groups {
                starts[c as usize + 1] += 1;
            }
        }
        for g in 0..groups {
            starts[g + 1] += starts[g];
        }
        let total = starts[groups] as usize;
        let mut g_doc = vec![0u32; total];
        let mut fill: Vec<u32> = starts.clone();
        for (d, &c) in cat.iter().enumerate() {
            if (c as usize) < groups {
                g_doc[fill[c as usize] as usize] = d as u32;
                fill[c as usize] += 1;
            }
        }
        let prices: Vec<u64> = (0..max_doc).map(|d| price.get_val(d)).collect();
        let keys: Vec<u64> = (0..max_doc).map(|d| key.get_val(d)).collect();
        for g in 0..groups {
            let slice = &mut g_doc[starts[g] as usize..starts[g + 1] as usize];
            slice.sort_unstable_by_key(|&d| (prices[d as usize], keys[d as usize]));
        }
        let g_price: Vec<u64> = g_doc.iter().map(|&d| prices[d as usize]).collect();
        let g_brand: Vec<u32> = g_doc.iter().map(|&d| first_ord(&brand, d)).collect();
        let g_meta: Vec<u8> = g_doc
            .iter()
            .map(|&d| {
                let r = rating.get_val(d).min(0x7f) as u8;
                r | if in_stock.get_val(d) == 1 { 0x80 } else { 0 }
            })
            .collect();
        let g_currency: Vec<u8> = g_doc.iter().map(|&d| currency[d as usize]).collect();

        // The three orders.
        let order = |value: &dyn Fn(u32) -> u64| -> Vec<u32> {
            let mut v: Vec<(u64, u64, u32)> = (0..max_doc)
                .map(|d| (value(d), keys[d as usize], d))
                .collect();
            v.sort_unstable();
            v.into_iter().map(|(_, _, d)| d).collect()
        };
        let by_popularity = order(&|d| u64::MAX - code(popularity.get_val(d)));
        let by_created = order(&|d| u64::MAX - code(created.get_val(d)));
        let by_price = order(&|d| code(prices[d as usize]));

        Ok(SegmentView {
            max_doc,
            cat,
            currency,
            currencies,
            categories,
            starts,
            g_price,
            g_doc,
            g_brand,
            g_meta,
            g_currency,
            by_popularity,
            by_created,
            by_price,
            key,
            popularity,
            price,
            created,
            rating,
            in_stock,
            brand,
        })
    }

    /// The category ordinals of `path`'s subtree: `path` itself (if present) and the
    /// contiguous range of paths starting with `path > `.
    fn subtree(&self, path: &str) -> (Option<u32>, std::ops::Range<u32>) {
        let exact = self
            .categories
            .binary_search_by(|c| c.as_str().cmp(path))
            .ok()
            .map(|i| i as u32);
        let prefix = format!("{path}{}", commerce_core::catalog::CategoryPath::SEPARATOR);
        let lo = self
            .categories
            .partition_point(|c| c.as_str() < prefix.as_str());
        let hi = lo + self.categories[lo..].partition_point(|c| c.starts_with(prefix.as_str()));
        (exact, lo as u32..hi as u32)
    }

    /// The sort key of `doc` under `sort` (as the collector computes it; `Relevance`
    /// without text scores every match 0: the filters are constant-score 0 clauses).
    fn sort_key(&self, sort: SortOrder, doc: DocId) -> SortKey {
        let (primary, secondary) = match sort {
            SortOrder::Relevance => (0.0, self.popularity.get_val(doc)),
            SortOrder::PriceAscending => (-(self.price.get_val(doc) as f64), 0),
            SortOrder::PriceDescending => (self.price.get_val(doc) as f64, 0),
            SortOrder::Newest => (self.created.get_val(doc) as f64, 0),
            SortOrder::Popularity => (self.popularity.get_val(doc) as f64, 0),
        };
        SortKey {
            primary,
            secondary,
            tie: u64::MAX - self.key.get_val(doc),
        }
    }
}

/// A listing's filters, resolved against one segment.
struct Filter<'a> {
    view: &'a SegmentView,
    alive: Option<&'a AliveBitSet>,
    exact: Option<u32>,
    range: std::ops::Range<u32>,
    /// Brand ordinals allowed (`None`: any).
    brands: Option<HashSet<u32>>,
    min_price: u64,
    max_price: u64,
    /// Currency the price range is in (`None`: no price filter).
    currency: Option<u8>,
    price_filter: bool,
    /// Stored rating value at least this (0: no filter).
    min_rating: u8,
    in_stock: bool,
}

impl Filter<'_> {
    fn in_subtree(&self, cat: u32) -> bool {
        Some(cat) == self.exact || self.range.contains(&cat)
    }

    /// Whether `doc` matches (the walk's check, from the columns).
    fn matches(&self, doc: DocId) -> bool {
        let v = self.view;
        if !self.alive.is_none_or(|a| a.is_alive(doc)) {
            return false;
        }
        if !self.in_subtree(v.cat.get(doc as usize).copied().unwrap_or(NONE)) {
            return false;
        }
        if self.price_filter {
            let p = v.price.get_val(doc);
            if p < self.min_price
                || p > self.max_price
                || self.currency != v.currency.get(doc as usize).copied()
            {
                return false;
            }
        }
        if let Some(b) = &self.brands {
            if !b.contains(&first_ord(&v.brand, doc)) {
                return false;
            }
        }
        if self.min_rating > 0 && v.rating.get_val(doc) < u64::from(self.min_rating) {
            return false;
        }
        if self.in_stock && v.in_stock.get_val(doc) != 1 {
            return false;
        }
        true
    }

    /// Whether group entry `i` matches, given that its group is in the subtree and its
    /// price in range.
    fn entry_matches(&self, i: usize) -> bool {
        let v = self.view;
        if let Some(a) = self.alive {
            if !a.is_alive(v.g_doc[i]) {
                return false;
            }
        }
        if self.price_filter && self.currency != Some(v.g_currency[i]) {
            return false;
        }
        if let Some(b) = &self.brands {
            if !b.contains(&v.g_brand[i]) {
                return false;
            }
        }
        let meta = v.g_meta[i];
        if self.min_rating > 0 && (meta & 0x7f) < self.min_rating {
            return false;
        }
        if self.in_stock && meta & 0x80 == 0 {
            return false;
        }
        true
    }
}

/// Whether `q` can be answered from the views: a category listing without text,
/// attribute filters or facets, or personalisation.
pub(crate) fn applies(q: &SearchQuery) -> bool {
    q.text.trim().is_empty()
        && q.filters.category.is_some()
        && q.filters.attributes.is_empty()
        && q.facets.attributes.is_empty()
        && q.personalization.is_none()
        && q.filters.price.max.is_none_or(|m| m.to_minor_units() >= 0)
        && q.filters.price.min.is_none_or(|m| m.to_minor_units() >= 0)
        && match (q.filters.price.min, q.filters.price.max) {
            (Some(a), Some(b)) => a.currency() == b.currency(),
            _ => true,
        }
}

/// What a listing asks of a segment.
pub(crate) struct Ask<'a> {
    pub q: &'a SearchQuery,
    /// Best documents to keep (offset + limit).
    pub top: usize,
    pub after: Option<SortKey>,
    pub price_bounds: &'a [u64],
}

#[derive(Clone, Copy)]
struct Entry {
    key: SortKey,
    doc: DocId,
}
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
// The worst entry is the greatest (a max-heap evicts it first).
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

impl SegmentView {
    /// The listing on this segment: total, facet counts and the best `ask.top`
    /// documents after `ask.after`, as the collector would gather them.
    pub(crate) fn listing(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
        ask: &Ask<'_>,
    ) -> tantivy::Result<Gathered> {
        let q = ask.q;
        let Some(category) = &q.filters.category else {
            return Ok(Gathered::default());
        };
        let (exact, range) = self.subtree(category.as_str());
        let price_filter = q.filters.price.min.is_some() || q.filters.price.max.is_some();
        let currency = q
            .filters
            .price
            .min
            .or(q.filters.price.max)
            .and_then(|m| {
                self.currencies
                    .iter()
                    .position(|c| c == m.currency().code())
            })
            .and_then(|i| u8::try_from(i).ok());
        let brands = if q.filters.brands.is_empty() {
            None
        } else {
            let mut set = HashSet::new();
            if let Some(b) = &self.brand {
                for name in &q.filters.brands {
                    if let Some(o) = b.dictionary().term_ord(name.as_bytes())? {
                        set.insert(u32::try_from(o).unwrap_or(NONE));
                    }
                }
            }
            Some(set)
        };
        let filter = Filter {
            view: self,
            alive: reader.alive_bitset(),
            exact,
            range,
            brands,
            min_price: q
                .filters
                .price
                .min
                .map_or(0, |m| m.to_minor_units().max(0) as u64),
            max_price: q
                .filters
                .price
                .max
                .map_or(u64::MAX, |m| m.to_minor_units().max(0) as u64),
            currency,
            price_filter,
            min_rating: q
                .filters
                .min_rating
                .map_or(0, |r| r.tenths().saturating_add(1).min(0x7f)),
            in_stock: q.filters.in_stock_only,
        };
        let mut out = Gathered {
            prices: vec![
                0;
                if ask.price_bounds.is_empty() {
                    0
                } else {
                    ask.price_bounds.len() + 1
                }
            ],
            ..Gathered::default()
        };
        if price_filter && currency.is_none() {
            // No product here is priced in the filter's currency.
            return Ok(out);
        }

        // Pass 1: counts over the subtree's groups.
        let want_brands = q.facets.brands;
        let mut brand_counts = vec![0u64; if want_brands { self.brand_terms() } else { 0 }];
        let mut rating_hist = [0u64; 128];
        let mut category_counts: Vec<(u32, u64)> = Vec::new();
        let groups = exact
            .into_iter()
            .chain(filter.range.clone())
            .filter(|&g| (g as usize) < self.categories.len());
        for g in groups {
            let (s, e) = (
                self.starts[g as usize] as usize,
                self.starts[g as usize + 1] as usize,
            );
            let prices = &self.g_price[s..e];
            let (lo, hi) = if price_filter {
                (
                    s + prices.partition_point(|&p| p < filter.min_price),
                    s + prices.partition_point(|&p| p <= filter.max_price),
                )
            } else {
                (s, e)
            };
            let mut matched = 0u64;
            let mut bucket = 0usize;
            for i in lo..hi {
                if !filter.entry_matches(i) {
                    continue;
                }
                matched += 1;
                if want_brands {
                    if let Some(slot) = brand_counts.get_mut(self.g_brand[i] as usize) {
                        *slot += 1;
                    }
                }
                rating_hist[(self.g_meta[i] & 0x7f) as usize] += 1;
                if !ask.price_bounds.is_empty() {
                    let p = self.g_price[i];
                    while bucket < ask.price_bounds.len() && ask.price_bounds[bucket] <= p {
                        bucket += 1;
                    }
                    out.prices[bucket] += 1;
                }
            }
            if matched > 0 {
                out.total += matched;
                category_counts.push((g, matched));
            }
        }
        if q.facets.ratings {
            for (r, &n) in rating_hist.iter().enumerate().skip(1) {
                let tenths = r as u64 - 1;
                for (i, min) in [40u64, 30, 20, 10].into_iter().enumerate() {
                    if tenths >= min {
                        out.ratings[i] += n;
                    }
                }
            }
        }
        if q.facets.categories {
            out.categories = category_counts
                .iter()
                .filter_map(|&(g, n)| Some((self.categories.get(g as usize)?.clone(), n)))
                .collect();
        }
        if want_brands {
            if let Some(b) = &self.brand {
                out.brands = ord_counts(b, None, &brand_counts)?.into_iter().collect();
            }
        }

        // Pass 2: the page.
        let m = out.total;
        if ask.top == 0 || m == 0 {
            return Ok(out);
        }
        let walk_budget = m.max(4_096);
        let wanted = ask.top as u64;
        let walk_first = m.saturating_mul(m) > wanted.saturating_mul(u64::from(self.max_doc));
        let top = if walk_first {
            self.walk(q.sort, &filter, ask, walk_budget)
        } else {
            None
        };
        let top = match top {
            Some(t) => t,
            None => self.heap_top(q.sort, &filter, ask, exact),
        };
        out.top = top
            .into_iter()
            .map(|(k, d)| (k, DocAddress::new(segment, d)))
            .collect();
        Ok(out)
    }

    fn brand_terms(&self) -> usize {
        self.brand.as_ref().map_or(0, |b| b.num_terms())
    }

    /// The best `ask.top` matches by a heap over the subtree's matching entries.
    fn heap_top(
        &self,
        sort: SortOrder,
        filter: &Filter<'_>,
        ask: &Ask<'_>,
        exact: Option<u32>,
    ) -> Vec<(SortKey, DocId)> {
        let mut heap: BinaryHeap<Entry> = BinaryHeap::with_capacity(ask.top + 1);
        let groups = exact
            .into_iter()
            .chain(filter.range.clone())
            .filter(|&g| (g as usize) < self.categories.len());
        for g in groups {
            let (s, e) = (
                self.starts[g as usize] as usize,
                self.starts[g as usize + 1] as usize,
            );
            let prices = &self.g_price[s..e];
            let (lo, hi) = if filter.price_filter {
                (
                    s + prices.partition_point(|&p| p < filter.min_price),
                    s + prices.partition_point(|&p| p <= filter.max_price),
                )
            } else {
                (s, e)
            };
            for i in lo..hi {
                if !filter.entry_matches(i) {
                    continue;
                }
                let doc = self.g_doc[i];
                let key = self.sort_key(sort, doc);
                if ask.after.is_some_and(|a| key.cmp(&a) != Ordering::Less) {
                    continue;
                }
                if heap.len() >= ask.top {
                    match heap.peek() {
                        Some(worst) if key.cmp(&worst.key) == Ordering::Greater => {
                            heap.pop();
                        }
                        _ => continue,
                    }
                }
                heap.push(Entry { key, doc });
            }
        }
        let mut top: Vec<(SortKey, DocId)> = heap.into_iter().map(|e| (e.key, e.doc)).collect();
        top.sort_by(|a, b| b.0.cmp(&a.0));
        top
    }

    /// The best `ask.top` matches by walking the sort's order from the cursor; `None`
    /// when more than `budget` positions were looked at first.
    fn walk(
        &self,
        sort: SortOrder,
        filter: &Filter<'_>,
        ask: &Ask<'_>,
        budget: u64,
    ) -> Option<Vec<(SortKey, DocId)>> {
        let mut out = Vec::with_capacity(ask.top);
        let mut looked = 0u64;
        let mut take = |doc: DocId, out: &mut Vec<(SortKey, DocId)>| -> Option<bool> {
            looked += 1;
            if looked > budget {
                return None;
            }
            if !filter.matches(doc) {
                return Some(false);
            }
            let key = self.sort_key(sort, doc);
            if ask.after.is_some_and(|a| key.cmp(&a) != Ordering::Less) {
                return Some(false);
            }
            out.push((key, doc));
            Some(out.len() >= ask.top)
        };
        match sort {
            SortOrder::PriceDescending => {
                // Runs of equal price from the highest, each run in key order.
                let perm = &self.by_price;
                let price_of = |i: usize| code(self.price.get_val(perm[i]));
                let mut end = perm.len();
                if filter.price_filter {
                    let max = code(filter.max_price);
                    end = perm.partition_point(|&d| code(self.price.get_val(d)) <= max);
                }
                if let Some(a) = ask.after {
                    let p = code(a.primary.max(0.0) as u64);
                    end = end.min(perm.partition_point(|&d| code(self.price.get_val(d)) <= p));
                }
                while end > 0 {
                    let p = price_of(end - 1);
                    let mut start = end - 1;
                    while start > 0 && price_of(start - 1) == p {
                        start -= 1;
                    }
                    for &doc in &perm[start..end] {
                        if take(doc, &mut out)? {
                            return Some(out);
                        }
                    }
                    end = start;
                }
            }
            _ => {
                let perm = match sort {
                    SortOrder::PriceAscending => &self.by_price,
                    SortOrder::Newest => &self.by_created,
                    _ => &self.by_popularity,
                };
                let mut start = 0;
                if sort == SortOrder::PriceAscending && filter.price_filter {
                    let min = code(filter.min_price);
                    start = perm.partition_point(|&d| code(self.price.get_val(d)) < min);
                }
                if let Some(a) = ask.after {
                    start =
                        start.max(perm.partition_point(|&d| {
                            self.sort_key(sort, d).cmp(&a) != Ordering::Less
                        }));
                }
                for &doc in &perm[start..] {
                    if take(doc, &mut out)? {
                        return Some(out);
                    }
                }
            }
        }
        Some(out)
    }
}

/// Views by segment, shared by the searches of one index.
#[derive(Default)]
pub(crate) struct Views {
    inner: Mutex<ViewsInner>,
}

#[derive(Default)]
struct ViewsInner {
    ready: HashMap<SegmentId, Arc<SegmentView>>,
    building: HashSet<SegmentId>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views").finish_non_exhaustive()
    }
}

impl Views {
    fn lock(&self) -> std::sync::MutexGuard<'_, ViewsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The views of every segment of `searcher`, or `None` when one is not ready (a
    /// small segment's is built here; a large one's is started in the background
    /// unless `wait`, which builds it here).
    pub(crate) fn get(
        self: &Arc<Self>,
        searcher: &Searcher,
        fields: &Fields,
        wait: bool,
    ) -> tantivy::Result<Option<Vec<Arc<SegmentView>>>> {
        let mut out = Vec::with_capacity(searcher.segment_readers().len());
        let mut missing = false;
        for reader in searcher.segment_readers() {
            let id = reader.segment_id();
            if let Some(v) = self.lock().ready.get(&id) {
                out.push(v.clone());
                continue;
            }
            if wait || reader.max_doc() <= INLINE_BUILD_DOCS {
                let v = Arc::new(SegmentView::build(reader, fields)?);
                self.lock().ready.insert(id, v.clone());
                out.push(v);
                continue;
            }
            missing = true;
            if self.lock().building.insert(id) {
                let views = Arc::clone(self);
                let reader = reader.clone();
                let fields = *fields;
                let spawned = std::thread::Builder::new()
                    .name("listing-view".into())
                    .spawn(move || {
                        let built = SegmentView::build(&reader, &fields);
                        let mut inner = views.lock();
                        inner.building.remove(&id);
                        match built {
                            Ok(v) => {
                                inner.ready.insert(id, Arc::new(v));
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "building a listing view failed");
                            }
                        }
                    });
                if spawned.is_err() {
                    self.lock().building.remove(&id);
                }
            }
        }
        Ok(if missing { None } else { Some(out) })
    }

    /// Drops the views of segments `searcher` no longer has.
    pub(crate) fn retain(&self, searcher: &Searcher) {
        let live: HashSet<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(|r| r.segment_id())
            .collect();
        self.lock().ready.retain(|id, _| live.contains(id));
    }

    /// Bytes the ready views hold (approximate).
    pub(crate) fn bytes(&self) -> u64 {
        self.lock()
            .ready
            .values()
            .map(|v| {
                let docs = u64::from(v.max_doc);
                let grouped = v.g_doc.len() as u64;
                docs * (4 + 1 + 12) + grouped * (8 + 4 + 4 + 1 + 1)
            })
            .sum()
    }
}
