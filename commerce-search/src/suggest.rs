//! Autocomplete: an in-memory ordered map of suggestion texts (titles, brands, category
//! names) by their normalised form, weighted by the popularity of the products behind
//! them. A prefix of up to 8 characters (the ones with many candidates) is answered
//! from a table recomputed after changes in one pass over the map; a longer one by a
//! range scan of the map.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Mutex, RwLock};

use commerce_core::store::search::{Suggestion, SuggestionKind};

/// The normalised form: ASCII-folded, lower-case, runs of anything but letters and
/// digits collapsed into one space, trimmed at the start (a trailing space is kept: the
/// user finished a word).
pub(crate) fn normalise(text: &str) -> String {
    let folded = deunicode::deunicode(text);
    let mut out = String::with_capacity(folded.len());
    let mut space = false;
    for c in folded.chars() {
        if c.is_ascii_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c.to_ascii_lowercase());
        } else {
            space = true;
        }
    }
    if space && !out.is_empty() {
        out.push(' ');
    }
    out
}

/// What a product contributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SuggestDoc {
    pub title: Box<str>,
    pub brand: Box<str>,
    /// The category path (`A > B > C`); every segment is a suggestion.
    pub category: Box<str>,
    pub popularity: u64,
}

/// A change, applied at refresh; products are named by the hash of their id.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Upsert(u64, SuggestDoc),
    Remove(u64),
    Clear,
}

/// What is kept per product to take its contribution back: the title and interned
/// brand and category (a few dozen bytes besides the title).
#[derive(Debug)]
struct Kept {
    title: Box<str>,
    brand: u32,
    category: u32,
    popularity: u64,
}

#[derive(Debug)]
struct Entry {
    text: Box<str>,
    kind: SuggestionKind,
    weight: u64,
    refs: u32,
}

fn kind_tag(kind: SuggestionKind) -> char {
    match kind {
        SuggestionKind::Brand => '\u{1}',
        SuggestionKind::Category => '\u{2}',
        SuggestionKind::Title => '\u{3}',
    }
}

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<Box<str>, Entry>,
    docs: HashMap<u64, Kept>,
    /// Interned brands and category paths.
    names: Vec<Box<str>>,
    name_ids: HashMap<Box<str>, u32>,
}

impl State {
    fn add(&mut self, text: &str, kind: SuggestionKind, weight: u64) {
        let mut key = normalise(text).trim_end().to_owned();
        if key.is_empty() {
            return;
        }
        key.push(kind_tag(kind));
        let e = self.entries.entry(key.into()).or_insert_with(|| Entry {
            text: text.into(),
            kind,
            weight: 0,
            refs: 0,
        });
        e.weight = e.weight.saturating_add(weight);
        e.refs += 1;
    }

    fn sub(&mut self, text: &str, kind: SuggestionKind, weight: u64) {
        let mut key = normalise(text).trim_end().to_owned();
        key.push(kind_tag(kind));
        if let Some(e) = self.entries.get_mut(key.as_str()) {
            e.weight = e.weight.saturating_sub(weight);
            e.refs = e.refs.saturating_sub(1);
            if e.refs == 0 {
                self.entries.remove(key.as_str());
            }
        }
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.name_ids.insert(name.into(), id);
        id
    }

    fn name(&self, id: u32) -> Box<str> {
        self.names.get(id as usize).cloned().unwrap_or_default()
    }

    fn apply_doc(&mut self, title: &str, brand: &str, category: &str, popularity: u64, add: bool) {
        // +1 so that products without popularity still count.
        let w = popularity.saturating_add(1);
        let mut items = vec![
            (title, SuggestionKind::Title),
            (brand, SuggestionKind::Brand),
        ];
        items.extend(category.split(" > ").map(|c| (c, SuggestionKind::Category)));
        for (text, kind) in items {
            if add {
                self.add(text, kind, w);
            } else {
                self.sub(text, kind, w);
            }
        }
    }

    fn take_back(&mut self, id: u64) {
        if let Some(old) = self.docs.remove(&id) {
            let (brand, category) = (self.name(old.brand), self.name(old.category));
            self.apply_doc(&old.title, &brand, &category, old.popularity, false);
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Clear => {
                self.entries.clear();
                self.docs.clear();
            }
            Change::Remove(id) => self.take_back(id),
            Change::Upsert(id, doc) => {
                self.take_back(id);
                self.apply_doc(&doc.title, &doc.brand, &doc.category, doc.popularity, true);
                let kept = Kept {
                    brand: self.intern(&doc.brand),
                    category: self.intern(&doc.category),
                    title: doc.title,
                    popularity: doc.popularity,
                };
                self.docs.insert(id, kept);
            }
        }
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ranked<'a>(std::cmp::Reverse<u64>, &'a str);

/// Prefixes up to this many characters are answered from a table of their best
/// suggestions (the ones with many candidates); longer ones by a range scan.
const TABLE_CHARS: usize = 8;
/// Suggestions kept per prefix in the table (a larger `limit` scans).
const TABLE_DEPTH: usize = 10;
/// The table is recomputed after changes at most this often (unless forced by a
/// refresh); meanwhile new prefixes are scanned and known ones may be stale.
const TABLE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Default)]
struct Table {
    best: HashMap<Box<str>, Vec<Suggestion>>,
    stale: bool,
    built: Option<std::time::Instant>,
}

/// The autocomplete store.
#[derive(Debug, Default)]
pub(crate) struct Suggestions {
    state: RwLock<State>,
    table: RwLock<Table>,
    /// Serialises rebuilds of the table.
    rebuilding: Mutex<()>,
}

fn top(heap: BinaryHeap<Ranked<'_>>, s: &State, limit: usize) -> Vec<Suggestion> {
    let mut ranked = heap.into_sorted_vec();
    ranked.truncate(limit);
    ranked
        .into_iter()
        .filter_map(|Ranked(_, key)| s.entries.get(key))
        .map(|e| Suggestion {
            text: e.text.to_string(),
            kind: e.kind,
            score: e.weight as f32,
        })
        .collect()
}

fn offer<'a>(heap: &mut BinaryHeap<Ranked<'a>>, r: Ranked<'a>, limit: usize) {
    // `heap` is a max-heap on (Reverse(weight), key): its top is the worst.
    if heap.len() < limit {
        heap.push(r);
    } else if heap.peek().is_some_and(|w| r < *w) {
        heap.pop();
        heap.push(r);
    }
}

impl Suggestions {
    pub fn apply(&self, changes: impl IntoIterator<Item = Change>) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        let mut any = false;
        for c in changes {
            s.apply(c);
            any = true;
        }
        drop(s);
        if any {
            self.table.write().unwrap_or_else(|e| e.into_inner()).stale = true;
        }
    }

    /// Recomputes the prefix table if it is stale and was last built long enough ago
    /// (or `force`): one pass over the suggestions in key order.
    pub fn maintain(&self, force: bool) {
        {
            let t = self.table.read().unwrap_or_else(|e| e.into_inner());
            if !t.stale || !(force || t.built.is_none_or(|b| b.elapsed() >= TABLE_EVERY)) {
                return;
            }
        }
        let _one = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        // Mark fresh before reading the state: a change applied meanwhile marks it
        // stale again.
        self.table.write().unwrap_or_else(|e| e.into_inner()).stale = false;
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut best: HashMap<Box<str>, Vec<Suggestion>> = HashMap::new();
        let mut current: Vec<Option<&str>> = vec![None; TABLE_CHARS + 1];
        let mut heaps: Vec<BinaryHeap<Ranked<'_>>> =
            (0..=TABLE_CHARS).map(|_| BinaryHeap::new()).collect();
        for (key, e) in &s.entries {
            let base = key.trim_end_matches(['\u{1}', '\u{2}', '\u{3}']);
            for l in 1..=TABLE_CHARS {
                let p = base.get(..l);
                if p != current[l] {
                    if let Some(prev) = current[l] {
                        let heap = std::mem::take(&mut heaps[l]);
                        best.insert(prev.into(), top(heap, &s, TABLE_DEPTH));
                    }
                    current[l] = p;
                }
                if p.is_some() {
                    offer(
                        &mut heaps[l],
                        Ranked(std::cmp::Reverse(e.weight), key),
                        TABLE_DEPTH,
                    );
                }
            }
        }
        for l in 1..=TABLE_CHARS {
            if let Some(prev) = current[l] {
                let heap = std::mem::take(&mut heaps[l]);
                best.insert(prev.into(), top(heap, &s, TABLE_DEPTH));
            }
        }
        drop(s);
        let mut t = self.table.write().unwrap_or_else(|e| e.into_inner());
        t.best = best;
        t.built = Some(std::time::Instant::now());
    }

    /// Number of distinct suggestions.
    pub fn len(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .len()
    }

    fn scan(&self, prefix: &str, limit: usize) -> Vec<Suggestion> {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut best: BinaryHeap<Ranked<'_>> = BinaryHeap::new();
        for (key, e) in s
            .entries
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            offer(&mut best, Ranked(std::cmp::Reverse(e.weight), key), limit);
        }
        top(best, &s, limit)
    }

    /// The best `limit` suggestions starting with `prefix`.
    pub fn lookup(&self, prefix: &str, limit: usize) -> Vec<Suggestion> {
        let p = normalise(prefix);
        if p.trim().is_empty() || limit == 0 {
            return Vec::new();
        }
        if p.len() <= TABLE_CHARS && limit <= TABLE_DEPTH {
            let t = self.table.read().unwrap_or_else(|e| e.into_inner());
            if !t.stale {
                return t
                    .best
                    .get(p.as_str())
                    .map(|v| v.iter().take(limit).cloned().collect())
                    .unwrap_or_default();
            }
            if let Some(v) = t.best.get(p.as_str()) {
                // Stale by at most `TABLE_EVERY`.
                return v.iter().take(limit).cloned().collect();
            }
        }
        self.scan(&p, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(title: &str, brand: &str, popularity: u64) -> SuggestDoc {
        SuggestDoc {
            title: title.into(),
            brand: brand.into(),
            category: "Cell Phones".into(),
            popularity,
        }
    }

    #[test]
    fn prefix_ranked_by_weight_and_updates_apply() {
        let s = Suggestions::default();
        s.apply([
            Change::Upsert(1, doc("Samsung Galaxy S24", "Samsung", 10)),
            Change::Upsert(2, doc("Samsung Galaxy A15", "Samsung", 50)),
            Change::Upsert(3, doc("Sony WH-1000XM5", "Sony", 5)),
        ]);
        let got: Vec<String> = s.lookup("sam", 10).into_iter().map(|x| x.text).collect();
        assert_eq!(got, ["Samsung", "Samsung Galaxy A15", "Samsung Galaxy S24"]);
        let got: Vec<String> = s
            .lookup("Samsung Galaxy S", 10)
            .into_iter()
            .map(|x| x.text)
            .collect();
        assert_eq!(got, ["Samsung Galaxy S24"]);
        assert_eq!(s.lookup("cell", 5)[0].kind, SuggestionKind::Category);
        s.apply([Change::Remove(2)]);
        let got: Vec<String> = s
            .lookup("samsung g", 10)
            .into_iter()
            .map(|x| x.text)
            .collect();
        assert_eq!(got, ["Samsung Galaxy S24"]);
        s.apply([Change::Upsert(1, doc("Samsung Galaxy S25", "Samsung", 10))]);
        let got: Vec<String> = s
            .lookup("samsung g", 10)
            .into_iter()
            .map(|x| x.text)
            .collect();
        assert_eq!(got, ["Samsung Galaxy S25"]);
        s.maintain(true);
        let got: Vec<String> = s.lookup("sam", 10).into_iter().map(|x| x.text).collect();
        assert_eq!(got, ["Samsung", "Samsung Galaxy S25"]);
        assert_eq!(s.lookup("cell phones", 10)[0].text, "Cell Phones");
        assert!(
            s.lookup("sony", 10)
                .iter()
                .all(|x| x.text.starts_with("Sony"))
        );
        s.apply([Change::Remove(3)]);
        // Stale table entries are served until the next rebuild; a forced one drops them.
        s.maintain(true);
        assert!(s.lookup("sony", 10).is_empty());
        s.apply([Change::Clear]);
        s.maintain(true);
        assert!(s.lookup("s", 10).is_empty());
        assert!(s.lookup("  ", 10).is_empty());
    }
}
