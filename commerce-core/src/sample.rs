//! Deterministic sample catalogs for examples, tests and benchmarks.
//!
//! [`SampleCatalog::product`] turns an index into a plausible product over the leaves of
//! a [`CategoryTree`] (the real Best Buy tree, or [`CategoryTree::generated`]): a brand,
//! a title, a description, 1 to 4 variants with color / storage attributes, prices,
//! a rating and a popularity. The same seed and index always give the same product, so
//! a benchmark can load a million products once and find any of them again by index.
//!
//! ```
//! use commerce_core::catalog::CategoryTree;
//! use commerce_core::sample::SampleCatalog;
//!
//! let sample = SampleCatalog::new(&CategoryTree::generated(), 7);
//! let a = sample.product(42);
//! assert_eq!(a, sample.product(42));
//! assert_eq!(a.id.as_ref().map(|id| id.as_str()), Some("p0000000042"));
//! assert!(!a.variants.is_empty());
//! ```

use crate::catalog::{
    AttributeValue, Attributes, CategoryPath, CategoryTree, Dimensions, NewProduct, ProductStatus,
    ProductVariant, Rating,
};
use crate::id::{ProductId, SellerId, Sku};
use crate::money::{Currency, Money};

/// Brands used by the sample catalog.
pub const BRANDS: &[&str] = &[
    "Samsung",
    "Apple",
    "Sony",
    "LG",
    "Bose",
    "Dell",
    "HP",
    "Lenovo",
    "Asus",
    "Acer",
    "Microsoft",
    "Google",
    "Canon",
    "Nikon",
    "Panasonic",
    "Philips",
    "JBL",
    "Logitech",
    "Razer",
    "Corsair",
    "Whirlpool",
    "GE",
    "Frigidaire",
    "Dyson",
    "KitchenAid",
    "Ninja",
    "Keurig",
    "Garmin",
    "Fitbit",
    "GoPro",
    "Nintendo",
    "Insignia",
    "Vizio",
    "TCL",
    "Hisense",
    "Sharp",
    "Toshiba",
    "Epson",
    "Brother",
    "Netgear",
    "TP-Link",
    "Anker",
    "Belkin",
    "SanDisk",
    "Seagate",
    "Western Digital",
    "Kingston",
    "Beats",
    "Sennheiser",
    "Yamaha",
];

const SERIES: &[&str] = &[
    "Pro", "Max", "Ultra", "Lite", "Plus", "Air", "Mini", "Elite", "Neo", "Prime", "Core", "Edge",
    "Flex", "Nova", "Pulse", "Vision", "Studio", "Active", "Classic", "Sport",
];

const ADJECTIVES: &[&str] = &[
    "Wireless",
    "Portable",
    "Smart",
    "Compact",
    "Premium",
    "Essential",
    "Advanced",
    "Ultra-Slim",
    "Rechargeable",
    "Noise-Cancelling",
    "High-Performance",
    "Energy-Efficient",
];

const COLORS: &[&str] = &[
    "Black", "White", "Silver", "Blue", "Red", "Graphite", "Gold", "Green", "Rose", "Gray",
];

const STORAGE: &[&str] = &["64GB", "128GB", "256GB", "512GB", "1TB"];

const FEATURES: &[&str] = &[
    "long battery life",
    "fast charging",
    "a bright display",
    "studio-quality sound",
    "a durable aluminum body",
    "voice assistant support",
    "Bluetooth 5.3",
    "Wi-Fi 6E",
    "a two-year warranty",
    "easy setup",
    "quiet operation",
    "4K resolution",
    "water resistance",
    "a lightweight design",
    "energy savings",
];

/// A deterministic generator of products over a category tree.
#[derive(Debug, Clone)]
pub struct SampleCatalog {
    leaves: Vec<CategoryPath>,
    seed: u64,
    currency: Currency,
}

/// SplitMix64: a fast, well-mixed hash of `(seed, index, salt)`.
fn mix(seed: u64, index: u64, salt: u64) -> u64 {
    let mut z = seed
        .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<'a>(items: &'a [&'a str], h: u64) -> &'a str {
    items[(h % items.len() as u64) as usize]
}

impl SampleCatalog {
    /// A generator over the leaves of `tree` (the generated tree if `tree` is empty).
    pub fn new(tree: &CategoryTree, seed: u64) -> Self {
        let mut leaves: Vec<CategoryPath> =
            tree.leaves().into_iter().map(|c| c.path.clone()).collect();
        if leaves.is_empty() {
            leaves = CategoryTree::generated()
                .leaves()
                .into_iter()
                .map(|c| c.path.clone())
                .collect();
        }
        SampleCatalog {
            leaves,
            seed,
            currency: Currency::USD,
        }
    }

    /// The leaf categories products are spread over.
    pub fn leaves(&self) -> &[CategoryPath] {
        &self.leaves
    }

    /// The id of product `i`: `p` and ten digits, so ids sort by index.
    pub fn product_id(i: u64) -> ProductId {
        ProductId::unchecked(&format!("p{i:010}"))
    }

    /// The SKU of variant `v` of product `i`.
    pub fn sku(i: u64, v: u32) -> Sku {
        Sku::unchecked(&format!("SKU-{i:010}-{v}"))
    }

    /// The brand of product `i`.
    pub fn brand(&self, i: u64) -> &'static str {
        pick(BRANDS, mix(self.seed, i, 1))
    }

    /// Product number `i` (status ACTIVE).
    pub fn product(&self, i: u64) -> NewProduct {
        let h = |salt| mix(self.seed, i, salt);
        let category = self.leaves[(h(2) % self.leaves.len() as u64) as usize].clone();
        let brand = self.brand(i);
        let noun = category.name().trim_end_matches('s');
        let title = format!(
            "{brand} {} {} {noun} {}{}",
            pick(SERIES, h(3)),
            pick(ADJECTIVES, h(4)),
            (b'A' + (h(5) % 26) as u8) as char,
            100 + h(6) % 900
        );
        let description = format!(
            "The {title} brings {}, {} and {}. Part of our {} range from {brand}.",
            pick(FEATURES, h(7)),
            pick(FEATURES, h(8)),
            pick(FEATURES, h(9)),
            category.name()
        );
        let cents = 499 + (h(10) % 250_000) as i64;
        let base = Money::from_minor_units(cents, self.currency)
            .unwrap_or_else(|_| Money::zero(self.currency));
        let variant_count = 1 + (h(11) % 4) as u32;
        let first_color = h(12);
        let with_storage = h(13) % 3 == 0;
        let variants = (0..variant_count)
            .map(|v| {
                let mut attributes = Attributes::new();
                attributes.insert(
                    "color".into(),
                    AttributeValue::from(pick(COLORS, first_color.wrapping_add(u64::from(v)))),
                );
                let mut price = base;
                if with_storage {
                    attributes.insert(
                        "storage".into(),
                        AttributeValue::from(STORAGE[(v as usize) % STORAGE.len()]),
                    );
                    price = base
                        .checked_add(
                            &Money::from_minor_units(i64::from(v) * 5_000, self.currency)
                                .unwrap_or(base),
                        )
                        .unwrap_or(base);
                }
                ProductVariant {
                    sku: Self::sku(i, v),
                    attributes,
                    price,
                    inventory_count: (mix(self.seed, i, 20 + u64::from(v)) % 200) as u32,
                    weight_grams: Some(100 + (h(14) % 20_000) as u32),
                    dimensions: Some(Dimensions {
                        length_mm: 50 + (h(15) % 1000) as u32,
                        width_mm: 50 + (h(16) % 800) as u32,
                        height_mm: 10 + (h(17) % 600) as u32,
                    }),
                }
            })
            .collect();
        let mut attributes = Attributes::new();
        attributes.insert(
            "warranty_years".into(),
            AttributeValue::Number((1 + h(18) % 3) as f64),
        );
        attributes.insert("wireless".into(), AttributeValue::Bool(h(19) % 2 == 0));
        attributes.insert(
            "condition".into(),
            AttributeValue::from(if h(21) % 10 == 0 {
                "refurbished"
            } else {
                "new"
            }),
        );
        NewProduct {
            id: Some(Self::product_id(i)),
            seller_id: SellerId::unchecked(&format!("seller-{}", h(22) % 500)),
            title,
            description,
            category,
            brand: brand.to_owned(),
            base_price: base,
            images: vec![format!("https://img.example.com/p/{i}/1.jpg")],
            variants,
            attributes,
            status: ProductStatus::Active,
            rating: Rating::from_tenths((10 + h(23) % 41) as u8).ok(),
            review_count: (h(24) % 5000) as u32,
            popularity: 1_000_000 / (1 + h(25) % 10_000),
        }
    }

    /// Products `range`, in order.
    pub fn products(&self, range: std::ops::Range<u64>) -> impl Iterator<Item = NewProduct> + '_ {
        range.map(|i| self.product(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Slug;
    use crate::clock::{Clock, ManualClock};

    #[test]
    fn products_are_valid_and_deterministic() {
        let sample = SampleCatalog::new(&CategoryTree::generated(), 1);
        let now = ManualClock::default().now();
        for i in 0..500 {
            let p = sample.product(i);
            assert_eq!(p, sample.product(i));
            let title = p.title.clone();
            p.into_product(Slug::from_title(&title), now)
                .expect("valid sample product");
        }
        assert_ne!(sample.product(1).title, sample.product(2).title);
    }
}
