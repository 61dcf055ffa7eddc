//! Autocomplete: suggestion texts (titles, brands, category names) weighted by the
//! popularity of the products behind them, found by word prefixes anywhere in the text.
//!
//! * Every word the user typed must be the prefix of a word of the suggestion, in any
//!   position and order (`iph` finds "Apple iPhone 15"; `apple 15` too).
//! * A typed word of 4 or more characters that starts no known word is matched with one
//!   typo (an insertion, deletion, substitution or swap of two neighbours) after its first
//!   character: `samsnug` finds "Samsung".
//! * The most popular suggestions come first (the summed popularity of the products
//!   behind a text), then shorter texts, then by text.
//!
//! Per word of the vocabulary a posting list of the suggestions holding it is kept in
//! popularity order (re-sorted at most once a second after changes; what changed since
//! sits in a small unsorted tail that is always read), so the best `limit` are found by
//! merging the lists of the matching words and stopping after `limit`: the cost does not
//! grow with the number of products.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

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
    /// Takes back every product, or (`Some((shard, shards))`) those whose key is
    /// `shard` modulo `shards` (one shard of a store shared by several indexes).
    Clear(Option<(u64, u64)>),
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
    /// Word ids of the normalised text, in order.
    words: Box<[u32]>,
    alive: bool,
    /// In the tails of its words (new, or its weight changed since the last sort): the
    /// sorted parts of the lists skip it.
    pending: bool,
}

/// The suggestions holding one word.
#[derive(Debug, Default)]
struct Posting {
    /// Heaviest first, as of the last sort.
    sorted: Vec<u32>,
    /// Added or re-weighted since (unsorted).
    tail: Vec<u32>,
}

fn kind_tag(kind: SuggestionKind) -> char {
    match kind {
        SuggestionKind::Brand => '\u{1}',
        SuggestionKind::Category => '\u{2}',
        SuggestionKind::Title => '\u{3}',
    }
}

/// At most this many list items are read per lookup (a multi-word query whose words
/// rarely occur together); what was found by then is returned.
const SCAN_BUDGET: usize = 30_000;

/// Words of at least this many characters may have one typo.
const TYPO_FROM_CHARS: usize = 4;

#[derive(Debug, Default)]
struct State {
    entries: Vec<Entry>,
    /// Per entry, one bit per word (a word id hashed to 0..64): a dense array that
    /// rejects most candidates of a multi-word lookup without reading the entry.
    signatures: Vec<u64>,
    free: Vec<u32>,
    /// Normalised text plus kind tag, to entry id.
    by_key: HashMap<Box<str>, u32>,
    /// Word to word id (ids index `postings`).
    vocabulary: BTreeMap<Box<str>, u32>,
    postings: Vec<Posting>,
    /// Words whose posting changed since the last sort.
    dirty: HashSet<u32>,
    /// Entries pushed to tails since the last sort.
    pending: Vec<u32>,
    docs: HashMap<u64, Kept>,
    /// Interned brands and category paths.
    names: Vec<Box<str>>,
    name_ids: HashMap<Box<str>, u32>,
    live: usize,
}

fn key_for(text: &str, kind: SuggestionKind) -> Option<String> {
    let mut key = normalise(text).trim_end().to_owned();
    if key.is_empty() {
        return None;
    }
    key.push(kind_tag(kind));
    Some(key)
}

impl State {
    fn word_id(&mut self, word: &str) -> u32 {
        if let Some(&id) = self.vocabulary.get(word) {
            return id;
        }
        let id = self.postings.len() as u32;
        self.postings.push(Posting::default());
        self.vocabulary.insert(word.into(), id);
        id
    }

    /// Puts the entry in the tails of its words (once until the next sort).
    fn touch(&mut self, id: u32) {
        let Some(e) = self.entries.get_mut(id as usize) else {
            return;
        };
        if e.pending {
            return;
        }
        e.pending = true;
        let mut words = e.words.to_vec();
        words.sort_unstable();
        words.dedup();
        for w in words {
            if let Some(p) = self.postings.get_mut(w as usize) {
                p.tail.push(id);
            }
            self.dirty.insert(w);
        }
        self.pending.push(id);
    }

    fn add(&mut self, text: &str, kind: SuggestionKind, weight: u64) {
        let Some(key) = key_for(text, kind) else {
            return;
        };
        if let Some(&id) = self.by_key.get(key.as_str()) {
            if let Some(e) = self.entries.get_mut(id as usize) {
                e.weight = e.weight.saturating_add(weight);
                e.refs += 1;
            }
            self.touch(id);
            return;
        }
        let base = &key[..key.len() - 1];
        let words: Vec<u32> = base.split(' ').map(|w| self.word_id(w)).collect();
        let entry = Entry {
            text: text.into(),
            kind,
            weight,
            refs: 1,
            words: words.clone().into(),
            alive: true,
            pending: false,
        };
        let signature = words.iter().fold(0, |sig, &w| sig | word_bit(w));
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = entry;
                self.signatures[id as usize] = signature;
                id
            }
            None => {
                self.entries.push(entry);
                self.signatures.push(signature);
                (self.entries.len() - 1) as u32
            }
        };
        self.by_key.insert(key.into(), id);
        self.live += 1;
        self.touch(id);
    }

    fn sub(&mut self, text: &str, kind: SuggestionKind, weight: u64) {
        let Some(key) = key_for(text, kind) else {
            return;
        };
        let Some(&id) = self.by_key.get(key.as_str()) else {
            return;
        };
        let Some(e) = self.entries.get_mut(id as usize) else {
            return;
        };
        e.weight = e.weight.saturating_sub(weight);
        e.refs = e.refs.saturating_sub(1);
        if e.refs > 0 {
            self.touch(id);
            return;
        }
        e.alive = false;
        let words = e.words.to_vec();
        self.dirty.extend(words);
        self.by_key.remove(key.as_str());
        self.free.push(id);
        self.live -= 1;
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
            Change::Clear(None) => {
                let names = (
                    std::mem::take(&mut self.names),
                    std::mem::take(&mut self.name_ids),
                );
                *self = State::default();
                (self.names, self.name_ids) = names;
            }
            Change::Clear(Some((shard, shards))) => {
                let ids: Vec<u64> = self
                    .docs
                    .keys()
                    .copied()
                    .filter(|k| k % shards.max(1) == shard)
                    .collect();
                for id in ids {
                    self.take_back(id);
                }
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

    /// The order of a list: heavier first, then shorter text, then by text, then
    /// brand, category, title.
    fn rank(&self, id: u32) -> Rank<'_> {
        match self.entries.get(id as usize) {
            Some(e) => (Reverse(e.weight), e.text.len(), &e.text, kind_tag(e.kind)),
            None => (Reverse(0), usize::MAX, "", '\u{4}'),
        }
    }

    /// The next current item of a sorted list from `pos`, as a merge head. Skipped:
    /// suggestions that died since the sort, and those changed since (pending: read
    /// from the tails); what is left is in rank order.
    fn head(&self, word: u32, mut pos: usize) -> Option<Head<'_>> {
        let list = &self.postings.get(word as usize)?.sorted;
        loop {
            let id = *list.get(pos)?;
            if self
                .entries
                .get(id as usize)
                .is_some_and(|e| e.alive && !e.pending)
            {
                return Some(Head {
                    rank: Reverse(self.rank(id)),
                    word,
                    pos,
                    id,
                });
            }
            pos += 1;
        }
    }

    /// Sorts the changed posting lists: drops entries that died or moved to the tail,
    /// sorts the tail and merges it in.
    fn sort_dirty(&mut self) {
        let dirty: Vec<u32> = self.dirty.drain().collect();
        for w in dirty {
            let Some(p) = self.postings.get_mut(w as usize) else {
                continue;
            };
            let (sorted, tail) = (std::mem::take(&mut p.sorted), std::mem::take(&mut p.tail));
            let holds = |id: u32| {
                self.entries
                    .get(id as usize)
                    .is_some_and(|e| e.alive && e.words.contains(&w))
            };
            let keep: Vec<u32> = sorted
                .into_iter()
                .filter(|&id| {
                    holds(id) && self.entries.get(id as usize).is_some_and(|e| !e.pending)
                })
                .collect();
            let mut fresh: Vec<u32> = tail.into_iter().filter(|&id| holds(id)).collect();
            fresh.sort_unstable_by(|&a, &b| self.rank(a).cmp(&self.rank(b)));
            fresh.dedup();
            let mut merged = Vec::with_capacity(keep.len() + fresh.len());
            let (mut i, mut j) = (0, 0);
            while i < keep.len() && j < fresh.len() {
                if self.rank(fresh[j]) < self.rank(keep[i]) {
                    merged.push(fresh[j]);
                    j += 1;
                } else {
                    merged.push(keep[i]);
                    i += 1;
                }
            }
            merged.extend_from_slice(&keep[i..]);
            merged.extend_from_slice(&fresh[j..]);
            if let Some(p) = self.postings.get_mut(w as usize) {
                p.sorted = merged;
            }
        }
        for id in std::mem::take(&mut self.pending) {
            if let Some(e) = self.entries.get_mut(id as usize) {
                e.pending = false;
            }
        }
    }

    /// The vocabulary words starting with `p`.
    fn starting<'a>(&'a self, p: &'a str) -> impl Iterator<Item = (&'a Box<str>, &'a u32)> + 'a {
        self.vocabulary
            .range::<str, _>((Bound::Included(p), Bound::Unbounded))
            .take_while(move |(w, _)| w.starts_with(p))
    }

    /// The vocabulary words matching one typed word: those it is a prefix of, else (4+
    /// characters) those with a prefix one typo away that share its first character.
    fn matches(&self, typed: &str) -> Vec<u32> {
        let mut out: Vec<u32> = self.starting(typed).map(|(_, &id)| id).collect();
        if out.is_empty() && typed.len() >= TYPO_FROM_CHARS {
            let first = &typed[..1];
            out = self
                .starting(first)
                .filter(|(w, _)| within_one_typo(typed.as_bytes(), w.as_bytes()))
                .map(|(_, &id)| id)
                .collect();
        }
        out.sort_unstable();
        out
    }
}

/// The signature bit of a word id.
fn word_bit(word: u32) -> u64 {
    1 << (u64::from(word).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

/// Whether each typed word (in `order`) can take a distinct word of `words` from its
/// set of matching word ids (greedily: the first free one).
fn takes_distinct_words(words: &[u32], order: &[usize], sets: &[Vec<u32>]) -> bool {
    let mut used: u64 = 0;
    for &i in order {
        let Some(set) = sets.get(i) else {
            return false;
        };
        let free = words.iter().enumerate().position(|(pos, w)| {
            let bit = if pos < 64 { 1u64 << pos } else { 0 };
            used & bit == 0 && set.binary_search(w).is_ok()
        });
        match free {
            Some(pos) if pos < 64 => used |= 1 << pos,
            Some(_) => {}
            None => return false,
        }
    }
    true
}

/// Whether some prefix of `word` is at most one edit (insertion, deletion, substitution
/// or transposition of neighbours) from `typed` (optimal string alignment distance).
fn within_one_typo(typed: &[u8], word: &[u8]) -> bool {
    let (n, m) = (typed.len(), word.len());
    if m + 1 < n {
        return false;
    }
    // d[i][j]: distance between typed[..i] and word[..j]; three rows kept.
    let width = m + 1;
    let mut prev2 = vec![0usize; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur = vec![0usize; width];
    for i in 1..=n {
        cur[0] = i;
        for j in 1..=m {
            let cost = usize::from(typed[i - 1] != word[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && typed[i - 1] == word[j - 2] && typed[i - 2] == word[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.iter().any(|&d| d <= 1)
}

/// At most once per this interval (unless forced by a refresh) the changed posting
/// lists are re-sorted; meanwhile changes sit in the unsorted tails, which every lookup
/// reads whole (results are never stale, only slower while tails are long).
const SORT_EVERY: Duration = Duration::from_secs(1);

/// With this many suggestions in the tails, the lists are re-sorted at the next
/// maintenance whatever the interval (a bulk load).
const SORT_NOW_PENDING: usize = 20_000;

/// The autocomplete store.
#[derive(Debug, Default)]
pub(crate) struct Suggestions {
    state: RwLock<State>,
    sorted_at: Mutex<Option<Instant>>,
}

/// The order of suggestions (smaller first).
type Rank<'a> = (Reverse<u64>, usize, &'a str, char);

/// One list in the merge: the next position in a sorted list.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Head<'a> {
    rank: Reverse<Rank<'a>>,
    word: u32,
    pos: usize,
    id: u32,
}

impl Suggestions {
    pub fn apply(&self, changes: impl IntoIterator<Item = Change>) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        for c in changes {
            s.apply(c);
        }
    }

    /// Re-sorts the changed posting lists if the last sort is long enough ago, the
    /// tails are long, or `force`.
    pub fn maintain(&self, force: bool) {
        let mut at = self.sorted_at.lock().unwrap_or_else(|e| e.into_inner());
        {
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            if s.dirty.is_empty() && s.pending.is_empty() {
                return;
            }
            let due = at.is_none_or(|t| t.elapsed() >= SORT_EVERY);
            if !force && !due && s.pending.len() < SORT_NOW_PENDING {
                return;
            }
        }
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        s.sort_dirty();
        *at = Some(Instant::now());
    }

    /// Number of distinct suggestions.
    pub fn len(&self) -> usize {
        self.state.read().unwrap_or_else(|e| e.into_inner()).live
    }

    /// The best `limit` suggestions for what the user typed.
    pub fn lookup(&self, typed: &str, limit: usize) -> Vec<Suggestion> {
        let text = normalise(typed);
        let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
        if words.is_empty() || limit == 0 {
            return Vec::new();
        }
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut sets: Vec<Vec<u32>> = Vec::with_capacity(words.len());
        for w in &words {
            let m = s.matches(w);
            if m.is_empty() {
                return Vec::new();
            }
            sets.push(m);
        }
        // Drive the merge by the typed word with the fewest candidates.
        let size = |set: &Vec<u32>| -> usize {
            set.iter()
                .filter_map(|&w| s.postings.get(w as usize))
                .map(|p| p.sorted.len() + p.tail.len())
                .sum()
        };
        let (drive, _) = sets
            .iter()
            .enumerate()
            .min_by_key(|(_, set)| size(set))
            .unwrap_or((0, &sets[0]));
        // Each typed word takes a word of its own (longest typed words first), so that
        // `samsung galaxy s` wants a third word starting with `s`.
        let mut order: Vec<usize> = (0..words.len()).collect();
        order.sort_by_key(|&i| Reverse(words[i].len()));
        let set_bits: Vec<u64> = sets
            .iter()
            .map(|set| set.iter().fold(0, |b, &w| b | word_bit(w)))
            .collect();
        let fits = |id: u32| -> bool {
            let sig = s.signatures.get(id as usize).copied().unwrap_or(0);
            set_bits.iter().all(|b| sig & b != 0)
                && s.entries
                    .get(id as usize)
                    .is_some_and(|e| e.alive && takes_distinct_words(&e.words, &order, &sets))
        };
        let mut seen: HashSet<u32> = HashSet::new();
        let mut found: Vec<u32> = Vec::new();
        let mut budget = SCAN_BUDGET;
        // The tails first (changed since the last sort), whole.
        for &w in &sets[drive] {
            if let Some(p) = s.postings.get(w as usize) {
                for &id in &p.tail {
                    budget = budget.saturating_sub(1);
                    if fits(id) && seen.insert(id) {
                        found.push(id);
                    }
                }
            }
        }
        // Then the sorted lists, merged heaviest first, until `limit` more fit.
        let mut heap: BinaryHeap<Head<'_>> =
            sets[drive].iter().filter_map(|&w| s.head(w, 0)).collect();
        let mut merged = 0;
        while merged < limit && budget > 0 {
            let Some(head) = heap.pop() else {
                break;
            };
            budget -= 1;
            let id = head.id;
            if let Some(next) = s.head(head.word, head.pos + 1) {
                heap.push(next);
            }
            if fits(id) && seen.insert(id) {
                found.push(id);
                merged += 1;
            }
        }
        found.sort_unstable_by(|&a, &b| s.rank(a).cmp(&s.rank(b)));
        found.truncate(limit);
        found
            .into_iter()
            .filter_map(|id| s.entries.get(id as usize))
            .map(|e| Suggestion {
                text: e.text.to_string(),
                kind: e.kind,
                score: e.weight as f32,
            })
            .collect()
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

    fn texts(s: &Suggestions, typed: &str, limit: usize) -> Vec<String> {
        s.lookup(typed, limit).into_iter().map(|x| x.text).collect()
    }

    #[test]
    fn prefix_ranked_by_weight_and_updates_apply() {
        let s = Suggestions::default();
        s.apply([
            Change::Upsert(1, doc("Samsung Galaxy S24", "Samsung", 10)),
            Change::Upsert(2, doc("Samsung Galaxy A15", "Samsung", 50)),
            Change::Upsert(3, doc("Sony WH-1000XM5", "Sony", 5)),
        ]);
        assert_eq!(
            texts(&s, "sam", 10),
            ["Samsung", "Samsung Galaxy A15", "Samsung Galaxy S24"]
        );
        assert_eq!(texts(&s, "Samsung Galaxy S", 10), ["Samsung Galaxy S24"]);
        assert_eq!(s.lookup("cell", 5)[0].kind, SuggestionKind::Category);
        s.apply([Change::Remove(2)]);
        assert_eq!(texts(&s, "samsung g", 10), ["Samsung Galaxy S24"]);
        s.apply([Change::Upsert(1, doc("Samsung Galaxy S25", "Samsung", 10))]);
        assert_eq!(texts(&s, "samsung g", 10), ["Samsung Galaxy S25"]);
        s.maintain(true);
        assert_eq!(texts(&s, "sam", 10), ["Samsung", "Samsung Galaxy S25"]);
        assert_eq!(s.lookup("cell phones", 10)[0].text, "Cell Phones");
        assert!(texts(&s, "sony", 10).iter().all(|x| x.starts_with("Sony")));
        // A removal is visible at once, sorted or not.
        s.apply([Change::Remove(3)]);
        assert!(s.lookup("sony", 10).is_empty());
        s.maintain(true);
        assert!(s.lookup("sony", 10).is_empty());
        s.apply([Change::Clear(None)]);
        s.maintain(true);
        assert!(s.lookup("s", 10).is_empty());
        assert!(s.lookup("  ", 10).is_empty());
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn words_inside_the_text_match_in_any_order() {
        let s = Suggestions::default();
        s.apply([
            Change::Upsert(1, doc("Apple iPhone 15", "Apple", 100)),
            Change::Upsert(2, doc("Apple iPad Air", "Apple", 10)),
            Change::Upsert(3, doc("Phone Case for iPhone", "Spigen", 1)),
        ]);
        s.maintain(true);
        assert_eq!(
            texts(&s, "iph", 10),
            ["Apple iPhone 15", "Phone Case for iPhone"]
        );
        assert_eq!(texts(&s, "15 app", 10), ["Apple iPhone 15"]);
        assert_eq!(texts(&s, "iphone ", 10)[0], "Apple iPhone 15");
        // Every typed word must match.
        assert!(s.lookup("iphone air", 10).is_empty());
        assert_eq!(texts(&s, "phones", 10), ["Cell Phones"]);
        // Not a word prefix: "hone" is inside "iPhone" but starts no word.
        assert!(s.lookup("hone", 10).is_empty());
    }

    #[test]
    fn one_typo_from_the_fourth_character() {
        let s = Suggestions::default();
        s.apply([
            Change::Upsert(1, doc("Samsung Galaxy S24", "Samsung", 10)),
            Change::Upsert(2, doc("Apple iPhone 15", "Apple", 5)),
        ]);
        s.maintain(true);
        // Swapped neighbours, a wrong letter, a missing one, an extra one.
        for typed in [
            "samsnug", "samsyng", "smsung", "sammsung", "iphpne", "galxy s",
        ] {
            assert!(!s.lookup(typed, 5).is_empty(), "{typed}");
        }
        assert_eq!(texts(&s, "samsnug", 1), ["Samsung"]);
        assert_eq!(texts(&s, "iphine 1", 5), ["Apple iPhone 15"]);
        // Under 4 characters: no typo allowed.
        assert!(s.lookup("smg", 5).is_empty());
        assert!(s.lookup("ipn", 5).is_empty());
        // Two typos: nothing.
        assert!(s.lookup("snmsnug", 5).is_empty());
        // The first character is never taken as a typo.
        assert!(s.lookup("xamsung", 5).is_empty());
    }

    #[test]
    fn popularity_changes_reorder_at_once() {
        let s = Suggestions::default();
        s.apply([
            Change::Upsert(1, doc("Pixel 8", "Google", 10)),
            Change::Upsert(2, doc("Pixel 9", "Google", 20)),
        ]);
        s.maintain(true);
        assert_eq!(texts(&s, "pix", 1), ["Pixel 9"]);
        s.apply([Change::Upsert(1, doc("Pixel 8", "Google", 30))]);
        // Before and after the lists are re-sorted.
        assert_eq!(texts(&s, "pix", 1), ["Pixel 8"]);
        s.maintain(true);
        assert_eq!(texts(&s, "pix", 2), ["Pixel 8", "Pixel 9"]);
        s.apply([Change::Upsert(1, doc("Pixel 8", "Google", 0))]);
        assert_eq!(texts(&s, "pix", 1), ["Pixel 9"]);
    }

    #[test]
    fn clearing_one_shard_keeps_the_others() {
        let s = Suggestions::default();
        s.apply([
            Change::Upsert(2, doc("Alpha One", "Acme", 1)),
            Change::Upsert(3, doc("Alpha Two", "Acme", 1)),
        ]);
        s.apply([Change::Clear(Some((0, 2)))]);
        assert_eq!(texts(&s, "alpha", 5), ["Alpha Two"]);
    }

    /// Against a brute-force reference on a random catalog with random updates.
    #[test]
    fn agrees_with_a_full_scan() {
        let words = [
            "alpha", "alpine", "beta", "bravo", "charlie", "chase", "delta", "echo", "eta",
        ];
        let mut seed = 7u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let s = Suggestions::default();
        let mut docs: HashMap<u64, SuggestDoc> = HashMap::new();
        for round in 0..30 {
            let mut batch = Vec::new();
            for _ in 0..20 {
                let id = next() % 60;
                if next() % 5 == 0 {
                    docs.remove(&id);
                    batch.push(Change::Remove(id));
                } else {
                    let n = 1 + next() % 3;
                    let title: Vec<&str> = (0..n)
                        .map(|_| words[(next() % words.len() as u64) as usize])
                        .collect();
                    let d = SuggestDoc {
                        title: title.join(" ").into(),
                        brand: words[(next() % 3) as usize].into(),
                        category: "Zeta > Omega".into(),
                        popularity: next() % 50,
                    };
                    docs.insert(id, d.clone());
                    batch.push(Change::Upsert(id, d));
                }
            }
            s.apply(batch);
            if round % 3 == 0 {
                s.maintain(true);
            }
            // Reference: every (text, kind) with its summed weight.
            let mut all: HashMap<(String, SuggestionKind), (String, u64)> = HashMap::new();
            for d in docs.values() {
                let mut items = vec![
                    (d.title.to_string(), SuggestionKind::Title),
                    (d.brand.to_string(), SuggestionKind::Brand),
                ];
                items.extend(
                    d.category
                        .split(" > ")
                        .map(|c| (c.to_string(), SuggestionKind::Category)),
                );
                for (text, kind) in items {
                    let e = all
                        .entry((normalise(&text).trim_end().to_owned(), kind))
                        .or_insert((text, 0));
                    e.1 += d.popularity + 1;
                }
            }
            for typed in [
                "a", "al", "alp", "b", "ch", "e", "alpha b", "eta al", "z", "e e", "echo ec",
            ] {
                let mut q: Vec<String> = normalise(typed).split(' ').map(str::to_owned).collect();
                q.sort_by_key(|t| Reverse(t.len()));
                let takes = |norm: &str| {
                    let mut free: Vec<&str> = norm.split(' ').collect();
                    q.iter().all(
                        |t| match free.iter().position(|w| w.starts_with(t.as_str())) {
                            Some(i) => {
                                free[i] = "";
                                true
                            }
                            None => false,
                        },
                    )
                };
                let mut want: Vec<(Reverse<u64>, usize, String, char)> = all
                    .iter()
                    .filter(|((norm, _), _)| takes(norm))
                    .map(|((_, kind), (text, w))| {
                        (Reverse(*w), text.len(), text.clone(), kind_tag(*kind))
                    })
                    .collect();
                want.sort();
                let want: Vec<String> = want.into_iter().take(4).map(|x| x.2).collect();
                assert_eq!(texts(&s, typed, 4), want, "round {round}, {typed:?}");
            }
        }
    }
}
