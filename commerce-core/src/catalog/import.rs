//! Importing the Best Buy category tree (`bestbuy-categories.json`).
//!
//! Each record gives a node's id, name and its full path as `[{id, name}, ...]`. The
//! import builds every path with the rules of [`CategoryPath`] and reports, record by
//! record, what it did:
//!
//! * **normalised**: a segment was changed (white space, `|` marker, NFC); see
//!   [`SegmentFix`]. The node is kept under the normalised path.
//! * **rejected**, with a typed [`CategoryRejection`]; the record is skipped:
//!   * a path element is `null` or its name fails validation after normalisation
//!     (empty, `>` inside, control or bidirectional-control character, nothing
//!     visible such as only U+200B, too long; see [`SegmentProblem`](super::SegmentProblem)),
//!     or the path is empty, too deep, or does not end with the record itself;
//!   * **cycle**: an id is its own ancestor, in one path (`a > b > a`) or through the
//!     parent links of several records (`a > b` and `b > a`);
//!   * **duplicate id**: an id (the record's or an ancestor's) already stands at
//!     another path in an earlier record: the first keeps it.
//! * **merged**: the normalised path already exists under another id (Best Buy lists a
//!   few paths twice, and normalisation can make two raw paths equal). The first id
//!   seen keeps the node; the later id is reported.
//! * **implied**: an ancestor named in a record's path has no record of its own (134
//!   paths do in the real file, `../shared/data/bestbuy-categories.json`); it is
//!   created from the id and name given in the path.
//!
//! What it stores is `tree`: every accepted record and implied ancestor, each with its
//! parent.
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

use std::collections::{HashMap, HashSet};

use super::category::{Category, CategoryPath, CategoryTree, SegmentFix, check_segment};
use super::check::CategoryRejection;
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
    pub reason: CategoryRejection,
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
    let built: Vec<std::result::Result<Vec<(CategoryId, CategoryPath)>, CategoryRejection>> = raw
        .iter()
        .map(|node| build_path(node, &mut report.normalised))
        .collect();
    let cyclic = cyclic_ids(built.iter().filter_map(|b| b.as_ref().ok()));
    // Which path each id stands at: the first record naming it keeps it.
    let mut id_at: HashMap<CategoryId, CategoryPath> = HashMap::new();
    let mut pending_implied: Vec<Category> = Vec::new();
    for (node, built) in raw.iter().zip(built) {
        let checked = built.and_then(|elements| {
            if let Some((id, _)) = elements.iter().find(|(id, _)| cyclic.contains(id)) {
                return Err(CategoryRejection::Cycle { id: id.to_string() });
            }
            for (id, path) in &elements {
                match id_at.get(id) {
                    Some(kept) if kept != path => {
                        return Err(CategoryRejection::DuplicateId {
                            id: id.to_string(),
                            kept_path: kept.to_string(),
                        });
                    }
                    _ => {}
                }
            }
            Ok(elements)
        });
        let elements = match checked {
            Ok(elements) => elements,
            Err(reason) => {
                report.rejected.push(Rejected {
                    id: node.id.clone(),
                    path: node.path.iter().map(|e| e.name.clone()).collect(),
                    reason,
                });
                continue;
            }
        };
        for (id, path) in &elements {
            id_at.entry(id.clone()).or_insert_with(|| path.clone());
        }
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
    for ancestor in pending_implied {
        if report.tree.get(&ancestor.path).is_none() {
            report.tree.insert(ancestor.clone());
            report.implied.push(ancestor);
        }
    }
    Ok(report)
}

/// The ids that lie on a loop of parent links (`a > b` in one record, `b > a` in
/// another; or `a > b > a` in one), found by peeling leaves and roots off the graph of
/// parent links: what is left has a loop through it.
fn cyclic_ids<'a>(
    paths: impl Iterator<Item = &'a Vec<(CategoryId, CategoryPath)>>,
) -> HashSet<CategoryId> {
    let mut parents: HashMap<&CategoryId, HashSet<&CategoryId>> = HashMap::new();
    let mut children: HashMap<&CategoryId, HashSet<&CategoryId>> = HashMap::new();
    for path in paths {
        for pair in path.windows(2) {
            let (parent, child) = (&pair[0].0, &pair[1].0);
            parents.entry(child).or_default().insert(parent);
            children.entry(parent).or_default().insert(child);
            parents.entry(parent).or_default();
            children.entry(child).or_default();
        }
    }
    // Peel nodes with no children (leaves), then nodes with no parents (roots), until
    // none is left to peel: the rest is on a loop or between loops.
    for pass in 0..2 {
        let (out, into) = if pass == 0 {
            (&mut children, &mut parents)
        } else {
            (&mut parents, &mut children)
        };
        let mut ready: Vec<&CategoryId> = out
            .iter()
            .filter(|(_, next)| next.is_empty())
            .map(|(id, _)| *id)
            .collect();
        while let Some(id) = ready.pop() {
            out.remove(id);
            for other in into.remove(id).unwrap_or_default() {
                if let Some(next) = out.get_mut(other) {
                    next.remove(id);
                    if next.is_empty() {
                        ready.push(other);
                    }
                }
            }
        }
        // Keep both maps on the same remaining nodes.
        let left: HashSet<&CategoryId> = out.keys().copied().collect();
        into.retain(|id, _| left.contains(id));
        for next in into.values_mut() {
            next.retain(|id| left.contains(id));
        }
    }
    parents.keys().map(|id| (*id).clone()).collect()
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
) -> std::result::Result<Vec<(CategoryId, CategoryPath)>, CategoryRejection> {
    if node.path.is_empty() {
        return Err(CategoryRejection::EmptyPath);
    }
    if node.path.len() > CategoryPath::MAX_DEPTH {
        return Err(CategoryRejection::TooDeep {
            depth: node.path.len(),
        });
    }
    let own_id = node.path.last().map(|e| e.id.as_str());
    if own_id != Some(node.id.as_str())
        || node.path.last().and_then(|e| e.name.as_ref()) != node.name.as_ref()
    {
        return Err(CategoryRejection::NotItself);
    }
    let mut out: Vec<(CategoryId, CategoryPath)> = Vec::with_capacity(node.path.len());
    let mut segments: Vec<String> = Vec::with_capacity(node.path.len());
    for element in &node.path {
        let name = element
            .name
            .as_deref()
            .ok_or_else(|| CategoryRejection::NullName {
                element_id: element.id.clone(),
            })?;
        let (segment, fixes) =
            check_segment(name).map_err(|problem| CategoryRejection::BadName {
                element_id: element.id.clone(),
                name: name.to_owned(),
                problem,
            })?;
        if !fixes.is_empty() && element.id == node.id {
            normalised.push(Normalised {
                id: node.id.clone(),
                original: name.to_owned(),
                normalised: segment.clone(),
                fixes,
            });
        }
        segments.push(segment);
        let id = CategoryId::new(element.id.clone()).map_err(|_| CategoryRejection::BadId {
            element_id: element.id.clone(),
        })?;
        if out.iter().any(|(seen, _)| *seen == id) {
            return Err(CategoryRejection::Cycle { id: id.to_string() });
        }
        // Every segment is valid and the depth is checked above.
        let path =
            CategoryPath::from_segments(&segments).map_err(|_| CategoryRejection::TooDeep {
                depth: segments.len(),
            })?;
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

    fn rec(id: &str, path: &[(&str, &str)]) -> String {
        let elements: Vec<String> = path
            .iter()
            .map(|(i, n)| serde_json::json!({"id": i, "name": n}).to_string())
            .collect();
        let name = path.last().map(|(_, n)| *n).unwrap_or("");
        format!(
            r#"{{"id": {}, "name": {}, "path": [{}]}}"#,
            serde_json::json!(id),
            serde_json::json!(name),
            elements.join(",")
        )
    }

    fn import(records: &[String]) -> ImportReport {
        import_bestbuy(&format!("[{}]", records.join(","))).expect("imports")
    }

    #[test]
    fn hostile_trees_are_rejected_with_typed_reasons() {
        use super::super::check::SegmentProblem;
        let r = import(&[
            rec("a", &[("a", "A")]),
            rec("b", &[("a", "A"), ("b", "B")]),
            // The id b again, at another path.
            rec("b", &[("a", "A"), ("b", "Other")]),
            // An ancestor id standing at another path.
            rec("x", &[("b", "Elsewhere"), ("x", "X")]),
            // a > c > a: a cycle in one path.
            rec("a", &[("a", "A"), ("c", "C"), ("a", "A")]),
            // p > q and q > p: a cycle through two records.
            rec("q", &[("p", "P"), ("q", "Q")]),
            rec("p", &[("q", "Q"), ("p", "P")]),
            // Invisible and bidi-control names.
            rec("z", &[("a", "A"), ("z", "\u{200B}")]),
            rec("r", &[("a", "A"), ("r", "\u{202E}enohP")]),
        ]);
        let reasons: Vec<(&str, CategoryRejection)> = r
            .rejected
            .iter()
            .map(|x| (x.id.as_str(), x.reason.clone()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (
                    "b",
                    CategoryRejection::DuplicateId {
                        id: "b".into(),
                        kept_path: "A > B".into()
                    }
                ),
                (
                    "x",
                    CategoryRejection::DuplicateId {
                        id: "b".into(),
                        kept_path: "A > B".into()
                    }
                ),
                ("a", CategoryRejection::Cycle { id: "a".into() }),
                ("q", CategoryRejection::Cycle { id: "p".into() }),
                ("p", CategoryRejection::Cycle { id: "q".into() }),
                (
                    "z",
                    CategoryRejection::BadName {
                        element_id: "z".into(),
                        name: "\u{200B}".into(),
                        problem: SegmentProblem::Invisible
                    }
                ),
                (
                    "r",
                    CategoryRejection::BadName {
                        element_id: "r".into(),
                        name: "\u{202E}enohP".into(),
                        problem: SegmentProblem::BidiControl
                    }
                ),
            ]
        );
        let stored: Vec<&str> = r.tree.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(stored, ["A", "A > B"], "only the sound records are stored");
        assert!(r.merged.is_empty() && r.implied.is_empty());
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
        assert!(matches!(
            r.rejected[0].reason,
            CategoryRejection::NullName { .. }
        ));
        assert_eq!(r.implied.len(), 134, "the module docs quote this number");
        assert!(r.tree.len() > 4500);
        for c in r.tree.iter() {
            for a in c.path.ancestors() {
                assert!(r.tree.get(&a).is_some(), "missing ancestor {a}");
            }
        }
    }
}
