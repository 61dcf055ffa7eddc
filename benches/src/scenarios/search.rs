//! Product search (commerce-search on tantivy), side by side with PostgreSQL full-text
//! search and with raw tantivy on the same catalog and the same queries.
//!
//! * `search-index`: builds the index from `--products N` generated products (default
//!   1,000,000; 20,000 with `--quick`): products/s (generation runs concurrently on
//!   another thread), index size on disk, peak RSS (`VmHWM`), then the merge into one
//!   segment (reported apart). Target: 50,000 products/s.
//! * `search-query`: a mixed query set (two words, a price range and a minimum rating,
//!   facets on brands, categories and price buckets, top 10 by relevance) from 2 clients;
//!   then the same set with a typo in a word (`fuzzy_p99_ms`); then the same queries
//!   built directly on raw tantivy (`raw_p50_ms`: `TopDocs` + `Count` +
//!   `FacetCollector` + a terms and a range aggregation, same query tree, 10 stored
//!   documents loaded); then PostgreSQL full-text search (tsvector + GIN, `ts_rank`,
//!   `GROUP BY` facets) on the same products in the schema `bench_search_<N>` of
//!   `DATABASE_URL` (loaded once, reused when it holds N products), 2 clients:
//!   `pg_p50_ms`, `pg_p99_ms`, `pg_ops_per_sec`, `baseline_ops_per_sec` (= PG) and
//!   `ratio`. Targets: p50 ≤ 1 ms, p99 ≤ 10 ms, fuzzy p99 ≤ 15 ms, 10x PG at p99 and 5x
//!   its throughput, our layer ≤ 20 % over raw.
//! * `search-autocomplete`: prefixes of 1 to 15 characters of product titles and brands.
//!   Target: p99 ≤ 2 ms.
//! * `search-lag`: the outbox-to-searchable lag. A memory engine holds `--products`
//!   products (default 100,000; 2,000 with `--quick`) that [`SearchSync::run`] has
//!   indexed; then for `--seconds` (default 20) one writer renames a different product
//!   every millisecond (1,000 writes/s, a unique marker word in the title) and a checker
//!   finds, every 2 ms, the newest write whose marker is searchable (the sync applies
//!   the log in order, so every earlier write is too): the lag of a write is from just
//!   before `update_product` (which appends the outbox event) to the moment it is found.
//!   `p50_ms`/`p99_ms`/`max_ms` are lags; `ops` the writes measured.
//! * `--shards N` (query and autocomplete): the same products in N shards
//!   ([`ShardedSearch`], scatter-gather) in
//!   `$TMPDIR/commerce-bench-scale-search-<N>-x<shards>`, the index `catalog-scale
//!   --backend search` builds and reuses (one build serves both); the query scenario then
//!   measures our layer only (no raw tantivy, no PostgreSQL).
//!
//! The products are generated over the Best Buy category tree
//! (`../shared/data/bestbuy-categories.json`, else the generated tree), seed 7.
//!
//! The index lives in `$TMPDIR/commerce-bench-search-<N>`; `search-query` and
//! `search-autocomplete` reuse it when it holds N products (else they build it).
//! With `--quick` and no `DATABASE_URL`, the PostgreSQL part is left out (fields null).

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_core::catalog::{CategoryTree, Product, Rating};
use commerce_core::money::{Currency, Money};
use commerce_core::sample::SampleCatalog;
use commerce_core::store::SearchIndex;
use commerce_core::store::search::{FacetRequest, PriceRange, SearchFilters, SearchQuery};
use commerce_search::tantivy::aggregation::agg_req::Aggregations;
use commerce_search::tantivy::aggregation::{
    AggContextParams, AggregationCollector, AggregationLimitsGuard,
};
use commerce_search::tantivy::collector::{Count, FacetCollector, TopDocs};
use commerce_search::tantivy::query::{
    BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery,
};
use commerce_search::tantivy::schema::{Facet, IndexRecordOption};
use commerce_search::tantivy::tokenizer::TokenizerManager;
use commerce_search::tantivy::{TantivyDocument, Term};
use commerce_search::{ShardedSearch, TantivyConfig, TantivySearch, allowed_typos, sample_product};
use futures::FutureExt;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool, Row};

use super::Scenario;
use crate::harness::{
    BenchResult, LoadResult, Outcome, Report, Settings, round1, round3, run_closed_loop,
};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "search-index",
            about: "commerce-search: build the tantivy index (products/s, size, peak RSS)",
            run: |s| index_scenario(s).boxed(),
        },
        Scenario {
            name: "search-query",
            about: "commerce-search: mixed queries with filters and facets, vs PostgreSQL FTS and raw tantivy",
            run: |s| query_scenario(s).boxed(),
        },
        Scenario {
            name: "search-autocomplete",
            about: "commerce-search: autocomplete per keystroke",
            run: |s| autocomplete_scenario(s).boxed(),
        },
        Scenario {
            name: "search-lag",
            about: "commerce-search: outbox-to-searchable lag under 1,000 product writes/s (memory engine + SearchSync)",
            run: |s| lag_scenario(s).boxed(),
        },
    ]
}

const SEED: u64 = 7;
const CLIENTS: usize = 2;

fn products(settings: &Settings) -> u64 {
    settings.products_or(1_000_000, 20_000)
}

fn dir(n: u64) -> PathBuf {
    std::env::temp_dir().join(format!("commerce-bench-search-{n}"))
}

fn config() -> TantivyConfig {
    TantivyConfig {
        commit_interval: None,
        writer_threads: 2,
        writer_memory: 512 << 20,
        ..TantivyConfig::default()
    }
}

/// `VmHWM` / `VmRSS` of this process in bytes.
fn proc_status(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds (user + system) this process has used (`/proc/self/stat`, 100 ticks/s).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command: state is field 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// The 1-minute load average (the machine is shared; figures depend on it).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

struct Built {
    index: TantivySearch,
    seconds: f64,
    /// CPU seconds of the build (generation included).
    cpu: f64,
    /// Wall time the generator threads spent making products (summed).
    generate_seconds: f64,
    merge_seconds: f64,
}

/// Builds the index of `n` products from scratch in `dir(n)`.
async fn build(n: u64) -> BenchResult<Built> {
    let path = dir(n);
    if path.exists() {
        std::fs::remove_dir_all(&path)?;
    }
    let index = TantivySearch::open_or_create_with(&path, config())?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Product>>(4);
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    // Two generator threads (even and odd batches): making the products costs about
    // as much as indexing them.
    const BATCH: u64 = 5_000;
    let generators: Vec<_> = (0..2u64)
        .map(|g| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let sample = SampleCatalog::new(tree(), SEED);
                let mut busy = Duration::ZERO;
                let mut i = g * BATCH;
                while i < n {
                    let end = (i + BATCH).min(n);
                    let t = Instant::now();
                    let batch: Vec<Product> =
                        (i..end).map(|j| sample_product(&sample, j)).collect();
                    busy += t.elapsed();
                    if tx.send(batch).is_err() {
                        break;
                    }
                    i += 2 * BATCH;
                }
                busy
            })
        })
        .collect();
    drop(tx);
    while let Ok(batch) = rx.recv() {
        index.insert_new(&batch)?;
    }
    index.refresh().await?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    let generate_seconds: f64 = generators
        .into_iter()
        .map(|g| g.join().map_or(0.0, |d| d.as_secs_f64()))
        .sum();
    let merge = Instant::now();
    index.compact()?;
    Ok(Built {
        index,
        seconds,
        cpu,
        generate_seconds,
        merge_seconds: merge.elapsed().as_secs_f64(),
    })
}

/// The index of `n` products: reused from `dir(n)` when complete, else built.
async fn open_or_build(n: u64) -> BenchResult<TantivySearch> {
    let path = dir(n);
    if path.join("meta.json").exists() {
        let index = TantivySearch::open_or_create_with(&path, config())?;
        if index.count().await? == n {
            return Ok(index);
        }
        drop(index);
    }
    Ok(build(n).await?.index)
}

async fn index_scenario(settings: Settings) -> BenchResult<Vec<Report>> {
    let n = products(&settings);
    let built = build(n).await?;
    let size = dir_size(&dir(n));
    let peak = proc_status("VmHWM:").unwrap_or(0);
    let rss = proc_status("VmRSS:").unwrap_or(0);
    let count = built.index.count().await?;
    let rate = n as f64 / built.seconds.max(1e-9);
    let per_million = |bytes: u64| round1(bytes as f64 / (1 << 20) as f64 * 1e6 / n as f64);
    Ok(vec![
        Report::new("search-index", "tantivy")
            .field("ops", n)
            .field("seconds", round3(built.seconds))
            .field("ops_per_sec", round1(rate))
            .field("products", n)
            .field("indexed", count)
            .field("products_per_sec", round1(rate))
            .field("cpu_seconds", round3(built.cpu))
            .field(
                "products_per_cpu_second",
                round1(n as f64 / built.cpu.max(1e-9)),
            )
            .field("generate_seconds", round3(built.generate_seconds))
            .field("load_average", load_average())
            .field("merge_seconds", round3(built.merge_seconds))
            .field("index_bytes", size)
            .field("index_mb_per_million", per_million(size))
            .field("peak_rss_bytes", peak)
            .field("rss_bytes", rss)
            .field("peak_rss_mb_per_million", per_million(peak))
            .field("suggestions", built.index.suggestion_count())
            .field("errors", u64::from(count != n))
            .field("target_products_per_sec", 50_000),
    ])
}

/// One query of the mixed set, in the forms each engine takes.
#[derive(Debug, Clone)]
struct MixedQuery {
    text: String,
    min_cents: u64,
    max_cents: u64,
    min_rating_tenths: u8,
}

const BUCKETS: [u64; 3] = [10_000, 50_000, 100_000];

impl MixedQuery {
    fn ours(&self) -> SearchQuery {
        let usd = |c: u64| Money::from_minor_units(c as i64, Currency::USD).ok();
        SearchQuery {
            filters: SearchFilters {
                price: PriceRange {
                    min: usd(self.min_cents),
                    max: usd(self.max_cents),
                },
                min_rating: Rating::from_tenths(self.min_rating_tenths).ok(),
                ..SearchFilters::default()
            },
            facets: FacetRequest {
                brands: true,
                categories: true,
                price_buckets: BUCKETS.iter().filter_map(|&c| usd(c)).collect(),
                ..FacetRequest::default()
            },
            ..SearchQuery::text(format!("{} ", self.text))
        }
    }
}

fn misspell(word: &str) -> Option<String> {
    let chars: Vec<char> = word.chars().collect();
    if chars.len() < 5 {
        return None;
    }
    let mut c = chars.clone();
    let i = chars.len() / 2;
    c.swap(i - 1, i);
    (c != chars).then(|| c.into_iter().collect())
}

/// `count` queries: a product's brand and a word of its category, a price window
/// around it and a minimum rating; with `typo`, one word of five letters or more has
/// two letters swapped.
fn query_set(count: u64, n: u64, typo: bool) -> Vec<MixedQuery> {
    let sample = SampleCatalog::new(tree(), SEED);
    let mut out = Vec::new();
    let mut i = 0u64;
    while (out.len() as u64) < count && i < count * 20 {
        let pick = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % n.max(1);
        i += 1;
        let p = sample.product(pick);
        let noun = p
            .category
            .name()
            .split(|c: char| !c.is_alphanumeric())
            .rfind(|w| w.len() >= 3)
            .unwrap_or("")
            .to_owned();
        if noun.is_empty() {
            continue;
        }
        let mut words = [p.brand.clone(), noun];
        if typo {
            let Some(pos) = words.iter().position(|w| misspell(w).is_some()) else {
                continue;
            };
            words[pos] = misspell(&words[pos]).unwrap_or_default();
        }
        let cents = p.base_price.to_minor_units().max(0) as u64;
        out.push(MixedQuery {
            text: words.join(" "),
            min_cents: cents / 4,
            max_cents: cents.saturating_mul(3),
            min_rating_tenths: 20 + (i % 3) as u8 * 5,
        });
    }
    out
}

/// The same queries on raw tantivy: the same query tree built directly, `TopDocs` +
/// `Count` + `FacetCollector` (category roots) + terms (brands) and range (price)
/// aggregations, and the 10 stored documents.
struct Raw {
    index: TantivySearch,
    aggs: Aggregations,
}

impl Raw {
    fn new(index: TantivySearch) -> BenchResult<Self> {
        let ranges: Vec<serde_json::Value> = std::iter::once(serde_json::json!({"to": BUCKETS[0]}))
            .chain(
                BUCKETS
                    .windows(2)
                    .map(|w| serde_json::json!({"from": w[0], "to": w[1]})),
            )
            .chain(std::iter::once(serde_json::json!({"from": BUCKETS[2]})))
            .collect();
        let aggs: Aggregations = serde_json::from_value(serde_json::json!({
            "brands": {"terms": {"field": "brand", "size": 100}},
            "prices": {"range": {"field": "price", "ranges": ranges}},
        }))?;
        Ok(Raw { index, aggs })
    }

    fn search(&self, q: &MixedQuery) -> BenchResult<u64> {
        let f = *self.index.fields();
        let idx = self.index.index();
        let mut analyzer = idx.tokenizer_for_field(f.title)?;
        let mut words: Vec<(String, usize)> = Vec::new();
        for raw in q.text.split_whitespace() {
            let mut stream = analyzer.token_stream(raw);
            while let Some(t) = stream.next() {
                words.push((t.text.clone(), raw.chars().count()));
            }
        }
        let searcher = self.index.searcher();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (term, len) in &words {
            let mut alts: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for (field, boost) in [
                (f.title, 3.0),
                (f.brand_text, 2.0),
                (f.category_text, 1.5),
                (f.attrs_text, 1.0),
                (f.description, 0.5),
            ] {
                let tq = TermQuery::new(
                    Term::from_field_text(field, term),
                    IndexRecordOption::WithFreqs,
                );
                alts.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(tq), boost)),
                ));
            }
            let typos = allowed_typos(*len);
            // The same rule as the layer: typo variants only for a word that is rare as
            // typed (`TantivyConfig::typo_df_cutoff`).
            let df: u64 = [f.title, f.brand_text, f.category_text]
                .iter()
                .map(|&field| {
                    searcher
                        .doc_freq(&Term::from_field_text(field, term))
                        .unwrap_or(0)
                })
                .sum();
            if typos > 0 && df < TantivyConfig::default().typo_df_cutoff {
                for (field, boost) in [(f.title, 3.0), (f.brand_text, 2.0), (f.category_text, 1.5)]
                {
                    let fq = FuzzyTermQuery::new(Term::from_field_text(field, term), typos, true);
                    alts.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(fq), boost * 0.2)),
                    ));
                }
            }
            clauses.push((Occur::Must, Box::new(BooleanQuery::new(alts))));
        }
        if words.len() >= 2 {
            // The same proximity clause as the layer.
            let mut phrase = PhraseQuery::new(
                words
                    .iter()
                    .map(|(t, _)| Term::from_field_text(f.title, t))
                    .collect(),
            );
            phrase.set_slop(2);
            clauses.push((
                Occur::Should,
                Box::new(BoostQuery::new(Box::new(phrase), 3.0)),
            ));
        }
        clauses.push((
            Occur::Must,
            Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_u64(f.price, q.min_cents)),
                Bound::Included(Term::from_field_u64(f.price, q.max_cents)),
            )),
        ));
        clauses.push((
            Occur::Must,
            Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_u64(
                    f.rating,
                    u64::from(q.min_rating_tenths) + 1,
                )),
                Bound::Unbounded,
            )),
        ));
        let query = BooleanQuery::new(clauses);
        let mut facets = FacetCollector::for_field("category");
        facets.add_facet(Facet::root());
        let aggs = AggregationCollector::from_aggs(
            self.aggs.clone(),
            AggContextParams::new(
                AggregationLimitsGuard::default(),
                TokenizerManager::default(),
            ),
        );
        let (top, count, facet_counts, agg) = searcher.search(
            &query,
            &(
                TopDocs::with_limit(10).order_by_score(),
                Count,
                facets,
                aggs,
            ),
        )?;
        let mut titles = 0;
        for (_, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            titles += doc.len();
        }
        let roots = facet_counts.get("/").count();
        std::hint::black_box((titles, roots, agg));
        Ok(count as u64)
    }
}

fn pg_schema(n: u64) -> String {
    format!("bench_search_{n}")
}

fn copy_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// Loads the products into `bench_search_<n>` unless it already holds `n` of them.
async fn pg_load(pool: &PgPool, n: u64) -> BenchResult<()> {
    let schema = pg_schema(n);
    let existing: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.products"
    )))
    .fetch_one(pool)
    .await
    .ok();
    let indexed: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = 'products_tsv')",
    )
    .bind(&schema)
    .fetch_one(pool)
    .await?;
    if existing == Some(n as i64) && indexed {
        return Ok(());
    }
    eprintln!("loading {n} products into PostgreSQL schema {schema} (once)...");
    for sql in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
        format!(
            "CREATE TABLE {schema}.products (
                id text PRIMARY KEY, title text NOT NULL, brand text NOT NULL,
                category text NOT NULL, description text NOT NULL, price bigint NOT NULL,
                rating int NOT NULL, popularity bigint NOT NULL, in_stock boolean NOT NULL,
                tsv tsvector GENERATED ALWAYS AS (
                    setweight(to_tsvector('english', title), 'A') ||
                    setweight(to_tsvector('english', brand), 'B') ||
                    setweight(to_tsvector('english', category), 'B') ||
                    setweight(to_tsvector('english', description), 'C')) STORED)"
        ),
    ] {
        sqlx::query(AssertSqlSafe(sql)).execute(pool).await?;
    }
    let sample = SampleCatalog::new(tree(), SEED);
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {schema}.products (id, title, brand, category, description, price, rating, popularity, in_stock) FROM STDIN"
        ))
        .await?;
    let mut buf = String::new();
    for i in 0..n {
        let p = sample_product(&sample, i);
        buf.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            copy_escape(p.id.as_str()),
            copy_escape(&p.title),
            copy_escape(&p.brand),
            copy_escape(p.category.as_str()),
            copy_escape(&p.description),
            p.min_price().to_minor_units(),
            p.rating.map_or(0, |r| i32::from(r.tenths()) + 1),
            p.popularity,
            p.variants.iter().any(|v| v.inventory_count > 0),
        ));
        if buf.len() > 1 << 20 {
            copy.send(std::mem::take(&mut buf).into_bytes()).await?;
        }
    }
    if !buf.is_empty() {
        copy.send(buf.into_bytes()).await?;
    }
    copy.finish().await?;
    drop(conn);
    for sql in [
        format!("CREATE INDEX products_tsv ON {schema}.products USING GIN (tsv)"),
        format!("CREATE INDEX products_price ON {schema}.products (price)"),
        format!("ANALYZE {schema}.products"),
    ] {
        sqlx::query(AssertSqlSafe(sql)).execute(pool).await?;
    }
    Ok(())
}

fn pg_sql(n: u64) -> String {
    let schema = pg_schema(n);
    format!(
        "WITH m AS (
            SELECT id, title, brand, category, price, ts_rank(tsv, q) AS rank
            FROM {schema}.products, plainto_tsquery('english', $1) q
            WHERE tsv @@ q AND price BETWEEN $2 AND $3 AND rating >= $4)
         SELECT
            (SELECT count(*) FROM m) AS total,
            (SELECT json_agg(t) FROM (SELECT id, title, brand, price, rank FROM m
                                      ORDER BY rank DESC, id LIMIT 10) t)::text AS hits,
            (SELECT json_agg(b) FROM (SELECT brand, count(*) AS n FROM m
                                      GROUP BY brand ORDER BY n DESC) b)::text AS brands,
            (SELECT json_agg(c) FROM (SELECT split_part(category, ' > ', 1) AS root, count(*) AS n
                                      FROM m GROUP BY root) c)::text AS categories,
            (SELECT json_agg(p) FROM (SELECT width_bucket(price, ARRAY[{}, {}, {}]::bigint[]) AS bucket,
                                             count(*) AS n FROM m GROUP BY bucket) p)::text AS prices",
        BUCKETS[0], BUCKETS[1], BUCKETS[2]
    )
}

async fn pg_search(pool: &PgPool, sql: &str, q: &MixedQuery) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .bind(&q.text)
        .bind(q.min_cents as i64)
        .bind(q.max_cents as i64)
        .bind(i32::from(q.min_rating_tenths) + 1)
        .persistent(true)
        .fetch_one(pool)
        .await?;
    row.try_get::<i64, _>("total")
}

async fn run_ours(
    index: Arc<dyn SearchIndex>,
    set: &Arc<Vec<MixedQuery>>,
    duration: Duration,
) -> LoadResult {
    let set = set.clone();
    run_closed_loop(CLIENTS, duration, move |task, i| {
        let index = index.clone();
        let q = set[((i as usize) * CLIENTS + task) % set.len()].ours();
        async move {
            match index.search(&q).await {
                Ok(_) => Outcome::Ok,
                Err(_) => Outcome::Error,
            }
        }
    })
    .await
}

/// Where the tail comes from: each query of `set` run once, one at a time; the five
/// slowest with their time and number of matches.
async fn slowest_queries(
    index: &TantivySearch,
    set: &[MixedQuery],
) -> BenchResult<serde_json::Value> {
    let mut timed = Vec::with_capacity(set.len());
    for q in set {
        let start = Instant::now();
        let found = index.search(&q.ours()).await?;
        timed.push((start.elapsed().as_secs_f64() * 1e3, found.total, &q.text));
    }
    timed.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(timed
        .iter()
        .take(5)
        .map(|(ms, total, text)| serde_json::json!({"text": text, "ms": round3(*ms), "total": total}))
        .collect())
}

async fn query_scenario(settings: Settings) -> BenchResult<Vec<Report>> {
    if let Some(shards) = settings.shards {
        return sharded_query_scenario(settings.clone(), shards).await;
    }
    let n = products(&settings);
    let index = open_or_build(n).await?;
    let duration = settings.seconds_or(10.0);
    let set = Arc::new(query_set(500, n, false));
    let fuzzy = Arc::new(query_set(500, n, true));

    // Warm up (page cache, term dictionaries).
    for q in set.iter().take(100) {
        index.search(&q.ours()).await?;
    }
    let mut totals = 0u64;
    for q in set.iter().take(100) {
        totals += index.search(&q.ours()).await?.total;
    }
    let slowest = slowest_queries(&index, &set).await?;
    let dyn_index: Arc<dyn SearchIndex> = Arc::new(index.clone());
    let ours = run_ours(dyn_index.clone(), &set, duration).await;
    let typo = run_ours(dyn_index, &fuzzy, duration.mul_f64(0.5)).await;

    let raw = Arc::new(Raw::new(index.clone())?);
    let raw_result = {
        let raw = raw.clone();
        let set = set.clone();
        run_closed_loop(CLIENTS, duration.mul_f64(0.5), move |task, i| {
            let raw = raw.clone();
            let q = set[((i as usize) * CLIENTS + task) % set.len()].clone();
            async move {
                match raw.search(&q) {
                    Ok(_) => Outcome::Ok,
                    Err(_) => Outcome::Error,
                }
            }
        })
        .await
    };

    let pg = match settings.database_url.as_deref() {
        Some(url) => {
            let pool = PgPoolOptions::new()
                .max_connections(CLIENTS as u32)
                .connect(url)
                .await?;
            pg_load(&pool, n).await?;
            let sql = Arc::new(pg_sql(n));
            for q in set.iter().take(20) {
                pg_search(&pool, &sql, q).await?;
            }
            let set = set.clone();
            Some(
                run_closed_loop(CLIENTS, duration, move |task, i| {
                    let pool = pool.clone();
                    let sql = sql.clone();
                    let q = set[((i as usize) * CLIENTS + task) % set.len()].clone();
                    async move {
                        match pg_search(&pool, &sql, &q).await {
                            Ok(_) => Outcome::Ok,
                            Err(_) => Outcome::Error,
                        }
                    }
                })
                .await,
            )
        }
        None if settings.quick => None,
        None => return Err("search-query compares with PostgreSQL: set DATABASE_URL".into()),
    };

    let p50 = ours.latencies.quantile_ms(0.5);
    let p99 = ours.latencies.quantile_ms(0.99);
    let raw_p50 = raw_result.latencies.quantile_ms(0.5);
    let mut report = ours
        .report("search-query", "tantivy")
        .field("products", n)
        .field("concurrency", CLIENTS)
        .field("avg_total_hits", totals / 100)
        .field("slowest", slowest)
        .field("fuzzy_p50_ms", round3(typo.latencies.quantile_ms(0.5)))
        .field("fuzzy_p99_ms", round3(typo.latencies.quantile_ms(0.99)))
        .field("fuzzy_ops_per_sec", round1(typo.ops_per_sec()))
        .field("fuzzy_errors", typo.errors)
        .field("raw_p50_ms", round3(raw_p50))
        .field("raw_p99_ms", round3(raw_result.latencies.quantile_ms(0.99)))
        .field("raw_ops_per_sec", round1(raw_result.ops_per_sec()))
        .field("raw_errors", raw_result.errors)
        .field("layer_overhead_p50", round3(p50 / raw_p50.max(1e-9) - 1.0))
        .field("load_average", load_average())
        .field("rss_bytes", proc_status("VmRSS:").unwrap_or(0));
    match pg {
        Some(pg) => {
            let pg_p99 = pg.latencies.quantile_ms(0.99);
            report = report
                .field("pg_p50_ms", round3(pg.latencies.quantile_ms(0.5)))
                .field("pg_p99_ms", round3(pg_p99))
                .field("pg_ops_per_sec", round1(pg.ops_per_sec()))
                .field("pg_errors", pg.errors)
                .field("p99_vs_pg", round1(pg_p99 / p99.max(1e-9)))
                .baseline(pg.ops_per_sec());
        }
        None => {
            report = report
                .field("pg_p50_ms", serde_json::Value::Null)
                .field("pg_p99_ms", serde_json::Value::Null)
                .field("pg_ops_per_sec", serde_json::Value::Null);
        }
    }
    Ok(vec![report])
}

async fn autocomplete_scenario(settings: Settings) -> BenchResult<Vec<Report>> {
    let n = products(&settings);
    let (index, suggestions): (Arc<dyn SearchIndex>, usize) = match settings.shards {
        Some(shards) => {
            let s = open_or_build_sharded(n, shards).await?;
            let count = s.suggestion_count();
            (Arc::new(s), count)
        }
        None => {
            let s = open_or_build(n).await?;
            let count = s.suggestion_count();
            (Arc::new(s), count)
        }
    };
    let sample = SampleCatalog::new(tree(), SEED);
    let mut prefixes = Vec::new();
    for i in 0..2_000u64 {
        let p = sample.product((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % n.max(1));
        let text = if i % 3 == 0 { p.brand } else { p.title };
        let chars: Vec<char> = text.chars().collect();
        let len = 1 + (i as usize * 7) % chars.len().min(15);
        prefixes.push(chars[..len].iter().collect::<String>());
    }
    let prefixes = Arc::new(prefixes);
    let mut found = 0usize;
    for p in prefixes.iter().take(200) {
        found += usize::from(!index.autocomplete(p, 10).await?.is_empty());
    }
    // The cost of each prefix alone, best of 3 (what a lookup costs without waiting for
    // a core on a loaded machine), and the slowest prefix.
    let mut alone = crate::harness::Latencies::new();
    let mut slowest = (Duration::ZERO, String::new());
    for p in prefixes.iter() {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            index.autocomplete(p, 10).await?;
            best = best.min(t.elapsed());
        }
        alone.record(best);
        if best > slowest.0 {
            slowest = (best, p.clone());
        }
    }
    let result = {
        let index = index.clone();
        let prefixes = prefixes.clone();
        run_closed_loop(CLIENTS, settings.seconds_or(10.0), move |task, i| {
            let index = index.clone();
            let p = prefixes[((i as usize) * CLIENTS + task) % prefixes.len()].clone();
            async move {
                match index.autocomplete(&p, 10).await {
                    Ok(_) => Outcome::Ok,
                    Err(_) => Outcome::Error,
                }
            }
        })
        .await
    };
    Ok(vec![
        result
            .report("search-autocomplete", "tantivy")
            .field("products", n)
            .field("concurrency", CLIENTS)
            .field("shards", settings.shards.unwrap_or(1))
            .field("alone_p50_ms", round3(alone.quantile_ms(0.5)))
            .field("alone_p99_ms", round3(alone.quantile_ms(0.99)))
            .field("alone_max_ms", round3(slowest.0.as_secs_f64() * 1000.0))
            .field("slowest_prefix", slowest.1)
            .field("load_average", load_average())
            .field("suggestions", suggestions)
            .field("answered_of_200", found)
            .field("rss_bytes", proc_status("VmRSS:").unwrap_or(0)),
    ])
}

/// The sharded index's directory: the one `catalog-scale --backend search` builds (the
/// same products), so one build serves both.
fn sharded_dir(n: u64, shards: usize) -> PathBuf {
    std::env::temp_dir().join(format!("commerce-bench-scale-search-{n}-x{shards}"))
}

/// The category tree of the generated products: the Best Buy tree
/// (`../shared/data/bestbuy-categories.json`), else [`CategoryTree::generated`]; read
/// once.
fn tree() -> &'static CategoryTree {
    static TREE: std::sync::OnceLock<CategoryTree> = std::sync::OnceLock::new();
    TREE.get_or_init(|| super::scale::load_tree().0)
}

/// The index of `n` products in `shards` shards: reused when complete, else built
/// (same products as [`build`], spread by product id).
async fn open_or_build_sharded(n: u64, shards: usize) -> BenchResult<ShardedSearch> {
    let path = sharded_dir(n, shards);
    if path.join("shard-0").join("meta.json").exists() {
        let index = ShardedSearch::open_or_create(&path, shards, config())?;
        if index.count().await? == n {
            return Ok(index);
        }
        drop(index);
    }
    if path.exists() {
        std::fs::remove_dir_all(&path)?;
    }
    let index = ShardedSearch::open_or_create(&path, shards, config())?;
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Product>>(4);
    const BATCH: u64 = 5_000;
    let generators: Vec<_> = (0..2u64)
        .map(|g| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let sample = SampleCatalog::new(tree(), SEED);
                let mut i = g * BATCH;
                while i < n {
                    let end = (i + BATCH).min(n);
                    let batch: Vec<Product> =
                        (i..end).map(|j| sample_product(&sample, j)).collect();
                    if tx.send(batch).is_err() {
                        break;
                    }
                    i += 2 * BATCH;
                }
            })
        })
        .collect();
    drop(tx);
    while let Ok(batch) = rx.recv() {
        index.insert_new(&batch)?;
    }
    for g in generators {
        let _ = g.join();
    }
    index.refresh().await?;
    index.compact()?;
    eprintln!(
        "built {n} products in {shards} shards in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(index)
}

/// `search-query --shards N`: our layer only (no raw tantivy, no PostgreSQL) on the
/// products spread over N shards, scatter-gather.
async fn sharded_query_scenario(settings: Settings, shards: usize) -> BenchResult<Vec<Report>> {
    let n = products(&settings);
    let index = open_or_build_sharded(n, shards).await?;
    let duration = settings.seconds_or(10.0);
    let set = Arc::new(query_set(500, n, false));
    let fuzzy = Arc::new(query_set(500, n, true));
    for q in set.iter().take(100) {
        index.search(&q.ours()).await?;
    }
    let mut totals = 0u64;
    for q in set.iter().take(100) {
        totals += index.search(&q.ours()).await?.total;
    }
    let size = index.size_bytes()?;
    let dyn_index: Arc<dyn SearchIndex> = Arc::new(index);
    let ours = run_ours(dyn_index.clone(), &set, duration).await;
    let typo = run_ours(dyn_index, &fuzzy, duration.mul_f64(0.5)).await;
    Ok(vec![
        ours.report("search-query", "tantivy")
            .field("products", n)
            .field("shards", shards)
            .field("concurrency", CLIENTS)
            .field("avg_total_hits", totals / 100)
            .field("fuzzy_p50_ms", round3(typo.latencies.quantile_ms(0.5)))
            .field("fuzzy_p99_ms", round3(typo.latencies.quantile_ms(0.99)))
            .field("fuzzy_ops_per_sec", round1(typo.ops_per_sec()))
            .field("fuzzy_errors", typo.errors)
            .field("index_bytes", size)
            .field("load_average", load_average())
            .field("rss_bytes", proc_status("VmRSS:").unwrap_or(0)),
    ])
}

/// `search-lag`: see the module docs.
async fn lag_scenario(settings: Settings) -> BenchResult<Vec<Report>> {
    use commerce_core::memory::MemoryEngine;
    use commerce_core::store::{CatalogStore, CatalogStoreExt};
    use commerce_search::SearchSync;
    const RATE: u64 = 1_000;
    let n = settings.products_or(100_000, 2_000);
    let duration = settings.seconds_or(20.0);
    let engine = MemoryEngine::new();
    let index = Arc::new(TantivySearch::in_ram_with(TantivyConfig {
        commit_interval: None,
        writer_threads: 1,
        writer_memory: 64 << 20,
        ..TantivyConfig::default()
    })?);
    let sync = SearchSync::new(engine.events.clone(), engine.catalog.clone(), index.clone())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sync_task = tokio::spawn(async move {
        sync.run(async {
            let _ = stopped.await;
        })
        .await;
    });
    let sample = SampleCatalog::new(&CategoryTree::generated(), SEED);
    let mut ids = Vec::with_capacity(n as usize);
    for i in 0..n {
        ids.push(engine.catalog.create_product(sample.product(i)).await?.id);
    }
    let caught_up = Instant::now();
    while index.count().await? < n {
        if caught_up.elapsed() > Duration::from_secs(600) {
            return Err("search-lag: the sync did not catch up with the seeded products".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "search-lag: {n} products indexed through the sync ({:.1} s after seeding)",
        caught_up.elapsed().as_secs_f64()
    );
    let marker = |k: u64| format!("zzlag{k:08}");
    let written: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let writer = {
        let catalog = engine.catalog.clone();
        let written = written.clone();
        let ids = ids.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut k = 0u64;
            let mut errors = 0u64;
            while start.elapsed() < duration {
                tokio::time::sleep_until(start + Duration::from_micros(k * 1_000_000 / RATE)).await;
                let id = &ids[(k % ids.len() as u64) as usize];
                match catalog.get_product(id).await {
                    Ok(Some(mut p)) => {
                        p.title = format!("{} {}", sample.product(k % n).title, marker(k));
                        let at = Instant::now();
                        if catalog.update_product(p).await.is_ok() {
                            written.lock().unwrap_or_else(|e| e.into_inner()).push(at);
                            k += 1;
                        } else {
                            errors += 1;
                        }
                    }
                    _ => errors += 1,
                }
                if errors > 1_000 {
                    break;
                }
            }
            errors
        })
    };
    let visible = |k: u64| {
        let index = index.clone();
        let mut q = SearchQuery::text(marker(k));
        q.typo_tolerance = false;
        q.limit = 1;
        async move { index.search(&q).await.map(|r| r.total > 0) }
    };
    let mut lags = crate::harness::Latencies::new();
    let mut max = Duration::ZERO;
    let mut seen = 0u64; // writes 0..seen are visible
    let started = Instant::now();
    loop {
        let count = written.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
        let writing = !writer.is_finished();
        if !writing && seen == count {
            break;
        }
        if started.elapsed() > duration + Duration::from_secs(60) {
            return Err("search-lag: writes still not searchable 60 s after the last".into());
        }
        if count > seen {
            // The newest visible write in seen..count (visibility is a prefix).
            let (mut lo, mut hi) = (seen, count); // lo..hi: candidates; answer is lo-1 or more
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if visible(mid).await? {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if lo > seen {
                let now = Instant::now();
                let times = written.lock().unwrap_or_else(|e| e.into_inner());
                for at in &times[seen as usize..lo as usize] {
                    let lag = now.saturating_duration_since(*at);
                    max = max.max(lag);
                    lags.record(lag);
                }
                seen = lo;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let write_errors = writer.await.unwrap_or(1);
    let _ = stop.send(());
    let _ = sync_task.await;
    let result = LoadResult {
        ops: seen,
        rejected: 0,
        errors: write_errors,
        elapsed: duration,
        latencies: lags,
    };
    Ok(vec![
        result
            .report("search-lag", "memory")
            .field("products", n)
            .field("target_writes_per_sec", RATE)
            .field("max_ms", round3(max.as_secs_f64() * 1000.0))
            .field("load_average", load_average()),
    ])
}
