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

/// Builds the schema.
pub fn schema() -> (Schema, Fields) {
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
