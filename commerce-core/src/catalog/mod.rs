//! The catalog: products with variants, slugs, and the category tree.

mod category;
pub mod import;
mod product;
mod slug;

pub use category::{Category, CategoryPath, CategoryTree, SegmentFix, normalize_segment};
pub use import::{ImportReport, Merged, Normalised, Rejected, import_bestbuy, import_bestbuy_file};
pub use product::{
    AttributeValue, Attributes, Dimensions, NewProduct, Product, ProductStatus, ProductVariant,
    Rating, check_new_products, limits,
};
pub use slug::Slug;
