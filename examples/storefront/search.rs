//! A small in-memory [`SearchIndex`] for the storefront: token matching over titles,
//! brands and categories, with filters, brand/category facets and sorting.
//!
//! It stands in until the tantivy index of `commerce-search` is wired in; the shop
//! only sees `Arc<dyn SearchIndex>`, so swapping it is one line. It has no typo
//! tolerance and ignores personalisation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;

use async_trait::async_trait;
use commerce_core::Result;
use commerce_core::catalog::{CategoryPath, Product, Rating, Slug};
use commerce_core::clock::Timestamp;
use commerce_core::id::ProductId;
use commerce_core::money::Money;
use commerce_core::store::SearchIndex;
use commerce_core::store::search::{
    FacetCount, Facets, SearchHit, SearchQuery, SearchResults, SortOrder, Suggestion,
    SuggestionKind,
};

#[derive(Debug, Clone)]
struct Doc {
    slug: Slug,
    title: String,
    brand: String,
    category: CategoryPath,
    price: Money,
    rating: Option<Rating>,
    popularity: u64,
    created_at: Timestamp,
    title_tokens: HashSet<String>,
    attributes: HashSet<(String, String)>,
}

#[derive(Debug, Default)]
struct State {
    docs: HashMap<ProductId, Doc>,
    postings: HashMap<String, HashSet<ProductId>>,
}

/// The in-memory search index.
#[derive(Debug, Default)]
pub struct NaiveSearch {
    state: RwLock<State>,
}

fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

impl NaiveSearch {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn remove(&mut self, id: &ProductId) {
        self.docs.remove(id);
        for ids in self.postings.values_mut() {
            ids.remove(id);
        }
    }

    fn insert(&mut self, p: &Product) {
        let mut all: HashSet<String> = tokens(&p.title).collect();
        all.extend(tokens(&p.brand));
        all.extend(tokens(p.category.as_str()));
        for t in &all {
            self.postings
                .entry(t.clone())
                .or_default()
                .insert(p.id.clone());
        }
        let mut attributes = HashSet::new();
        for (k, v) in p
            .attributes
            .iter()
            .chain(p.variants.iter().flat_map(|v| v.attributes.iter()))
        {
            attributes.insert((k.clone(), v.to_text()));
        }
        self.docs.insert(
            p.id.clone(),
            Doc {
                slug: p.slug.clone(),
                title: p.title.clone(),
                brand: p.brand.clone(),
                category: p.category.clone(),
                price: p.min_price(),
                rating: p.rating,
                popularity: p.popularity,
                created_at: p.created_at,
                title_tokens: tokens(&p.title).collect(),
                attributes,
            },
        );
    }

    /// Ids matching every query token (the last one as a prefix).
    fn matching(&self, text: &str) -> Vec<&ProductId> {
        let words: Vec<String> = tokens(text).collect();
        let Some((last, exact)) = words.split_last() else {
            return self.docs.keys().collect();
        };
        let mut sets: Vec<HashSet<&ProductId>> = exact
            .iter()
            .map(|w| {
                self.postings
                    .get(w)
                    .map(|s| s.iter().collect())
                    .unwrap_or_default()
            })
            .collect();
        sets.push(
            self.postings
                .iter()
                .filter(|(t, _)| t.starts_with(last.as_str()))
                .flat_map(|(_, ids)| ids.iter())
                .collect(),
        );
        sets.sort_by_key(HashSet::len);
        let mut iter = sets.into_iter();
        let first = iter.next().unwrap_or_default();
        let rest: Vec<_> = iter.collect();
        first
            .into_iter()
            .filter(|id| rest.iter().all(|s| s.contains(id)))
            .collect()
    }
}

fn count(map: BTreeMap<String, u64>) -> Vec<FacetCount> {
    let mut v: Vec<FacetCount> = map
        .into_iter()
        .map(|(value, count)| FacetCount { value, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.value.cmp(&b.value)));
    v
}

fn hit(id: &ProductId, d: &Doc, score: f32, highlight: Option<&[String]>) -> SearchHit {
    let snippet = highlight.map(|words| {
        d.title
            .split(' ')
            .map(|w| {
                let lw = w.to_lowercase();
                if words.iter().any(|q| lw.starts_with(q.as_str())) {
                    format!("<mark>{w}</mark>")
                } else {
                    w.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    });
    SearchHit {
        product_id: id.clone(),
        slug: d.slug.clone(),
        title: d.title.clone(),
        brand: d.brand.clone(),
        category: d.category.clone(),
        price: d.price,
        rating: d.rating,
        score,
        snippet,
    }
}

#[async_trait]
impl SearchIndex for NaiveSearch {
    async fn upsert(&self, products: &[Product]) -> Result<()> {
        let mut s = self.write();
        for p in products {
            if s.docs.contains_key(&p.id) {
                s.remove(&p.id);
            }
            if p.is_active() {
                s.insert(p);
            }
        }
        Ok(())
    }

    async fn remove(&self, ids: &[ProductId]) -> Result<()> {
        let mut s = self.write();
        for id in ids {
            s.remove(id);
        }
        Ok(())
    }

    async fn refresh(&self) -> Result<()> {
        Ok(())
    }

    async fn search(&self, q: &SearchQuery) -> Result<SearchResults> {
        let s = self.read();
        let words: Vec<String> = tokens(&q.text).collect();
        let f = &q.filters;
        let mut found: Vec<(&ProductId, &Doc, f32)> = s
            .matching(&q.text)
            .into_iter()
            .filter_map(|id| s.docs.get(id).map(|d| (id, d)))
            .filter(|(_, d)| f.category.as_ref().is_none_or(|c| c.contains(&d.category)))
            .filter(|(_, d)| f.brands.is_empty() || f.brands.contains(&d.brand))
            .filter(|(_, d)| {
                let ge = |m: &Money| d.price.try_cmp(m).is_ok_and(|o| o.is_ge());
                let le = |m: &Money| d.price.try_cmp(m).is_ok_and(|o| o.is_le());
                f.price.min.as_ref().is_none_or(ge) && f.price.max.as_ref().is_none_or(le)
            })
            .filter(|(_, d)| {
                f.min_rating
                    .is_none_or(|r| d.rating.is_some_and(|x| x >= r))
            })
            .filter(|(_, d)| {
                f.attributes
                    .iter()
                    .all(|(k, v)| d.attributes.contains(&(k.clone(), v.clone())))
            })
            .map(|(id, d)| {
                let in_title = words.iter().filter(|w| d.title_tokens.contains(*w)).count();
                (id, d, words.len() as f32 + in_title as f32)
            })
            .collect();

        let mut facets = Facets::default();
        if q.facets.brands {
            let mut m = BTreeMap::new();
            for (_, d, _) in &found {
                *m.entry(d.brand.clone()).or_default() += 1;
            }
            facets.brands = count(m);
        }
        if q.facets.categories {
            let depth = f.category.as_ref().map_or(1, |c| c.depth() + 1);
            let mut m = BTreeMap::new();
            for (_, d, _) in &found {
                if let Some(level) = std::iter::once(d.category.clone())
                    .chain(d.category.ancestors())
                    .find(|c| c.depth() == depth)
                {
                    *m.entry(level.to_string()).or_default() += 1;
                }
            }
            facets.categories = count(m);
        }

        match q.sort {
            SortOrder::Relevance => found.sort_by(|a, b| {
                b.2.total_cmp(&a.2)
                    .then(b.1.popularity.cmp(&a.1.popularity))
                    .then(a.0.cmp(b.0))
            }),
            SortOrder::PriceAscending => found.sort_by(|a, b| {
                a.1.price
                    .amount()
                    .cmp(&b.1.price.amount())
                    .then(a.0.cmp(b.0))
            }),
            SortOrder::PriceDescending => found.sort_by(|a, b| {
                b.1.price
                    .amount()
                    .cmp(&a.1.price.amount())
                    .then(a.0.cmp(b.0))
            }),
            SortOrder::Newest => {
                found.sort_by(|a, b| b.1.created_at.cmp(&a.1.created_at).then(a.0.cmp(b.0)))
            }
            SortOrder::Popularity => {
                found.sort_by(|a, b| b.1.popularity.cmp(&a.1.popularity).then(a.0.cmp(b.0)))
            }
        }
        let offset = q
            .cursor
            .as_deref()
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(q.offset as usize);
        let limit = q.limit.clamp(1, 100) as usize;
        let total = found.len();
        let highlight = q.highlight.then_some(words.as_slice());
        let hits: Vec<SearchHit> = found
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(id, d, score)| hit(id, d, *score, highlight))
            .collect();
        Ok(SearchResults {
            total: total as u64,
            next_cursor: (offset + hits.len() < total).then(|| (offset + hits.len()).to_string()),
            hits,
            facets,
        })
    }

    async fn autocomplete(&self, prefix: &str, limit: u32) -> Result<Vec<Suggestion>> {
        let s = self.read();
        let prefix = prefix.to_lowercase();
        let mut out: Vec<Suggestion> = Vec::new();
        let mut seen = HashSet::new();
        let mut docs: Vec<&Doc> = s.docs.values().collect();
        docs.sort_by(|a, b| b.popularity.cmp(&a.popularity).then(a.title.cmp(&b.title)));
        for d in docs {
            for (text, kind) in [
                (&d.brand, SuggestionKind::Brand),
                (&d.title, SuggestionKind::Title),
            ] {
                if text.to_lowercase().starts_with(&prefix) && seen.insert(text.clone()) {
                    out.push(Suggestion {
                        text: text.clone(),
                        kind,
                        score: d.popularity as f32,
                    });
                }
            }
            if out.len() >= limit as usize {
                break;
            }
        }
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn similar(&self, id: &ProductId, limit: u32) -> Result<Vec<SearchHit>> {
        let s = self.read();
        let Some(me) = s.docs.get(id) else {
            return Ok(Vec::new());
        };
        let mut same: Vec<(&ProductId, &Doc)> = s
            .docs
            .iter()
            .filter(|(other, d)| *other != id && d.category == me.category)
            .collect();
        same.sort_by(|a, b| b.1.popularity.cmp(&a.1.popularity).then(a.0.cmp(b.0)));
        Ok(same
            .into_iter()
            .take(limit as usize)
            .map(|(i, d)| hit(i, d, 1.0, None))
            .collect())
    }

    async fn count(&self) -> Result<u64> {
        Ok(self.read().docs.len() as u64)
    }
}
