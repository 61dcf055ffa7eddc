//! The curated relevance set: a catalog generated over the real Best Buy category tree
//! (`../shared/data/bestbuy-categories.json`) plus hand-written products, and queries
//! (misspellings and category words included) with what must come first. Prints
//! precision@10 per query and asserts the mean.

use std::path::Path;

use commerce_core::catalog::{
    CategoryPath, CategoryTree, NewProduct, Product, ProductStatus, Rating, Slug,
    import_bestbuy_file,
};
use commerce_core::clock::{Clock, SystemClock};
use commerce_core::id::{ProductId, SellerId, Sku};
use commerce_core::sample::SampleCatalog;
use commerce_core::store::SearchIndex;
use commerce_core::store::search::{SearchHit, SearchQuery};
use commerce_search::{TantivyConfig, TantivySearch, sample_product};

const GENERATED: u64 = 5_000;

fn tree() -> CategoryTree {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/bestbuy-categories.json");
    import_bestbuy_file(&path)
        .unwrap_or_else(|e| {
            panic!(
                "the relevance set needs the real category tree at {} (../shared/data): {e}",
                path.display()
            )
        })
        .tree
}

/// (id, title, brand, category path)
const CURATED: &[(&str, &str, &str, &str)] = &[
    (
        "c-iphone15",
        "Apple iPhone 15 128GB Unlocked",
        "Apple",
        "Cell Phones > Unlocked Cell Phones",
    ),
    (
        "c-iphone15pro",
        "Apple iPhone 15 Pro Max 256GB",
        "Apple",
        "Cell Phones > Unlocked Cell Phones",
    ),
    (
        "c-iphone14",
        "Apple iPhone 14 Plus",
        "Apple",
        "Cell Phones > Unlocked Cell Phones",
    ),
    (
        "c-galaxy24",
        "Samsung Galaxy S24 Ultra 512GB",
        "Samsung",
        "Cell Phones > Unlocked Cell Phones",
    ),
    (
        "c-galaxya15",
        "Samsung Galaxy A15 5G",
        "Samsung",
        "Cell Phones > Unlocked Cell Phones",
    ),
    (
        "c-galaxytab",
        "Samsung Galaxy Tab S9 11-inch",
        "Samsung",
        "Computers & Tablets > Tablets",
    ),
    (
        "c-galaxybuds",
        "Samsung Galaxy Buds2 Pro Wireless Earbuds",
        "Samsung",
        "Audio > Headphones > Earbud & In-Ear Headphones",
    ),
    (
        "c-pixel8",
        "Google Pixel 8 Pro",
        "Google",
        "Cell Phones > Unlocked Cell Phones",
    ),
    (
        "c-macbookair",
        "Apple MacBook Air 13-inch M3 Laptop",
        "Apple",
        "Computers & Tablets > Laptops",
    ),
    (
        "c-macbookpro",
        "Apple MacBook Pro 16-inch M3 Max Laptop",
        "Apple",
        "Computers & Tablets > Laptops",
    ),
    (
        "c-airpodspro",
        "Apple AirPods Pro 2nd Generation",
        "Apple",
        "Audio > Headphones > Earbud & In-Ear Headphones",
    ),
    (
        "c-airpods",
        "Apple AirPods 3rd Generation",
        "Apple",
        "Audio > Headphones > Earbud & In-Ear Headphones",
    ),
    ("c-ps5", "Sony PlayStation 5 Console", "Sony", "Video Games"),
    (
        "c-switch",
        "Nintendo Switch OLED Model",
        "Nintendo",
        "Video Games",
    ),
    (
        "c-xm5",
        "Sony WH-1000XM5 Wireless Noise Cancelling Headphones",
        "Sony",
        "Audio > Headphones > Over-Ear & On-Ear Headphones",
    ),
    (
        "c-qc45",
        "Bose QuietComfort 45 Wireless Headphones",
        "Bose",
        "Audio > Headphones > Over-Ear & On-Ear Headphones",
    ),
    (
        "c-fridge1",
        "LG French Door Refrigerator 28 cu ft",
        "LG",
        "Appliances > Refrigerators > French Door Refrigerators",
    ),
    (
        "c-fridge2",
        "Samsung French Door Refrigerator with Family Hub",
        "Samsung",
        "Appliances > Refrigerators > French Door Refrigerators",
    ),
    (
        "c-dysonv15",
        "Dyson V15 Detect Cordless Vacuum",
        "Dyson",
        "Appliances > Vacuum Cleaners & Floor Care",
    ),
    (
        "c-dysonball",
        "Dyson Ball Animal 3 Upright Vacuum",
        "Dyson",
        "Appliances > Vacuum Cleaners & Floor Care",
    ),
    (
        "c-keurig",
        "Keurig K-Elite Single Serve Coffee Maker",
        "Keurig",
        "Appliances > Small Kitchen Appliances > Coffee, Tea & Espresso > Coffee Makers",
    ),
    (
        "c-mixer",
        "KitchenAid Artisan Stand Mixer",
        "KitchenAid",
        "Appliances > Small Kitchen Appliances",
    ),
    (
        "c-mxmaster",
        "Logitech MX Master 3S Wireless Mouse",
        "Logitech",
        "Computers & Tablets > Computer Accessories & Peripherals > Mice & Keyboards",
    ),
    (
        "c-g502",
        "Logitech G502 Gaming Mouse",
        "Logitech",
        "Computers & Tablets > Computer Accessories & Peripherals > Mice & Keyboards",
    ),
    (
        "c-odyssey",
        "Samsung Odyssey G7 Gaming Monitor 32-inch",
        "Samsung",
        "Computers & Tablets > Monitors",
    ),
    (
        "c-ultragear",
        "LG UltraGear 27-inch Gaming Monitor",
        "LG",
        "Computers & Tablets > Monitors",
    ),
    (
        "c-eosr6",
        "Canon EOS R6 Mark II Mirrorless Camera",
        "Canon",
        "Cameras & Camcorders > Digital Cameras",
    ),
    (
        "c-bravia",
        "Sony Bravia 65-inch 4K OLED TV",
        "Sony",
        "TV & Home Theater > TVs",
    ),
];

fn curated(tree: &CategoryTree) -> Vec<Product> {
    CURATED
        .iter()
        .enumerate()
        .map(|(i, (id, title, brand, category))| {
            let category = CategoryPath::parse(category).unwrap();
            assert!(
                tree.get(&category).is_some(),
                "{category} is not in the real tree"
            );
            let mut n = NewProduct::new(
                SellerId::new("curated").unwrap(),
                *title,
                category,
                *brand,
                Sku::new(format!("CUR-{i}")).unwrap(),
                "499.00 USD".parse().unwrap(),
            );
            n.id = Some(ProductId::new(*id).unwrap());
            n.description = format!("{title} from {brand}.");
            n.status = ProductStatus::Active;
            n.rating = Some(Rating::from_tenths(42).unwrap());
            n.popularity = 50;
            n.into_product(Slug::from_title(id), SystemClock.now())
                .unwrap()
        })
        .collect()
}

enum Rel {
    /// Exactly these products are relevant.
    Ids(&'static [&'static str]),
    /// Products whose category path has a segment containing this text.
    Category(&'static str),
    /// Products of this brand.
    Brand(&'static str),
    /// Products of this brand in a category whose path contains this text.
    BrandIn(&'static str, &'static str),
    /// Either holds (a curated product, or a product filed under that product line in the
    /// real tree: `Cell Phones > iPhone > iPhone 6` holds iPhones).
    Or(Box<Rel>, Box<Rel>),
}

impl Rel {
    fn holds(&self, h: &SearchHit) -> bool {
        match self {
            Rel::Ids(ids) => ids.contains(&h.product_id.as_str()),
            Rel::Category(c) => h.category.segments().any(|s| s.contains(c)),
            Rel::Brand(b) => h.brand == *b,
            Rel::BrandIn(b, c) => h.brand == *b && h.category.as_str().contains(c),
            Rel::Or(a, b) => a.holds(h) || b.holds(h),
        }
    }
}

fn cases() -> Vec<(&'static str, Rel)> {
    use Rel::*;
    let or = |a, b| Or(Box::new(a), Box::new(b));
    let iphones = || {
        or(
            Ids(&["c-iphone15", "c-iphone15pro", "c-iphone14"]),
            Category("iPhone"),
        )
    };
    let galaxies = || {
        or(
            Ids(&["c-galaxy24", "c-galaxya15", "c-galaxytab", "c-galaxybuds"]),
            Category("Galaxy"),
        )
    };
    vec![
        ("iphone", iphones()),
        ("iphnoe", iphones()),
        ("iphone 15", Ids(&["c-iphone15", "c-iphone15pro"])),
        ("samsung galaxy", galaxies()),
        ("samsnug galaxy", galaxies()),
        ("galaxy s24", Ids(&["c-galaxy24"])),
        (
            "macbook",
            or(Ids(&["c-macbookair", "c-macbookpro"]), Category("MacBook")),
        ),
        (
            "mackbook air",
            or(Ids(&["c-macbookair"]), Category("MacBook Air")),
        ),
        ("airpods pro", Ids(&["c-airpodspro"])),
        ("playstation", or(Ids(&["c-ps5"]), Category("PlayStation"))),
        ("playstaton 5", Ids(&["c-ps5"])),
        ("nintendo switch", Ids(&["c-switch"])),
        (
            "noise cancelling headphones",
            or(Ids(&["c-xm5"]), Category("Headphones")),
        ),
        ("bose quietcomfort", Ids(&["c-qc45"])),
        (
            "french door refrigerator",
            Category("French Door Refrigerators"),
        ),
        ("refrigerater", Category("Refrigerator")),
        ("laptops", Category("Laptop")),
        ("headphones", Category("Headphones")),
        ("coffee maker", Category("Coffee Makers")),
        ("vaccum", Category("Vacuum")),
        (
            "dyson vacuum",
            or(BrandIn("Dyson", "Vacuum"), Category("Dyson")),
        ),
        ("keurig", or(Brand("Keurig"), Category("Keurig"))),
        ("logitech mouse", Ids(&["c-mxmaster", "c-g502"])),
        (
            "gaming monitor",
            or(
                Ids(&["c-odyssey", "c-ultragear"]),
                Category("Gaming Monitors"),
            ),
        ),
        (
            "kitchenaid mixer",
            or(Ids(&["c-mixer"]), Category("KitchenAid Mixers")),
        ),
        ("canon mirrorless", Ids(&["c-eosr6"])),
        ("oled tv", or(Ids(&["c-bravia"]), Category("OLED TVs"))),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn relevance_set_precision_at_10() {
    let tree = tree();
    let idx = TantivySearch::in_ram_with(TantivyConfig {
        commit_interval: None,
        writer_threads: 2,
        writer_memory: 64 << 20,
        ..TantivyConfig::default()
    })
    .unwrap();
    let sample = SampleCatalog::new(&tree, 42);
    let mut products: Vec<Product> = (0..GENERATED).map(|i| sample_product(&sample, i)).collect();
    products.extend(curated(&tree));
    for chunk in products.chunks(1000) {
        idx.upsert(chunk).await.unwrap();
    }
    idx.refresh().await.unwrap();

    let mut sum = 0.0;
    let mut firsts = 0;
    let cases = cases();
    for (text, rel) in &cases {
        // How many relevant products exist (the ideal number in the top 10).
        let all = idx
            .search(&SearchQuery {
                limit: 100,
                ..SearchQuery::text(*text)
            })
            .await
            .unwrap();
        let ideal = match rel {
            Rel::Ids(ids) => ids.len(),
            _ => products
                .iter()
                .filter(|p| {
                    rel.holds(&SearchHit {
                        product_id: p.id.clone(),
                        slug: p.slug.clone(),
                        title: p.title.clone(),
                        brand: p.brand.clone(),
                        category: p.category.clone(),
                        price: p.min_price(),
                        rating: p.rating,
                        score: 0.0,
                        snippet: None,
                    })
                })
                .count(),
        }
        .clamp(1, 10);
        let top: Vec<&SearchHit> = all.hits.iter().take(10).collect();
        let good = top.iter().filter(|h| rel.holds(h)).count();
        let p10 = good.min(ideal) as f64 / ideal as f64;
        let first = top.first().is_some_and(|h| rel.holds(h));
        firsts += usize::from(first);
        sum += p10;
        println!(
            "{text:32} p@10 {p10:.2}  first {}  ({} hits; top: {:?})",
            if first { "ok " } else { "BAD" },
            all.total,
            top.iter()
                .take(3)
                .map(|h| h.title.as_str())
                .collect::<Vec<_>>()
        );
    }
    let mean = sum / cases.len() as f64;
    println!(
        "relevance set: {} queries over {} products, mean precision@10 {mean:.3}, relevant first {firsts}/{}",
        cases.len(),
        products.len(),
        cases.len()
    );
    assert!(mean >= 0.9, "mean precision@10 {mean:.3} below 0.9");
    assert!(
        firsts * 10 >= cases.len() * 9,
        "a relevant product first in only {firsts} queries"
    );
}
