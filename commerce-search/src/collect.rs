//! One collector for a whole result page: the total, the top documents in the requested
//! order after an optional cursor, the facet counts and the personalised re-ranking, in
//! a single pass over the matching documents.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use commerce_core::store::search::{Affinity, SortOrder};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{ColumnValues, StrColumn};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use crate::query::ScoreFloor;
use crate::schema::names;

/// The position of a document in a result order; larger is better (comes first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SortKey {
    /// The score, or the sort field mapped so that larger comes first.
    pub primary: f64,
    /// Popularity for relevance (ties), else 0.
    pub secondary: u64,
    /// `u64::MAX - key(id)`: a total, stable order.
    pub tie: u64,
}

impl SortKey {
    /// Compares two positions (greater comes first).
    pub(crate) fn cmp(&self, other: &Self) -> Ordering {
        self.primary
            .total_cmp(&other.primary)
            .then(self.secondary.cmp(&other.secondary))
            .then(self.tie.cmp(&other.tie))
    }

    /// The cursor text of this key.
    pub fn encode(&self) -> String {
        format!(
            "{:016x}.{:x}.{:x}",
            self.primary.to_bits(),
            self.secondary,
            self.tie
        )
    }

    /// Parses a cursor; `None` when it is not one of ours.
    pub fn decode(text: &str) -> Option<SortKey> {
        let mut parts = text.split('.');
        let primary = f64::from_bits(u64::from_str_radix(parts.next()?, 16).ok()?);
        let secondary = u64::from_str_radix(parts.next()?, 16).ok()?;
        let tie = u64::from_str_radix(parts.next()?, 16).ok()?;
        if parts.next().is_some() || primary.is_nan() {
            return None;
        }
        Some(SortKey {
            primary,
            secondary,
            tie,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: SortKey,
    doc: DocAddress,
}

// Ordered so that the *worst* entry is the greatest: a max-heap then evicts it first.
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
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

/// What to compute.
#[derive(Debug, Clone)]
pub(crate) struct Gather {
    pub sort: SortOrder,
    /// Keep this many best documents (offset + limit).
    pub top: usize,
    /// Only documents strictly after this key.
    pub after: Option<SortKey>,
    pub brands: bool,
    /// Count categories (the caller maps paths to children).
    pub categories: bool,
    /// Price bucket upper bounds, minor units, ascending.
    pub price_bounds: Vec<u64>,
    pub ratings: bool,
    /// Attribute names to count.
    pub attributes: Vec<String>,
    pub affinity: Option<Arc<Affinity>>,
    pub columns: Arc<ColumnCache>,
    /// Raised to the score a document must beat to enter a full page (relevance order),
    /// so that the scorer can skip documents that cannot.
    pub floor: Option<Arc<ScoreFloor>>,
}

/// The result of a [`Gather`].
#[derive(Debug, Default)]
pub(crate) struct Gathered {
    pub total: u64,
    /// Best first.
    pub top: Vec<(SortKey, DocAddress)>,
    pub brands: HashMap<String, u64>,
    pub categories: HashMap<String, u64>,
    pub prices: Vec<u64>,
    /// `4+`, `3+`, `2+`, `1+`.
    pub ratings: [u64; 4],
    /// `name=value` to count.
    pub attributes: HashMap<String, u64>,
}

type Values = Arc<dyn ColumnValues<u64>>;

/// The fast-field columns of one segment, opened once (opening a dictionary-encoded
/// column costs more than a small query).
#[derive(Clone)]
pub(crate) struct SegmentColumns {
    key: Values,
    popularity: Values,
    price: Values,
    created: Values,
    rating: Values,
    brand: Option<StrColumn>,
    category: Option<StrColumn>,
    attr: Option<StrColumn>,
    brand_terms: TermsOnce,
    category_terms: TermsOnce,
    attr_terms: TermsOnce,
}

/// A column's terms by ordinal, read once per segment on first use; `None` when the
/// dictionary is too large to keep ([`MAX_KEPT_TERMS`]).
type TermsOnce = std::sync::OnceLock<Option<Arc<[String]>>>;

/// Dictionaries up to this many terms are kept in memory as strings (brands and
/// category paths: hundreds to thousands), so that a facet count names its values
/// without reading the dictionary's blocks on every query.
const MAX_KEPT_TERMS: usize = 100_000;

fn kept_terms(once: &TermsOnce, column: &StrColumn) -> tantivy::Result<Option<Arc<[String]>>> {
    if let Some(kept) = once.get() {
        return Ok(kept.clone());
    }
    let kept = if column.num_terms() <= MAX_KEPT_TERMS {
        let mut terms = Vec::with_capacity(column.num_terms());
        let mut stream = column.dictionary().stream()?;
        while stream.advance() {
            terms.push(String::from_utf8_lossy(stream.key()).into_owned());
        }
        Some(Arc::from(terms))
    } else {
        None
    };
    // A racing query may have set it first: both read the same dictionary.
    Ok(once.get_or_init(|| kept).clone())
}

impl SegmentColumns {
    fn open(reader: &SegmentReader) -> tantivy::Result<Self> {
        let ff = reader.fast_fields();
        Ok(SegmentColumns {
            key: values(reader, names::KEY)?,
            popularity: values(reader, names::POPULARITY)?,
            price: values(reader, names::PRICE)?,
            created: values(reader, names::CREATED)?,
            rating: values(reader, names::RATING)?,
            brand: ff.str(names::BRAND)?,
            category: ff.str(names::CATEGORY_PATH)?,
            attr: ff.str(names::ATTR)?,
            brand_terms: TermsOnce::new(),
            category_terms: TermsOnce::new(),
            attr_terms: TermsOnce::new(),
        })
    }
}

/// Columns by segment; cleared at every reload.
#[derive(Default)]
pub(crate) struct ColumnCache {
    segments: std::sync::Mutex<HashMap<tantivy::index::SegmentId, Arc<SegmentColumns>>>,
}

impl std::fmt::Debug for ColumnCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnCache").finish_non_exhaustive()
    }
}

impl ColumnCache {
    pub fn get(&self, reader: &SegmentReader) -> tantivy::Result<Arc<SegmentColumns>> {
        let id = reader.segment_id();
        if let Some(c) = self
            .segments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(c.clone());
        }
        let c = Arc::new(SegmentColumns::open(reader)?);
        let mut m = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 1024 {
            m.clear();
        }
        m.insert(id, c.clone());
        Ok(c)
    }

    pub fn clear(&self) {
        self.segments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

pub(crate) struct SegmentGather {
    segment: SegmentOrdinal,
    sort: SortOrder,
    top: usize,
    after: Option<SortKey>,
    heap: BinaryHeap<Entry>,
    total: u64,
    key: Values,
    sort_values: Option<Values>,
    popularity: Option<Values>,
    price: Option<Values>,
    rating: Option<Values>,
    price_bounds: Vec<u64>,
    prices: Vec<u64>,
    ratings: [u64; 4],
    brand: Option<StrColumn>,
    brand_terms: Option<Arc<[String]>>,
    brand_counts: Vec<u64>,
    category: Option<StrColumn>,
    category_terms: Option<Arc<[String]>>,
    category_counts: Vec<u64>,
    attr: Option<StrColumn>,
    attr_terms: Option<Arc<[String]>>,
    attr_counts: Vec<u64>,
    attr_names: Vec<String>,
    brand_weight: Vec<f32>,
    category_weight: Vec<f32>,
    /// With the most personalization can multiply a score by.
    floor: Option<(Arc<ScoreFloor>, f64)>,
}

fn values(reader: &SegmentReader, field: &str) -> tantivy::Result<Values> {
    Ok(reader.fast_fields().u64(field)?.first_or_default_col(0))
}

/// Affinity weight per dictionary ordinal of a string column.
fn weights(column: &StrColumn, weight: impl Fn(&str) -> f32) -> tantivy::Result<Vec<f32>> {
    let mut out = Vec::with_capacity(column.num_terms());
    let mut text = String::new();
    for ord in 0..column.num_terms() as u64 {
        text.clear();
        column.ord_to_str(ord, &mut text)?;
        out.push(weight(&text));
    }
    Ok(out)
}

fn category_weight(affinity: &Affinity, path: &str) -> f32 {
    affinity
        .categories
        .iter()
        .filter(|(c, _)| {
            let c = c.as_str();
            path == c
                || (path.len() > c.len()
                    && path.starts_with(c)
                    && path[c.len()..].starts_with(" > "))
        })
        .map(|(_, w)| w.clamp(0.0, 1.0))
        .fold(0.0, f32::max)
}

/// How much affinity can lift a score: `score * (1 + BOOST * (brand + category) / 2)`.
pub(crate) const PERSONALIZATION_BOOST: f32 = 1.0;

impl Collector for Gather {
    type Fruit = Gathered;
    type Child = SegmentGather;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentGather> {
        let cols = self.columns.get(reader)?;
        let need_brand =
            self.brands || self.affinity.as_ref().is_some_and(|a| !a.brands.is_empty());
        let need_category = self.categories
            || self
                .affinity
                .as_ref()
                .is_some_and(|a| !a.categories.is_empty());
        let brand = if need_brand { cols.brand.clone() } else { None };
        let category = if need_category {
            cols.category.clone()
        } else {
            None
        };
        let attr = if self.attributes.is_empty() {
            None
        } else {
            cols.attr.clone()
        };
        let (brand_weight, category_weight_v) = match (&self.affinity, self.sort) {
            (Some(a), SortOrder::Relevance) => (
                match &brand {
                    Some(b) if !a.brands.is_empty() => weights(b, |s| {
                        a.brands.get(s).copied().unwrap_or(0.0).clamp(0.0, 1.0)
                    })?,
                    _ => Vec::new(),
                },
                match &category {
                    Some(c) if !a.categories.is_empty() => weights(c, |s| category_weight(a, s))?,
                    _ => Vec::new(),
                },
            ),
            _ => (Vec::new(), Vec::new()),
        };
        let sort_values = match self.sort {
            SortOrder::Relevance => None,
            SortOrder::PriceAscending | SortOrder::PriceDescending => Some(cols.price.clone()),
            SortOrder::Newest => Some(cols.created.clone()),
            SortOrder::Popularity => Some(cols.popularity.clone()),
        };
        Ok(SegmentGather {
            segment,
            sort: self.sort,
            top: self.top,
            after: self.after,
            heap: BinaryHeap::with_capacity(self.top + 1),
            total: 0,
            key: cols.key.clone(),
            sort_values,
            popularity: if self.sort == SortOrder::Relevance {
                Some(cols.popularity.clone())
            } else {
                None
            },
            price: if self.price_bounds.is_empty() {
                None
            } else {
                Some(cols.price.clone())
            },
            rating: if self.ratings {
                Some(cols.rating.clone())
            } else {
                None
            },
            prices: vec![
                0;
                if self.price_bounds.is_empty() {
                    0
                } else {
                    self.price_bounds.len() + 1
                }
            ],
            price_bounds: self.price_bounds.clone(),
            ratings: [0; 4],
            brand_terms: match &brand {
                Some(b) if self.brands => kept_terms(&cols.brand_terms, b)?,
                _ => None,
            },
            category_terms: match &category {
                Some(c) if self.categories => kept_terms(&cols.category_terms, c)?,
                _ => None,
            },
            attr_terms: match &attr {
                Some(a) => kept_terms(&cols.attr_terms, a)?,
                None => None,
            },
            brand_counts: if self.brands {
                vec![0; brand.as_ref().map_or(0, |b| b.num_terms())]
            } else {
                Vec::new()
            },
            brand,
            category_counts: if self.categories {
                vec![0; category.as_ref().map_or(0, |c| c.num_terms())]
            } else {
                Vec::new()
            },
            category,
            attr_counts: vec![0; attr.as_ref().map_or(0, |a| a.num_terms())],
            attr,
            attr_names: self.attributes.clone(),
            brand_weight,
            category_weight: category_weight_v,
            floor: match (&self.floor, self.sort) {
                (Some(f), SortOrder::Relevance) => Some((
                    f.clone(),
                    if self.affinity.is_some() {
                        1.0 + f64::from(PERSONALIZATION_BOOST)
                    } else {
                        1.0
                    },
                )),
                _ => None,
            },
        })
    }

    fn requires_scoring(&self) -> bool {
        self.sort == SortOrder::Relevance
    }

    fn merge_fruits(&self, fruits: Vec<Gathered>) -> tantivy::Result<Gathered> {
        let mut out = Gathered {
            prices: vec![
                0;
                if self.price_bounds.is_empty() {
                    0
                } else {
                    self.price_bounds.len() + 1
                }
            ],
            ..Gathered::default()
        };
        let mut top = Vec::new();
        for f in fruits {
            out.total += f.total;
            top.extend(f.top);
            for (k, v) in f.brands {
                *out.brands.entry(k).or_default() += v;
            }
            for (k, v) in f.categories {
                *out.categories.entry(k).or_default() += v;
            }
            for (k, v) in f.attributes {
                *out.attributes.entry(k).or_default() += v;
            }
            for (o, v) in out.prices.iter_mut().zip(f.prices) {
                *o += v;
            }
            for (o, v) in out.ratings.iter_mut().zip(f.ratings) {
                *o += v;
            }
        }
        top.sort_by(|a, b| b.0.cmp(&a.0));
        top.truncate(self.top);
        out.top = top;
        Ok(out)
    }
}

/// The counted values of `column` by name: from `kept` terms when the segment keeps
/// them, else by one pass over the dictionary.
pub(crate) fn ord_counts(
    column: &StrColumn,
    kept: Option<&[String]>,
    counts: &[u64],
) -> tantivy::Result<Vec<(String, u64)>> {
    if let Some(terms) = kept {
        return Ok(counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .filter_map(|(ord, &n)| Some((terms.get(ord)?.clone(), n)))
            .collect());
    }
    let ords: Vec<u64> = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(ord, _)| ord as u64)
        .collect();
    let mut out = Vec::with_capacity(ords.len());
    let mut it = ords.iter();
    // One pass over the dictionary for all ordinals (they are sorted).
    column.dictionary().sorted_ords_to_term_cb(&ords, |bytes| {
        if let Some(&ord) = it.next() {
            let n = counts.get(ord as usize).copied().unwrap_or(0);
            out.push((String::from_utf8_lossy(bytes).into_owned(), n));
        }
    })?;
    Ok(out)
}

impl SegmentGather {
    fn harvest_inner(self) -> tantivy::Result<Gathered> {
        let mut out = Gathered {
            total: self.total,
            prices: self.prices,
            ratings: self.ratings,
            ..Gathered::default()
        };
        let mut top: Vec<(SortKey, DocAddress)> =
            self.heap.into_iter().map(|e| (e.key, e.doc)).collect();
        top.sort_by(|a, b| b.0.cmp(&a.0));
        out.top = top;
        if let Some(b) = &self.brand {
            out.brands = ord_counts(b, self.brand_terms.as_deref(), &self.brand_counts)?
                .into_iter()
                .collect();
        }
        if let Some(c) = &self.category {
            out.categories = ord_counts(c, self.category_terms.as_deref(), &self.category_counts)?
                .into_iter()
                .collect();
        }
        if let Some(a) = &self.attr {
            out.attributes = ord_counts(a, self.attr_terms.as_deref(), &self.attr_counts)?
                .into_iter()
                .filter(|(kv, _)| {
                    kv.split_once('=')
                        .is_some_and(|(k, _)| self.attr_names.iter().any(|n| n == k))
                })
                .collect();
        }
        Ok(out)
    }
}

impl SegmentCollector for SegmentGather {
    type Fruit = Gathered;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.total += 1;
        // Facets.
        if let Some(price) = &self.price {
            let p = price.get_val(doc);
            let bucket = self.price_bounds.partition_point(|&b| b <= p);
            if let Some(slot) = self.prices.get_mut(bucket) {
                *slot += 1;
            }
        }
        if let Some(rating) = &self.rating {
            let r = rating.get_val(doc);
            if r > 0 {
                let tenths = r - 1;
                for (i, min) in [40u64, 30, 20, 10].into_iter().enumerate() {
                    if tenths >= min {
                        self.ratings[i] += 1;
                    }
                }
            }
        }
        let mut brand_ord = None;
        if let Some(b) = &self.brand {
            brand_ord = b.term_ords(doc).next();
            if let (Some(ord), false) = (brand_ord, self.brand_counts.is_empty()) {
                if let Some(slot) = self.brand_counts.get_mut(ord as usize) {
                    *slot += 1;
                }
            }
        }
        let mut category_ord = None;
        if let Some(c) = &self.category {
            category_ord = c.term_ords(doc).next();
            if let (Some(ord), false) = (category_ord, self.category_counts.is_empty()) {
                if let Some(slot) = self.category_counts.get_mut(ord as usize) {
                    *slot += 1;
                }
            }
        }
        if let Some(a) = &self.attr {
            for ord in a.term_ords(doc) {
                if let Some(slot) = self.attr_counts.get_mut(ord as usize) {
                    *slot += 1;
                }
            }
        }
        // Order.
        let primary = match (&self.sort_values, self.sort) {
            (Some(v), SortOrder::PriceAscending) => -(v.get_val(doc) as f64),
            (Some(v), _) => v.get_val(doc) as f64,
            (None, _) => {
                let mut s = score;
                if !self.brand_weight.is_empty() || !self.category_weight.is_empty() {
                    let bw = brand_ord
                        .and_then(|o| self.brand_weight.get(o as usize).copied())
                        .unwrap_or(0.0);
                    let cw = category_ord
                        .and_then(|o| self.category_weight.get(o as usize).copied())
                        .unwrap_or(0.0);
                    s *= 1.0 + PERSONALIZATION_BOOST * (bw + cw) / 2.0;
                }
                f64::from(s)
            }
        };
        if self.top == 0 {
            return;
        }
        if self.after.is_none() && self.heap.len() >= self.top {
            // Most matches rank below a full page: skip their tie-break reads.
            if let Some(worst) = self.heap.peek() {
                if primary.total_cmp(&worst.key.primary) == Ordering::Less {
                    return;
                }
            }
        }
        let key = SortKey {
            primary,
            secondary: self.popularity.as_ref().map_or(0, |p| p.get_val(doc)),
            tie: u64::MAX - self.key.get_val(doc),
        };
        if let Some(after) = &self.after {
            if key.cmp(after) != Ordering::Less {
                return;
            }
        }
        if self.heap.len() >= self.top {
            match self.heap.peek() {
                Some(worst) if key.cmp(&worst.key) == Ordering::Greater => {
                    self.heap.pop();
                }
                _ => return,
            }
        }
        self.heap.push(Entry {
            key,
            doc: DocAddress::new(self.segment, doc),
        });
        if self.heap.len() >= self.top {
            if let (Some((floor, most)), Some(worst)) = (&self.floor, self.heap.peek()) {
                // A document scoring below this, even at the most personalization
                // lifts, cannot enter; rounded down to stay a lower bound.
                floor.raise((worst.key.primary / most * 0.999) as f32);
            }
        }
    }

    fn harvest(self) -> Gathered {
        // Dictionary reads only fail on a corrupt segment; the counts are then left out
        // rather than failing the search (the hits are still right).
        let total = self.total;
        let mut top: Vec<(SortKey, DocAddress)> =
            self.heap.iter().map(|e| (e.key, e.doc)).collect();
        top.sort_by(|a, b| b.0.cmp(&a.0));
        let prices = self.prices.clone();
        let ratings = self.ratings;
        match self.harvest_inner() {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "facet dictionary unreadable");
                Gathered {
                    total,
                    top,
                    prices,
                    ratings,
                    ..Gathered::default()
                }
            }
        }
    }
}
