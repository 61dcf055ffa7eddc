//! Coupon codes: what a shopper types, normalised and checked, and batches of unique
//! generated codes.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A coupon code: 3 to 32 of `A`-`Z`, `0`-`9` and inner `-`, stored upper-case.
///
/// [`CouponCode::parse`] trims surrounding white space and upper-cases ASCII letters, so
/// `" save-10 "` is `SAVE-10`; anything else (other characters, control bytes, quotes,
/// non-ASCII look-alikes, overlong input) is a `Validation` error, so a code can go into
/// a log line, a URL or a SQL parameter without surprises.
///
/// ```
/// use commerce_core::promotion::CouponCode;
///
/// assert_eq!(CouponCode::parse(" save-10 ")?.as_str(), "SAVE-10");
/// assert!(CouponCode::parse("x' OR '1'='1").is_err());
/// assert!(CouponCode::parse("SAVE\u{0}10").is_err());
/// # Ok::<(), commerce_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CouponCode(String);

impl CouponCode {
    /// The shortest code accepted.
    pub const MIN_LEN: usize = 3;
    /// The longest code accepted.
    pub const MAX_LEN: usize = 32;

    /// Normalises and checks `text` (see the type's docs).
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() > 4 * Self::MAX_LEN {
            return Err(Error::validation("code", "is far too long"));
        }
        let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let code = trimmed.to_ascii_uppercase();
        if code.len() < Self::MIN_LEN || code.len() > Self::MAX_LEN {
            return Err(Error::validation(
                "code",
                format!(
                    "must be {} to {} characters long",
                    Self::MIN_LEN,
                    Self::MAX_LEN
                ),
            ));
        }
        if !code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Error::validation(
                "code",
                "only letters A-Z, digits and '-' may be used",
            ));
        }
        if code.starts_with('-') || code.ends_with('-') {
            return Err(Error::validation("code", "must not start or end with '-'"));
        }
        Ok(CouponCode(code))
    }

    /// The normalised code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CouponCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CouponCode({})", self.0)
    }
}

impl fmt::Display for CouponCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CouponCode {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CouponCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        CouponCode::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Codes added to a promotion in one call: all or none are added.
///
/// A *shared* code (`single_use == false`, e.g. `BLACKFRIDAY`) may be redeemed by many
/// orders, up to the promotion's limits; *single-use* codes (generated batches) are each
/// redeemable by one live order at a time.
///
/// ```
/// use commerce_core::promotion::{CodeBatch, CouponCode};
///
/// let shared = CodeBatch::shared(CouponCode::parse("SUMMER")?);
/// assert!(!shared.single_use);
/// let batch = CodeBatch::generate("BF", 500, 10)?;
/// assert_eq!(batch.codes.len(), 500);
/// assert!(batch.codes.iter().all(|c| c.as_str().starts_with("BF-")));
/// # Ok::<(), commerce_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeBatch {
    /// The codes, each once.
    pub codes: Vec<CouponCode>,
    /// Whether each code can be held by one order only.
    pub single_use: bool,
}

/// Characters of generated codes: no `0`/`O`, `1`/`I`/`L` to confuse.
const ALPHABET: &[u8; 31] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

impl CodeBatch {
    /// The most codes one batch may hold.
    pub const MAX_CODES: usize = 10_000;

    /// One shared code.
    pub fn shared(code: CouponCode) -> Self {
        CodeBatch {
            codes: vec![code],
            single_use: false,
        }
    }

    /// Single-use codes given by the caller; repeats or more than
    /// [`CodeBatch::MAX_CODES`] are a `Validation` error.
    pub fn single_use(codes: Vec<CouponCode>) -> Result<Self> {
        let batch = CodeBatch {
            codes,
            single_use: true,
        };
        batch.validate()?;
        Ok(batch)
    }

    /// `count` unique single-use codes `PREFIX-XXXXXXXX` with `random_len` (6 to 16)
    /// random characters each, from the operating system's generator.
    pub fn generate(prefix: &str, count: usize, random_len: usize) -> Result<Self> {
        if count == 0 || count > Self::MAX_CODES {
            return Err(Error::validation(
                "count",
                format!("{count} is not between 1 and {}", Self::MAX_CODES),
            ));
        }
        if !(6..=16).contains(&random_len) {
            return Err(Error::validation(
                "random_len",
                format!("{random_len} is not between 6 and 16"),
            ));
        }
        let prefix = prefix.trim().to_ascii_uppercase();
        if prefix.is_empty()
            || prefix.len() > 15
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(Error::validation("prefix", "1 to 15 letters A-Z or digits"));
        }
        let mut seen = HashSet::with_capacity(count);
        let mut codes = Vec::with_capacity(count);
        let mut bytes = vec![0u8; random_len * 64];
        while codes.len() < count {
            getrandom::fill(&mut bytes)
                .map_err(|e| Error::backend(true, format!("random generator failed: {e}")))?;
            // Bytes of 248 and above are dropped, so each character is uniform.
            let fair: Vec<u8> = bytes.iter().copied().filter(|b| *b < 248).collect();
            for chunk in fair.chunks_exact(random_len) {
                let random: String = chunk
                    .iter()
                    .map(|b| ALPHABET[usize::from(b % 31)] as char)
                    .collect();
                let code = CouponCode(format!("{prefix}-{random}"));
                if seen.insert(code.clone()) {
                    codes.push(code);
                    if codes.len() == count {
                        break;
                    }
                }
            }
        }
        Ok(CodeBatch {
            codes,
            single_use: true,
        })
    }

    /// Checks the batch: 1 to [`CodeBatch::MAX_CODES`] codes, no repeats.
    pub fn validate(&self) -> Result<()> {
        if self.codes.is_empty() || self.codes.len() > Self::MAX_CODES {
            return Err(Error::validation(
                "codes",
                format!(
                    "{} codes; 1 to {} allowed",
                    self.codes.len(),
                    Self::MAX_CODES
                ),
            ));
        }
        let mut seen = HashSet::with_capacity(self.codes.len());
        if let Some(dup) = self.codes.iter().find(|c| !seen.insert(*c)) {
            return Err(Error::validation(
                "codes",
                format!("{dup} appears twice in the batch"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_codes_are_refused() {
        for bad in [
            "",
            "ab",
            "-ABC",
            "ABC-",
            "A B C",
            "ABC;DROP",
            "x' OR '1'='1",
            "ＳＡＶＥ10",
            "SAVE\u{0}",
            "<script>",
            &"A".repeat(33),
            &"A".repeat(10_000),
        ] {
            assert!(CouponCode::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            CouponCode::parse("\tbf-2026\n").unwrap().as_str(),
            "BF-2026"
        );
    }

    #[test]
    fn generated_batches_are_unique_and_valid() {
        let batch = CodeBatch::generate("vip", 2000, 8).unwrap();
        batch.validate().unwrap();
        for c in &batch.codes {
            assert_eq!(CouponCode::parse(c.as_str()).unwrap(), *c);
            assert!(c.as_str().starts_with("VIP-"));
        }
        assert!(CodeBatch::generate("vip", 0, 8).is_err());
        assert!(CodeBatch::generate("v;p", 10, 8).is_err());
        assert!(CodeBatch::generate("VIP", 10, 40).is_err());
        let dup = CouponCode::parse("DUP1").unwrap();
        assert!(CodeBatch::single_use(vec![dup.clone(), dup]).is_err());
    }

    proptest! {
        #[test]
        fn parsing_any_text_never_panics_and_accepts_only_safe_codes(s in "\\PC{0,40}") {
            if let Ok(c) = CouponCode::parse(&s) {
                prop_assert!(c.as_str().bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'));
            }
        }
    }
}
