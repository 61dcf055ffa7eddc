//! Categories as materialised paths: `Electronics > Phones > Smartphones`.
//!
//! A [`CategoryPath`] is a validated, normalised list of segments written with `" > "`
//! between them. Because every descendant of `A > B` is written `A > B > ...`, "everything
//! under `A > B`" is one range scan in any ordered store: the keys from
//! [`CategoryPath::subtree_range`]'s lower bound (inclusive) to its upper bound
//! (exclusive), compared byte-wise (`COLLATE "C"` in PostgreSQL), plus the path itself.
//!
//! ## Normalisation of a segment, in this order
//! 1. Unicode NFC.
//! 2. Runs of white space (spaces, tabs, new lines) become one space; leading and trailing
//!    white space is removed.
//! 3. Leading and trailing `|` are removed (Best Buy marks some legacy nodes `|Receivers`),
//!    together with any white space around them (`"A| |"` becomes `"A"`), so that
//!    normalising a normalised segment changes nothing.
//!
//! ## A segment is rejected when, after normalisation, it
//! * is empty, or was `null` in the source;
//! * contains `>` (the separator), a control character or a bidirectional control
//!   (U+202E RIGHT-TO-LEFT OVERRIDE and the like);
//! * has no visible character (only white space and characters such as U+200B);
//! * is longer than [`CategoryPath::MAX_SEGMENT_CHARS`] characters.
//!
//! Each case is a [`SegmentProblem`](super::SegmentProblem) ([`check_segment`]).
//!
//! A path is rejected when it has no segment or more than [`CategoryPath::MAX_DEPTH`].
//!
//! ```
//! use commerce_core::catalog::CategoryPath;
//!
//! let phones = CategoryPath::parse("Electronics >  Phones ")?;
//! assert_eq!(phones.as_str(), "Electronics > Phones");
//! let smart = phones.child("Smartphones")?;
//! assert!(phones.contains(&smart));
//! assert_eq!(smart.depth(), 3);
//! assert_eq!(smart.parent(), Some(phones.clone()));
//! assert_eq!(
//!     smart.ancestors().iter().map(|p| p.as_str()).collect::<Vec<_>>(),
//!     ["Electronics", "Electronics > Phones"]
//! );
//! assert!(CategoryPath::parse("Electronics > > Phones").is_err());
//! # Ok::<(), commerce_core::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use super::check::{SegmentProblem, is_bidi_control, is_invisible};
use crate::error::{Error, Result};
use crate::id::CategoryId;

/// What normalisation changed in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentFix {
    /// Converted to Unicode NFC.
    UnicodeNfc,
    /// White space collapsed or trimmed.
    Whitespace,
    /// Leading or trailing `|` removed.
    PipeMarker,
}

/// Normalises one segment; returns the normalised text and what changed.
pub fn normalize_segment(raw: &str) -> Result<(String, Vec<SegmentFix>)> {
    check_segment(raw)
        .map_err(|problem| Error::validation("category", format!("segment {raw:?} {problem}")))
}

/// [`normalize_segment`] with the problem as a [`SegmentProblem`].
pub fn check_segment(raw: &str) -> std::result::Result<(String, Vec<SegmentFix>), SegmentProblem> {
    let mut fixes = Vec::new();
    let nfc: String = raw.nfc().collect();
    if nfc != raw {
        fixes.push(SegmentFix::UnicodeNfc);
    }
    let collapsed = nfc.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed != nfc {
        fixes.push(SegmentFix::Whitespace);
    }
    // Pipes and white space may alternate at the ends (`"A| |"`): trim both together,
    // so that normalising a normalised segment changes nothing.
    let unpiped = collapsed.trim_matches(|c: char| c == '|' || c == ' ');
    if unpiped.len() != collapsed.len() {
        fixes.push(SegmentFix::PipeMarker);
    }
    let segment = unpiped.to_owned();
    if segment.is_empty() {
        return Err(SegmentProblem::Empty);
    }
    if segment.contains('>') {
        return Err(SegmentProblem::Separator);
    }
    if segment.chars().any(char::is_control) {
        return Err(SegmentProblem::Control);
    }
    if segment.chars().any(is_bidi_control) {
        return Err(SegmentProblem::BidiControl);
    }
    if segment.chars().all(|c| is_invisible(c) || c == '|') {
        return Err(SegmentProblem::Invisible);
    }
    let chars = segment.chars().count();
    if chars > CategoryPath::MAX_SEGMENT_CHARS {
        return Err(SegmentProblem::TooLong { chars });
    }
    Ok((segment, fixes))
}

/// A normalised category path such as `Electronics > Phones > Smartphones`.
///
/// Orders byte-wise on its text, which lists a parent right before its subtree.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CategoryPath {
    text: String,
}

impl CategoryPath {
    /// The separator between segments.
    pub const SEPARATOR: &'static str = " > ";
    /// The deepest path accepted.
    pub const MAX_DEPTH: usize = 8;
    /// The longest segment accepted, in characters.
    pub const MAX_SEGMENT_CHARS: usize = 128;

    /// Parses and normalises `"A > B > C"` (white space around `>` is optional).
    pub fn parse(text: &str) -> Result<Self> {
        Self::from_segments(text.split('>'))
    }

    /// Builds a path from raw segments, normalising each.
    pub fn from_segments<I, S>(segments: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out: Vec<String> = Vec::new();
        for raw in segments {
            let (segment, _) = normalize_segment(raw.as_ref())?;
            out.push(segment);
            if out.len() > Self::MAX_DEPTH {
                return Err(Error::validation(
                    "category",
                    format!("deeper than {} levels", Self::MAX_DEPTH),
                ));
            }
        }
        if out.is_empty() {
            return Err(Error::validation(
                "category",
                "a path needs at least one segment",
            ));
        }
        Ok(CategoryPath {
            text: out.join(Self::SEPARATOR),
        })
    }

    /// A path from text that is known to be normalised, or a range bound that is not a
    /// path at all (see [`CategoryPath::subtree_range`]); for ordered-map lookups only.
    pub(crate) fn unchecked(text: String) -> Self {
        CategoryPath { text }
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The segments, root first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.text.split(Self::SEPARATOR)
    }

    /// The last segment (the category's own name).
    pub fn name(&self) -> &str {
        self.text
            .rsplit(Self::SEPARATOR)
            .next()
            .unwrap_or(&self.text)
    }

    /// Number of segments (a root has depth 1).
    pub fn depth(&self) -> usize {
        self.text.matches(Self::SEPARATOR).count() + 1
    }

    /// The parent path; `None` for a root.
    pub fn parent(&self) -> Option<CategoryPath> {
        self.text
            .rsplit_once(Self::SEPARATOR)
            .map(|(parent, _)| CategoryPath {
                text: parent.to_owned(),
            })
    }

    /// The root segment as a path.
    pub fn root(&self) -> CategoryPath {
        CategoryPath {
            text: self.segments().next().unwrap_or_default().to_owned(),
        }
    }

    /// Every proper ancestor, root first.
    pub fn ancestors(&self) -> Vec<CategoryPath> {
        let mut out = Vec::new();
        let mut current = self.parent();
        while let Some(p) = current {
            current = p.parent();
            out.push(p);
        }
        out.reverse();
        out
    }

    /// A child path; the name is normalised.
    pub fn child(&self, name: &str) -> Result<CategoryPath> {
        Self::from_segments(self.segments().chain(std::iter::once(name)))
    }

    /// Whether `other` is this path or lies under it.
    pub fn contains(&self, other: &CategoryPath) -> bool {
        other.text == self.text
            || (other.text.len() > self.text.len() + Self::SEPARATOR.len()
                && other.text.starts_with(&self.text)
                && other.text[self.text.len()..].starts_with(Self::SEPARATOR))
    }

    /// Whether this path is a proper ancestor of `other`.
    pub fn is_ancestor_of(&self, other: &CategoryPath) -> bool {
        self != other && self.contains(other)
    }

    /// The byte-wise half-open range `[lower, upper)` holding exactly the proper
    /// descendants of this path: `("A > B > ", "A > B >!")`. Stores serve "everything
    /// under A > B" as `path = 'A > B' OR (path >= lower AND path < upper)` with a
    /// byte-wise (`COLLATE "C"`) index.
    pub fn subtree_range(&self) -> (String, String) {
        (
            format!("{}{}", self.text, Self::SEPARATOR),
            format!("{} >!", self.text),
        )
    }
}

impl fmt::Debug for CategoryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CategoryPath({:?})", self.text)
    }
}

impl fmt::Display for CategoryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for CategoryPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Serialize for CategoryPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for CategoryPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        let path = CategoryPath::parse(&s).map_err(serde::de::Error::custom)?;
        if path.text != s {
            return Err(serde::de::Error::custom(format!(
                "category path {s:?} is not normalised (expected {:?})",
                path.text
            )));
        }
        Ok(path)
    }
}

/// A node of the category tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Identifier in the source system.
    pub id: CategoryId,
    /// The full normalised path; its last segment is the name.
    pub path: CategoryPath,
}

/// An in-memory category tree, ordered by path.
///
/// ```
/// use commerce_core::catalog::{CategoryPath, CategoryTree};
///
/// let tree = CategoryTree::generated();
/// let electronics = CategoryPath::parse("Electronics")?;
/// let under = tree.subtree(&electronics).count();
/// assert!(under > 10);
/// assert!(tree.children(&electronics).all(|c| c.path.parent().as_ref() == Some(&electronics)));
/// # Ok::<(), commerce_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct CategoryTree {
    nodes: BTreeMap<CategoryPath, Category>,
}

impl CategoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a node; returns the node that already had this path, if any (kept).
    pub fn insert(&mut self, category: Category) -> Option<&Category> {
        use std::collections::btree_map::Entry;
        match self.nodes.entry(category.path.clone()) {
            Entry::Occupied(e) => Some(e.into_mut()),
            Entry::Vacant(v) => {
                v.insert(category);
                None
            }
        }
    }

    /// The node at `path`.
    pub fn get(&self, path: &CategoryPath) -> Option<&Category> {
        self.nodes.get(path)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node, parents before their subtrees.
    pub fn iter(&self) -> impl Iterator<Item = &Category> {
        self.nodes.values()
    }

    /// The roots.
    pub fn roots(&self) -> impl Iterator<Item = &Category> {
        self.nodes.values().filter(|c| c.path.depth() == 1)
    }

    /// Nodes without children.
    pub fn leaves(&self) -> Vec<&Category> {
        let all: Vec<&Category> = self.nodes.values().collect();
        all.iter()
            .enumerate()
            .filter(|(i, c)| {
                all.get(i + 1)
                    .is_none_or(|next| !c.path.is_ancestor_of(&next.path))
            })
            .map(|(_, c)| *c)
            .collect()
    }

    /// `path` itself (if present) and every node under it, as one range scan.
    pub fn subtree<'a>(&'a self, path: &CategoryPath) -> impl Iterator<Item = &'a Category> + 'a {
        let (lower, upper) = path.subtree_range();
        let own = self.nodes.get(path);
        let below = self
            .nodes
            .range(CategoryPath::unchecked(lower)..CategoryPath::unchecked(upper))
            .map(|(_, c)| c);
        own.into_iter().chain(below)
    }

    /// The direct children of `path`.
    pub fn children<'a>(
        &'a self,
        path: &'a CategoryPath,
    ) -> impl Iterator<Item = &'a Category> + 'a {
        let depth = path.depth() + 1;
        self.subtree(path).filter(move |c| c.path.depth() == depth)
    }

    /// A small tree of plausible categories, for when the real data is absent.
    pub fn generated() -> Self {
        type Branch = (&'static str, &'static [&'static str]);
        const TREE: &[(&str, &[Branch])] = &[
            (
                "Electronics",
                &[
                    (
                        "Phones",
                        &["Smartphones", "Basic Phones", "Phone Cases", "Chargers"],
                    ),
                    (
                        "TV & Home Theater",
                        &["TVs", "Soundbars", "Projectors", "Streaming Devices"],
                    ),
                    ("Audio", &["Headphones", "Bluetooth Speakers", "Turntables"]),
                    (
                        "Cameras",
                        &["Mirrorless Cameras", "Action Cameras", "Lenses"],
                    ),
                ],
            ),
            (
                "Computers & Tablets",
                &[
                    ("Laptops", &["Gaming Laptops", "Ultrabooks", "Chromebooks"]),
                    ("Tablets", &["iPad", "Android Tablets", "E-Readers"]),
                    (
                        "Components",
                        &["Graphics Cards", "CPUs", "Memory", "Storage"],
                    ),
                    ("Accessories", &["Keyboards", "Mice", "Monitors"]),
                ],
            ),
            (
                "Appliances",
                &[
                    (
                        "Kitchen",
                        &["Refrigerators", "Ranges", "Dishwashers", "Microwaves"],
                    ),
                    ("Laundry", &["Washers", "Dryers"]),
                    (
                        "Small Appliances",
                        &["Coffee Makers", "Blenders", "Vacuums"],
                    ),
                ],
            ),
            (
                "Video Games",
                &[
                    ("Consoles", &["PlayStation", "Xbox", "Nintendo Switch"]),
                    ("Games", &["Action", "Sports", "Role-Playing"]),
                ],
            ),
            (
                "Home & Outdoor",
                &[
                    (
                        "Smart Home",
                        &["Smart Lights", "Security Cameras", "Thermostats"],
                    ),
                    ("Outdoor", &["Grills", "Patio Furniture"]),
                ],
            ),
        ];
        let mut tree = CategoryTree::new();
        let mut n = 0u32;
        let mut add = |tree: &mut CategoryTree, segments: &[&str]| {
            n += 1;
            if let (Ok(path), Ok(id)) = (
                CategoryPath::from_segments(segments),
                CategoryId::new(format!("gen{n:05}")),
            ) {
                tree.insert(Category { id, path });
            }
        };
        for (root, mids) in TREE {
            add(&mut tree, &[root]);
            for (mid, leaves) in *mids {
                add(&mut tree, &[root, mid]);
                for leaf in *leaves {
                    add(&mut tree, &[root, mid, leaf]);
                }
            }
        }
        tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_best_buy_oddities() {
        let p = CategoryPath::from_segments(["Name Brands", "Sony", "|Home Theater"]).expect("ok");
        assert_eq!(p.as_str(), "Name Brands > Sony > Home Theater");
        let (s, fixes) = normalize_segment("  Iowa  Hawkeyes ").expect("ok");
        assert_eq!(s, "Iowa Hawkeyes");
        assert_eq!(fixes, vec![SegmentFix::Whitespace]);
        assert_eq!(normalize_segment("DVD+R/RW").expect("ok").0, "DVD+R/RW");
        assert!(normalize_segment("|").is_err());
        assert_eq!(normalize_segment("A|\t|").expect("ok").0, "A");
        assert_eq!(normalize_segment("| |B | |").expect("ok").0, "B");
        assert!(normalize_segment("a\u{7}b").is_err());
        assert!(normalize_segment(&"x".repeat(129)).is_err());
        assert_eq!(check_segment("\u{200B}"), Err(SegmentProblem::Invisible));
        assert_eq!(
            check_segment(" \u{200B}\u{FEFF} "),
            Err(SegmentProblem::Invisible)
        );
        assert_eq!(
            check_segment("\u{202E}enohP"),
            Err(SegmentProblem::BidiControl)
        );
        assert_eq!(
            check_segment("Ph\u{2066}ones"),
            Err(SegmentProblem::BidiControl)
        );
        assert_eq!(check_segment("a>b"), Err(SegmentProblem::Separator));
        assert_eq!(
            check_segment(&"x".repeat(129)),
            Err(SegmentProblem::TooLong { chars: 129 })
        );
        assert_eq!(
            check_segment("\u{05D0}\u{05D1}").map(|s| s.0),
            Ok("\u{05D0}\u{05D1}".to_owned())
        );
        assert!(CategoryPath::parse("Phones > \u{200B}").is_err());
        assert!(CategoryPath::parse("").is_err());
        assert!(CategoryPath::parse(&["a"; 9].join(" > ")).is_err());
    }

    #[test]
    fn serde_rejects_unnormalised_paths() {
        assert!(serde_json::from_str::<CategoryPath>(r#""A > B""#).is_ok());
        assert!(serde_json::from_str::<CategoryPath>(r#""A>B""#).is_err());
    }

    #[test]
    fn contains_respects_segment_boundaries() {
        let ab = CategoryPath::parse("A > B").expect("ok");
        assert!(ab.contains(&CategoryPath::parse("A > B > C").expect("ok")));
        assert!(!ab.contains(&CategoryPath::parse("A > Bc").expect("ok")));
        assert!(!ab.contains(&CategoryPath::parse("A > B & C").expect("ok")));
        assert!(!ab.is_ancestor_of(&ab));
        assert!(ab.contains(&ab));
    }

    fn segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9&/+'(),.-]([A-Za-z0-9 &/+'(),.-]{0,10}[A-Za-z0-9&/+'(),.-])?"
    }

    fn path() -> impl Strategy<Value = CategoryPath> {
        prop::collection::vec(segment(), 1..5)
            .prop_filter_map("valid", |s| CategoryPath::from_segments(&s).ok())
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(p in path()) {
            prop_assert_eq!(CategoryPath::parse(p.as_str()).unwrap(), p);
        }

        #[test]
        fn range_scan_matches_contains(paths in prop::collection::vec(path(), 1..60), probe in path()) {
            let mut tree = CategoryTree::new();
            for (i, p) in paths.iter().enumerate() {
                tree.insert(Category { id: CategoryId::new(format!("c{i}")).unwrap(), path: p.clone() });
            }
            let by_range: Vec<_> = tree.subtree(&probe).map(|c| c.path.clone()).collect();
            let by_scan: Vec<_> = tree.iter().filter(|c| probe.contains(&c.path)).map(|c| c.path.clone()).collect();
            prop_assert_eq!(by_range, by_scan);
        }

        #[test]
        fn ancestors_contain_the_path(p in path()) {
            for a in p.ancestors() {
                prop_assert!(a.is_ancestor_of(&p));
            }
            prop_assert_eq!(p.ancestors().len(), p.depth() - 1);
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = CategoryPath::parse(&s);
        }

        #[test]
        fn normalisation_is_idempotent(s in "[A-Za-z| \t>]{0,30}") {
            if let Ok(p) = CategoryPath::parse(&s) {
                prop_assert_eq!(CategoryPath::parse(p.as_str()).ok(), Some(p));
            }
        }
    }
}
