//! The tantivy schema of the product index and the conversion of a [`Product`] into a
//! document.

use commerce_core::catalog::Product;
use tantivy::TantivyDocument;
use tantivy::schema::{
    FAST, FacetOptions, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema,
    TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    TextAnalyzer,
};

/// The name the text analyzer is registered under.
pub const ANALYZER: &str = "commerce_en";

/// Field names, for hosts (and benchmarks) that query the index directly.
pub mod names {
    /// Product id (raw, stored).
    pub const ID: &str = "id";
    /// Stable 64-bit hash of the product id (fast; tie-break and cursor key).
    pub const KEY: &str = "key";
    /// Title (analysed, stored).
    pub const TITLE: &str = "title";
    /// Brand (analysed).
    pub const BRAND_TEXT: &str = "brand_text";
    /// Description (analysed, stored).
    pub const DESCRIPTION: &str = "description";
    /// Category segments (analysed).
    pub const CATEGORY_TEXT: &str = "category_text";
    /// Product and variant attribute values (analysed).
    pub const ATTRS_TEXT: &str = "attrs_text";
    /// Category as a tantivy facet (every ancestor is indexed).
    pub const CATEGORY: &str = "category";
    /// Category path (raw, fast, stored).
    pub const CATEGORY_PATH: &str = "category_path";
    /// Brand (raw, fast, stored).
    pub const BRAND: &str = "brand";
    /// `name=value` per attribute (raw, fast, multi-valued).
    pub const ATTR: &str = "attr";
    /// Currency code (raw, stored).
    pub const CURRENCY: &str = "currency";
    /// Lowest variant price in minor units (indexed, fast, stored).
    pub const PRICE: &str = "price";
    /// Rating in tenths plus one; 0 when unrated (indexed, fast, stored).
    pub const RATING: &str = "rating";
    /// Creation time, unix milliseconds (fast).
    pub const CREATED: &str = "created";
    /// Popularity (fast, stored).
    pub const POPULARITY: &str = "popularity";
    /// 1 when a variant has stock, else 0 (indexed, fast).
    pub const IN_STOCK: &str = "in_stock";
    /// Slug (stored).
    pub const SLUG: &str = "slug";
    /// Every word of the five text fields above, documents only (no frequencies,
    /// positions or norms): what a query word must match, as one posting list.
    pub const ANY_TEXT: &str = "any_text";
}

/// The fields of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// See [`names::ID`].
    pub id: Field,
    /// See [`names::KEY`].
    pub key: Field,
    /// See [`names::TITLE`].
    pub title: Field,
    /// See [`names::BRAND_TEXT`].
    pub brand_text: Field,
    /// See [`names::DESCRIPTION`].
    pub description: Field,
    /// See [`names::CATEGORY_TEXT`].
    pub category_text: Field,
    /// See [`names::ATTRS_TEXT`].
    pub attrs_text: Field,
    /// See [`names::CATEGORY`].
    pub category: Field,
    /// See [`names::CATEGORY_PATH`].
    pub category_path: Field,
    /// See [`names::BRAND`].
    pub brand: Field,
    /// See [`names::ATTR`].
    pub attr: Field,
    /// See [`names::CURRENCY`].
    pub currency: Field,
    /// See [`names::PRICE`].
    pub price: Field,
    /// See [`names::RATING`].
    pub rating: Field,
    /// See [`names::CREATED`].
    pub created: Field,
    /// See [`names::POPULARITY`].
    pub popularity: Field,
    /// See [`names::IN_STOCK`].
    pub in_stock: Field,
    /// See [`names::SLUG`].
    pub slug: Field,
    /// See [`names::ANY_TEXT`]; `None` in an index built before the field existed
    /// (queries then match word by word over the five text fields).
    pub any_text: Option<Field>,
}

/// The analyzer of every full-text field: split on non-alphanumerics, drop tokens over
/// 40 bytes, lower-case, fold accents, English stemming.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(Stemmer::new(Language::English))
        .build()
}

fn text(positions: bool) -> TextOptions {
    let option = if positions {
        IndexRecordOption::WithFreqsAndPositions
    } else {
        IndexRecordOption::WithFreqs
    };
    TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(option),
    )
}

/// Opens the index in `directory`, or creates it with [`schema()`]. An index built
/// before [`names::ANY_TEXT`] existed opens as it is (its queries take the slower
/// word-by-field path); any other schema is an error.
pub(crate) fn open_or_create(
    directory: tantivy::directory::MmapDirectory,
) -> tantivy::Result<tantivy::Index> {
    if !tantivy::Index::exists(&directory)? {
        return tantivy::Index::create(directory, schema().0, tantivy::IndexSettings::default());
    }
    let index = tantivy::Index::open(directory)?;
    let current = schema().0;
    let stored = index.schema();
    let known = stored.fields().all(|(_, entry)| {
        current
            .get_field(entry.name())
            .is_ok_and(|f| current.get_field_entry(f) == entry)
    });
    if !known || Fields::from_schema(&stored).is_err() {
        return Err(tantivy::TantivyError::SchemaError(
            "an index exists but its schema is not one of this version's".to_owned(),
        ));
    }
    Ok(index)
}

/// Builds the schema.
pub fn schema() -> (Schema, Fields) {
    build_schema(true)
}

/// The schema, with or without [`names::ANY_TEXT`] (without: as indexes built before it).
fn build_schema(any_text: bool) -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        id: b.add_text_field(names::ID, STRING | STORED),
        key: b.add_u64_field(names::KEY, FAST),
        title: b.add_text_field(names::TITLE, text(true).set_stored()),
        brand_text: b.add_text_field(names::BRAND_TEXT, text(false)),
        description: b.add_text_field(names::DESCRIPTION, text(false).set_stored()),
        category_text: b.add_text_field(names::CATEGORY_TEXT, text(false)),
        attrs_text: b.add_text_field(names::ATTRS_TEXT, text(false)),
        category: b.add_facet_field(names::CATEGORY, FacetOptions::default()),
        category_path: b.add_text_field(names::CATEGORY_PATH, STRING | FAST | STORED),
        brand: b.add_text_field(names::BRAND, STRING | FAST | STORED),
        attr: b.add_text_field(names::ATTR, STRING | FAST),
        currency: b.add_text_field(names::CURRENCY, STRING | STORED),
        price: b.add_u64_field(names::PRICE, INDEXED | FAST | STORED),
        rating: b.add_u64_field(names::RATING, INDEXED | FAST | STORED),
        created: b.add_u64_field(names::CREATED, FAST),
        popularity: b.add_u64_field(names::POPULARITY, FAST | STORED),
        in_stock: b.add_u64_field(names::IN_STOCK, INDEXED | FAST),
        slug: b.add_text_field(names::SLUG, STORED),
        any_text: any_text.then(|| {
            b.add_text_field(
                names::ANY_TEXT,
                TextOptions::default().set_indexing_options(
                    TextFieldIndexing::default()
                        .set_tokenizer(ANALYZER)
                        .set_index_option(IndexRecordOption::Basic)
                        .set_fieldnorms(false),
                ),
            )
        }),
    };
    (b.build(), fields)
}

impl Fields {
    /// Looks the fields up in an existing schema (an index opened from disk).
    pub fn from_schema(schema: &Schema) -> tantivy::Result<Fields> {
        let f = |name: &str| schema.get_field(name);
        Ok(Fields {
            id: f(names::ID)?,
            key: f(names::KEY)?,
            title: f(names::TITLE)?,
            brand_text: f(names::BRAND_TEXT)?,
            description: f(names::DESCRIPTION)?,
            category_text: f(names::CATEGORY_TEXT)?,
            attrs_text: f(names::ATTRS_TEXT)?,
            category: f(names::CATEGORY)?,
            category_path: f(names::CATEGORY_PATH)?,
            brand: f(names::BRAND)?,
            attr: f(names::ATTR)?,
            currency: f(names::CURRENCY)?,
            price: f(names::PRICE)?,
            rating: f(names::RATING)?,
            created: f(names::CREATED)?,
            popularity: f(names::POPULARITY)?,
            in_stock: f(names::IN_STOCK)?,
            slug: f(names::SLUG)?,
            any_text: schema.get_field(names::ANY_TEXT).ok(),
        })
    }

    /// The document of an (active) product.
    pub fn document(&self, p: &Product) -> TantivyDocument {
        let mut d = TantivyDocument::default();
        d.add_text(self.id, p.id.as_str());
        d.add_u64(self.key, key_of(p.id.as_str()));
        d.add_text(self.title, &p.title);
        d.add_text(self.brand_text, &p.brand);
        d.add_text(self.description, &p.description);
        for segment in p.category.segments() {
            d.add_text(self.category_text, segment);
        }
        d.add_facet(
            self.category,
            tantivy::schema::Facet::from_path(p.category.segments()),
        );
        d.add_text(self.category_path, p.category.as_str());
        d.add_text(self.brand, &p.brand);
        let mut attrs = std::collections::BTreeSet::new();
        for (k, v) in p
            .attributes
            .iter()
            .chain(p.variants.iter().flat_map(|v| v.attributes.iter()))
        {
            let is_text = matches!(v, commerce_core::catalog::AttributeValue::Text(_));
            attrs.insert((k.as_str(), v.to_text(), is_text));
        }
        for (k, v, is_text) in &attrs {
            d.add_text(self.attr, format!("{k}={v}"));
            if *is_text {
                d.add_text(self.attrs_text, v);
            }
        }
        if let Some(any) = self.any_text {
            d.add_text(any, &p.title);
            d.add_text(any, &p.brand);
            d.add_text(any, &p.description);
            for segment in p.category.segments() {
                d.add_text(any, segment);
            }
            for (_, v, is_text) in &attrs {
                if *is_text {
                    d.add_text(any, v);
                }
            }
        }
        d.add_text(self.currency, p.currency().code());
        d.add_u64(
            self.price,
            u64::try_from(p.min_price().to_minor_units()).unwrap_or(0),
        );
        d.add_u64(
            self.rating,
            p.rating.map_or(0, |r| u64::from(r.tenths()) + 1),
        );
        d.add_u64(
            self.created,
            u64::try_from(p.created_at.timestamp_millis()).unwrap_or(0),
        );
        d.add_u64(self.popularity, p.popularity);
        d.add_u64(
            self.in_stock,
            u64::from(p.variants.iter().any(|v| v.inventory_count > 0)),
        );
        d.add_text(self.slug, p.slug.as_str());
        d
    }
}

/// A stable 64-bit hash (FNV-1a) of a product id: the tie-break of every ordering and
/// the position in a cursor. Stable across builds and platforms, unlike `std`'s hasher.
pub fn key_of(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use commerce_core::catalog::{CategoryTree, Product};
    use commerce_core::money::{Currency, Money};
    use commerce_core::sample::SampleCatalog;
    use commerce_core::store::SearchIndex;
    use commerce_core::store::search::{FacetRequest, PriceRange, SearchQuery};
    use tantivy::directory::MmapDirectory;

    use super::*;
    use crate::{TantivyConfig, TantivySearch, sample_product};

    fn config() -> TantivyConfig {
        TantivyConfig {
            commit_interval: None,
            writer_threads: 1,
            writer_memory: 32 << 20,
            ..TantivyConfig::default()
        }
    }

    /// An index built before the catch-all field opens as it is, and answers every
    /// query (words, typos, a prefix, filters, facets) exactly as a new index: the
    /// catch-all field only changes how matching documents are found.
    #[tokio::test]
    async fn an_index_without_the_catch_all_field_answers_as_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let (old_schema, old_fields) = build_schema(false);
        assert!(old_fields.any_text.is_none());
        tantivy::Index::create(
            MmapDirectory::open(dir.path()).unwrap(),
            old_schema,
            tantivy::IndexSettings::default(),
        )
        .unwrap();
        let old = TantivySearch::open_or_create_with(dir.path(), config()).unwrap();
        let new = TantivySearch::in_ram_with(config()).unwrap();
        assert!(new.fields().any_text.is_some());
        assert!(old.fields().any_text.is_none());

        let sample = SampleCatalog::new(&CategoryTree::generated(), 5);
        let products: Vec<Product> = (0..1_200).map(|i| sample_product(&sample, i)).collect();
        old.upsert(&products).await.unwrap();
        new.upsert(&products).await.unwrap();
        old.refresh().await.unwrap();
        new.refresh().await.unwrap();

        let usd = |c| Money::from_minor_units(c, Currency::USD).unwrap();
        let mut texts = Vec::new();
        for p in products.iter().step_by(97) {
            let noun = p
                .category
                .name()
                .split(' ')
                .next_back()
                .unwrap_or("")
                .to_owned();
            texts.push(format!("{} {noun} ", p.brand));
            texts.push(p.title.clone());
            texts.push(format!("{}x ", p.brand.to_lowercase()));
            texts.push(p.title.chars().take(4).collect());
        }
        let mut compared = 0;
        for text in &texts {
            for filtered in [false, true] {
                let mut q = SearchQuery::text(text.clone());
                q.limit = 12;
                q.facets = FacetRequest {
                    brands: true,
                    categories: true,
                    price_buckets: vec![usd(10_000), usd(50_000)],
                    ratings: true,
                    attributes: vec!["color".into()],
                };
                if filtered {
                    q.filters.price = PriceRange {
                        min: Some(usd(1_000)),
                        max: Some(usd(150_000)),
                    };
                }
                let a = old.search(&q).await.unwrap();
                let b = new.search(&q).await.unwrap();
                let ids = |r: &commerce_core::store::search::SearchResults| {
                    r.hits
                        .iter()
                        .map(|h| (h.product_id.as_str().to_owned(), h.score.to_bits()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(ids(&a), ids(&b), "{text:?}");
                assert_eq!(a.total, b.total, "{text:?}");
                assert_eq!(
                    format!("{:?}", a.facets),
                    format!("{:?}", b.facets),
                    "{text:?}"
                );
                compared += u64::from(a.total > 0);
            }
        }
        assert!(
            compared > texts.len() as u64,
            "most queries match something"
        );
    }

    /// An index whose schema is neither this version's nor the one before it is an
    /// error, not a silently wrong index.
    #[test]
    fn an_unknown_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Schema::builder();
        b.add_text_field("something_else", STRING);
        tantivy::Index::create(
            MmapDirectory::open(dir.path()).unwrap(),
            b.build(),
            tantivy::IndexSettings::default(),
        )
        .unwrap();
        let opened = TantivySearch::open_or_create_with(dir.path(), config());
        assert!(opened.is_err());
    }
}
