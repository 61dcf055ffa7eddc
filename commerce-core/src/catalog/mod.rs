//! The catalog: products with variants, slugs, and the category tree.

mod category;
mod check;
pub mod import;
mod product;
mod slug;

pub use category::{
    Category, CategoryPath, CategoryTree, SegmentFix, check_segment, normalize_segment,
};
pub use check::{
    CategoryRejection, CategoryWrite, RejectedCategory, SegmentProblem, StoredCategories,
    categories_to_read, plan_put_categories,
};
pub use import::{ImportReport, Merged, Normalised, Rejected, import_bestbuy, import_bestbuy_file};
pub use product::{
    AttributeValue, Attributes, Dimensions, NewProduct, Product, ProductStatus, ProductVariant,
    Rating, check_new_products, limits,
};
pub use slug::Slug;
