//! Documents that hold every word of a query, as one posting list per word (the
//! catch-all field): the rarest word's postings lead, and each candidate is checked
//! against the other words. A word found in a large share of a segment is checked in a
//! bitset of its documents, built once per segment and kept, instead of seeking its long
//! posting list for every candidate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tantivy::index::SegmentId;
use tantivy::postings::SegmentPostings;
use tantivy::query::{EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED, Term};

/// A word in at least this share (1 / N) of a segment's documents is checked in a bitset.
const DENSE_SHARE: u64 = 64;

/// Bytes of bitsets kept at most per index (a bitset is a segment's documents / 8
/// bytes: 1.25 MB at 10,000,000 documents); the cache is emptied past it. A segment
/// never changes but by deletions, which the collectors skip, so a bitset stays right
/// for its segment's life; those of merged-away segments go at the next emptying.
const MAX_KEPT_BYTES: usize = 256 << 20;

/// A word's documents in one segment, one bit each.
type Bits = Arc<Vec<u64>>;

type BitsBySegmentTerm = HashMap<(SegmentId, Term), Bits>;

/// The bitsets of dense words, by segment and term.
#[derive(Default)]
pub(crate) struct DenseTerms {
    sets: Mutex<BitsBySegmentTerm>,
}

impl std::fmt::Debug for DenseTerms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenseTerms").finish_non_exhaustive()
    }
}

impl DenseTerms {
    /// The documents of `term` in `reader` as a bitset, read once.
    fn bits(&self, reader: &SegmentReader, term: &Term, mut postings: SegmentPostings) -> Bits {
        let key = (reader.segment_id(), term.clone());
        if let Some(bits) = self.lock().get(&key) {
            return bits.clone();
        }
        let mut bits = vec![0u64; (reader.max_doc() as usize).div_ceil(64)];
        let mut doc = postings.doc();
        while doc != TERMINATED {
            if let Some(word) = bits.get_mut(doc as usize / 64) {
                *word |= 1 << (doc % 64);
            }
            doc = postings.advance();
        }
        let bits = Arc::new(bits);
        let mut sets = self.lock();
        let kept: usize = sets.values().map(|b| b.len() * 8).sum();
        if kept + bits.len() * 8 > MAX_KEPT_BYTES {
            sets.clear();
        }
        sets.insert(key, bits.clone());
        bits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BitsBySegmentTerm> {
        self.sets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Matches the documents holding every one of `terms` (all of one field indexed with at
/// least document lists); unscored (a constant). An empty term list matches nothing.
#[derive(Clone, Debug)]
pub(crate) struct AllTermsQuery {
    pub field: Field,
    pub terms: Vec<Term>,
    pub dense: Arc<DenseTerms>,
}

impl Query for AllTermsQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        for t in &self.terms {
            visitor(t, false);
        }
    }
}

impl Weight for AllTermsQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let index = reader.inverted_index(self.field)?;
        let mut infos = Vec::with_capacity(self.terms.len());
        for term in &self.terms {
            match index.get_term_info(term)? {
                Some(info) => infos.push((term, info)),
                None => return Ok(Box::new(EmptyScorer)),
            }
        }
        infos.sort_by_key(|(_, info)| info.doc_freq);
        let mut infos = infos.into_iter();
        let Some((_, lead)) = infos.next() else {
            return Ok(Box::new(EmptyScorer));
        };
        let lead = index.read_postings_from_terminfo(&lead, IndexRecordOption::Basic)?;
        let mut others = Vec::new();
        for (term, info) in infos {
            let postings = index.read_postings_from_terminfo(&info, IndexRecordOption::Basic)?;
            if u64::from(info.doc_freq) * DENSE_SHARE >= u64::from(reader.max_doc()) {
                others.push(Check::Bits(self.dense.bits(reader, term, postings)));
            } else {
                others.push(Check::Postings(Box::new(postings)));
            }
        }
        let mut scorer = AllTermsScorer {
            lead,
            others,
            score: boost,
        };
        let first = scorer.lead.doc();
        if first != TERMINATED && !scorer.all_hold(first) {
            scorer.advance();
        }
        Ok(Box::new(scorer))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        crate::query::explain_match(self.scorer(reader, 1.0)?.as_mut(), doc, "every word")
    }
}

/// How a candidate is checked against one more word.
enum Check {
    Postings(Box<SegmentPostings>),
    Bits(Bits),
}

impl Check {
    /// Whether the word's documents hold `doc`; candidates come in increasing order.
    fn holds(&mut self, doc: DocId) -> bool {
        match self {
            Check::Postings(p) => {
                if p.doc() < doc {
                    p.seek(doc);
                }
                p.doc() == doc
            }
            Check::Bits(bits) => bits
                .get(doc as usize / 64)
                .is_some_and(|w| w & (1 << (doc % 64)) != 0),
        }
    }
}

struct AllTermsScorer {
    lead: SegmentPostings,
    others: Vec<Check>,
    score: Score,
}

impl AllTermsScorer {
    fn all_hold(&mut self, doc: DocId) -> bool {
        self.others.iter_mut().all(|c| c.holds(doc))
    }

    /// From the lead's current document on, the first that every word holds.
    fn settle(&mut self, mut doc: DocId) -> DocId {
        while doc != TERMINATED && !self.all_hold(doc) {
            doc = self.lead.advance();
        }
        doc
    }
}

impl DocSet for AllTermsScorer {
    fn advance(&mut self) -> DocId {
        let doc = self.lead.advance();
        self.settle(doc)
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.lead.doc() >= target {
            return self.lead.doc();
        }
        let doc = self.lead.seek(target);
        self.settle(doc)
    }

    fn doc(&self) -> DocId {
        self.lead.doc()
    }

    fn size_hint(&self) -> u32 {
        self.lead.size_hint()
    }
}

impl Scorer for AllTermsScorer {
    fn score(&mut self) -> Score {
        self.score
    }
}

#[cfg(test)]
mod tests {
    use tantivy::collector::DocSetCollector;
    use tantivy::query::{BooleanQuery, Occur, TermQuery};
    use tantivy::schema::{Schema, TEXT};
    use tantivy::{Index, IndexWriter, TantivyDocument};

    use super::*;

    /// On random documents of words with very different frequencies (some dense enough
    /// for a bitset, some not), with deletions and several segments, the conjunction
    /// finds exactly what a boolean query of the same terms finds, for every word set.
    #[test]
    fn finds_what_a_boolean_conjunction_finds() {
        let mut b = Schema::builder();
        let text = b.add_text_field("text", TEXT);
        let id = b.add_u64_field("id", tantivy::schema::INDEXED);
        let index = Index::create_in_ram(b.build());
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Word k is in about 1 / 2^k of the documents.
        let words = ["w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"];
        for segment in 0..3u64 {
            for i in 0..3_000u64 {
                let r = next();
                let body: Vec<&str> = words
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| r % (1u64 << k) == 0)
                    .map(|(_, w)| *w)
                    .collect();
                let mut d = TantivyDocument::default();
                d.add_text(text, body.join(" "));
                d.add_u64(id, segment * 10_000 + i);
                writer.add_document(d).unwrap();
            }
            writer.commit().unwrap();
        }
        for _ in 0..400 {
            writer.delete_term(Term::from_field_u64(id, next() % 23_000));
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        assert!(searcher.segment_readers().len() > 1);
        let dense = Arc::new(DenseTerms::default());
        let mut compared = 0;
        for mask in 1u32..(1 << words.len()) {
            if mask.count_ones() > 3 {
                continue;
            }
            let terms: Vec<Term> = (0..words.len())
                .filter(|k| mask & (1 << k) != 0)
                .map(|k| Term::from_field_text(text, words[k]))
                .collect();
            let ours = AllTermsQuery {
                field: text,
                terms: terms.clone(),
                dense: dense.clone(),
            };
            let boolean = BooleanQuery::new(
                terms
                    .iter()
                    .map(|t| {
                        let q: Box<dyn Query> =
                            Box::new(TermQuery::new(t.clone(), IndexRecordOption::Basic));
                        (Occur::Must, q)
                    })
                    .collect(),
            );
            let a = searcher.search(&ours, &DocSetCollector).unwrap();
            let b = searcher.search(&boolean, &DocSetCollector).unwrap();
            assert_eq!(a, b, "words {mask:b}");
            compared += a.len();
        }
        assert!(compared > 1_000);
        assert!(
            !dense.lock().is_empty(),
            "the dense words were kept as bitsets"
        );
        // A word that is not in the index matches nothing.
        let none = AllTermsQuery {
            field: text,
            terms: vec![
                Term::from_field_text(text, "w0"),
                Term::from_field_text(text, "nope"),
            ],
            dense,
        };
        assert!(searcher.search(&none, &DocSetCollector).unwrap().is_empty());
    }

    /// Seeking lands on the first matching document at or after the target.
    #[test]
    fn seek_lands_on_the_next_match() {
        let mut b = Schema::builder();
        let text = b.add_text_field("text", TEXT);
        let index = Index::create_in_ram(b.build());
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for i in 0..5_000u32 {
            let mut body = vec!["a"];
            if i % 3 == 0 {
                body.push("b");
            }
            if i % 5 == 0 {
                body.push("c");
            }
            let mut d = TantivyDocument::default();
            d.add_text(text, body.join(" "));
            writer.add_document(d).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let reader = searcher.segment_reader(0);
        let q = AllTermsQuery {
            field: text,
            terms: ["a", "b", "c"]
                .iter()
                .map(|w| Term::from_field_text(text, w))
                .collect(),
            dense: Arc::default(),
        };
        let mut s = q.scorer(reader, 1.0).unwrap();
        assert_eq!(s.doc(), 0);
        assert_eq!(s.seek(16), 30);
        assert_eq!(s.seek(30), 30);
        assert_eq!(s.advance(), 45);
        assert_eq!(s.seek(4_986), 4_995);
        assert_eq!(s.seek(4_996), TERMINATED);
    }
}
