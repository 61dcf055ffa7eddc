//! [`MemorySearchIndex`]: the reference [`SearchIndex`], a linear scan.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::catalog::{CategoryPath, Product};
use crate::error::{Error, Result};
use crate::id::ProductId;
use crate::store::SearchIndex;
use crate::store::search::{
    FacetCount, Facets, MAX_SIMILAR, MAX_SUGGESTIONS, SearchHit, SearchQuery, SearchResults,
    SortOrder, Suggestion, SuggestionKind,
};

/// The reference [`SearchIndex`]: the active products in a map, every query a scan of
/// all of them. Writes are visible at once (`refresh` does nothing); matching is by
/// lower-cased words with the typo and prefix rules of the contract, relevance a sum of
/// per-field weights (title 3, brand 2, category 1.5, attributes 1, description 0.5;
/// a typo match counts a fifth, a prefix match three tenths), ties broken by popularity
/// then by a hash of the product id. Meant for tests and small embedded catalogs.
///
/// ```
/// use commerce_core::memory::MemorySearchIndex;
/// use commerce_core::store::{SearchIndex, search::SearchQuery};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let index = MemorySearchIndex::new();
/// let found = index.search(&SearchQuery::text("anything")).await?;
/// assert_eq!(found.total, 0);
/// # Ok::<(), commerce_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct MemorySearchIndex {
    products: Mutex<BTreeMap<ProductId, Product>>,
}

impl MemorySearchIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn snapshot(&self) -> Vec<Product> {
        self.products
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// Lower-cased words: runs of alphanumeric characters.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .take(32)
        .collect()
}

/// Typos a word of `chars` characters may have: 5 to 8 one, 9 or more two.
fn allowed_typos(chars: usize) -> usize {
    match chars {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Optimal string alignment distance (insertions, deletions, substitutions and swaps
/// of neighbours).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The words of a product, per field.
struct Doc {
    title: Vec<String>,
    brand: Vec<String>,
    category: Vec<String>,
    attributes: Vec<String>,
    description: Vec<String>,
}

impl Doc {
    fn of(p: &Product) -> Doc {
        let attributes = p
            .attributes
            .values()
            .chain(p.variants.iter().flat_map(|v| v.attributes.values()))
            .filter_map(|v| match v {
                crate::catalog::AttributeValue::Text(t) => Some(words(t)),
                _ => None,
            })
            .flatten()
            .collect();
        Doc {
            title: words(&p.title),
            brand: words(&p.brand),
            category: p.category.segments().flat_map(words).collect(),
            attributes,
            description: words(&p.description),
        }
    }

    /// The weight of `word` in this product (0: no match).
    fn score(&self, word: &str, typos: bool, prefix: bool) -> f64 {
        let exact: f64 = [
            (&self.title, 3.0),
            (&self.brand, 2.0),
            (&self.category, 1.5),
            (&self.attributes, 1.0),
            (&self.description, 0.5),
        ]
        .iter()
        .filter(|(field, _)| field.iter().any(|w| w == word))
        .map(|(_, weight)| weight)
        .sum();
        let allowed = allowed_typos(word.chars().count());
        let fuzzy: f64 = if typos && allowed > 0 {
            [
                (&self.title, 3.0),
                (&self.brand, 2.0),
                (&self.category, 1.5),
            ]
            .iter()
            .filter(|(field, _)| {
                field
                    .iter()
                    .any(|w| w != word && edit_distance(w, word) <= allowed)
            })
            .map(|(_, weight)| weight * 0.2)
            .sum()
        } else {
            0.0
        };
        let prefixed: f64 = if prefix && word.chars().count() >= 2 {
            [(&self.title, 3.0), (&self.brand, 2.0)]
                .iter()
                .filter(|(field, _)| field.iter().any(|w| w != word && w.starts_with(word)))
                .map(|(_, weight)| weight * 0.3)
                .sum()
        } else {
            0.0
        };
        exact + fuzzy + prefixed
    }
}

fn passes_filters(p: &Product, q: &SearchQuery) -> bool {
    let f = &q.filters;
    if let Some(c) = &f.category {
        if !c.contains(&p.category) {
            return false;
        }
    }
    if !f.brands.is_empty() && !f.brands.contains(&p.brand) {
        return false;
    }
    if let Some(range) = f.price.min.or(f.price.max) {
        let price = p.min_price();
        if price.currency() != range.currency() {
            return false;
        }
        let minor = price.to_minor_units();
        if f.price.min.is_some_and(|m| minor < m.to_minor_units())
            || f.price.max.is_some_and(|m| minor > m.to_minor_units())
        {
            return false;
        }
    }
    if let Some(r) = f.min_rating {
        if p.rating.is_none_or(|have| have.tenths() < r.tenths()) {
            return false;
        }
    }
    let values = attribute_texts(p);
    if !f
        .attributes
        .iter()
        .all(|(k, v)| values.contains(&(k.clone(), v.clone())))
    {
        return false;
    }
    !f.in_stock_only || p.variants.iter().any(|v| v.inventory_count > 0)
}

/// `(name, text)` of every attribute of the product and its variants.
fn attribute_texts(p: &Product) -> BTreeSet<(String, String)> {
    p.attributes
        .iter()
        .chain(p.variants.iter().flat_map(|v| v.attributes.iter()))
        .map(|(k, v)| (k.clone(), v.to_text()))
        .collect()
}

/// FNV-1a of the id: the last tie-break.
fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A position in a result order: greater comes first.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key {
    primary: f64,
    secondary: u64,
    tie: u64,
}

impl Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        self.primary
            .total_cmp(&other.primary)
            .then(self.secondary.cmp(&other.secondary))
            .then(self.tie.cmp(&other.tie))
    }

    fn encode(&self) -> String {
        format!(
            "m.{:016x}.{:x}.{:x}",
            self.primary.to_bits(),
            self.secondary,
            self.tie
        )
    }

    fn decode(text: &str) -> Result<Key> {
        let bad = || Error::validation("cursor", "not a cursor of this index");
        let mut parts = text.split('.');
        if parts.next() != Some("m") {
            return Err(bad());
        }
        let mut next = || -> Result<u64> {
            parts
                .next()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(bad)
        };
        let primary = f64::from_bits(next()?);
        let secondary = next()?;
        let tie = next()?;
        if parts.next().is_some() || primary.is_nan() {
            return Err(bad());
        }
        Ok(Key {
            primary,
            secondary,
            tie,
        })
    }
}

fn category_weight(affinity: &crate::store::search::Affinity, path: &CategoryPath) -> f32 {
    affinity
        .categories
        .iter()
        .filter(|(c, _)| c.contains(path))
        .map(|(_, w)| w.clamp(0.0, 1.0))
        .fold(0.0, f32::max)
}

fn counted(m: HashMap<String, u64>) -> Vec<FacetCount> {
    let mut v: Vec<FacetCount> = m
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(value, count)| FacetCount { value, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.value.cmp(&b.value)));
    v
}

fn facets(q: &SearchQuery, matches: &[&Product]) -> Facets {
    let mut out = Facets::default();
    let asked = &q.facets;
    if asked.brands {
        let mut m = HashMap::new();
        for p in matches {
            *m.entry(p.brand.clone()).or_default() += 1;
        }
        out.brands = counted(m);
    }
    if asked.categories {
        let depth = q.filters.category.as_ref().map_or(1, |c| c.depth() + 1);
        let mut m = HashMap::new();
        for p in matches {
            let segments: Vec<&str> = p.category.segments().collect();
            if segments.len() >= depth {
                *m.entry(segments[..depth].join(CategoryPath::SEPARATOR))
                    .or_default() += 1;
            }
        }
        out.categories = counted(m);
    }
    let bounds = &asked.price_buckets;
    if !bounds.is_empty() {
        let mut counts = vec![0u64; bounds.len() + 1];
        for p in matches {
            let price = p.min_price().to_minor_units();
            let bucket = bounds.partition_point(|b| b.to_minor_units() <= price);
            counts[bucket] += 1;
        }
        out.prices = counts
            .into_iter()
            .enumerate()
            .map(|(i, count)| {
                let value = if i == 0 {
                    format!("<{}", bounds[0].amount())
                } else if i == bounds.len() {
                    format!(">={}", bounds[i - 1].amount())
                } else {
                    format!("{}-{}", bounds[i - 1].amount(), bounds[i].amount())
                };
                FacetCount { value, count }
            })
            .collect();
    }
    if asked.ratings {
        out.ratings = [("4+", 40u8), ("3+", 30), ("2+", 20), ("1+", 10)]
            .into_iter()
            .map(|(label, min)| FacetCount {
                value: label.to_owned(),
                count: matches
                    .iter()
                    .filter(|p| p.rating.is_some_and(|r| r.tenths() >= min))
                    .count() as u64,
            })
            .collect();
    }
    for name in &asked.attributes {
        let mut m = HashMap::new();
        for p in matches {
            for (k, v) in attribute_texts(p) {
                if &k == name {
                    *m.entry(v).or_default() += 1;
                }
            }
        }
        out.attributes.insert(name.clone(), counted(m));
    }
    out
}

/// `title` with each word in `marked` wrapped in `<mark>`; `None` when none is there.
fn highlight(text: &str, marked: &[String]) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut word = String::new();
    let mut any = false;
    let mut flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        if marked.contains(&word.to_lowercase()) {
            any = true;
            out.push_str("<mark>");
            out.push_str(word);
            out.push_str("</mark>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    any.then_some(out)
}

fn hit(p: &Product, key: &Key) -> SearchHit {
    SearchHit {
        product_id: p.id.clone(),
        slug: p.slug.clone(),
        title: p.title.clone(),
        brand: p.brand.clone(),
        category: p.category.clone(),
        price: p.min_price(),
        rating: p.rating,
        score: key.primary as f32,
        snippet: None,
    }
}

fn search(products: &[Product], q: &SearchQuery) -> Result<SearchResults> {
    q.validate()?;
    let after = q.cursor.as_deref().map(Key::decode).transpose()?;
    let typed = words(&q.text);
    let prefix_last = !q.text.ends_with(char::is_whitespace);
    let filtered: Vec<&Product> = products.iter().filter(|p| passes_filters(p, q)).collect();
    // Per product: the score of each typed word.
    let scored: Vec<(&Product, Vec<f64>)> = filtered
        .iter()
        .map(|p| {
            let doc = Doc::of(p);
            let scores = typed
                .iter()
                .enumerate()
                .map(|(i, w)| doc.score(w, q.typo_tolerance, prefix_last && i + 1 == typed.len()))
                .collect();
            (*p, scores)
        })
        .collect();
    let every: Vec<(&Product, f64)> = scored
        .iter()
        .filter(|(_, s)| s.iter().all(|&x| x > 0.0))
        .map(|(p, s)| {
            (
                *p,
                if typed.is_empty() {
                    1.0
                } else {
                    s.iter().sum()
                },
            )
        })
        .collect();
    let matches: Vec<(&Product, f64)> = if every.is_empty() && typed.len() > 1 {
        scored
            .iter()
            .filter(|(_, s)| s.iter().any(|&x| x > 0.0))
            .map(|(p, s)| (*p, s.iter().sum()))
            .collect()
    } else {
        every
    };
    let mut keyed: Vec<(Key, &Product)> = matches
        .iter()
        .map(|&(p, score)| {
            let primary = match q.sort {
                SortOrder::Relevance => {
                    let lift = q.personalization.as_ref().map_or(0.0, |a| {
                        let brand = a.brands.get(&p.brand).copied().unwrap_or(0.0);
                        (brand.clamp(0.0, 1.0) + category_weight(a, &p.category)) / 2.0
                    });
                    score * (1.0 + f64::from(lift))
                }
                SortOrder::PriceAscending => -(p.min_price().to_minor_units() as f64),
                SortOrder::PriceDescending => p.min_price().to_minor_units() as f64,
                SortOrder::Newest => p.created_at.timestamp_millis() as f64,
                SortOrder::Popularity => p.popularity as f64,
            };
            let key = Key {
                primary,
                secondary: if q.sort == SortOrder::Relevance {
                    p.popularity
                } else {
                    0
                },
                tie: u64::MAX - id_hash(p.id.as_str()),
            };
            (key, p)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.cmp(&a.0));
    let all: Vec<&Product> = keyed.iter().map(|(_, p)| *p).collect();
    let facets = facets(q, &all);
    let rest: Vec<&(Key, &Product)> = match after {
        Some(a) => keyed
            .iter()
            .filter(|(k, _)| k.cmp(&a) == std::cmp::Ordering::Less)
            .collect(),
        None => keyed.iter().skip(q.offset as usize).collect(),
    };
    let limit = q.limit as usize;
    let page: Vec<&(Key, &Product)> = rest.iter().take(limit).copied().collect();
    let next_cursor = if rest.len() > limit {
        page.last().map(|(k, _)| k.encode())
    } else {
        None
    };
    let hits = page
        .iter()
        .map(|(k, p)| {
            let mut h = hit(p, k);
            if q.highlight && !typed.is_empty() {
                h.snippet = highlight(&p.title, &typed)
                    .or_else(|| highlight(&p.description, &typed))
                    .or_else(|| Some(p.title.clone()));
            }
            h
        })
        .collect();
    Ok(SearchResults {
        total: keyed.len() as u64,
        hits,
        facets,
        next_cursor,
    })
}

/// Whether every typed word is the prefix of a distinct word of `text`.
fn suggests(text_words: &[String], typed: &[String]) -> bool {
    fn assign(text_words: &[String], typed: &[String], used: &mut Vec<bool>) -> bool {
        let Some((first, rest)) = typed.split_first() else {
            return true;
        };
        for (i, w) in text_words.iter().enumerate() {
            if !used[i] && w.starts_with(first.as_str()) {
                used[i] = true;
                if assign(text_words, rest, used) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }
    let mut used = vec![false; text_words.len()];
    assign(text_words, typed, &mut used)
}

fn autocomplete(products: &[Product], prefix: &str, limit: u32) -> Vec<Suggestion> {
    let typed = words(prefix);
    let limit = limit.min(MAX_SUGGESTIONS) as usize;
    if typed.is_empty() || limit == 0 {
        return Vec::new();
    }
    // (kind, text) -> summed popularity.
    let mut weights: BTreeMap<(u8, String), u64> = BTreeMap::new();
    for p in products {
        let mut add = |kind: u8, text: &str| {
            let w = weights.entry((kind, text.to_owned())).or_default();
            *w = w.saturating_add(p.popularity);
        };
        add(0, &p.title);
        add(1, &p.brand);
        for segment in p.category.segments() {
            add(2, segment);
        }
    }
    let mut found: Vec<(u64, String, SuggestionKind)> = weights
        .into_iter()
        .filter(|((_, text), _)| suggests(&words(text), &typed))
        .map(|((kind, text), weight)| {
            let kind = match kind {
                0 => SuggestionKind::Title,
                1 => SuggestionKind::Brand,
                _ => SuggestionKind::Category,
            };
            (weight, text, kind)
        })
        .collect();
    found.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.len().cmp(&b.1.len()))
            .then(a.1.cmp(&b.1))
    });
    found
        .into_iter()
        .take(limit)
        .map(|(weight, text, kind)| Suggestion {
            text,
            kind,
            score: weight as f32,
        })
        .collect()
}

fn similar(products: &[Product], id: &ProductId, limit: u32) -> Vec<SearchHit> {
    let limit = limit.min(MAX_SIMILAR) as usize;
    let Some(anchor) = products.iter().find(|p| &p.id == id) else {
        return Vec::new();
    };
    let anchor_words: BTreeSet<String> = words(&anchor.title)
        .into_iter()
        .filter(|w| w.chars().count() >= 2)
        .collect();
    let anchor_attrs: BTreeSet<(String, String)> = attribute_texts(anchor);
    let parent = anchor.category.parent();
    let mut scored: Vec<(Key, &Product)> = products
        .iter()
        .filter(|p| &p.id != id)
        .filter_map(|p| {
            let shared_words = words(&p.title)
                .into_iter()
                .collect::<BTreeSet<_>>()
                .intersection(&anchor_words)
                .count();
            let shared_attrs = attribute_texts(p).intersection(&anchor_attrs).count();
            let mut score = shared_words as f64 + 0.5 * shared_attrs as f64;
            if p.category == anchor.category {
                score += 5.0;
            }
            if parent.as_ref().is_some_and(|c| c.contains(&p.category)) {
                score += 2.0;
            }
            (score > 0.0).then(|| {
                let key = Key {
                    primary: score,
                    secondary: 0,
                    tie: u64::MAX - id_hash(p.id.as_str()),
                };
                (key, p)
            })
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0));
    scored
        .into_iter()
        .take(limit)
        .map(|(k, p)| hit(p, &k))
        .collect()
}

#[async_trait]
impl SearchIndex for MemorySearchIndex {
    async fn upsert(&self, products: &[Product]) -> Result<()> {
        let mut map = self.products.lock().unwrap_or_else(|e| e.into_inner());
        for p in products {
            if p.is_active() {
                map.insert(p.id.clone(), p.clone());
            } else {
                map.remove(&p.id);
            }
        }
        Ok(())
    }

    async fn remove(&self, ids: &[ProductId]) -> Result<()> {
        let mut map = self.products.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            map.remove(id);
        }
        Ok(())
    }

    async fn refresh(&self) -> Result<()> {
        Ok(())
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults> {
        search(&self.snapshot(), query)
    }

    async fn autocomplete(&self, prefix: &str, limit: u32) -> Result<Vec<Suggestion>> {
        Ok(autocomplete(&self.snapshot(), prefix, limit))
    }

    async fn similar(&self, id: &ProductId, limit: u32) -> Result<Vec<SearchHit>> {
        Ok(similar(&self.snapshot(), id, limit))
    }

    async fn count(&self) -> Result<u64> {
        Ok(self
            .products
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_swaps_as_one() {
        assert_eq!(edit_distance("samsung", "samsnug"), 1);
        assert_eq!(edit_distance("phone", "phones"), 1);
        assert_eq!(edit_distance("abc", "xyz"), 3);
    }

    #[test]
    fn suggestions_need_a_distinct_word_per_typed_word() {
        let w = |s: &str| words(s);
        assert!(suggests(&w("Apple iPhone 15"), &w("iph")));
        assert!(suggests(&w("Apple iPhone 15"), &w("15 apple")));
        assert!(!suggests(&w("Samsung"), &w("sam s")));
    }
}
