//! Why a category is refused, for the Best Buy import and for
//! [`CatalogStore::put_categories`](crate::store::CatalogStore::put_categories), and the
//! checks `put_categories` applies (shared by every store).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;

use super::category::{Category, CategoryPath};
use crate::id::CategoryId;

/// What is wrong with one segment (a category name) after normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum SegmentProblem {
    /// Nothing left after trimming white space and `|` markers.
    Empty,
    /// Contains the separator `>`.
    Separator,
    /// Contains a control character (U+0000 to U+001F, U+007F to U+009F).
    Control,
    /// Has no visible character: only white space and invisible characters such as
    /// U+200B ZERO WIDTH SPACE, U+2060 WORD JOINER or U+FEFF.
    Invisible,
    /// Contains a bidirectional control (U+202A to U+202E, U+2066 to U+2069, U+200E,
    /// U+200F, U+061C), which can make a name display as another.
    BidiControl,
    /// Longer than [`CategoryPath::MAX_SEGMENT_CHARS`] characters.
    TooLong {
        /// Its length in characters.
        chars: usize,
    },
}

impl fmt::Display for SegmentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentProblem::Empty => f.write_str("is empty"),
            SegmentProblem::Separator => f.write_str("contains the separator '>'"),
            SegmentProblem::Control => f.write_str("contains a control character"),
            SegmentProblem::Invisible => f.write_str("has no visible character"),
            SegmentProblem::BidiControl => f.write_str("contains a bidirectional control"),
            SegmentProblem::TooLong { chars } => write!(
                f,
                "is {chars} characters long, at most {} allowed",
                CategoryPath::MAX_SEGMENT_CHARS
            ),
        }
    }
}

/// Whether `c` is a bidirectional control character.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Whether `c` shows nothing: white space, zero-width characters, fillers, variation
/// selectors.
pub(crate) fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
        )
}

/// Why a category (an import record, or an entry given to `put_categories`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum CategoryRejection {
    /// The record's path is empty.
    EmptyPath,
    /// The path is deeper than [`CategoryPath::MAX_DEPTH`].
    TooDeep {
        /// Its depth.
        depth: usize,
    },
    /// The last path element is not the record itself (another id or name).
    NotItself,
    /// A path element's name is `null`.
    NullName {
        /// The element's id.
        element_id: String,
    },
    /// A path element's name is not a valid segment.
    BadName {
        /// The element's id.
        element_id: String,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: SegmentProblem,
    },
    /// A path element's id is not a valid [`CategoryId`].
    BadId {
        /// The id as given.
        element_id: String,
    },
    /// An id appears twice in one path (`a > b > a`), or the parent links of several
    /// records form a loop: no tree can hold them.
    Cycle {
        /// The id that closes the loop.
        id: String,
    },
    /// The id is already at another path (an earlier record or entry, or the store).
    /// The first one keeps it.
    DuplicateId {
        /// The id.
        id: String,
        /// The path that keeps the id.
        kept_path: String,
    },
    /// Another entry of the same `put_categories` call gives this path another id; the
    /// first one keeps the path.
    DuplicatePath {
        /// The id that keeps the path.
        kept_id: String,
    },
    /// The parent path is neither stored nor written by the same call (or was refused).
    Orphan {
        /// The missing parent.
        parent: String,
    },
}

impl fmt::Display for CategoryRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CategoryRejection::EmptyPath => f.write_str("the record has an empty path"),
            CategoryRejection::TooDeep { depth } => write!(
                f,
                "the path is {depth} levels deep, at most {} allowed",
                CategoryPath::MAX_DEPTH
            ),
            CategoryRejection::NotItself => {
                f.write_str("the last path element is not the record itself")
            }
            CategoryRejection::NullName { element_id } => {
                write!(f, "path element {element_id} has a null name")
            }
            CategoryRejection::BadName {
                element_id,
                name,
                problem,
            } => write!(f, "path element {element_id}: name {name:?} {problem}"),
            CategoryRejection::BadId { element_id } => {
                write!(f, "path element id {element_id:?} is not a valid id")
            }
            CategoryRejection::Cycle { id } => write!(f, "id {id} is its own ancestor"),
            CategoryRejection::DuplicateId { id, kept_path } => {
                write!(f, "id {id} is already at {kept_path}")
            }
            CategoryRejection::DuplicatePath { kept_id } => {
                write!(f, "the path is already given to id {kept_id}")
            }
            CategoryRejection::Orphan { parent } => {
                write!(f, "the parent {parent} does not exist")
            }
        }
    }
}

/// A category `put_categories` refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedCategory {
    /// The entry as given.
    pub category: Category,
    /// Why.
    pub reason: CategoryRejection,
}

/// What [`CatalogStore::put_categories`](crate::store::CatalogStore::put_categories)
/// did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CategoryWrite {
    /// Categories written: new paths, and paths given a new id.
    pub stored: u64,
    /// Entries already stored exactly so (and repeats within the call): nothing written.
    pub unchanged: u64,
    /// Entries refused, in input order; none of them was written.
    pub rejected: Vec<RejectedCategory>,
}

/// The stored categories `put_categories` needs to see to check a batch: those at the
/// paths [`categories_to_read`] lists (by path), and those holding its ids (by id). A
/// store reads them (under a lock that keeps them until it writes) and hands them to
/// [`plan_put_categories`].
#[derive(Debug, Default)]
pub struct StoredCategories {
    /// Path to id, for the paths asked.
    pub by_path: HashMap<CategoryPath, CategoryId>,
    /// Id to path, for the ids asked.
    pub by_id: HashMap<CategoryId, CategoryPath>,
}

/// The paths and ids of a batch whose stored state [`plan_put_categories`] needs.
pub fn categories_to_read(batch: &[Category]) -> (Vec<CategoryPath>, Vec<CategoryId>) {
    let mut paths: Vec<CategoryPath> = Vec::new();
    for c in batch {
        paths.push(c.path.clone());
        if let Some(p) = c.path.parent() {
            paths.push(p);
        }
    }
    paths.sort();
    paths.dedup();
    let mut ids: Vec<CategoryId> = batch.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    ids.dedup();
    (paths, ids)
}

/// Decides a `put_categories` batch against what is stored (every store's
/// `put_categories` calls it, so all of them decide alike): the entries to write (new
/// or changed, each path once) and the report. Rules, in input order:
/// * the same `(id, path)` twice, or as stored: unchanged;
/// * a path given another id earlier in the batch: [`CategoryRejection::DuplicatePath`];
/// * an id at another path (earlier in the batch, or stored at a path the batch does not
///   give to another id): [`CategoryRejection::DuplicateId`];
/// * then, repeatedly, an entry whose parent is neither stored nor accepted:
///   [`CategoryRejection::Orphan`] (so the children of a refused entry are refused too).
pub fn plan_put_categories(
    batch: &[Category],
    stored: &StoredCategories,
) -> (Vec<Category>, CategoryWrite) {
    let mut report = CategoryWrite::default();
    let mut rejected: BTreeMap<usize, CategoryRejection> = BTreeMap::new();
    // First claims in the batch.
    let mut path_owner: HashMap<&CategoryPath, (usize, &CategoryId)> = HashMap::new();
    let mut id_owner: HashMap<&CategoryId, &CategoryPath> = HashMap::new();
    let mut repeat = vec![false; batch.len()];
    for (i, c) in batch.iter().enumerate() {
        if let Some((_, kept)) = path_owner.get(&c.path) {
            if *kept == &c.id {
                repeat[i] = true;
            } else {
                rejected.insert(
                    i,
                    CategoryRejection::DuplicatePath {
                        kept_id: kept.to_string(),
                    },
                );
            }
            continue;
        }
        if let Some(kept) = id_owner.get(&c.id) {
            rejected.insert(
                i,
                CategoryRejection::DuplicateId {
                    id: c.id.to_string(),
                    kept_path: kept.to_string(),
                },
            );
            continue;
        }
        path_owner.insert(&c.path, (i, &c.id));
        id_owner.insert(&c.id, &c.path);
    }
    // Against the store: an id stored elsewhere keeps it, unless this batch gives that
    // stored path to another id.
    for (i, c) in batch.iter().enumerate() {
        if repeat[i] || rejected.contains_key(&i) {
            continue;
        }
        if let Some(at) = stored.by_id.get(&c.id) {
            let moved_away = path_owner.get(at).is_some_and(|(_, id)| *id != &c.id);
            if at != &c.path && !moved_away {
                rejected.insert(
                    i,
                    CategoryRejection::DuplicateId {
                        id: c.id.to_string(),
                        kept_path: at.to_string(),
                    },
                );
            }
        }
    }
    // Orphans, until nothing changes (a refused parent orphans its children).
    loop {
        let accepted: std::collections::HashSet<&CategoryPath> = batch
            .iter()
            .enumerate()
            .filter(|(i, _)| !repeat[*i] && !rejected.contains_key(i))
            .map(|(_, c)| &c.path)
            .collect();
        let mut changed = false;
        for (i, c) in batch.iter().enumerate() {
            if repeat[i] || rejected.contains_key(&i) {
                continue;
            }
            let Some(parent) = c.path.parent() else {
                continue;
            };
            if !accepted.contains(&parent) && !stored.by_path.contains_key(&parent) {
                rejected.insert(
                    i,
                    CategoryRejection::Orphan {
                        parent: parent.to_string(),
                    },
                );
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut write = Vec::new();
    for (i, c) in batch.iter().enumerate() {
        if let Some(reason) = rejected.remove(&i) {
            report.rejected.push(RejectedCategory {
                category: c.clone(),
                reason,
            });
        } else if repeat[i] || stored.by_path.get(&c.path) == Some(&c.id) {
            report.unchanged += 1;
        } else {
            write.push(c.clone());
        }
    }
    report.stored = write.len() as u64;
    (write, report)
}
