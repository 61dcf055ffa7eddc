//! Products, their variants and their status machine.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::category::CategoryPath;
use super::slug::Slug;
use crate::clock::Timestamp;
use crate::error::{EntityKind, Error, Result};
use crate::id::{ProductId, SellerId, Sku};
use crate::money::{Currency, Money};

/// A product's lifecycle: only `ACTIVE` products are sold and searchable.
///
/// Legal transitions (anything else is [`Error::InvalidTransition`]):
///
/// | from \ to | DRAFT | ACTIVE | ARCHIVED |
/// |-----------|-------|--------|----------|
/// | DRAFT     |       | yes    | yes      |
/// | ACTIVE    |       |        | yes      |
/// | ARCHIVED  |       | yes    |          |
///
/// ```
/// use commerce_core::catalog::ProductStatus::*;
///
/// assert!(Draft.transition_to(Active).is_ok());
/// assert!(Active.transition_to(Draft).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProductStatus {
    /// Being prepared; not visible to shoppers.
    Draft,
    /// On sale.
    Active,
    /// Withdrawn; kept for order history, may be re-activated.
    Archived,
}

impl ProductStatus {
    /// Every status.
    pub const ALL: [ProductStatus; 3] = [Self::Draft, Self::Active, Self::Archived];

    /// Whether `self -> to` is legal.
    pub fn can_transition_to(self, to: ProductStatus) -> bool {
        use ProductStatus::*;
        matches!(
            (self, to),
            (Draft, Active) | (Draft, Archived) | (Active, Archived) | (Archived, Active)
        )
    }

    /// `to` if the transition is legal, else [`Error::InvalidTransition`].
    pub fn transition_to(self, to: ProductStatus) -> Result<ProductStatus> {
        if self.can_transition_to(to) {
            Ok(to)
        } else {
            Err(Error::invalid_transition(EntityKind::Product, self, to))
        }
    }

    /// The upper-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Draft => "DRAFT",
            ProductStatus::Active => "ACTIVE",
            ProductStatus::Archived => "ARCHIVED",
        }
    }

    /// Parses the upper-case name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::validation("status", format!("unknown product status {s:?}")))
    }
}

impl fmt::Display for ProductStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A free-form attribute value: text, number or boolean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A boolean (`"waterproof": true`).
    Bool(bool),
    /// A finite number (`"screen_inches": 6.1`).
    Number(f64),
    /// Text (`"color": "Black"`).
    Text(String),
}

impl AttributeValue {
    /// The value as text, for display and indexing.
    pub fn to_text(&self) -> String {
        match self {
            AttributeValue::Bool(b) => b.to_string(),
            AttributeValue::Number(n) => n.to_string(),
            AttributeValue::Text(s) => s.clone(),
        }
    }
}

impl From<&str> for AttributeValue {
    fn from(s: &str) -> Self {
        AttributeValue::Text(s.to_owned())
    }
}

impl From<f64> for AttributeValue {
    fn from(n: f64) -> Self {
        AttributeValue::Number(n)
    }
}

impl From<bool> for AttributeValue {
    fn from(b: bool) -> Self {
        AttributeValue::Bool(b)
    }
}

/// Attributes by name (`color`, `size`, `screen_inches`), ordered for stable output.
pub type Attributes = BTreeMap<String, AttributeValue>;

/// Parcel dimensions in millimetres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dimensions {
    /// Length, mm.
    pub length_mm: u32,
    /// Width, mm.
    pub width_mm: u32,
    /// Height, mm.
    pub height_mm: u32,
}

/// An average customer rating from 0.0 to 5.0 in steps of 0.1, kept as tenths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rating(u8);

impl Rating {
    /// A rating in tenths of a star (`45` is 4.5 stars); at most 50.
    pub fn from_tenths(tenths: u8) -> Result<Self> {
        if tenths <= 50 {
            Ok(Rating(tenths))
        } else {
            Err(Error::validation(
                "rating",
                format!("{tenths} tenths is above 5 stars"),
            ))
        }
    }

    /// Tenths of a star.
    pub fn tenths(self) -> u8 {
        self.0
    }

    /// Stars as a float.
    pub fn stars(self) -> f64 {
        f64::from(self.0) / 10.0
    }
}

impl Serialize for Rating {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_f64(self.stars())
    }
}

impl<'de> Deserialize<'de> for Rating {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let stars = f64::deserialize(d)?;
        let tenths = (stars * 10.0).round();
        if !(0.0..=50.0).contains(&tenths) || (stars * 10.0 - tenths).abs() > 1e-6 {
            return Err(serde::de::Error::custom(format!(
                "rating {stars} must be between 0 and 5 in steps of 0.1"
            )));
        }
        Ok(Rating(tenths as u8))
    }
}

/// One sellable variant of a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductVariant {
    /// The stock-keeping unit, unique across the catalog.
    pub sku: Sku,
    /// What distinguishes this variant (`color`, `size`, ...).
    #[serde(default)]
    pub attributes: Attributes,
    /// The variant's price, in the product's currency.
    pub price: Money,
    /// Units on hand as last published by the catalog (display only; live stock and
    /// reservations are the [`InventoryStore`](crate::store::InventoryStore)'s).
    #[serde(default)]
    pub inventory_count: u32,
    /// Shipping weight, grams.
    #[serde(default)]
    pub weight_grams: Option<u32>,
    /// Parcel dimensions.
    #[serde(default)]
    pub dimensions: Option<Dimensions>,
}

/// A product as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Identifier.
    pub id: ProductId,
    /// The marketplace seller.
    pub seller_id: SellerId,
    /// Title, 1 to 200 characters.
    pub title: String,
    /// Unique URL slug, generated from the title.
    pub slug: Slug,
    /// Description, at most 20,000 characters.
    #[serde(default)]
    pub description: String,
    /// Where the product sits in the category tree.
    pub category: CategoryPath,
    /// Brand, 1 to 100 characters.
    pub brand: String,
    /// The base price; its currency is the product's currency.
    pub base_price: Money,
    /// Image URLs (`https://`, `http://` or a path starting with `/`).
    #[serde(default)]
    pub images: Vec<String>,
    /// The sellable variants, at least one.
    pub variants: Vec<ProductVariant>,
    /// Free-form attributes.
    #[serde(default)]
    pub attributes: Attributes,
    /// Lifecycle status.
    pub status: ProductStatus,
    /// Average rating, if any reviews.
    #[serde(default)]
    pub rating: Option<Rating>,
    /// Number of reviews behind the rating.
    #[serde(default)]
    pub review_count: u32,
    /// A popularity score maintained by the host (units sold, views); used for ranking.
    #[serde(default)]
    pub popularity: u64,
    /// Optimistic-concurrency version, starting at 1 and bumped by every update.
    pub version: u64,
    /// When the product was created.
    pub created_at: Timestamp,
    /// When the product was last changed.
    pub updated_at: Timestamp,
}

/// Limits enforced by [`Product::validate`].
pub mod limits {
    /// Longest title, characters.
    pub const TITLE_CHARS: usize = 200;
    /// Longest description, characters.
    pub const DESCRIPTION_CHARS: usize = 20_000;
    /// Longest brand, characters.
    pub const BRAND_CHARS: usize = 100;
    /// Most images.
    pub const IMAGES: usize = 32;
    /// Longest image URL, bytes.
    pub const IMAGE_URL_BYTES: usize = 2048;
    /// Most variants per product.
    pub const VARIANTS: usize = 250;
    /// Most attributes per product or variant.
    pub const ATTRIBUTES: usize = 64;
    /// Longest attribute name, bytes.
    pub const ATTRIBUTE_NAME_BYTES: usize = 64;
    /// Longest text attribute value, characters.
    pub const ATTRIBUTE_TEXT_CHARS: usize = 500;
    /// Largest published inventory count.
    pub const INVENTORY_COUNT: u32 = 1_000_000_000;
}

fn check_text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    allow_newlines: bool,
) -> Result<()> {
    let chars = value.chars().count();
    if chars < min || chars > max {
        return Err(Error::validation(
            field,
            format!("is {chars} characters long, must be {min} to {max}"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\t' | '\r')))
    {
        return Err(Error::validation(
            field,
            format!("contains the control character {c:?}"),
        ));
    }
    if min > 0 && value.trim().is_empty() {
        return Err(Error::validation(field, "is blank"));
    }
    Ok(())
}

fn check_attributes(field: &str, attributes: &Attributes) -> Result<()> {
    if attributes.len() > limits::ATTRIBUTES {
        return Err(Error::validation(
            field,
            format!(
                "has {} entries, at most {}",
                attributes.len(),
                limits::ATTRIBUTES
            ),
        ));
    }
    for (name, value) in attributes {
        let name_ok = !name.is_empty()
            && name.len() <= limits::ATTRIBUTE_NAME_BYTES
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(Error::validation(
                format!("{field}.{name}"),
                "attribute names are 1 to 64 lower-case letters, digits and underscores",
            ));
        }
        match value {
            AttributeValue::Number(n) if !n.is_finite() => {
                return Err(Error::validation(
                    format!("{field}.{name}"),
                    "must be a finite number",
                ));
            }
            AttributeValue::Text(s) => check_text(
                &format!("{field}.{name}"),
                s,
                0,
                limits::ATTRIBUTE_TEXT_CHARS,
                false,
            )?,
            _ => {}
        }
    }
    Ok(())
}

impl Product {
    /// The product's currency (that of its base price).
    pub fn currency(&self) -> Currency {
        self.base_price.currency()
    }

    /// The variant with `sku`.
    pub fn variant(&self, sku: &Sku) -> Option<&ProductVariant> {
        self.variants.iter().find(|v| &v.sku == sku)
    }

    /// The lowest variant price (the "from" price of a listing).
    pub fn min_price(&self) -> Money {
        self.variants
            .iter()
            .map(|v| v.price)
            .min_by(|a, b| a.try_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
            .unwrap_or(self.base_price)
    }

    /// Whether shoppers can see and buy it.
    pub fn is_active(&self) -> bool {
        self.status == ProductStatus::Active
    }

    /// Checks every field against [`limits`] and the rules below; the first problem is
    /// returned as [`Error::Validation`] naming the field.
    ///
    /// * text fields have no control characters (the description may have new lines);
    /// * at least one variant, SKUs unique within the product;
    /// * every price is non-negative and in the base price's currency;
    /// * attribute names are `[a-z0-9_]{1,64}`, numbers finite, texts at most 500 chars;
    /// * `version >= 1` and `updated_at >= created_at`.
    pub fn validate(&self) -> Result<()> {
        check_text("title", &self.title, 1, limits::TITLE_CHARS, false)?;
        check_text(
            "description",
            &self.description,
            0,
            limits::DESCRIPTION_CHARS,
            true,
        )?;
        check_text("brand", &self.brand, 1, limits::BRAND_CHARS, false)?;
        if self.base_price.is_negative() {
            return Err(Error::validation("base_price", "must not be negative"));
        }
        if self.images.len() > limits::IMAGES {
            return Err(Error::validation(
                "images",
                format!("at most {} images", limits::IMAGES),
            ));
        }
        for (i, url) in self.images.iter().enumerate() {
            let ok = url.len() <= limits::IMAGE_URL_BYTES
                && (url.starts_with("https://")
                    || url.starts_with("http://")
                    || url.starts_with('/'))
                && !url.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(Error::validation(
                    format!("images[{i}]"),
                    "must be an http(s) URL or an absolute path without spaces, at most 2048 bytes",
                ));
            }
        }
        if self.variants.is_empty() || self.variants.len() > limits::VARIANTS {
            return Err(Error::validation(
                "variants",
                format!("a product has 1 to {} variants", limits::VARIANTS),
            ));
        }
        let mut skus = HashSet::with_capacity(self.variants.len());
        for (i, v) in self.variants.iter().enumerate() {
            if !skus.insert(&v.sku) {
                return Err(Error::validation(
                    format!("variants[{i}].sku"),
                    format!("{} is repeated", v.sku),
                ));
            }
            if v.price.currency() != self.currency() {
                return Err(Error::CurrencyMismatch {
                    left: self.currency(),
                    right: v.price.currency(),
                });
            }
            if v.price.is_negative() {
                return Err(Error::validation(
                    format!("variants[{i}].price"),
                    "must not be negative",
                ));
            }
            if v.inventory_count > limits::INVENTORY_COUNT {
                return Err(Error::validation(
                    format!("variants[{i}].inventory_count"),
                    "is absurdly large",
                ));
            }
            check_attributes(&format!("variants[{i}].attributes"), &v.attributes)?;
        }
        check_attributes("attributes", &self.attributes)?;
        if self.version == 0 {
            return Err(Error::validation("version", "starts at 1"));
        }
        if self.updated_at < self.created_at {
            return Err(Error::validation("updated_at", "is before created_at"));
        }
        Ok(())
    }
}

/// A product to be created; the store assigns the slug, version and times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// Identifier; generated when `None`.
    #[serde(default)]
    pub id: Option<ProductId>,
    /// The marketplace seller.
    pub seller_id: SellerId,
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Category.
    pub category: CategoryPath,
    /// Brand.
    pub brand: String,
    /// Base price.
    pub base_price: Money,
    /// Image URLs.
    #[serde(default)]
    pub images: Vec<String>,
    /// Variants.
    pub variants: Vec<ProductVariant>,
    /// Attributes.
    #[serde(default)]
    pub attributes: Attributes,
    /// Initial status (default `DRAFT`).
    #[serde(default = "default_status")]
    pub status: ProductStatus,
    /// Rating.
    #[serde(default)]
    pub rating: Option<Rating>,
    /// Review count.
    #[serde(default)]
    pub review_count: u32,
    /// Popularity.
    #[serde(default)]
    pub popularity: u64,
}

fn default_status() -> ProductStatus {
    ProductStatus::Draft
}

impl NewProduct {
    /// A new product with one variant priced at `base_price`, status `DRAFT`.
    pub fn new(
        seller_id: SellerId,
        title: impl Into<String>,
        category: CategoryPath,
        brand: impl Into<String>,
        sku: Sku,
        base_price: Money,
    ) -> Self {
        NewProduct {
            id: None,
            seller_id,
            title: title.into(),
            description: String::new(),
            category,
            brand: brand.into(),
            base_price,
            images: Vec::new(),
            variants: vec![ProductVariant {
                sku,
                attributes: Attributes::new(),
                price: base_price,
                inventory_count: 0,
                weight_grams: None,
                dimensions: None,
            }],
            attributes: Attributes::new(),
            status: ProductStatus::Draft,
            rating: None,
            review_count: 0,
            popularity: 0,
        }
    }

    /// Builds the stored form with `slug` at time `now` (version 1) and validates it.
    pub fn into_product(self, slug: Slug, now: Timestamp) -> Result<Product> {
        let product = Product {
            id: self.id.unwrap_or_else(ProductId::generate),
            seller_id: self.seller_id,
            title: self.title,
            slug,
            description: self.description,
            category: self.category,
            brand: self.brand,
            base_price: self.base_price,
            images: self.images,
            variants: self.variants,
            attributes: self.attributes,
            status: self.status,
            rating: self.rating,
            review_count: self.review_count,
            popularity: self.popularity,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        product.validate()?;
        Ok(product)
    }
}

/// Builds and checks a batch of new products for a bulk insert
/// ([`CatalogStore::insert_products`](crate::store::CatalogStore::insert_products)), at
/// time `now`: at most [`MAX_PAGE_SIZE`](crate::store::MAX_PAGE_SIZE) products, each
/// valid ([`NewProduct::into_product`]), and no product id, slug or SKU twice in the
/// batch (`Conflict` of that kind). A product without an id gets a fresh one.
///
/// ```
/// use commerce_core::catalog::{CategoryPath, NewProduct, Slug, check_new_products};
/// use commerce_core::id::{SellerId, Sku};
///
/// let new = |sku: &str| -> commerce_core::Result<NewProduct> {
///     Ok(NewProduct::new(SellerId::new("s1")?, "Phone", CategoryPath::parse("Phones")?,
///                        "Acme", Sku::new(sku)?, "199.00 USD".parse()?))
/// };
/// let now = chrono::Utc::now();
/// let ok = vec![(new("PH-1")?, Slug::new("phone")?), (new("PH-2")?, Slug::new("phone-2")?)];
/// assert_eq!(check_new_products(ok, now)?.len(), 2);
/// let same_slug = vec![(new("PH-1")?, Slug::new("phone")?), (new("PH-2")?, Slug::new("phone")?)];
/// assert!(check_new_products(same_slug, now).is_err());
/// # Ok::<(), commerce_core::Error>(())
/// ```
pub fn check_new_products(batch: Vec<(NewProduct, Slug)>, now: Timestamp) -> Result<Vec<Product>> {
    let max = crate::store::MAX_PAGE_SIZE as usize;
    if batch.len() > max {
        return Err(Error::validation(
            "products",
            format!(
                "{} products; a bulk insert takes at most {max}",
                batch.len()
            ),
        ));
    }
    let mut ids = HashSet::with_capacity(batch.len());
    let mut slugs = HashSet::with_capacity(batch.len());
    let mut skus = HashSet::with_capacity(batch.len());
    batch
        .into_iter()
        .map(|(new, slug)| {
            let product = new.into_product(slug, now)?;
            if !ids.insert(product.id.clone()) {
                return Err(Error::conflict(
                    EntityKind::Product,
                    format!("product {} is twice in the batch", product.id),
                ));
            }
            if !slugs.insert(product.slug.clone()) {
                return Err(Error::conflict(
                    EntityKind::Slug,
                    format!("slug {} is twice in the batch", product.slug),
                ));
            }
            for v in &product.variants {
                if !skus.insert(v.sku.clone()) {
                    return Err(Error::conflict(
                        EntityKind::Variant,
                        format!("SKU {} is twice in the batch", v.sku),
                    ));
                }
            }
            Ok(product)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    pub(crate) fn sample() -> Product {
        NewProduct::new(
            SellerId::new("s1").expect("ok"),
            "Phone",
            CategoryPath::parse("Electronics > Phones").expect("ok"),
            "Acme",
            Sku::new("SKU-1").expect("ok"),
            "10.00 USD".parse().expect("ok"),
        )
        .into_product(Slug::from_title("Phone"), ManualClock::default().now())
        .expect("valid")
    }

    #[test]
    fn status_table_is_exactly_the_documented_one() {
        use ProductStatus::*;
        let legal: Vec<_> = ProductStatus::ALL
            .iter()
            .flat_map(|&a| ProductStatus::ALL.iter().map(move |&b| (a, b)))
            .filter(|(a, b)| a.can_transition_to(*b))
            .collect();
        assert_eq!(
            legal,
            vec![
                (Draft, Active),
                (Draft, Archived),
                (Active, Archived),
                (Archived, Active)
            ]
        );
    }

    #[test]
    fn validation_catches_each_rule() {
        let ok = sample();
        assert!(ok.validate().is_ok());
        type Mutation = Box<dyn Fn(&mut Product)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("title", Box::new(|p| p.title = String::new())),
            ("title", Box::new(|p| p.title = "a\u{0}b".into())),
            ("title", Box::new(|p| p.title = "x".repeat(201))),
            ("brand", Box::new(|p| p.brand = "  ".into())),
            (
                "images[0]",
                Box::new(|p| p.images = vec!["javascript:alert(1)".into()]),
            ),
            ("variants", Box::new(|p| p.variants.clear())),
            (
                "variants[1].sku",
                Box::new(|p| p.variants.push(p.variants[0].clone())),
            ),
            (
                "variants[0].price",
                Box::new(|p| p.variants[0].price = "-1 USD".parse().expect("ok")),
            ),
            (
                "attributes.Bad Name",
                Box::new(|p| {
                    p.attributes.insert("Bad Name".into(), "x".into());
                }),
            ),
            (
                "attributes.n",
                Box::new(|p| {
                    p.attributes.insert("n".into(), f64::NAN.into());
                }),
            ),
            ("version", Box::new(|p| p.version = 0)),
        ];
        for (field, mutate) in cases {
            let mut p = ok.clone();
            mutate(&mut p);
            match p.validate() {
                Err(Error::Validation { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected a validation error, got {other:?}"),
            }
        }
        let mut p = ok.clone();
        p.variants[0].price = "1.00 EUR".parse().expect("ok");
        assert!(matches!(p.validate(), Err(Error::CurrencyMismatch { .. })));
    }

    #[test]
    fn json_round_trip_and_strictness() {
        let p = sample();
        let json = serde_json::to_string(&p).expect("ser");
        let back: Product = serde_json::from_str(&json).expect("de");
        assert_eq!(back, p);
        let tampered = json.replace("\"status\":\"DRAFT\"", "\"status\":\"HACKED\"");
        assert!(serde_json::from_str::<Product>(&tampered).is_err());
        let rating: Result<Rating, _> = serde_json::from_str("5.5");
        assert!(rating.is_err());
        assert_eq!(
            serde_json::from_str::<Rating>("4.5").expect("ok").tenths(),
            45
        );
    }
}
