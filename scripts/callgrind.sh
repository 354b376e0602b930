#!/usr/bin/env bash
# Instructions per request on the hot paths, under valgrind's callgrind:
# stable on a busy machine, where times are not. Judge a change by these
# beside the criterion times (README, Performance).
#
# Usage: scripts/callgrind.sh
#
# What it does:
#   * builds examples/hot_path.rs in release with the example server's
#     features (`cargo build --release --example hot_path --features
#     axum,jwt,webhooks`);
#   * runs each mode under `valgrind --tool=callgrind`, counting only the
#     measured loop (`--toggle-collect`), and prints instructions per
#     iteration: `verify` (SHA-256 and HMAC, 100 000 keys), `layer` (both
#     layers, a key whose rate limit is checked: the default path),
#     `layer-unlimited`, `peer` (the benchmarks' fair peer: the same
#     store-backed check with tower-http's `AsyncRequireAuthorizationLayer`),
#     `feature-peer` and `feature-peer-unlimited` (that peer doing keyward's
#     other work too, plainly written: what a lean layer pays for it),
#     `none` (the same requests without layers: subtract it), `router`,
#     `router-unlimited` and `bare` (the example server's routers in
#     process: subtract `bare`);
#   * prints the differences that matter: layers and peers over none, the
#     layers against the peers, routers over bare.
#
# Environment variables read (defaults in brackets):
#   KEYS [100000]  ITERATIONS [10000]
#   KEYWARD_CALLGRIND_BIN  an existing hot_path binary (skips the build)
#
# Needs valgrind (Debian package `valgrind`). Valgrind runs SHA-256 without
# SHA-NI: about 3 500 of each verification's instructions are SHA-256's
# compression, which SHA-NI hardware does in a few hundred. Takes about
# 5 minutes (the keys are issued under valgrind too).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

bin=${KEYWARD_CALLGRIND_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --example hot_path --features axum,jwt,webhooks
    target_dir=$(cargo metadata --format-version 1 --no-deps \
        | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    bin="$target_dir/release/examples/hot_path"
fi
export KEYS=${KEYS:-100000}
export ITERATIONS=${ITERATIONS:-10000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

declare -A per
for mode in "verify sha256 verify_loop" "verify hmac verify_loop" \
    "layer sha256 layer_loop" "layer-unlimited sha256 layer_loop" \
    "peer sha256 layer_loop" "feature-peer sha256 layer_loop" \
    "feature-peer-unlimited sha256 layer_loop" "none sha256 layer_loop" "router - router_loop" \
    "router-unlimited - router_loop" "bare - router_loop"; do
    set -- $mode
    total=$(valgrind --tool=callgrind --callgrind-out-file="$work/out" \
        --toggle-collect="hot_path::$3" "$bin" "$1" "$2" 2>&1 \
        | sed -n 's/.*Collected : //p') || true
    # Empty or 0: the loop never ran (a binary built without a mode's features).
    [ "${total:-0}" -gt 0 ] 2>/dev/null || { echo "callgrind gave no count for $1 $2" >&2; exit 1; }
    per["$1 $2"]=$((total / ITERATIONS))
    printf '%-18s %-7s %8d instructions per iteration\n' "$1" "$2" "${per["$1 $2"]}"
done
printf 'layers over none:    limited %d, unlimited %d; peer over none %d\n' \
    $((per["layer sha256"] - per["none sha256"])) $((per["layer-unlimited sha256"] - per["none sha256"])) \
    $((per["peer sha256"] - per["none sha256"]))
printf 'feature peer over none: limited %d, unlimited %d\n' \
    $((per["feature-peer sha256"] - per["none sha256"])) \
    $((per["feature-peer-unlimited sha256"] - per["none sha256"]))
# Whole requests, as the criterion group compares them (1.00 = the peer's).
printf 'layers against the peer: limited %s, unlimited %s\n' \
    "$(awk -v a="${per["layer sha256"]}" -v b="${per["peer sha256"]}" 'BEGIN { printf "%.2f", a / b }')" \
    "$(awk -v a="${per["layer-unlimited sha256"]}" -v b="${per["peer sha256"]}" 'BEGIN { printf "%.2f", a / b }')"
printf 'layers against the feature peer: limited %s, unlimited %s\n' \
    "$(awk -v a="${per["layer sha256"]}" -v b="${per["feature-peer sha256"]}" 'BEGIN { printf "%.2f", a / b }')" \
    "$(awk -v a="${per["layer-unlimited sha256"]}" -v b="${per["feature-peer-unlimited sha256"]}" 'BEGIN { printf "%.2f", a / b }')"
printf 'routers over bare:   limited %d, unlimited %d\n' \
    $((per["router -"] - per["bare -"])) $((per["router-unlimited -"] - per["bare -"]))
