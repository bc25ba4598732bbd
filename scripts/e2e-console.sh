#!/usr/bin/env bash
# End-to-end suite of the operator web console in a real browser: a real `spamgate serve`
# with its policy socket and the admin listener (API + console) on loopback, Debian's
# chromium driven by chromedriver over WebDriver from Python's standard library
# (tests/console/webdriver.py, tests/console/test_console.py). The tests send policy
# requests to the daemon's socket, ingest an abuse report with `spamgate abuse ingest`,
# work the console as an operator, an approver and a viewer, and check the daemon's
# answers afterwards. Screenshots of the main pages go to docs/console/ with SHOTS=1.
#
# Usage (as root):  bash scripts/e2e-console.sh
#   SPAMGATE_BIN=/path/to/spamgate  use this binary instead of building one
#   SHOTS=1                         write docs/console/{login,dashboard,filters,case,triage}.png
#   KEEP=1                          keep the temporary directory (logs)
#
# Runs inside a private network + mount + PID namespace (unshare): loopback only, no DNS
# server (so every reverse lookup fails and new clients are greylisted as dns-tempfail).
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESK_FIX=$REPO/crates/desk/tests
SUITE=e2e-console
# shellcheck source=scripts/lib/e2e-common.sh
source "$REPO/scripts/lib/e2e-common.sh"

POLICY_PORT=10040
ADMIN_PORT=8025
DRIVER_PORT=9515
ACCOUNT=alice-smtp@isp.example.jp
PASSWORD=console-test-password-1

outside() {
    [[ $(id -u) == 0 ]] || die "run as root (namespaces, packages)"
    install_missing chromium=chromium chromedriver=chromium-driver python3=python3 \
        ip=iproute2 unshare=util-linux
    # A Japanese font, so the Japanese pages (and the screenshots) show text, not boxes.
    # install_missing checks commands; this check is fontconfig's, the name a placeholder.
    fc-list :lang=ja 2>/dev/null | grep -q . || install_missing japanese-font=fonts-ipafont-gothic
    build_spamgate
    run_in_namespaces "${BASH_SOURCE[0]}"
}

cleanup() {
    local rc=$?
    set +e
    [[ -n ${SG_PID:-} ]] && kill "$SG_PID" 2>/dev/null
    wait 2>/dev/null
    finish "$rc" "$T/serve.log" "$T/chromedriver.log"
}

setup() {
    ip link set lo up
    mkdir -p "$T/state" "$T/desk" "$T/home"
    SG=$SPAMGATE_BIN
    cat >"$T/spamgate.toml" <<EOF
[server]
listen = ["127.0.0.1:$POLICY_PORT"]
# The console shows every time in this zone (a fixed offset needs no tzdata).
display_timezone = "+09:00"
[store]
path = "$T/state/spamgate.db"
[dns]
# Nothing listens here: every lookup fails at once.
nameservers = ["127.0.0.1:53"]
timeout = "1s"
attempts = 1
[submission]
enabled = true
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[desk]
path = "$T/desk/desk.db"
# The first confirmed case proposes a suspension (which needs an approver).
suspend_after = 1
EOF
    export SPAMGATE_CONFIG=$T/spamgate.toml
    "$SG" account add "$ACCOUNT" -c "$T/spamgate.toml" >/dev/null
    "$SG" customer add C-ALICE --name Alice --contact alice@example.jp -c "$T/spamgate.toml" >/dev/null
    "$SG" customer link C-ALICE --account "$ACCOUNT" --radius-user alice@isp.example.jp \
        -c "$T/spamgate.toml" >/dev/null
    "$SG" sessions import --format radius-detail "$DESK_FIX/history/radius-detail" \
        -c "$T/spamgate.toml" >/dev/null 2>&1
    local user role
    for user in olivia:operator abe:approver vera:viewer; do
        role=${user#*:} user=${user%%:*}
        printf '%s\n' "$PASSWORD" | "$SG" admin user add "$user" --role "$role" \
            -c "$T/spamgate.toml" >/dev/null
    done
    # The RFC 5965 example report about alice's line (as scripts/e2e-desk.sh sends it).
    sed -e 's/192\.0\.2\.1/192.0.2.10/g' "$DESK_FIX/reports/arf-rfc5965.eml" >"$T/report.eml"
}

start_daemon() {
    "$SG" serve -c "$T/spamgate.toml" >"$T/serve.log" 2>&1 &
    SG_PID=$!
    wait_for "the policy socket" 30 tcp_open 127.0.0.1 "$POLICY_PORT" || die "serve did not start"
    wait_for "the admin listener" 30 tcp_open 127.0.0.1 "$ADMIN_PORT" || die "no admin listener"
}

run_tests() {
    local shots=
    if [[ -n ${SHOTS:-} ]]; then
        shots=$REPO/docs/console
        mkdir -p "$shots"
    fi
    local rc=0
    HOME=$T/home SG=$SG SG_CONFIG=$T/spamgate.toml ADMIN=http://127.0.0.1:$ADMIN_PORT \
        POLICY=127.0.0.1:$POLICY_PORT DRIVER_PORT=$DRIVER_PORT \
        DRIVER_LOG=$T/chromedriver.log REPORT=$T/report.eml SHOTS=$shots DUMP=$T PASSWORD=$PASSWORD \
        python3 -m unittest -v "$REPO/tests/console/test_console.py" >"$T/tests.log" 2>&1 || rc=$?
    # One PASS/FAIL line per test, from unittest's verbose lines.
    local line name
    while IFS= read -r line; do
        name=${line%% (*}
        case $line in
            *" ... ok") pass "$name" ;;
            *" ... FAIL" | *" ... ERROR") fail "$name" ;;
        esac
    done <"$T/tests.log"
    if ((rc != 0)); then
        sed -n '/^=\{20,\}/,$p' "$T/tests.log" | head -n 60 >&2
        ((FAILED > 0)) || fail unittest "exit $rc: $(tail -n 3 "$T/tests.log" | tr '\n' ' ')"
    fi
}

inside() {
    T=$1 SPAMGATE_BIN=$2
    trap cleanup EXIT
    setup
    start_daemon
    run_tests
}

if [[ ${1:-} == --inside ]]; then
    inside "$2" "$3"
else
    outside
fi
