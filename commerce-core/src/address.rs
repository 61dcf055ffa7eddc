//! Postal addresses, validated on construction and on deserialisation.
//!
//! An [`Address`] can only be made by [`Address::new`] (or by deserialising, which
//! calls it through `#[serde(try_from)]`), so every `Address` a store, a tax
//! calculator or a carrier sees has passed these rules; input from a client is an
//! [`AddressInput`] until then.
//!
//! # Rules
//!
//! Every text field is trimmed, put in Unicode NFC and may not contain control
//! characters. Errors are [`Error::Validation`] with `field` = `address.<name>`.
//!
//! | field         | rule |
//! |---------------|------|
//! | `country`     | ISO 3166-1 alpha-2 (any case on input, stored upper-case), checked with the `celes` crate |
//! | `name`        | required, 1 to 100 characters |
//! | `company`     | optional, at most 100 characters |
//! | `line1`       | required, 1 to 100 characters |
//! | `line2`       | optional, at most 100 characters |
//! | `city`        | required, 1 to 100 characters, except in the city states HK, MO, SG |
//! | `region`      | required in US, CA and AU and then one of that country's state/province codes (upper-case); elsewhere optional, at most 100 characters |
//! | `postal_code` | required with a format check in the countries of the table below; elsewhere optional, 1 to 12 letters, digits, spaces or `-` |
//! | `phone`       | optional, 4 to 20 of digits, spaces, `+ - ( )`, with at least 4 digits |
//!
//! | country | postal code format (stored form) |
//! |---------|----------------------------------|
//! | US      | `12345` or `12345-6789` |
//! | CA      | `A1A 1A1` (space optional on input) |
//! | GB      | outward code `A9`, `A99`, `AA9`, `AA99`, `A9A` or `AA9A`, a space, inward code `9AA` (simplified: no check of which districts exist) |
//! | DE, FR  | five digits |
//! | NL      | `1234 AB` (space optional on input) |
//! | AU      | four digits |
//! | JP      | `123-4567` (hyphen optional on input) |
//!
//! These rules catch typos and hostile input; they do not prove that an address
//! exists (that is an address-verification service's job).
//!
//! ```
//! use commerce_core::address::{Address, AddressInput};
//!
//! let address = Address::new(AddressInput {
//!     name: "Erika Mustermann".into(),
//!     line1: "Heidestraße 17".into(),
//!     city: "Köln".into(),
//!     postal_code: Some("51147".into()),
//!     country: "de".into(),
//!     ..AddressInput::default()
//! })?;
//! assert_eq!(address.country().as_str(), "DE");
//!
//! // A German address needs a five-digit postal code.
//! let bad = AddressInput { postal_code: Some("5114".into()), ..address.to_input() };
//! assert!(Address::new(bad).is_err());
//!
//! // Deserialising validates too.
//! let json = r#"{"name":"A","line1":"1 Main St","city":"Albany","region":"ny",
//!                "postal_code":"12207","country":"US"}"#;
//! let parsed: Address = serde_json::from_str(json).unwrap();
//! assert_eq!(parsed.region(), Some("NY"));
//! assert!(serde_json::from_str::<Address>(&json.replace("\"US\"", "\"XX\"")).is_err());
//! # Ok::<(), commerce_core::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// An ISO 3166-1 alpha-2 country code, upper-case (`"DE"`, `"US"`).
///
/// Serialises as the two-letter code; parsing (and deserialising) accepts any case
/// and refuses codes that are not assigned ISO 3166-1 countries.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Parses an alpha-2 code in any case: `Validation` on `country` if it is not an
    /// assigned ISO 3166-1 alpha-2 code.
    ///
    /// ```
    /// use commerce_core::address::CountryCode;
    /// assert_eq!(CountryCode::parse("gb")?.as_str(), "GB");
    /// assert!(CountryCode::parse("XX").is_err());
    /// assert!(CountryCode::parse("DEU").is_err());
    /// # Ok::<(), commerce_core::Error>(())
    /// ```
    pub fn parse(code: &str) -> Result<Self> {
        let bytes = code.as_bytes();
        if bytes.len() != 2 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(Error::validation(
                "country",
                format!("{code:?} is not a two-letter ISO 3166-1 alpha-2 code"),
            ));
        }
        let upper = [bytes[0].to_ascii_uppercase(), bytes[1].to_ascii_uppercase()];
        celes::Country::from_alpha2(code).map_err(|_| {
            Error::validation("country", format!("{code:?} is not an ISO 3166-1 country"))
        })?;
        Ok(CountryCode(upper))
    }

    /// The upper-case code.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The country's ISO short name (`"Germany"`).
    pub fn name(&self) -> &'static str {
        celes::Country::from_alpha2(self.as_str())
            .map(|c| c.long_name)
            .unwrap_or("")
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CountryCode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        CountryCode::parse(s)
    }
}

impl Serialize for CountryCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        CountryCode::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An address as a client sends it: nothing checked yet. [`Address::new`] validates it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    /// The recipient's full name.
    pub name: String,
    /// A company name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Street and number.
    pub line1: String,
    /// Apartment, floor, building.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City or town (may be empty in HK, MO, SG).
    #[serde(default)]
    pub city: String,
    /// State, province or region (a code in US, CA, AU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// A phone number for the carrier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A validated postal address (see the [module rules](self)).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "AddressInput")]
pub struct Address {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    company: Option<String>,
    line1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line2: Option<String>,
    city: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    postal_code: Option<String>,
    country: CountryCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
}

impl fmt::Debug for Address {
    /// Only the country, region and postal code: names, streets and phone numbers are
    /// personal data and stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Address")
            .field("country", &self.country)
            .field("region", &self.region)
            .field("postal_code", &self.postal_code)
            .finish_non_exhaustive()
    }
}

impl TryFrom<AddressInput> for Address {
    type Error = Error;
    fn try_from(input: AddressInput) -> Result<Self> {
        Address::new(input)
    }
}

const MAX_TEXT: usize = 100;

/// City states, where `city` may be empty.
const CITY_STATES: [&str; 3] = ["HK", "MO", "SG"];

/// US states, DC, inhabited territories and the military "states".
const US_REGIONS: [&str; 62] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP", "AA", "AE", "AP", "UM", "FM", "MH",
];
const CA_REGIONS: [&str; 13] = [
    "AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT",
];
const AU_REGIONS: [&str; 8] = ["ACT", "NSW", "NT", "QLD", "SA", "TAS", "VIC", "WA"];

fn regions_of(country: &str) -> Option<&'static [&'static str]> {
    match country {
        "US" => Some(&US_REGIONS),
        "CA" => Some(&CA_REGIONS),
        "AU" => Some(&AU_REGIONS),
        _ => None,
    }
}

fn field(name: &str) -> String {
    format!("address.{name}")
}

/// Trims, normalises to NFC and checks length and control characters.
fn clean(name: &str, value: &str, required: bool) -> Result<Option<String>> {
    if value.chars().any(char::is_control) {
        return Err(Error::validation(
            field(name),
            "must not contain control characters",
        ));
    }
    let text: String = value.trim().nfc().collect();
    if text.is_empty() {
        return if required {
            Err(Error::validation(field(name), "is required"))
        } else {
            Ok(None)
        };
    }
    if text.chars().count() > MAX_TEXT {
        return Err(Error::validation(
            field(name),
            format!("at most {MAX_TEXT} characters"),
        ));
    }
    Ok(Some(text))
}

fn clean_opt(name: &str, value: Option<&str>) -> Result<Option<String>> {
    clean(name, value.unwrap_or(""), false)
}

fn is_digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// Checks and normalises a postal code for `country`; `None` if the country has no
/// format in the table (then only the generic check applies).
fn postal_format(country: &str, raw: &str) -> Option<std::result::Result<String, &'static str>> {
    let upper = raw.to_ascii_uppercase();
    let compact: String = upper.chars().filter(|c| *c != ' ').collect();
    let b = compact.as_bytes();
    let letter = |i: usize| b.get(i).is_some_and(u8::is_ascii_uppercase);
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let result = match country {
        "US" => {
            let ok = is_digits(&upper, 5)
                || (upper.len() == 10
                    && upper.is_ascii()
                    && is_digits(&upper[..5], 5)
                    && upper.as_bytes()[5] == b'-'
                    && is_digits(&upper[6..], 4));
            if ok {
                Ok(upper)
            } else {
                Err("must be 12345 or 12345-6789")
            }
        }
        "CA" => {
            let ok = b.len() == 6
                && letter(0)
                && digit(1)
                && letter(2)
                && digit(3)
                && letter(4)
                && digit(5);
            if ok {
                Ok(format!("{} {}", &compact[..3], &compact[3..]))
            } else {
                Err("must be of the form A1A 1A1")
            }
        }
        "GB" => {
            // Inward code: digit, letter, letter; outward: 2 to 4 characters starting
            // with a letter, containing a digit in position 2 or 3.
            let n = b.len();
            let inward_ok = n >= 5 && digit(n - 3) && letter(n - 2) && letter(n - 1);
            let out = n.saturating_sub(3);
            let outward_ok = (2..=4).contains(&out)
                && letter(0)
                && b[..out].iter().all(u8::is_ascii_alphanumeric)
                && (digit(1) || (letter(1) && digit(2)));
            if inward_ok && outward_ok {
                Ok(format!("{} {}", &compact[..out], &compact[out..]))
            } else {
                Err("must be a UK postcode such as SW1A 1AA")
            }
        }
        "DE" | "FR" => {
            if is_digits(&upper, 5) {
                Ok(upper)
            } else {
                Err("must be five digits")
            }
        }
        "NL" => {
            let ok =
                b.len() == 6 && b[..4].iter().all(u8::is_ascii_digit) && letter(4) && letter(5);
            if ok {
                Ok(format!("{} {}", &compact[..4], &compact[4..]))
            } else {
                Err("must be of the form 1234 AB")
            }
        }
        "AU" => {
            if is_digits(&upper, 4) {
                Ok(upper)
            } else {
                Err("must be four digits")
            }
        }
        "JP" => {
            let digits: String = upper.chars().filter(|c| *c != '-').collect();
            let hyphens = upper.matches('-').count();
            let ok = is_digits(&digits, 7)
                && (hyphens == 0 || (hyphens == 1 && upper.as_bytes().get(3) == Some(&b'-')));
            if ok {
                Ok(format!("{}-{}", &digits[..3], &digits[3..]))
            } else {
                Err("must be of the form 123-4567")
            }
        }
        _ => return None,
    };
    Some(result)
}

impl Address {
    /// Validates `input` by the [module rules](self), normalising it (trimmed, NFC,
    /// upper-case country, region codes and postal codes in their stored form).
    pub fn new(input: AddressInput) -> Result<Self> {
        let country = CountryCode::parse(input.country.trim()).map_err(|e| match e {
            Error::Validation { reason, .. } => Error::validation(field("country"), reason),
            other => other,
        })?;
        let cc = country.as_str();
        let name = clean("name", &input.name, true)?.unwrap_or_default();
        let company = clean_opt("company", input.company.as_deref())?;
        let line1 = clean("line1", &input.line1, true)?.unwrap_or_default();
        let line2 = clean_opt("line2", input.line2.as_deref())?;
        let city = clean("city", &input.city, !CITY_STATES.contains(&cc))?.unwrap_or_default();

        let region = clean_opt("region", input.region.as_deref())?;
        let region = match (regions_of(cc), region) {
            (Some(codes), Some(r)) => {
                let upper = r.to_ascii_uppercase();
                if !codes.contains(&upper.as_str()) {
                    return Err(Error::validation(
                        field("region"),
                        format!("{r:?} is not a state/province code of {cc}"),
                    ));
                }
                Some(upper)
            }
            (Some(_), None) => {
                return Err(Error::validation(
                    field("region"),
                    format!("is required in {cc}"),
                ));
            }
            (None, r) => r,
        };

        let postal = clean_opt("postal_code", input.postal_code.as_deref())?;
        let postal_code = match (
            postal,
            postal_format(cc, input.postal_code.as_deref().unwrap_or("").trim()),
        ) {
            (None, Some(_)) => {
                return Err(Error::validation(
                    field("postal_code"),
                    format!("is required in {cc}"),
                ));
            }
            (Some(_), Some(Err(reason))) => {
                return Err(Error::validation(
                    field("postal_code"),
                    format!("{reason} in {cc}"),
                ));
            }
            (Some(_), Some(Ok(normal))) => Some(normal),
            (Some(p), None) => {
                let ok = p.len() <= 12
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-');
                if !ok {
                    return Err(Error::validation(
                        field("postal_code"),
                        "1 to 12 letters, digits, spaces or '-'",
                    ));
                }
                Some(p.to_ascii_uppercase())
            }
            (None, None) => None,
        };

        let phone = clean_opt("phone", input.phone.as_deref())?;
        if let Some(p) = &phone {
            let allowed = p
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')'));
            let digits = p.chars().filter(char::is_ascii_digit).count();
            if !allowed || !(4..=20).contains(&p.len()) || digits < 4 {
                return Err(Error::validation(
                    field("phone"),
                    "4 to 20 of digits, spaces and + - ( ), at least 4 digits",
                ));
            }
        }

        Ok(Address {
            name,
            company,
            line1,
            line2,
            city,
            region,
            postal_code,
            country,
            phone,
        })
    }

    /// The recipient.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The company, if any.
    pub fn company(&self) -> Option<&str> {
        self.company.as_deref()
    }

    /// Street and number.
    pub fn line1(&self) -> &str {
        &self.line1
    }

    /// The second line, if any.
    pub fn line2(&self) -> Option<&str> {
        self.line2.as_deref()
    }

    /// The city (empty only in HK, MO, SG).
    pub fn city(&self) -> &str {
        &self.city
    }

    /// The region: an upper-case code in US, CA, AU; free text or `None` elsewhere.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The postal code in its stored form.
    pub fn postal_code(&self) -> Option<&str> {
        self.postal_code.as_deref()
    }

    /// The country.
    pub fn country(&self) -> CountryCode {
        self.country
    }

    /// The phone number, if any.
    pub fn phone(&self) -> Option<&str> {
        self.phone.as_deref()
    }

    /// The address as input again (to edit it and validate the result).
    pub fn to_input(&self) -> AddressInput {
        AddressInput {
            name: self.name.clone(),
            company: self.company.clone(),
            line1: self.line1.clone(),
            line2: self.line2.clone(),
            city: self.city.clone(),
            region: self.region.clone(),
            postal_code: self.postal_code.clone(),
            country: self.country.as_str().to_owned(),
            phone: self.phone.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(country: &str, region: Option<&str>, postal: Option<&str>) -> AddressInput {
        AddressInput {
            name: "Test Person".into(),
            line1: "1 Test Street".into(),
            city: "Testville".into(),
            region: region.map(Into::into),
            postal_code: postal.map(Into::into),
            country: country.into(),
            ..AddressInput::default()
        }
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::Validation { field, .. } => field,
            other => panic!("expected Validation, got {other:?}"),
        }
    }

    #[test]
    fn postal_codes_are_checked_and_normalised_per_country() {
        let ok = |c: &str, r: Option<&str>, p: &str| {
            Address::new(input(c, r, Some(p)))
                .unwrap_or_else(|e| panic!("{c} {p}: {e}"))
                .postal_code()
                .map(str::to_owned)
        };
        assert_eq!(ok("US", Some("ny"), "10001").as_deref(), Some("10001"));
        assert_eq!(
            ok("US", Some("NY"), "10001-1234").as_deref(),
            Some("10001-1234")
        );
        assert_eq!(ok("CA", Some("on"), "k1a0b1").as_deref(), Some("K1A 0B1"));
        assert_eq!(ok("GB", None, "sw1a1aa").as_deref(), Some("SW1A 1AA"));
        assert_eq!(ok("GB", None, "M1 1AE").as_deref(), Some("M1 1AE"));
        assert_eq!(ok("GB", None, "EC1A 1BB").as_deref(), Some("EC1A 1BB"));
        assert_eq!(ok("DE", None, "10115").as_deref(), Some("10115"));
        assert_eq!(ok("FR", None, "75008").as_deref(), Some("75008"));
        assert_eq!(ok("NL", None, "1012ab").as_deref(), Some("1012 AB"));
        assert_eq!(ok("JP", None, "1000001").as_deref(), Some("100-0001"));
        assert_eq!(ok("AU", Some("nsw"), "2000").as_deref(), Some("2000"));
        assert_eq!(ok("IE", None, "D02 X285").as_deref(), Some("D02 X285"));

        for (c, r, p) in [
            ("US", Some("NY"), "1000"),
            ("US", Some("NY"), "10001-12"),
            ("US", Some("NY"), "ABCDE"),
            ("CA", Some("ON"), "K1A 0B"),
            ("CA", Some("ON"), "11A 0B1"),
            ("GB", None, "SW1A"),
            ("GB", None, "1W1A 1AA"),
            ("DE", None, "1011"),
            ("DE", None, "101156"),
            ("FR", None, "7500A"),
            ("NL", None, "1012 A1"),
            ("JP", None, "10-00001"),
            ("IE", None, "D02;X285"),
        ] {
            let err = Address::new(input(c, r, Some(p))).expect_err(p);
            assert_eq!(field_of(err), "address.postal_code", "{c} {p}");
        }
        for c in ["US", "CA", "GB", "DE", "FR"] {
            let region = match c {
                "US" => Some("NY"),
                "CA" => Some("ON"),
                _ => None,
            };
            let err = Address::new(input(c, region, None)).expect_err(c);
            assert_eq!(
                field_of(err),
                "address.postal_code",
                "{c} requires a postal code"
            );
        }
        // Optional elsewhere.
        assert!(Address::new(input("IE", None, None)).is_ok());
    }

    #[test]
    fn countries_regions_and_required_fields() {
        for bad in ["XX", "", "D", "DEU", "1A", "Ü1"] {
            let err = Address::new(input(bad, None, None)).expect_err(bad);
            assert_eq!(field_of(err), "address.country", "{bad:?}");
        }
        let err = Address::new(input("US", None, Some("10001"))).expect_err("region");
        assert_eq!(field_of(err), "address.region");
        let err = Address::new(input("US", Some("ZZ"), Some("10001"))).expect_err("region");
        assert_eq!(field_of(err), "address.region");
        let err = Address::new(input("CA", Some("NY"), Some("K1A 0B1"))).expect_err("region");
        assert_eq!(field_of(err), "address.region");
        let mut no_name = input("DE", None, Some("10115"));
        no_name.name = "   ".into();
        assert_eq!(
            field_of(Address::new(no_name).expect_err("name")),
            "address.name"
        );
        let mut no_city = input("DE", None, Some("10115"));
        no_city.city.clear();
        assert_eq!(
            field_of(Address::new(no_city).expect_err("city")),
            "address.city"
        );
        let mut sg = input("SG", None, Some("018956"));
        sg.city.clear();
        assert!(Address::new(sg).is_ok(), "a city state needs no city");
        let mut control = input("DE", None, Some("10115"));
        control.line1 = "Main\u{0}Street".into();
        assert_eq!(
            field_of(Address::new(control).expect_err("nul")),
            "address.line1"
        );
        let mut long = input("DE", None, Some("10115"));
        long.line2 = Some("x".repeat(101));
        assert_eq!(
            field_of(Address::new(long).expect_err("long")),
            "address.line2"
        );
        let mut phone = input("DE", None, Some("10115"));
        phone.phone = Some("call me".into());
        assert_eq!(
            field_of(Address::new(phone).expect_err("phone")),
            "address.phone"
        );
        let mut phone = input("DE", None, Some("10115"));
        phone.phone = Some("+49 (221) 123-456".into());
        assert!(Address::new(phone).is_ok());
    }

    #[test]
    fn text_is_trimmed_and_nfc() {
        let mut i = input("de", None, Some(" 50667 "));
        i.city = "  Ko\u{308}ln ".into(); // o + combining diaeresis
        let a = Address::new(i).expect("valid");
        assert_eq!(a.city(), "K\u{f6}ln");
        assert_eq!(a.postal_code(), Some("50667"));
        assert_eq!(a.country().to_string(), "DE");
        assert_eq!(a.country().name(), "Germany");
    }

    proptest::proptest! {
        /// Any text in any field is either a valid address or a `Validation` error on an
        /// `address.*` field: never a panic (byte slicing of postal codes included).
        #[test]
        fn arbitrary_input_never_panics(
            country in proptest::prop_oneof![
                proptest::prelude::Just("US".to_owned()),
                proptest::prelude::Just("CA".to_owned()),
                proptest::prelude::Just("GB".to_owned()),
                proptest::prelude::Just("NL".to_owned()),
                proptest::prelude::Just("JP".to_owned()),
                "\\PC{0,3}",
            ],
            region in proptest::option::of("\\PC{0,4}"),
            postal in proptest::option::of("[0-9A-Za-z \\-é€]{0,12}"),
            name in "\\PC{0,8}",
        ) {
            let result = Address::new(AddressInput {
                name,
                line1: "1 Test Street".into(),
                city: "Testville".into(),
                region,
                postal_code: postal,
                country,
                ..AddressInput::default()
            });
            match result {
                Ok(a) => proptest::prop_assert!(Address::new(a.to_input()).is_ok()),
                Err(Error::Validation { field, .. }) => {
                    proptest::prop_assert!(field.starts_with("address."), "{field}")
                }
                Err(other) => proptest::prop_assert!(false, "{other:?}"),
            }
        }
    }

    #[test]
    fn us_postal_codes_with_multibyte_characters_are_rejected_not_sliced() {
        let err =
            Address::new(input("US", Some("NY"), Some("1234\u{e9}6789"))).expect_err("non-ASCII");
        assert_eq!(field_of(err), "address.postal_code");
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let a = Address::new(input("CA", Some("qc"), Some("h2x 1y4"))).expect("valid");
        let json = serde_json::to_string(&a).expect("serialize");
        let back: Address = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, a);
        assert!(json.contains(r#""postal_code":"H2X 1Y4""#), "{json}");
        let tampered = json.replace("H2X 1Y4", "H2X");
        assert!(serde_json::from_str::<Address>(&tampered).is_err());
        let unknown_field = json.replacen('{', r#"{"admin":true,"#, 1);
        assert!(serde_json::from_str::<Address>(&unknown_field).is_err());
        assert!(serde_json::from_str::<CountryCode>(r#""ZZ""#).is_err());
        assert_eq!(
            serde_json::from_str::<CountryCode>(r#""fr""#)
                .expect("valid")
                .as_str(),
            "FR"
        );
        // Debug keeps personal data out of logs.
        let debug = format!("{a:?}");
        assert!(
            !debug.contains("Test Person") && debug.contains("CA"),
            "{debug}"
        );
    }
}
