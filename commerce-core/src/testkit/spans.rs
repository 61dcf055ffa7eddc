//! A source check that every trait method an adapter implements carries a `tracing`
//! span.

use std::path::Path;

/// The `async fn`s of trait impls (`impl ... for ...` blocks starting at column 0) in
/// the `.rs` files under `src` that have no `instrument` attribute, as `file:line: fn`.
///
/// A text check, not a parser: attributes and doc comments directly above the `fn` are
/// read back to the end of the previous item. Meant for an adapter's own test:
///
/// ```no_run
/// let missing = commerce_core::testkit::missing_spans(
///     std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path(),
/// );
/// assert!(missing.is_empty(), "calls without a span:\n{}", missing.join("\n"));
/// ```
pub fn missing_spans(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    collect(src, &mut files);
    files.sort();
    let mut missing = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            missing.push(format!("{}: unreadable", file.display()));
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut in_impl = false;
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with("impl") {
                in_impl = line.contains(" for ");
            } else if line.starts_with('}') {
                in_impl = false;
            }
            let trimmed = line.trim_start();
            let is_fn = trimmed.starts_with("async fn ") || trimmed.starts_with("pub async fn ");
            if !in_impl || !is_fn || trimmed.len() == line.len() {
                continue;
            }
            let spanned = lines[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    let t = l.trim();
                    !(t.is_empty() || t.ends_with('}') || t.ends_with('{') || t.ends_with(';'))
                })
                .any(|l| l.contains("instrument"));
            if !spanned {
                missing.push(format!("{}:{}: {}", file.display(), i + 1, trimmed));
            }
        }
    }
    missing
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_trait_methods_without_a_span() {
        let dir = std::env::temp_dir().join(format!("spans-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("a.rs"),
            "impl Store for S {\n    #[tracing::instrument(\n        skip_all,\n    )]\n    async fn get(&self) -> u8 {\n        1\n    }\n\n    /// Doc.\n    async fn put(&self) {}\n}\n\nimpl S {\n    async fn helper(&self) {}\n}\n",
        )
        .expect("write");
        let missing = missing_spans(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].ends_with("a.rs:10: async fn put(&self) {}"));
    }
}
