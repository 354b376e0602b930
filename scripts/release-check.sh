#!/usr/bin/env bash
# Checks that the crate can be released as it is: docs.rs builds its docs,
# the public API is the committed listing (scripts/public-api.sh),
# `cargo publish --dry-run` packages and builds it, and the declared
# rust-version covers every locked dependency of the library.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

echo "release-check: docs as docs.rs builds them (--cfg docsrs, nightly features)" >&2
RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="--cfg docsrs -D warnings" cargo doc --all-features --no-deps

echo "release-check: rust-version against the locked dependencies" >&2
python3 scripts/check-msrv.py

echo "release-check: cargo publish --dry-run" >&2
# A fresh clone is clean; --allow-dirty only when run by hand on a work tree.
dirty=()
[[ ${CI:-} == true ]] || dirty=(--allow-dirty)
cargo publish --dry-run --locked "${dirty[@]}"

echo "release-check: fuzz/Cargo.lock is current" >&2
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null

echo "release-check: the public API matches public-api.txt" >&2
bash scripts/public-api.sh
