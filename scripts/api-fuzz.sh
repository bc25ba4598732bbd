#!/usr/bin/env bash
# schemathesis (pinned, from PyPI into a venv under target/) against a real
# `spamgate serve` with an admin token, driven by the served OpenAPI document: every
# operation gets generated requests (examples, coverage and fuzzing phases), and every
# answer is checked for a 5xx, an undocumented status, a content type or a body that
# does not match the document.
#
# The daemon and the fuzzer run in a network namespace of their own with only a
# loopback interface (`unshare -rn`): nothing they do can reach another host. The
# daemon's state (SQLite files, policy socket) is a throwaway directory; its DNS
# server is a loopback port nothing answers on.
#
# Not checked (the document cannot say it, see docs/api.md): schemathesis's
# positive/negative data acceptance (e.g. `GET /api/v1/greylist` needs one of four
# optional filters) and the methods of `/login`, whose GET is the console's page.
# `POST /api/v1/reports` (message/rfc822: schemathesis has no serializer),
# `DELETE /api/v1/tokens/{id}` and `PATCH /api/v1/users/{name}` (schemathesis finds
# the fuzzer's own token id and user name, and revokes or demotes them: the rest of the
# run then gets only 401/403) are left to crates/spamgate/tests/api_openapi.rs.
#
# Usage: bash scripts/api-fuzz.sh
#   API_FUZZ_EXAMPLES (5) examples per operation and phase, API_FUZZ_MAX_TIME (100)
#   seconds for the run, API_FUZZ_SEED (1), SPAMGATE_BIN (else target/debug/spamgate,
#   built).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCHEMATHESIS_VERSION=4.32.5
venv=target/api-fuzz-venv
examples=${API_FUZZ_EXAMPLES:-5}
max_time=${API_FUZZ_MAX_TIME:-100}
seed=${API_FUZZ_SEED:-1}

log() { printf '=== api-fuzz: %s\n' "$*"; }

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv
    else
        echo "api-fuzz: python3-venv is missing (apt-get install python3-venv)" >&2
        exit 1
    fi
fi
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

bin=${SPAMGATE_BIN:-}
if [[ -z $bin ]]; then
    cargo build -q -p spamgate
    bin=target/debug/spamgate
fi
bin=$(realpath "$bin")

state=$(mktemp -d /tmp/spamgate-api-fuzz.XXXXXX)
trap 'rm -rf "$state"' EXIT
cat >"$state/spamgate.toml" <<EOF
log_level = "info"
[server]
listen = ["unix:$state/policy.sock"]
[store]
path = "$state/spamgate.db"
[dns]
nameservers = ["127.0.0.1:9"]
timeout = "200ms"
attempts = 1
[dnsbl]
zones = []
[desk]
warn_on_first = false
suspend_after = 1
hook_command = []
notice_relay_host = ""
op25b_nft = ["true"]
[admin]
listen = "127.0.0.1:8931"
EOF
printf 'fuzz-admin-password\n' | "$bin" admin user add fuzz --role admin -c "$state/spamgate.toml" >/dev/null
token=$("$bin" admin token add fuzz --label api-fuzz -c "$state/spamgate.toml" 2>/dev/null | tail -n 1)
[[ $token == sgt_* ]] || { echo "api-fuzz: no token" >&2; exit 1; }

log "schemathesis $SCHEMATHESIS_VERSION, $examples examples, at most ${max_time}s, seed $seed"
start=$SECONDS
# Inside the namespace: loopback up, the daemon, the fuzzer; the daemon dies with it.
unshare -rn bash -s -- "$bin" "$state" "$token" "$venv" "$examples" "$max_time" "$seed" <<'INNER'
set -Eeuo pipefail
bin=$1 state=$2 token=$3 venv=$4 examples=$5 max_time=$6 seed=$7
ip link set lo up
"$bin" serve -c "$state/spamgate.toml" 2>"$state/daemon.log" &
daemon=$!
trap 'kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    grep -q "admin API on" "$state/daemon.log" && break
    sleep 0.1
done
grep -q "admin API on" "$state/daemon.log" || { cat "$state/daemon.log" >&2; exit 1; }
status=0
"$venv/bin/schemathesis" run http://127.0.0.1:8931/api/v1/openapi.json \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --phases examples,coverage,fuzzing \
    --exclude-operation-id report_ingest --exclude-operation-id token_revoke \
    --exclude-operation-id user_change \
    -n "$examples" --seed "$seed" -w 1 --max-time "$max_time" \
    --continue-on-failure --no-color || status=$?
if ! kill -0 "$daemon" 2>/dev/null; then
    echo "api-fuzz: the daemon died" >&2
    tail -n 50 "$state/daemon.log" >&2
    exit 1
fi
if grep -E '(ERROR|panicked)' "$state/daemon.log" >&2; then
    echo "api-fuzz: the daemon logged errors (above)" >&2
    exit 1
fi
exit "$status"
INNER
log "passed in $((SECONDS - start))s"
