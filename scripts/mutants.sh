#!/usr/bin/env bash
# Mutation testing (cargo-mutants) over keyward's security-critical code: each
# mutant is a small change to the code (an operator flipped, a body replaced);
# a mutant that no test catches is a guarantee no test holds.
#
# Usage:
#   scripts/mutants.sh all     [FILE...]   every mutant of the files (the full run)
#   scripts/mutants.sh changed [FILE...]   only mutants in lines changed since
#                                          each file's last full run (CI)
# FILE... narrows the run to some of the files below (paths as listed).
#
# What it does, per file of the list below:
#   * runs the file's test targets once on the unmutated tree (the baseline:
#     a failing suite would make every mutant look caught), then
#     `cargo mutants --file FILE --baseline=skip` with only those targets
#     (`--cargo-arg`, so each mutant rebuilds the lib and those binaries only);
#     settings common to every file are in .cargo/mutants.toml;
#   * fails when a mutant survives that mutants-accepted.txt does not list
#     (one line per mutant as cargo-mutants prints it, then ` # ` and the
#     reason; the line:column is ignored when matching, as it moves with
#     every edit above it);
#   * `all` records, per file, the commit it ran on and its figures in
#     mutants-full-run.txt (commit that file); `changed` mutates only the
#     lines changed since that commit (`--in-diff`; MUTANTS_BASE=<rev>
#     overrides; a file with no recorded commit present in the history is
#     diffed against HEAD^, the previous commit or merge).
#
# The PostgreSQL tests are out of scope on purpose: no file below has logic
# only they exercise (PgStore and the SQL have their own tests), and they
# would triple each mutant's run. They skip here: DATABASE_URL is unset
# and CI is cleared for the mutation runs (under CI=true they would fail). Doctests are not run either (a doctest is
# compiled per mutant per example); every guarantee they show has a unit or
# integration test.
#
# Time: one mutant takes about 5-15 s (an incremental rebuild of the lib and
# the file's test binaries, then those tests), the full run about 1.5-2 h on
# 2 cores. `changed` stops at MUTANTS_BUDGET seconds (1500 by default; also
# settable for `all`); mutants not reached by then are reported, not failed.
#
# Environment variables read (defaults in brackets):
#   MUTANTS_BUDGET        seconds for the whole run [changed: 1500, all: none]
#   MUTANTS_BASE          the revision `changed` diffs against [per file, see above]
#   MUTANTS_TEST_TIMEOUT  seconds one mutant's tests may run [60]
#   CARGO_TARGET_DIR      [this checkout's target/]: shared with the scratch
#                         copy cargo-mutants builds in, so dependencies built
#                         by scripts/test.sh are reused
#
# Sharing target/ has a catch: the scratch copy's keyward builds land where
# this checkout's do, and cargo judges them by file times alone. So the
# script touches each mutated file once cargo-mutants is done with it (a
# later build here then rebuilds keyward from the real source), and nothing
# should build in this checkout while it runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

MUTANTS_VERSION=27.1.0

# The security-critical files and, for each, the test targets that can
# catch its mutants (cargo test target selection).
FILES=(
    "src/token.rs|--lib --test properties --test keyring --test forged_tokens"
    "src/hash.rs|--lib --test keyring"
    "src/keyring.rs|--lib --test allocations --test keyring --test verify --test issue --test last_used --test labels --test manage --test conformance --test expiry_policy --test lifecycle --test usage --test leaks"
    "src/sweeper.rs|--lib --test lifecycle"
    "src/store/lifecycle.rs|--lib --test lifecycle --test conformance"
    "src/store/cache.rs|--lib --test allocations --test keyring --test verify --test floods --test conformance"
    "src/scope/name.rs|--lib --test properties"
    "src/scope/catalog.rs|--lib --test properties"
    "src/scope/requirement.rs|--lib --test properties"
    "src/scope/grid.rs|--lib --test properties"
    "src/http/credentials.rs|--lib --test http --test credentials --test auth_failures --test kinds --test layer_edges"
    "src/http/rejection.rs|--lib --test http --test http_limits --test forged_tokens --test usage"
    "src/ratelimit/gcra.rs|--lib --test ratelimit --test forged_tokens"
    "src/usage.rs|--lib --test usage --test conformance --test manage"
    "src/last_used.rs|--lib --test last_used --test usage"
    "src/jwt/compact.rs|--lib --test jwt"
    "src/jwt/jwks.rs|--lib --test jwt"
    "src/jwt/mod.rs|--lib --test jwt"
    "src/webhooks/verify.rs|--lib --test webhooks"
    "src/webhooks/message.rs|--lib --test webhooks"
    "src/webhooks/keys.rs|--lib --test webhooks"
    "src/webhooks/replay.rs|--lib --test webhooks"
    "src/webhooks/layer.rs|--lib --test webhooks"
    "src/webhooks/delivery/deliverer.rs|--lib --test webhook_delivery"
    "src/webhooks/delivery/endpoint.rs|--lib --test webhook_delivery"
    "src/webhooks/delivery/outgoing.rs|--lib --test webhook_delivery"
    "src/webhooks/delivery/policy.rs|--lib --test webhook_delivery"
    "src/webhooks/delivery/sink.rs|--lib --test webhook_delivery"
    "src/webhooks/delivery/transport.rs|--lib --test webhook_delivery"
    "src/http/auth/service.rs|--lib --test allocations --test usage --test http --test auth_failures --test kinds --test layer_edges --test floods --test forged_tokens --test faults --test lifecycle"
    "src/scan.rs|--lib --test scan"
    "src/leaks/mod.rs|--lib --test leaks"
    "src/leaks/keys.rs|--lib --test leaks"
    "src/leaks/alert.rs|--lib --test leaks"
    "src/leaks/service.rs|--lib --test leaks"
)
ACCEPTED=mutants-accepted.txt
RECORD=mutants-full-run.txt

log() { printf 'mutants.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mode=${1:-}
case $mode in
    all | changed) shift ;;
    *) die "usage: scripts/mutants.sh all|changed [FILE...]" ;;
esac

if [[ $(cargo mutants --version 2>/dev/null) != "cargo-mutants $MUTANTS_VERSION" ]]; then
    log "installing cargo-mutants $MUTANTS_VERSION"
    cargo install cargo-mutants --locked --version "$MUTANTS_VERSION"
fi

# The files to run, with their targets.
selected=()
for entry in "${FILES[@]}"; do
    file=${entry%%|*}
    if [[ $# -eq 0 ]]; then
        selected+=("$entry")
        continue
    fi
    for want in "$@"; do
        [[ $want == "$file" ]] && selected+=("$entry")
    done
done
[[ ${#selected[@]} -gt 0 ]] || die "none of $* is in the list: ${FILES[*]%%|*}"

budget=${MUTANTS_BUDGET:-}
[[ -z $budget && $mode == changed ]] && budget=1500
deadline=$((budget ? SECONDS + budget : 0))
test_timeout=${MUTANTS_TEST_TIMEOUT:-60}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
# PostgreSQL tests skip (see above) rather than fail.
unset DATABASE_URL
export CI=false
# Keep the flood test small under mutation: it asserts bounds, not endurance.
export KEYWARD_FLOOD_N=${KEYWARD_FLOOD_N:-20000}
out_root=$CARGO_TARGET_DIR/mutants
mkdir -p "$out_root"

# A mutant name without its line:column, for matching against the list.
normalize() { sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /'; }
accepted=$(mktemp)
# The files cargo-mutants may have left its builds of in target/.
mutated=()
cleanup() {
    if [[ ${#mutated[@]} -gt 0 ]]; then touch "${mutated[@]}"; fi
    rm -f "$accepted" "$out_root"/*.diff
}
trap cleanup EXIT
if [[ -f $ACCEPTED ]]; then
    { grep -v '^[[:space:]]*\(#\|$\)' "$ACCEPTED" || true; } | sed 's/ # .*$//' | normalize | sort -u >"$accepted"
fi

recorded_commit() { awk -v f="$1" '$1 == f { print $2 }' "$RECORD" 2>/dev/null || true; }

# The revision `changed` diffs FILE against.
base_of() {
    local file=$1 rev
    if [[ -n ${MUTANTS_BASE:-} ]]; then
        printf '%s\n' "$MUTANTS_BASE"
        return
    fi
    rev=$(recorded_commit "$file")
    if [[ -n $rev ]] && git cat-file -e "$rev^{commit}" 2>/dev/null; then
        printf '%s\n' "$rev"
    elif git rev-parse -q --verify HEAD^ >/dev/null; then
        log "$file: no full run recorded in this history; diffing against HEAD^"
        git rev-parse HEAD^
    fi
}

count() { if [[ -f $1 ]]; then grep -c . "$1" || true; else echo 0; fi; }

status=0
summary=()
record_lines=()
unreached=()
for entry in "${selected[@]}"; do
    file=${entry%%|*}
    read -r -a targets <<<"${entry#*|}"
    name=$(basename "${file%.rs}")
    [[ $file == */mod.rs ]] && name=$(basename "$(dirname "$file")")
    out=$out_root/$name
    rm -rf "$out"
    args=(--file "$file" --output "$out" --baseline=skip --timeout "$test_timeout"
        --build-timeout 900 --no-shuffle)
    for t in "${targets[@]}"; do args+=("--cargo-arg=$t"); done

    if [[ $mode == changed ]]; then
        base=$(base_of "$file")
        if [[ -z $base ]]; then
            log "$file: no revision to diff against; skipped"
            continue
        fi
        if git diff --quiet "$base" -- "$file"; then
            log "$file: unchanged since ${base:0:12}"
            continue
        fi
        git diff "$base" -- "$file" >"$out_root/$name.diff"
        args+=(--in-diff "$out_root/$name.diff")
    fi
    planned=$(cargo mutants "${args[@]}" --list 2>/dev/null | grep -c . || true)
    if [[ $planned -eq 0 ]]; then
        log "$file: no mutants${base:+ in the lines changed since ${base:0:12}}"
        continue
    fi
    if ((deadline && SECONDS >= deadline - 60)); then
        unreached+=("$file ($planned mutants)")
        continue
    fi

    log "$file: baseline (cargo test --all-features ${targets[*]})"
    if ! cargo test --all-features "${targets[@]}" -q >"$out_root/$name.baseline.log" 2>&1; then
        tail -n 30 "$out_root/$name.baseline.log" >&2
        die "$file: the tests fail on the unmutated tree"
    fi

    log "$file: $planned mutants"
    mutated+=("$file")
    start=$SECONDS
    set +e
    if ((deadline)); then
        timeout --signal=INT --kill-after=60 $((deadline - SECONDS)) cargo mutants "${args[@]}"
    else
        cargo mutants "${args[@]}"
    fi
    rc=$?
    set -e
    touch "$file"
    took=$((SECONDS - start))
    # 0: all caught; 2: some missed; 3: some timed out; 124: out of budget.
    case $rc in
        0 | 2 | 3) ;;
        124 | 130) unreached+=("$file (stopped by the budget)") ;;
        *) log "$file: cargo mutants failed with status $rc"; status=1 ;;
    esac
    dir=$out/mutants.out
    caught=$(count "$dir/caught.txt")
    missed=$(count "$dir/missed.txt")
    unviable=$(count "$dir/unviable.txt")
    timeouts=$(count "$dir/timeout.txt")
    new=()
    if [[ -f $dir/missed.txt ]]; then
        while IFS= read -r mutant; do
            if ! grep -qxF -- "$(normalize <<<"$mutant")" "$accepted"; then
                new+=("$mutant")
            fi
        done <"$dir/missed.txt"
    fi
    accepted_here=$((missed - ${#new[@]}))
    tested=$((caught + missed + unviable + timeouts))
    summary+=("$(printf '%-24s %4d mutants %4d caught %3d missed (%d accepted) %3d unviable %2d timeouts %5ds' \
        "$file" "$tested" "$caught" "$missed" "$accepted_here" "$unviable" "$timeouts" "$took")")
    if [[ ${#new[@]} -gt 0 ]]; then
        status=1
        log "$file: surviving mutants not in $ACCEPTED (kill them with a test, or list them with a reason):"
        printf '  %s\n' "${new[@]}" >&2
    fi
    # Only a clean run becomes a file's base: `changed` must not skip lines
    # whose mutants are still alive.
    if [[ $mode == all && $rc =~ ^[023]$ && ${#new[@]} -eq 0 ]]; then
        # Stale entries: accepted for this file but no longer surviving.
        while IFS= read -r line; do
            [[ $line == "$file: "* ]] || continue
            if ! normalize <"$dir/missed.txt" 2>/dev/null | grep -qxF -- "$line"; then
                log "note: $ACCEPTED lists a mutant that no longer survives: $line"
            fi
        done <"$accepted"
        if git diff --quiet HEAD -- "$file"; then
            record_lines+=("$(printf '%s %s %d %d %d %d %d %d %d' "$file" "$(git rev-parse HEAD)" \
                "$tested" "$caught" "$missed" "$accepted_here" "$unviable" "$timeouts" "$took")")
        else
            log "$file has uncommitted changes: not recorded in $RECORD"
        fi
    fi
done

if [[ ${#record_lines[@]} -gt 0 ]]; then
    {
        echo "# The last full mutation run of each file (scripts/mutants.sh all):"
        echo "# file, commit, mutants, caught, missed, of which accepted, unviable, timeouts, seconds."
        echo "# \`scripts/mutants.sh changed\` mutates the lines changed since that commit."
        for entry in "${FILES[@]}"; do
            file=${entry%%|*}
            line=$(printf '%s\n' "${record_lines[@]}" | awk -v f="$file" '$1 == f' || true)
            [[ -z $line ]] && line=$(awk -v f="$file" '$1 == f' "$RECORD" 2>/dev/null || true)
            [[ -n $line ]] && printf '%s\n' "$line"
        done
    } >"$RECORD.tmp"
    mv "$RECORD.tmp" "$RECORD"
    log "updated $RECORD (commit it)"
fi

echo "mutation summary ($mode):"
if [[ ${#summary[@]} -gt 0 ]]; then
    printf '  %s\n' "${summary[@]}"
else
    echo "  no mutants to test"
fi
if [[ ${#unreached[@]} -gt 0 ]]; then
    echo "  not tested within the ${budget}s budget (run scripts/mutants.sh all for them):"
    printf '    %s\n' "${unreached[@]}"
fi
exit $status
