//! URL slugs generated from titles.
//!
//! A slug is 1 to [`Slug::MAX_LEN`] bytes of lower-case ASCII letters, digits and single
//! dashes, never starting or ending with a dash. [`Slug::from_title`] transliterates
//! (`Café Crème` becomes `cafe-creme`), and [`Slug::with_suffix`] makes the `-2`, `-3`
//! variants a store tries when a slug is taken.
//!
//! ```
//! use commerce_core::catalog::Slug;
//!
//! assert_eq!(Slug::from_title("Apple iPhone 15 Pro (128 GB) — Black").as_str(),
//!            "apple-iphone-15-pro-128-gb-black");
//! assert_eq!(Slug::from_title("!!!").as_str(), "product");
//! assert_eq!(Slug::from_title("TV").with_suffix(2).as_str(), "tv-2");
//! assert!(Slug::new("Not A Slug").is_err());
//! ```

use std::fmt;

use crate::error::{Error, Result};

/// A validated URL slug.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

impl Slug {
    /// The longest slug, in bytes.
    pub const MAX_LEN: usize = 96;

    /// Validates an existing slug.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let ok = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-')
            && !value.ends_with('-')
            && !value.contains("--");
        if ok {
            Ok(Slug(value))
        } else {
            Err(Error::validation(
                "slug",
                format!(
                    "{value:?} must be 1 to {} lower-case letters, digits and single dashes",
                    Self::MAX_LEN
                ),
            ))
        }
    }

    /// A slug for `title`: transliterated to ASCII, lower-cased, every run of other
    /// characters turned into one dash, cut at a word boundary to fit. A title with no
    /// letters or digits gives `product`.
    pub fn from_title(title: &str) -> Self {
        let ascii = deunicode::deunicode(title).to_ascii_lowercase();
        let mut slug = String::with_capacity(ascii.len());
        for c in ascii.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c);
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        Slug(Self::fit(&slug, Self::MAX_LEN))
    }

    fn fit(slug: &str, max: usize) -> String {
        let mut s = slug.trim_matches('-');
        if s.len() > max {
            s = &s[..max];
            if let Some(cut) = s.rfind('-').filter(|&i| i > max / 2) {
                s = &s[..cut];
            }
            s = s.trim_matches('-');
        }
        if s.is_empty() {
            "product".to_owned()
        } else {
            s.to_owned()
        }
    }

    /// The `n`-th alternative: `tv-2`, `tv-3`, ...; shortened so the result still fits.
    pub fn with_suffix(&self, n: u32) -> Slug {
        let suffix = format!("-{n}");
        let base = Self::fit(&self.0, Self::MAX_LEN - suffix.len());
        Slug(format!("{base}{suffix}"))
    }

    /// The slug as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slug({:?})", self.0)
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Slug {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Slug {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Slug::new(s)
    }
}

impl serde::Serialize for Slug {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Slug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Slug::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn long_titles_are_cut_at_a_word() {
        let s = Slug::from_title(&"word ".repeat(40));
        assert!(s.as_str().len() <= Slug::MAX_LEN);
        assert!(s.as_str().ends_with("word"));
        let long = Slug::new("a".repeat(96)).expect("valid");
        assert_eq!(long.with_suffix(12).as_str().len(), 96);
    }

    proptest! {
        #[test]
        fn every_title_gives_a_valid_slug(title in "\\PC{0,300}") {
            let s = Slug::from_title(&title);
            prop_assert!(Slug::new(s.as_str()).is_ok(), "{:?} -> {:?}", title, s);
        }

        #[test]
        fn suffixes_are_valid_and_distinct(title in "\\PC{0,200}", n in 2u32..100_000) {
            let s = Slug::from_title(&title);
            let a = s.with_suffix(n);
            prop_assert!(Slug::new(a.as_str()).is_ok());
            prop_assert_ne!(a, s.clone());
            prop_assert_ne!(s.with_suffix(n), s.with_suffix(n + 1));
        }
    }
}
