#!/usr/bin/env bash
# The public API, as a committed listing (`public-api.txt`) that CI compares
# with the code: every change to the surface shows up in review as a change to
# that file.
#
# Usage: scripts/public-api.sh          check: fail with a diff when they differ
#        scripts/public-api.sh --bless  rewrite public-api.txt from the code
#
# cargo-public-api reads rustdoc's JSON output, a nightly feature; like the
# fuzzing script, this runs it on the stable toolchain with RUSTC_BOOTSTRAP=1.
# Installs cargo-public-api (pinned) when it is absent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

version=0.52.0
if ! cargo public-api --version 2>/dev/null | grep -q "$version"; then
    echo "public-api.sh: installing cargo-public-api $version" >&2
    cargo install cargo-public-api --locked --version "$version"
fi

listing=public-api.txt
current=$(mktemp)
trap 'rm -f "$current"' EXIT
# All features (as docs.rs documents the crate), blanket impls left out;
# auto traits (Send, Sync, Unpin, …) stay: losing one breaks users.
RUSTC_BOOTSTRAP=1 cargo public-api --all-features --simplified --color never >"$current"

if [[ ${1:-} == --bless ]]; then
    cp "$current" "$listing"
    echo "public-api.sh: wrote $listing ($(wc -l <"$listing") lines)" >&2
    exit 0
fi
if ! diff -u "$listing" "$current"; then
    echo "public-api.sh: the public API differs from $listing (diff above)." >&2
    echo "public-api.sh: if the change is deliberate, run scripts/public-api.sh --bless," >&2
    echo "public-api.sh: commit $listing and say so in CHANGELOG.md." >&2
    exit 1
fi
echo "public-api.sh: the public API matches $listing" >&2
