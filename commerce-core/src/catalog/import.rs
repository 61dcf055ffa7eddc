//! Importing the Best Buy category tree (`bestbuy-categories.json`).
//!
//! Each record gives a node's id, name and its full path as `[{id, name}, ...]`. The
//! import builds every path with the rules of [`CategoryPath`] and reports, record by
//! record, what it did:
//!
//! * **normalised**: a segment was changed (white space, `|` marker, NFC); see
//!   [`SegmentFix`]. The node is kept under the normalised path.
//! * **rejected**: a path element is `null` or fails validation after normalisation
//!   (empty, `>` inside, control character, too long, too deep). The record is skipped.
//! * **merged**: the normalised path already exists under another id (Best Buy lists a
//!   few paths twice, and normalisation can make two raw paths equal). The first id
//!   seen keeps the node; the later id is reported.
//! * **implied**: an ancestor named in a record's path has no record of its own (342 do
//!   in the real file); it is created from the id and name given in the path.
//!
//! ```
//! use commerce_core::catalog::import_bestbuy;
//!
//! let json = r#"[
//!   {"id": "a", "name": "Audio", "path": [{"id": "a", "name": "Audio"}]},
//!   {"id": "b", "name": "|Receivers",
//!    "path": [{"id": "a", "name": "Audio"}, {"id": "b", "name": "|Receivers"}]},
//!   {"id": "c", "name": null,
//!    "path": [{"id": "a", "name": "Audio"}, {"id": "c", "name": null}]}
//! ]"#;
//! let report = import_bestbuy(json)?;
//! assert_eq!(report.tree.len(), 2);
//! assert_eq!(report.normalised.len(), 1);
//! assert_eq!(report.rejected.len(), 1);
//! # Ok::<(), commerce_core::Error>(())
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::category::{Category, CategoryPath, CategoryTree, SegmentFix, normalize_segment};
use crate::error::{Error, Result};
use crate::id::CategoryId;

#[derive(Deserialize)]
struct RawNode {
    id: String,
    name: Option<String>,
    path: Vec<RawPathElement>,
}

#[derive(Deserialize)]
struct RawPathElement {
    id: String,
    name: Option<String>,
}

/// A segment that normalisation changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Normalised {
    /// The record's id.
    pub id: String,
    /// The raw segment.
    pub original: String,
    /// The segment as stored.
    pub normalised: String,
    /// What changed.
    pub fixes: Vec<SegmentFix>,
}

/// A record that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// The record's id.
    pub id: String,
    /// The raw path, `None` where the source has `null`.
    pub path: Vec<Option<String>>,
    /// Why.
    pub reason: String,
}

/// A record whose normalised path was already taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Merged {
    /// The record's id (not kept).
    pub id: String,
    /// The id that holds the path.
    pub kept_id: String,
    /// The shared path.
    pub path: String,
}

/// The outcome of an import: the tree and what was changed on the way.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// The imported tree.
    pub tree: CategoryTree,
    /// Number of records read.
    pub records: usize,
    /// Segments changed by normalisation.
    pub normalised: Vec<Normalised>,
    /// Records skipped.
    pub rejected: Vec<Rejected>,
    /// Records merged into an existing path.
    pub merged: Vec<Merged>,
    /// Ancestors created from path elements that have no record of their own.
    pub implied: Vec<Category>,
}

impl ImportReport {
    /// A one-paragraph summary for logs and the examples.
    pub fn summary(&self) -> String {
        format!(
            "{} records -> {} categories ({} implied ancestors); {} segments normalised, {} merged duplicates, {} rejected",
            self.records,
            self.tree.len(),
            self.implied.len(),
            self.normalised.len(),
            self.merged.len(),
            self.rejected.len()
        )
    }
}

/// Imports the Best Buy JSON array. Only malformed JSON is an error; messy records are
/// normalised, merged or rejected as described in the [module docs](self).
pub fn import_bestbuy(json: &str) -> Result<ImportReport> {
    let raw: Vec<RawNode> = serde_json::from_str(json).map_err(|e| {
        Error::validation("categories", format!("not a Best Buy category array: {e}"))
    })?;
    let mut report = ImportReport {
        records: raw.len(),
        ..ImportReport::default()
    };
    let mut pending_implied: Vec<Category> = Vec::new();
    for node in &raw {
        match build_path(node, &mut report.normalised) {
            Ok(elements) => {
                let Some((own, ancestors)) = elements.split_last() else {
                    continue;
                };
                let category = Category {
                    id: own.0.clone(),
                    path: own.1.clone(),
                };
                if let Some(existing) = report.tree.insert(category.clone()) {
                    report.merged.push(Merged {
                        id: category.id.to_string(),
                        kept_id: existing.id.to_string(),
                        path: category.path.to_string(),
                    });
                }
                for (id, path) in ancestors {
                    pending_implied.push(Category {
                        id: id.clone(),
                        path: path.clone(),
                    });
                }
            }
            Err(reason) => report.rejected.push(Rejected {
                id: node.id.clone(),
                path: node.path.iter().map(|e| e.name.clone()).collect(),
                reason,
            }),
        }
    }
    for ancestor in pending_implied {
        if report.tree.get(&ancestor.path).is_none() {
            report.tree.insert(ancestor.clone());
            report.implied.push(ancestor);
        }
    }
    Ok(report)
}

/// Reads and imports a Best Buy category file.
pub fn import_bestbuy_file(path: impl AsRef<Path>) -> Result<ImportReport> {
    let path = path.as_ref();
    let json = std::fs::read_to_string(path).map_err(|e| {
        Error::validation("categories", format!("cannot read {}: {e}", path.display()))
    })?;
    import_bestbuy(&json)
}

/// `(id, path)` for every element of the record's path, root first.
fn build_path(
    node: &RawNode,
    normalised: &mut Vec<Normalised>,
) -> std::result::Result<Vec<(CategoryId, CategoryPath)>, String> {
    if node.path.is_empty() {
        return Err("the record has an empty path".into());
    }
    if node.path.len() > CategoryPath::MAX_DEPTH {
        return Err(format!(
            "the path is {} levels deep, at most {} allowed",
            node.path.len(),
            CategoryPath::MAX_DEPTH
        ));
    }
    let own_id = node.path.last().map(|e| e.id.as_str());
    if own_id != Some(node.id.as_str())
        || node.path.last().and_then(|e| e.name.as_ref()) != node.name.as_ref()
    {
        return Err("the last path element is not the record itself".into());
    }
    let mut out = Vec::with_capacity(node.path.len());
    let mut segments: Vec<String> = Vec::with_capacity(node.path.len());
    for element in &node.path {
        let name = element
            .name
            .as_deref()
            .ok_or_else(|| format!("path element {} has a null name", element.id))?;
        let (segment, fixes) = normalize_segment(name).map_err(|e| e.to_string())?;
        if !fixes.is_empty() && element.id == node.id {
            normalised.push(Normalised {
                id: node.id.clone(),
                original: name.to_owned(),
                normalised: segment.clone(),
                fixes,
            });
        }
        segments.push(segment);
        let id = CategoryId::new(element.id.clone()).map_err(|e| e.to_string())?;
        let path = CategoryPath::from_segments(&segments).map_err(|e| e.to_string())?;
        out.push((id, path));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_merged_and_reported() {
        let json = r#"[
          {"id": "a", "name": "A", "path": [{"id": "a", "name": "A"}]},
          {"id": "b", "name": "B", "path": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}]},
          {"id": "b2", "name": " B ", "path": [{"id": "a", "name": "A"}, {"id": "b2", "name": " B "}]},
          {"id": "d", "name": "D", "path": [{"id": "x", "name": "X"}, {"id": "d", "name": "D"}]}
        ]"#;
        let r = import_bestbuy(json).expect("imports");
        assert_eq!(r.merged.len(), 1);
        assert_eq!(r.merged[0].kept_id, "b");
        assert_eq!(r.implied.len(), 1);
        assert_eq!(r.implied[0].path.as_str(), "X");
        assert_eq!(r.tree.len(), 4);
        assert!(import_bestbuy("{").is_err());
    }

    #[test]
    fn real_best_buy_tree_imports() {
        // The data lives beside the repository (`../shared/data`), as in CI.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/bestbuy-categories.json"
        );
        let r = import_bestbuy_file(path).expect("../shared/data/bestbuy-categories.json imports");
        assert_eq!(r.records, 4584);
        assert_eq!(r.rejected.len(), 1, "{:?}", r.rejected);
        assert!(r.rejected[0].path.contains(&None));
        assert!(r.tree.len() > 4500);
        for c in r.tree.iter() {
            for a in c.path.ancestors() {
                assert!(r.tree.get(&a).is_some(), "missing ancestor {a}");
            }
        }
    }
}
