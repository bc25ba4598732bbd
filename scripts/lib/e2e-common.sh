# Shared helpers of the end-to-end suites (scripts/e2e.sh, scripts/e2e-submission.sh).
# Sourced, never run. The sourcing script sets SUITE (the name that prefixes messages
# and the final "SUITE: N passed, M failed" line) and REPO (the repository root).
# shellcheck shell=bash

export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

log() { printf '%s\n' "$*" >&2; }
die() { log "$SUITE: $*"; exit 2; }

# ---------------------------------------------------------------------------------------
# Outside the namespace: dependencies, the build, the namespace itself.

# install_missing CHECK=PACKAGE...: installs from Debian the package of every CHECK that
# fails. CHECK is a command name, or perl:Module::Name for a Perl module.
install_missing() {
    local missing=() item check pkg
    for item in "$@"; do
        check=${item%%=*} pkg=${item#*=}
        if [[ $check == perl:* ]]; then
            perl -M"${check#perl:}" -e 1 2>/dev/null || missing+=("$pkg")
        else
            command -v "$check" >/dev/null || missing+=("$pkg")
        fi
    done
    ((${#missing[@]})) || return 0
    log "$SUITE: installing ${missing[*]}"
    # Package scripts must not start system services (Postfix on port 25, Dovecot on
    # 143/993, dnsmasq on 53, rbldnsd): policy-rc.d exiting 101 forbids it, and Postfix
    # gets no system config.
    local own_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    local rc=0
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; } || rc=$?
    [[ -z $own_policy ]] || rm -f /usr/sbin/policy-rc.d
    ((rc == 0)) || die "apt-get failed ($rc)"
}

# Sets SPAMGATE_BIN (kept when the caller already set it).
build_spamgate() {
    if [[ -n ${SPAMGATE_BIN:-} ]]; then
        [[ -x $SPAMGATE_BIN ]] || die "SPAMGATE_BIN=$SPAMGATE_BIN is not executable"
        return
    fi
    command -v cargo >/dev/null || die "cargo not found (install Rust first)"
    # A debug build: on 2 cores it is minutes faster than --release and fast enough here.
    (cd "$REPO" && cargo build -p spamgate) || die "cargo build -p spamgate failed"
    SPAMGATE_BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug/spamgate
}

# run_in_namespaces SCRIPT: runs "SCRIPT --inside TMPDIR SPAMGATE_BIN" in a private
# network + mount + PID namespace (every process still alive at its end dies with it),
# removes TMPDIR afterwards unless KEEP is set or the suite failed, and exits with the
# suite's status.
run_in_namespaces() {
    local script=$1
    unshare --net --mount --pid --fork --mount-proc true 2>/dev/null ||
        die "cannot create Linux namespaces (unshare --net --mount --pid); needs root with CAP_SYS_ADMIN"
    local started=$SECONDS tmp rc=0
    tmp=$(mktemp -d "/tmp/spamgate-$SUITE.XXXXXX")
    # Postfix (as "postfix"), virtual(8) (as nobody) and Dovecot's auth (as "dovecot")
    # must traverse it.
    chmod 755 "$tmp"
    unshare --net --mount --pid --fork --mount-proc --kill-child -- \
        bash "$script" --inside "$tmp" "$SPAMGATE_BIN" || rc=$?
    # Logs and mailboxes stay for a look when something failed.
    if [[ -n ${KEEP:-} ]] || ((rc != 0)); then log "$SUITE: kept $tmp"; else rm -rf "$tmp"; fi
    log "$SUITE: finished in $((SECONDS - started))s (without install/build)"
    exit "$rc"
}

# ---------------------------------------------------------------------------------------
# Inside the namespace.

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'PASS  %-32s %s\n' "$1" "${2:-}"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %-32s %s\n' "$1" "${2:-}"; }

# finish RC LOGFILE...: the end of a suite (called from its EXIT trap after its own
# processes are stopped): an abort counts as a failure, a failure shows the logs' last
# lines, and the last line is "SUITE: N passed, M failed". Exits 1 on any failure.
finish() {
    local rc=$1 f
    shift
    if ((rc != 0 && FAILED == 0)); then
        log "$SUITE: aborted (exit $rc)"
        FAILED=1
    fi
    if ((FAILED > 0)); then
        for f in "$@"; do
            [[ -s $f ]] || continue
            log "--- last lines of $f"
            tail -n 15 "$f" | cut -c1-300 >&2
        done
    fi
    printf '%s: %d passed, %d failed\n' "$SUITE" "$PASSED" "$FAILED"
    ((FAILED == 0)) || exit 1
    exit 0
}

# doc_block FILE NAME: the fenced code block that follows "<!-- e2e:NAME -->" in FILE.
doc_block() {
    awk -v tag="<!-- e2e:$2 -->" '
        $0 == tag { want = 1; next }
        want && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }' "$1"
}

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
    local what=$1 limit=$2 i
    shift 2
    for ((i = 0; i < limit * 5; i++)); do
        if "$@" 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    log "$SUITE: timed out waiting for $what"
    return 1
}
# now: wall-clock seconds with microseconds. sleep_past T0 N: sleeps until N s after T0.
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
sleep_past() {
    local left
    left=$(awk -v t0="$1" -v n="$2" -v now="$(now)" 'BEGIN { d = t0 + n - now; print (d > 0 ? d : 0) }')
    sleep "$left"
}
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# start_postfix NAME: checks and starts the private instance configured in $T/NAME/etc.
start_postfix() {
    local etc=$T/$1/etc
    chown postfix:postfix "$T/$1/data"
    if ! postfix -c "$etc" check >"$T/$1.check.log" 2>&1; then
        cat "$T/$1.check.log" >&2
        die "postfix check failed for $1"
    fi
    postfix -c "$etc" start >>"$T/$1.check.log" 2>&1 || {
        cat "$T/$1.check.log" >&2
        die "postfix start failed for $1"
    }
}
