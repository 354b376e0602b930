#!/usr/bin/env bash
# Run the whole keyward test suite against a throwaway PostgreSQL server.
#
# Usage: scripts/test.sh [extra args passed to `cargo test`]
#
# What it does:
#   * finds the real PostgreSQL server binaries (/usr/lib/postgresql/<ver>/bin,
#     highest version wins; override with KEYWARD_PG_BINDIR). If none are found
#     and we are root on Debian, installs postgresql-15 (or `postgresql`) via apt.
#   * initdb's a fresh cluster in a temp dir and starts it on 127.0.0.1 on a
#     free port (54329 upward), unix socket inside the temp dir, fsync=off.
#     initdb/postgres run as the `postgres` OS user when we are root (the user
#     is created if missing), otherwise as the current user.
#   * creates database `keyward_test`, runs `cargo test --all-features --workspace "$@"`,
#     then stops the server and deletes the temp dir (trap on EXIT/INT/TERM).
#     The script exits with the test command's exit status.
#   * for the browser test (tests/browser.rs): finds Chromium and chromedriver, and
#     when either is absent installs Debian's `chromium` and `chromium-driver` with
#     apt-get (non-interactively; through sudo when not root); starts chromedriver
#     on 127.0.0.1 on a free port (9515 upward) and stops it at exit.
#
# Environment variables exported to the tests (only when PostgreSQL is started):
#   DATABASE_URL          postgres://postgres@127.0.0.1:$PORT/keyward_test
#   KEYWARD_PG_STOP_CMD   shell command string (POSIX sh) that stops the server
#                         (`pg_ctl stop -m fast -w`) and returns once it is down.
#   KEYWARD_PG_START_CMD  shell command string that starts the same server again
#                         on the same port/data dir and returns once it accepts
#                         connections (`pg_ctl start -w`).
#                         Both already include `runuser -u postgres --` when the
#                         script runs as root, so a test just runs
#                         `sh -c "$KEYWARD_PG_STOP_CMD"` (it must then restart it).
#   KEYWARD_TEST_PGDATA   the cluster's data directory
#   KEYWARD_TEST_PG_CTL   absolute path of the matching pg_ctl binary
#   KEYWARD_TEST_PG_PORT  the TCP port
#   PATH                  is prefixed with the PostgreSQL bin dir (psql, pg_ctl, ...)
#   KEYWARD_WEBDRIVER     http://127.0.0.1:$PORT, the chromedriver started here (kept
#                         as given when already set: then nothing is installed or started)
#
# Environment variables read:
#   KEYWARD_SKIP_PG=1     don't start PostgreSQL; DATABASE_URL is unset so DB tests
#                         skip themselves. Ignored (with a warning) when CI=true.
#   KEYWARD_TEST_CMD      shell command run (via `bash -c`, extra args as "$@")
#                         instead of cargo test, e.g. to debug this script:
#                         KEYWARD_TEST_CMD='psql "$DATABASE_URL" -c "select 1"' scripts/test.sh
#   KEYWARD_PG_BINDIR     use this PostgreSQL bin dir instead of searching.
#   KEYWARD_SKIP_BROWSER=1  don't install Chromium or start chromedriver; the browser
#                         test skips itself loudly. Ignored (with a warning) when CI=true,
#                         where a missing browser or driver fails the run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# POSIX-sh single-quote a string (so the exported command strings work with sh -c).
shq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

PG_TMP=""
PG_BIN=""
PG_STARTED=0
CD_PID=""
CD_LOG=""

as_pg() {
    # Run a command as the PostgreSQL OS user (from a dir that user can read).
    if [[ $EUID -eq 0 ]]; then
        (cd "${PG_TMP:-/}" && runuser -u postgres -- "$@")
    else
        (cd "${PG_TMP:-/}" && "$@")
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n $CD_PID ]]; then
        # chromedriver leads its own process group (setsid): the group holds
        # the browsers it started, which outlive it otherwise.
        kill -TERM -- "-$CD_PID" 2>/dev/null
        wait "$CD_PID" 2>/dev/null
    fi
    [[ -n $CD_LOG ]] && rm -f "$CD_LOG"
    if [[ -n $PG_TMP && -d $PG_TMP ]]; then
        if [[ $PG_STARTED -eq 1 && -f $PG_TMP/data/postmaster.pid ]]; then
            as_pg "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m immediate -w -t 30 stop >/dev/null 2>&1
            # Last resort: pg_ctl failed but the postmaster we started is still there.
            if [[ -f $PG_TMP/data/postmaster.pid ]]; then
                local pid
                pid=$(head -n1 "$PG_TMP/data/postmaster.pid" 2>/dev/null)
                if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
                    log "pg_ctl stop failed; killing postmaster $pid"
                    kill -KILL "$pid" 2>/dev/null
                    sleep 1
                fi
            fi
        fi
        rm -rf "$PG_TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

find_pg_bindir() {
    if [[ -n ${KEYWARD_PG_BINDIR:-} ]]; then
        printf '%s\n' "$KEYWARD_PG_BINDIR"
        return
    fi
    # Debian layout. Deliberately not using `initdb`/`pg_ctl` from PATH: on
    # Debian those are pg_wrapper links or (on some images) ad-hoc symlinks.
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    if [[ -n $d && -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
        printf '%s\n' "$d"
    fi
}

install_pg() {
    [[ $EUID -eq 0 ]] || die "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin and not root; install postgresql-15 (apt-get install postgresql-15) or set KEYWARD_PG_BINDIR"
    command -v apt-get >/dev/null || die "PostgreSQL server binaries not found and apt-get is unavailable; set KEYWARD_PG_BINDIR"
    log "PostgreSQL server not found; installing it with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    local pkg=postgresql-15
    if ! apt-cache show "$pkg" >/dev/null 2>&1; then
        pkg=postgresql
    fi
    apt-get install -y --no-install-recommends "$pkg"
}

start_pg() {
    PG_BIN=$(find_pg_bindir)
    if [[ -n ${KEYWARD_PG_BINDIR:-} ]]; then
        [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] || die "KEYWARD_PG_BINDIR=$PG_BIN has no initdb/pg_ctl"
    fi
    if [[ -z $PG_BIN ]]; then
        install_pg
        PG_BIN=$(find_pg_bindir)
        [[ -n $PG_BIN ]] || die "PostgreSQL installed but no /usr/lib/postgresql/*/bin/initdb found"
    fi
    log "using PostgreSQL binaries from $PG_BIN ($("$PG_BIN/postgres" --version))"

    local pg_user
    if [[ $EUID -eq 0 ]]; then
        command -v runuser >/dev/null || die "runuser not found (util-linux)"
        if ! id -u postgres >/dev/null 2>&1; then
            log "creating unprivileged OS user 'postgres'"
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /bin/sh postgres
        fi
        pg_user=postgres
    else
        pg_user=$(id -un)
    fi

    # Always under /tmp: short enough for the unix socket path and traversable by
    # the postgres user (a $TMPDIR under /root would not be).
    PG_TMP=$(mktemp -d /tmp/keyward-pg.XXXXXXXX)
    chmod 0755 "$PG_TMP"
    mkdir "$PG_TMP/sock"
    touch "$PG_TMP/postgres.log"
    if [[ $EUID -eq 0 ]]; then
        chown "$pg_user:" "$PG_TMP" "$PG_TMP/sock" "$PG_TMP/postgres.log"
    fi

    local data=$PG_TMP/data logf=$PG_TMP/postgres.log
    if ! as_pg "$PG_BIN/initdb" -D "$data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
        --no-sync --no-instructions >"$PG_TMP/initdb.log" 2>&1; then
        cat "$PG_TMP/initdb.log" >&2
        die "initdb failed"
    fi

    # Our settings live in a separate file included from postgresql.conf.
    echo "include '$PG_TMP/keyward.conf'" >>"$data/postgresql.conf"

    # Find a free port; retry on bind races.
    local port="" p attempt=0
    for ((p = 54329; p < 54429; p++)); do
        # Something answers on this port -> in use.
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            continue
        fi
        cat >"$PG_TMP/keyward.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $p
unix_socket_directories = '$PG_TMP/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
        chmod 0644 "$PG_TMP/keyward.conf"
        PG_STARTED=1
        if as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$logf" -w -t 30 start >"$PG_TMP/pg_ctl.out" 2>&1; then
            port=$p
            break
        fi
        if grep -q 'Address already in use' "$logf" && ((++attempt < 20)); then
            log "port $p busy, trying the next one"
            : >"$logf"
            continue
        fi
        log "PostgreSQL failed to start; pg_ctl output and server log:"
        cat "$PG_TMP/pg_ctl.out" "$logf" >&2
        die "could not start PostgreSQL"
    done
    [[ -n $port ]] || die "no free port found in 54329..54428"

    local i ok=0
    for ((i = 0; i < 60; i++)); do
        if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 1; then
            ok=1
            break
        fi
        sleep 0.5
    done
    if [[ $ok -ne 1 ]]; then
        log "PostgreSQL did not become ready within 30 s; server log:"
        cat "$logf" >&2
        die "PostgreSQL not ready"
    fi

    "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres keyward_test

    local runas=""
    if [[ $EUID -eq 0 ]]; then
        runas="runuser -u $pg_user -- "
    fi
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/keyward_test"
    export KEYWARD_TEST_PGDATA=$data
    export KEYWARD_TEST_PG_CTL=$PG_BIN/pg_ctl
    export KEYWARD_TEST_PG_PORT=$port
    export KEYWARD_PG_STOP_CMD="cd $(shq "$PG_TMP") && ${runas}$(shq "$PG_BIN/pg_ctl") -D $(shq "$data") -m fast -w -t 30 stop"
    export KEYWARD_PG_START_CMD="cd $(shq "$PG_TMP") && ${runas}$(shq "$PG_BIN/pg_ctl") -D $(shq "$data") -l $(shq "$logf") -w -t 30 start"
    export PATH="$PG_BIN:$PATH"
    log "PostgreSQL ready: DATABASE_URL=$DATABASE_URL"
}

skip_pg=0
if [[ ${KEYWARD_SKIP_PG:-} == 1 ]]; then
    if [[ ${CI:-} == true ]]; then
        log "warning: KEYWARD_SKIP_PG=1 is ignored when CI=true"
    else
        skip_pg=1
    fi
fi

if [[ $skip_pg -eq 1 ]]; then
    log "KEYWARD_SKIP_PG=1: not starting PostgreSQL; database tests will be skipped"
    unset DATABASE_URL KEYWARD_PG_STOP_CMD KEYWARD_PG_START_CMD KEYWARD_TEST_PGDATA \
        KEYWARD_TEST_PG_CTL KEYWARD_TEST_PG_PORT
else
    start_pg
fi

# ---- Chromium + chromedriver for tests/browser.rs ----

# Outside CI a browser that cannot be had is a warning (the test skips loudly);
# under CI=true it is an error.
browser_unavailable() {
    if [[ ${CI:-} == true ]]; then
        die "$* (CI=true: the browser test must run)"
    fi
    log "WARNING: $*; the browser test will be SKIPPED"
}

find_chromium() { command -v chromium || command -v chromium-browser || command -v google-chrome || true; }

install_chromium() {
    command -v apt-get >/dev/null || { browser_unavailable "Chromium/chromedriver not found and apt-get is unavailable"; return 1; }
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null || { browser_unavailable "Chromium/chromedriver not found, not root and no sudo (apt-get install chromium chromium-driver)"; return 1; }
        sudo=(sudo -n)
    fi
    log "Chromium or chromedriver not found; installing chromium and chromium-driver with apt-get"
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update \
        || ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
            --no-install-recommends chromium chromium-driver; then
        browser_unavailable "apt-get could not install chromium and chromium-driver"
        return 1
    fi
}

start_chromedriver() {
    if [[ -z $(find_chromium) ]] || ! command -v chromedriver >/dev/null; then
        install_chromium || return 0
    fi
    local chrome driver
    chrome=$(find_chromium)
    driver=$(command -v chromedriver || true)
    if [[ -z $chrome || -z $driver ]]; then
        browser_unavailable "chromium or chromedriver still missing after the install"
        return 0
    fi
    log "using $("$driver" --version 2>/dev/null | head -n1) with $chrome"

    CD_LOG=$(mktemp /tmp/keyward-chromedriver.XXXXXXXX)
    local p i
    for ((p = 9515; p < 9615; p++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            continue
        fi
        # In its own session and process group, so the browsers it starts
        # can be stopped with it (see cleanup). Not a group leader here, so
        # setsid execs chromedriver in place: $! is chromedriver.
        setsid "$driver" --port="$p" >"$CD_LOG" 2>&1 &
        CD_PID=$!
        for ((i = 0; i < 100; i++)); do
            if ! kill -0 "$CD_PID" 2>/dev/null; then
                break
            fi
            if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
                export KEYWARD_WEBDRIVER="http://127.0.0.1:$p"
                log "chromedriver ready: KEYWARD_WEBDRIVER=$KEYWARD_WEBDRIVER"
                return 0
            fi
            sleep 0.1
        done
        # Exited (port taken in a race) or never listened: try the next port.
        kill -TERM -- "-$CD_PID" 2>/dev/null
        wait "$CD_PID" 2>/dev/null
        CD_PID=""
    done
    cat "$CD_LOG" >&2
    browser_unavailable "chromedriver did not start on any port in 9515..9614"
}

skip_browser=0
if [[ ${KEYWARD_SKIP_BROWSER:-} == 1 ]]; then
    if [[ ${CI:-} == true ]]; then
        log "warning: KEYWARD_SKIP_BROWSER=1 is ignored when CI=true"
    else
        skip_browser=1
    fi
fi

if [[ -n ${KEYWARD_WEBDRIVER:-} ]]; then
    log "using the WebDriver at KEYWARD_WEBDRIVER=$KEYWARD_WEBDRIVER"
elif [[ $skip_browser -eq 1 ]]; then
    log "KEYWARD_SKIP_BROWSER=1: not starting chromedriver; the browser test will be skipped"
else
    start_chromedriver
fi

if [[ -d $HOME/.cargo/bin && ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
    export PATH="$PATH:$HOME/.cargo/bin"
fi

set +e
if [[ -n ${KEYWARD_TEST_CMD:-} ]]; then
    log "running KEYWARD_TEST_CMD instead of cargo test: $KEYWARD_TEST_CMD"
    bash -c "$KEYWARD_TEST_CMD" keyward-test "$@"
else
    command -v cargo >/dev/null || { log "error: cargo not found (install Rust via rustup)"; exit 127; }
    cargo test --all-features --workspace "$@"
fi
status=$?
set -e
exit "$status"
