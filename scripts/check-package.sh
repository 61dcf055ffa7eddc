#!/usr/bin/env bash
# Checks that the published crates package and would upload: `cargo publish --dry-run
# --workspace` (without the verify build, which would compile every dependency again;
# the test suite builds the same sources), and that each package carries both license
# texts and its README.
#   bash scripts/check-package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo publish --dry-run --workspace --no-verify --allow-dirty
for crate in commerce-core commerce-postgres commerce-redis commerce-search; do
  files=$(cargo package -p "$crate" --list --allow-dirty)
  for wanted in LICENSE-MIT LICENSE-APACHE README.md; do
    grep -qx "$wanted" <<<"$files" || { echo "check-package: $crate does not ship $wanted" >&2; exit 1; }
  done
done
echo "check-package: ok" >&2
