#!/usr/bin/env bash
# HTTP throughput of the example server with authentication + scope check
# against the same route served bare, on loopback.
#
# Usage: scripts/load.sh
#
# What it does:
#   * builds the example server in release
#     (`cargo build --release --example server --features axum,jwt,webhooks`);
#   * starts it twice on 127.0.0.1, on free ports: once as is, once with
#     --unauthenticated-load-test-baseline (`GET /api/players` without
#     AuthLayer or RequireScopes; the server refuses that flag on any address
#     but a loopback one);
#   * reads two read-only demo keys from the first server's stdout and sends
#     them as `X-Api-Key` to `GET /api/players`: `loadtest-limited`, with a
#     rate limit the load never reaches (the default path: the limiter is
#     checked and its headers sent on every request), and `loadtest`,
#     unlimited;
#   * alternates limited, unlimited and bare rounds of `wrk` (ROUNDS each,
#     DURATION each), prints requests per second and the server's CPU time
#     per request per round, the medians, and for each key the ratio
#     authenticated / bare and the CPU time authentication adds per request,
#     then the spread of both over the rounds (each round against the bare
#     round after it);
#   * kills both servers on exit (trap on EXIT/INT/TERM), also on failure.
#
# Environment variables read (defaults in brackets):
#   ROUNDS [3]  THREADS [1]  CONNECTIONS [32]  DURATION [5s]
#   (the server serves at most 64 connections per client address, and wrk
#   connects from one: CONNECTIONS above 64 are refused)
#   KEYWARD_LOAD_NO_BUILD=1  skip the cargo build (use the existing binary)
#
# Needs `wrk` (Debian package `wrk`); installs it with apt-get when absent and
# running as root. Bounded: the build aside, it runs
# 3 * ROUNDS * DURATION (limited, unlimited and bare rounds) plus a few
# seconds of start-up.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-5s}

cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing wrk with apt-get" >&2
        timeout 300 apt-get install -y -qq wrk >/dev/null
    else
        echo "wrk is not installed (Debian: apt-get install wrk)" >&2
        exit 1
    fi
fi
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

if [ "${KEYWARD_LOAD_NO_BUILD:-}" != 1 ]; then
    cargo build --release --example server --features axum,jwt,webhooks
fi
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
server="$target_dir/release/examples/server"
[ -x "$server" ] || { echo "no server binary at $server" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nobody listens on now (the kernel's pick, released at once).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start NAME [ARG...]: starts the server with these arguments, waits until it
# listens, sets $port. Its stdout goes to $work/NAME.out, stderr to
# $work/NAME.err.
start() {
    local name=$1
    shift
    port=$(free_port)
    env KEYWARD_ADDR="127.0.0.1:$port" RUST_LOG=warn \
        "$server" "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
    for _ in $(seq 100); do
        if grep -q "listening on" "$work/$name.err" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then
            echo "the $name server exited:" >&2
            cat "$work/$name.err" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "the $name server did not start in 10 s" >&2
    exit 1
}

start auth
auth_port=$port
auth_pid=${pids[-1]}
# demo_key NAME: the token of the demo key NAME from the server's stdout.
demo_key() {
    local token
    token=$(grep "\"name\":\"$1\"" "$work/auth.out" \
        | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
    [ -n "$token" ] || { echo "no $1 key in the server's output" >&2; exit 1; }
    echo "$token"
}
key=$(demo_key loadtest)
limited_key=$(demo_key loadtest-limited)

start bare --unauthenticated-load-test-baseline
bare_port=$port
bare_pid=${pids[-1]}

# Both must answer 200 before we measure anything.
for check in "auth $auth_port -H X-Api-Key:$key" "limited $auth_port -H X-Api-Key:$limited_key" "bare $bare_port"; do
    set -- $check
    name=$1 p=$2
    shift 2
    status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" \
        "http://127.0.0.1:$p/api/players")
    [ "$status" = 200 ] || { echo "$name: GET /api/players gave $status" >&2; exit 1; }
done
# Without the key the authenticated server must refuse.
status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
    "http://127.0.0.1:$auth_port/api/players")
[ "$status" = 401 ] || { echo "auth: no key gave $status, not 401" >&2; exit 1; }
# The limited key's answers carry its limit: the limiter is on its path.
curl -s -D - -o /dev/null --max-time 5 -H "X-Api-Key: $limited_key" \
    "http://127.0.0.1:$auth_port/api/players" | grep -qi '^ratelimit-policy:' \
    || { echo "limited: no RateLimit-Policy header; the limiter is not checked" >&2; exit 1; }

# CPU time (user + system) a process has used, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# run PID PORT [wrk args...]: prints requests per second, and the server's
# CPU time per request in microseconds. CPU per request is the steadier
# figure on a busy machine: it does not count the time the server waits for
# a core.
run() {
    local pid=$1 p=$2
    shift 2
    local out before after
    before=$(cpu_ticks "$pid")
    out=$(timeout 120 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$@" \
        "http://127.0.0.1:$p/api/players")
    after=$(cpu_ticks "$pid")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "non-2xx responses during the run:" >&2
        echo "$out" >&2
        exit 1
    fi
    awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
        /requests in/ { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        END { printf "%s %.2f\n", rps, ticks / hz * 1e6 / n }' <<<"$out"
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, GET /api/players, $ROUNDS rounds each; $(uptime)"
limited_rps=() auth_rps=() bare_rps=() limited_cpu=() auth_cpu=() bare_cpu=()
for round in $(seq "$ROUNDS"); do
    read -r rps cpu < <(run "$auth_pid" "$auth_port" -H "X-Api-Key: $limited_key")
    limited_rps+=("$rps") limited_cpu+=("$cpu")
    printf 'round %d  limited    %10.0f req/s  %7.2f us server CPU/request\n' "$round" "$rps" "$cpu"
    read -r rps cpu < <(run "$auth_pid" "$auth_port" -H "X-Api-Key: $key")
    auth_rps+=("$rps") auth_cpu+=("$cpu")
    printf 'round %d  unlimited  %10.0f req/s  %7.2f us server CPU/request\n' "$round" "$rps" "$cpu"
    read -r rps cpu < <(run "$bare_pid" "$bare_port")
    bare_rps+=("$rps") bare_cpu+=("$cpu")
    printf 'round %d  bare       %10.0f req/s  %7.2f us server CPU/request\n' "$round" "$rps" "$cpu"
done

med() { printf '%s\n' "$@" | median; }
limited_median=$(med "${limited_rps[@]}")
auth_median=$(med "${auth_rps[@]}")
bare_median=$(med "${bare_rps[@]}")
limited_cpu_median=$(med "${limited_cpu[@]}")
auth_cpu_median=$(med "${auth_cpu[@]}")
bare_cpu_median=$(med "${bare_cpu[@]}")
printf 'median    limited    %10.0f req/s  %7.2f us server CPU/request\n' "$limited_median" "$limited_cpu_median"
printf 'median    unlimited  %10.0f req/s  %7.2f us server CPU/request\n' "$auth_median" "$auth_cpu_median"
printf 'median    bare       %10.0f req/s  %7.2f us server CPU/request\n' "$bare_median" "$bare_cpu_median"
for row in "limited $limited_median $limited_cpu_median" "unlimited $auth_median $auth_cpu_median"; do
    set -- $row
    awk -v name="$1" -v a="$2" -v b="$bare_median" -v ac="$3" -v bc="$bare_cpu_median" \
        'BEGIN { printf "ratio %-9s / bare  %.3f (target >= 0.95); auth costs %+.2f us CPU/request (target <= +0.60)\n", name, a / b, ac - bc }'
done
# The spread: each round's ratio to the bare round that followed it, and
# the CPU time a request it adds. On a 2-core machine, where wrk and the
# server share the cores, it is wide; a difference between two builds
# inside it is not a difference.
spread() {
    local -n num=$1 num_cpu=$2
    local i ratios=() costs=()
    for i in "${!bare_rps[@]}"; do
        ratios+=("$(awk -v a="${num[$i]}" -v b="${bare_rps[$i]}" 'BEGIN { printf "%.3f", a / b }')")
        costs+=("$(awk -v a="${num_cpu[$i]}" -v b="${bare_cpu[$i]}" 'BEGIN { printf "%+.2f", a - b }')")
    done
    printf 'rounds %-9s ratio %s to %s, CPU %s to %s us/request\n' "$3" \
        "$(printf '%s\n' "${ratios[@]}" | sort -g | head -1)" "$(printf '%s\n' "${ratios[@]}" | sort -g | tail -1)" \
        "$(printf '%s\n' "${costs[@]}" | sort -g | head -1)" "$(printf '%s\n' "${costs[@]}" | sort -g | tail -1)"
}
spread limited_rps limited_cpu limited
spread auth_rps auth_cpu unlimited
echo "load average after: $(uptime | sed 's/.*load average: //')"
