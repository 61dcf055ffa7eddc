//! Turning what a user typed into a tantivy query, without a query syntax: the text is
//! tokenised with the index's own analyzer and every word becomes a group of term
//! queries (exact, typo-tolerant, prefix) over the text fields with their boosts.

use std::ops::Bound;
use std::sync::Arc;

use commerce_core::store::search::SearchFilters;
use tantivy::query::{
    AllQuery, Bm25Weight, BooleanQuery, BoostQuery, ConstScoreQuery, EnableScoring, Explanation,
    FuzzyTermQuery, Occur, PhraseQuery, Query, RangeQuery, Scorer, TermQuery, Weight,
};
use tantivy::schema::{Facet, Field, IndexRecordOption};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{DocId, DocSet, Score, SegmentReader, Term};

use crate::conjunction::{AllTermsQuery, DenseTerms};
use crate::schema::{Fields, analyzer};

/// Field boosts of the full-text search: title over brand over description.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Boosts {
    /// Title.
    pub title: f32,
    /// Brand.
    pub brand: f32,
    /// Category names.
    pub category: f32,
    /// Attribute values (color, size...).
    pub attributes: f32,
    /// Description.
    pub description: f32,
    /// Multiplier of a typo (fuzzy) match relative to the field's boost; a typo match is
    /// scored as a constant, far below an exact BM25 match of the same field.
    pub typo: f32,
    /// Multiplier of a prefix match of the last word (search as you type).
    pub prefix: f32,
    /// Multiplier (of the title boost) when the words appear close together, in order,
    /// in the title.
    pub proximity: f32,
}

impl Default for Boosts {
    /// Title 3, brand 2, category 1.5, attributes 1, description 0.5; typo 0.2, prefix
    /// 0.3, proximity 1.
    fn default() -> Self {
        Boosts {
            title: 3.0,
            brand: 2.0,
            category: 1.5,
            attributes: 1.0,
            description: 0.5,
            typo: 0.2,
            prefix: 0.3,
            proximity: 1.0,
        }
    }
}

/// One word of the user's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// Lower-cased, accent-folded, as typed.
    pub plain: String,
    /// As indexed (stemmed).
    pub term: String,
}

/// How many typos a word of `chars` letters may have (Meilisearch's rule): fewer than 5
/// letters none, 5 to 8 one, 9 or more two.
pub fn allowed_typos(chars: usize) -> u8 {
    match chars {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Splits `text` into words as the index does. Never fails; syntax characters are
/// separators.
pub(crate) fn words(text: &str) -> Vec<Word> {
    let mut plain_analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build();
    let mut stemmed = analyzer();
    let mut plain = Vec::new();
    plain_analyzer
        .token_stream(text)
        .process(&mut |t| plain.push(t.text.clone()));
    let mut terms = Vec::new();
    stemmed
        .token_stream(text)
        .process(&mut |t| terms.push(t.text.clone()));
    plain
        .into_iter()
        .zip(terms)
        .take(32)
        .map(|(plain, term)| Word { plain, term })
        .collect()
}

/// Options of the text part of a query.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextOptions {
    pub typos: bool,
    /// Treat the last word as a prefix too (the user may still be typing it).
    pub prefix_last: bool,
    /// Every word must match (else: any word, ranked by how many match).
    pub all_words: bool,
}

fn term_query(field: Field, text: &str, boost: f32) -> Box<dyn Query> {
    let q = TermQuery::new(
        Term::from_field_text(field, text),
        IndexRecordOption::WithFreqs,
    );
    Box::new(BoostQuery::new(Box::new(q), boost))
}

/// The text query; `None` when the text has no words (browse: everything matches).
pub(crate) fn text_query(
    fields: &Fields,
    boosts: &Boosts,
    words: &[Word],
    typo_ok: &[bool],
    opts: TextOptions,
    dense: &Arc<DenseTerms>,
    floor: &Arc<ScoreFloor>,
) -> Option<Box<dyn Query>> {
    if words.is_empty() {
        return None;
    }
    let exact_fields = [
        (fields.title, boosts.title),
        (fields.brand_text, boosts.brand),
        (fields.category_text, boosts.category),
        (fields.attrs_text, boosts.attributes),
        (fields.description, boosts.description),
    ];
    let fuzzy_fields = [
        (fields.title, boosts.title),
        (fields.brand_text, boosts.brand),
        (fields.category_text, boosts.category),
    ];
    // Matching: per word, any of its alternatives; every word (or any word).
    let mut groups: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    // Scoring: every alternative of every word, plus proximity.
    let mut scorers: Vec<Box<dyn Query>> = Vec::new();
    // The most each scorer can add (same order as `scorers`).
    let mut ceilings: Vec<Ceiling> = Vec::new();
    // Each word's one catch-all term, while no word has typo or prefix alternatives.
    let mut plain_terms: Option<Vec<Term>> = fields.any_text.map(|_| Vec::new());
    for (i, w) in words.iter().enumerate() {
        let mut alts: Vec<Box<dyn Query>> = exact_fields
            .iter()
            .map(|&(f, b)| term_query(f, &w.term, b))
            .collect();
        ceilings.extend(
            exact_fields
                .iter()
                .map(|&(f, b)| Ceiling::Bm25(vec![Term::from_field_text(f, &w.term)], b)),
        );
        // What must match: the word in any text field, as one posting list when the
        // index has the catch-all field (the per-field queries then only score).
        let mut matching: Vec<Box<dyn Query>> = match fields.any_text {
            Some(any) => vec![Box::new(TermQuery::new(
                Term::from_field_text(any, &w.term),
                IndexRecordOption::Basic,
            ))],
            None => alts.iter().map(|q| q.box_clone()).collect(),
        };
        let typos = allowed_typos(w.plain.chars().count());
        if opts.typos && typos > 0 && typo_ok.get(i).copied().unwrap_or(true) {
            for &(f, b) in &fuzzy_fields {
                let fuzzy = FuzzyTermQuery::new(Term::from_field_text(f, &w.term), typos, true);
                let q: Box<dyn Query> = Box::new(BoostQuery::new(Box::new(fuzzy), b * boosts.typo));
                matching.push(q.box_clone());
                alts.push(q);
                ceilings.push(Ceiling::Constant(b * boosts.typo));
            }
        }
        let last = i + 1 == words.len();
        if opts.prefix_last && last && w.plain.chars().count() >= 2 {
            for (f, b) in [
                (fields.title, boosts.title),
                (fields.brand_text, boosts.brand),
            ] {
                let prefix =
                    FuzzyTermQuery::new_prefix(Term::from_field_text(f, &w.plain), 0, true);
                let q: Box<dyn Query> =
                    Box::new(BoostQuery::new(Box::new(prefix), b * boosts.prefix));
                matching.push(q.box_clone());
                alts.push(q);
                ceilings.push(Ceiling::Constant(b * boosts.prefix));
            }
        }
        let occur = if opts.all_words {
            Occur::Must
        } else {
            Occur::Should
        };
        if let (Some(terms), Some(any)) = (&mut plain_terms, fields.any_text) {
            if matching.len() == 1 {
                terms.push(Term::from_field_text(any, &w.term));
            } else {
                plain_terms = None;
            }
        }
        let any: Vec<(Occur, Box<dyn Query>)> =
            matching.into_iter().map(|q| (Occur::Should, q)).collect();
        groups.push((occur, Box::new(BooleanQuery::new(any))));
        scorers.extend(alts);
    }
    if words.len() >= 2 {
        // Proximity: the words close together in the title, in order, rank higher.
        let terms: Vec<Term> = words
            .iter()
            .map(|w| Term::from_field_text(fields.title, &w.term))
            .collect();
        let mut phrase = PhraseQuery::new(terms.clone());
        phrase.set_slop(2);
        scorers.push(Box::new(BoostQuery::new(
            Box::new(phrase),
            boosts.title * boosts.proximity,
        )));
        ceilings.push(Ceiling::Bm25(terms, boosts.title * boosts.proximity));
    }
    let required: Box<dyn Query> = match (plain_terms, fields.any_text) {
        // Every word must match, each as one term of one field: a conjunction of
        // posting lists (dense ones as kept bitsets).
        (Some(terms), Some(field)) if opts.all_words && !terms.is_empty() => {
            Box::new(AllTermsQuery {
                field,
                terms,
                dense: dense.clone(),
            })
        }
        _ => Box::new(BooleanQuery::new(groups)),
    };
    Some(Box::new(SeekSumQuery {
        required,
        scorers,
        ceilings,
        floor: floor.clone(),
    }))
}

/// The filter clauses (unscored); empty when nothing is filtered. A clause on a term
/// that `everywhere` says every document holds (the one currency of a catalog) is left
/// out: it cannot remove a match, and seeking its posting list costs on every match.
pub(crate) fn filter_queries(
    fields: &Fields,
    f: &SearchFilters,
    everywhere: &dyn Fn(&Term) -> bool,
) -> Vec<Box<dyn Query>> {
    let mut out: Vec<Box<dyn Query>> = Vec::new();
    if let Some(category) = &f.category {
        out.push(Box::new(TermQuery::new(
            Term::from_facet(fields.category, &Facet::from_path(category.segments())),
            IndexRecordOption::Basic,
        )));
    }
    if !f.brands.is_empty() {
        let brands: Vec<(Occur, Box<dyn Query>)> = f
            .brands
            .iter()
            .map(|b| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(fields.brand, b),
                    IndexRecordOption::Basic,
                ));
                (Occur::Should, q)
            })
            .collect();
        out.push(Box::new(BooleanQuery::new(brands)));
    }
    let min = f.price.min.map(|m| m.to_minor_units().max(0) as u64);
    let max = f.price.max.map(|m| m.to_minor_units());
    if let Some(max) = max {
        if max < 0 {
            // Nothing costs less than zero.
            out.push(Box::new(BooleanQuery::new(vec![(
                Occur::MustNot,
                Box::new(AllQuery) as Box<dyn Query>,
            )])));
        }
    }
    if min.is_some() || max.is_some() {
        let currency = f.price.min.or(f.price.max).map(|m| m.currency());
        let lower = min.map_or(Bound::Unbounded, |m| {
            Bound::Included(Term::from_field_u64(fields.price, m))
        });
        let upper = max.map_or(Bound::Unbounded, |m| {
            Bound::Included(Term::from_field_u64(fields.price, m.max(0) as u64))
        });
        out.push(Box::new(RangeQuery::new(lower, upper)));
        if let Some(c) = currency {
            let term = Term::from_field_text(fields.currency, c.code());
            if !everywhere(&term) {
                out.push(Box::new(TermQuery::new(term, IndexRecordOption::Basic)));
            }
        }
    }
    if let Some(r) = f.min_rating {
        out.push(Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(
                fields.rating,
                u64::from(r.tenths()) + 1,
            )),
            Bound::Unbounded,
        )));
    }
    for (k, v) in &f.attributes {
        out.push(Box::new(TermQuery::new(
            Term::from_field_text(fields.attr, &format!("{k}={v}")),
            IndexRecordOption::Basic,
        )));
    }
    if f.in_stock_only {
        out.push(Box::new(TermQuery::new(
            Term::from_field_u64(fields.in_stock, 1),
            IndexRecordOption::Basic,
        )));
    }
    out
}

/// Text and filters together.
pub(crate) fn full_query(
    text: Option<Box<dyn Query>>,
    filters: Vec<Box<dyn Query>>,
) -> Box<dyn Query> {
    if filters.is_empty() {
        return text.unwrap_or_else(|| Box::new(AllQuery));
    }
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    clauses.push((Occur::Must, text.unwrap_or_else(|| Box::new(AllQuery))));
    for f in filters {
        clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(f, 0.0))));
    }
    Box::new(BooleanQuery::new(clauses))
}

/// Matches what `required` matches (evaluated without scores: cheap unions and
/// intersections), scored as the sum of the `scorers` that contain the document, each
/// advanced only to the matching documents. Equivalent to a boolean query of the same
/// clauses but it never scores a posting of a document that does not match, which a
/// union of long posting lists otherwise does for all of them.
///
/// A document whose matching clauses cannot add up to the [`ScoreFloor`] (the score of
/// the last document of a full page so far) is not scored: its sum of ceilings stands
/// in, which is below the floor, so it cannot enter the page. Only the postings are
/// then read, not the field lengths of every clause.
#[derive(Debug)]
pub(crate) struct SeekSumQuery {
    pub required: Box<dyn Query>,
    pub scorers: Vec<Box<dyn Query>>,
    /// The most each of `scorers` can add.
    pub ceilings: Vec<Ceiling>,
    pub floor: Arc<ScoreFloor>,
}

/// The most one scoring clause can add to a document's score.
#[derive(Debug, Clone)]
pub(crate) enum Ceiling {
    /// BM25 over these terms (one field), times the boost: below idf · (1 + k1) · boost.
    Bm25(Vec<Term>, f32),
    /// A constant score.
    Constant(f32),
}

/// The score a document must reach to enter the page being collected; raised by the
/// collector as its page fills, read by the scorer. Zero until the page is full.
#[derive(Debug, Default)]
pub(crate) struct ScoreFloor(std::sync::atomic::AtomicU32);

impl ScoreFloor {
    /// Raises the floor to `score` (never lowers it).
    pub(crate) fn raise(&self, score: f32) {
        if score > 0.0 && score.is_finite() {
            // Non-negative floats order as their bits do.
            self.0
                .fetch_max(score.to_bits(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> f32 {
        f32::from_bits(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl Clone for SeekSumQuery {
    fn clone(&self) -> Self {
        SeekSumQuery {
            required: self.required.box_clone(),
            scorers: self.scorers.iter().map(|q| q.box_clone()).collect(),
            ceilings: self.ceilings.clone(),
            floor: self.floor.clone(),
        }
    }
}

impl Query for SeekSumQuery {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let disabled = match scoring.searcher() {
            Some(searcher) => EnableScoring::disabled_from_searcher(searcher),
            None => EnableScoring::disabled_from_schema(scoring.schema()),
        };
        let required = self.required.weight(disabled)?;
        if !scoring.is_scoring_enabled() {
            return Ok(required);
        }
        let scorers = self
            .scorers
            .iter()
            .map(|q| q.weight(scoring))
            .collect::<tantivy::Result<Vec<_>>>()?;
        let ceilings = match (scoring, self.ceilings.len() == scorers.len()) {
            (
                EnableScoring::Enabled {
                    statistics_provider,
                    ..
                },
                true,
            ) => {
                let mut out = Vec::with_capacity(self.ceilings.len());
                for c in &self.ceilings {
                    out.push(match c {
                        Ceiling::Constant(v) => *v,
                        Ceiling::Bm25(terms, boost) if !terms.is_empty() => {
                            Bm25Weight::for_terms(statistics_provider, terms)?.max_score() * boost
                        }
                        Ceiling::Bm25(..) => 0.0,
                    });
                }
                // Float sums in another order may differ in the last bits.
                Some(out.into_iter().map(|c| c * 1.001 + 1e-6).collect())
            }
            _ => None,
        };
        Ok(Box::new(SeekSumWeight {
            required,
            scorers,
            ceilings,
            floor: self.floor.clone(),
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        for q in &self.scorers {
            q.query_terms(visitor);
        }
    }
}

/// The explanation of `doc` by `scorer`'s score once seeked to it; an error when the
/// scorer does not hold the document.
pub(crate) fn explain_match(
    scorer: &mut dyn Scorer,
    doc: DocId,
    what: &'static str,
) -> tantivy::Result<Explanation> {
    if scorer.doc() > doc || scorer.seek(doc) != doc {
        return Err(tantivy::TantivyError::InvalidArgument(format!(
            "document {doc} does not match"
        )));
    }
    Ok(Explanation::new(what, scorer.score()))
}

struct SeekSumWeight {
    required: Box<dyn Weight>,
    scorers: Vec<Box<dyn Weight>>,
    /// Per scorer, the most it adds; `None`: never skip scoring.
    ceilings: Option<Vec<f32>>,
    floor: Arc<ScoreFloor>,
}

impl Weight for SeekSumWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let required = self.required.scorer(reader, 1.0)?;
        let scorers = self
            .scorers
            .iter()
            .map(|w| w.scorer(reader, boost))
            .collect::<tantivy::Result<Vec<_>>>()?;
        Ok(Box::new(SeekSumScorer {
            required,
            scorers,
            ceilings: self
                .ceilings
                .as_ref()
                .map(|c| c.iter().map(|v| v * boost.max(0.0)).collect()),
            floor: self.floor.clone(),
            hits: Vec::new(),
        }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut s = SeekSumScorer {
            required: self.required.scorer(reader, 1.0)?,
            scorers: self
                .scorers
                .iter()
                .map(|w| w.scorer(reader, 1.0))
                .collect::<tantivy::Result<Vec<_>>>()?,
            ceilings: None,
            floor: Arc::default(),
            hits: Vec::new(),
        };
        explain_match(&mut s, doc, "sum of the matching clauses")
    }
}

struct SeekSumScorer {
    required: Box<dyn Scorer>,
    scorers: Vec<Box<dyn Scorer>>,
    ceilings: Option<Vec<f32>>,
    floor: Arc<ScoreFloor>,
    /// The scorers holding the current document (reused).
    hits: Vec<usize>,
}

impl DocSet for SeekSumScorer {
    fn advance(&mut self) -> DocId {
        self.required.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.required.seek(target)
    }

    fn doc(&self) -> DocId {
        self.required.doc()
    }

    fn size_hint(&self) -> u32 {
        self.required.size_hint()
    }
}

impl Scorer for SeekSumScorer {
    fn score(&mut self) -> Score {
        let doc = self.required.doc();
        let Some(ceilings) = &self.ceilings else {
            let mut sum = 0.0;
            for s in &mut self.scorers {
                if s.doc() < doc {
                    s.seek(doc);
                }
                if s.doc() == doc {
                    sum += s.score();
                }
            }
            return sum;
        };
        self.hits.clear();
        let mut most = 0.0;
        for (i, s) in self.scorers.iter_mut().enumerate() {
            if s.doc() < doc {
                s.seek(doc);
            }
            if s.doc() == doc {
                self.hits.push(i);
                most += ceilings.get(i).copied().unwrap_or(f32::INFINITY);
            }
        }
        if most < self.floor.get() {
            // Cannot reach the page: the ceiling stands in (it is below the floor).
            return most;
        }
        let mut sum = 0.0;
        for &i in &self.hits {
            if let Some(s) = self.scorers.get_mut(i) {
                sum += s.score();
            }
        }
        sum
    }
}
