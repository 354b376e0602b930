#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and prints how many
# inputs each one tried.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 30; or FUZZ_SECONDS)
#
# Works with the stable toolchain: cargo-fuzz passes -Z flags (the address
# sanitizer), which RUSTC_BOOTSTRAP=1 allows on stable, scoped to the fuzz
# command only. Installs cargo-fuzz from crates.io when it is absent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-${FUZZ_SECONDS:-30}}"
export PATH="$HOME/.cargo/bin:$PATH"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --version 0.13.2
fi

targets=$(cd fuzz && cargo fuzz list)
RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir fuzz >/dev/null 2>&1 || RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir fuzz

status=0
summary=()
for target in $targets; do
    log=$(mktemp)
    echo "fuzz.sh: $target for ${seconds}s" >&2
    if RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz "$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
        # The panic message first (the backtrace after it is long), then the end.
        grep -m 3 -A 4 "panicked" "$log" >&2 || true
        tail -n 25 "$log" >&2
    fi
    runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -n 1)
    summary+=("$(printf '%-16s %-7s %12s inputs in %ss' "$target" "$result" "${runs:-?}" "$seconds")")
    rm -f "$log"
done
echo "fuzz summary:"
printf '  %s\n' "${summary[@]}"
exit $status
