#!/usr/bin/env bash
# Load and soak runs against a release spamgate on loopback (issue: reliability).
#
#   bash scripts/load.sh load  [CONNECTIONS=2000] [REQUESTS_PER_CONNECTION=50]
#       every request answered, no error; prints the loadgen report
#   bash scripts/load.sh soak  [SECONDS=600] [CONNECTIONS=64]
#       steady load; samples the daemon's RSS every 10 s; fails if RSS grows by more
#       than 20 % between the first minute and the end
#
# The daemon decides from Postfix-supplied names and has no DNS lists configured, so the
# run measures spamgate itself (policy codec, engine, greylist store), not a resolver.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=${1:-load}
T=$(mktemp -d /tmp/spamgate-load.XXXXXX)
DAEMON=
cleanup() { [[ -z $DAEMON ]] || kill "$DAEMON" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT

cargo build --release --locked -q -p spamgate -p spamgate-loadgen
ulimit -n 65536 2>/dev/null || true

cat >"$T/spamgate.toml" <<TOML
log_level = "warn"
[server]
listen = ["unix:$T/policy.sock"]
[store]
path = "$T/spamgate.db"
[dns]
nameservers = ["127.0.0.1:9"]
lookup_unknown = false
[dnsbl]
zones = []
[greylist]
max_pending_per_network = 100000
TOML

target/release/spamgate serve -c "$T/spamgate.toml" &
DAEMON=$!
for _ in $(seq 100); do [[ -S $T/policy.sock ]] && break; sleep 0.1; done
[[ -S $T/policy.sock ]] || { echo "spamgate did not start" >&2; exit 1; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON/status"; }

case $mode in
load)
    conns=${2:-2000}
    per=${3:-50}
    total=$((conns * per))
    target/release/spamgate-loadgen --target "unix:$T/policy.sock" -c "$conns" -n "$total" \
        --warmup 0 --listed-share 0 --server-pid "$DAEMON" --json >"$T/report.json"
    python3 - "$T/report.json" "$total" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); want = int(sys.argv[2])
l = r["latency_us"]
print(f"load: {r['connections']} connections, {r['requests']} requests answered of {want}, "
      f"{r['errors']} errors, {r['requests_per_second']:.0f} req/s, "
      f"p50 {l['p50']} us, p99 {l['p99']} us, max {l['max']} us; actions {r['actions']}")
sys.exit(0 if r["requests"] == want and r["errors"] == 0 else 1)
PY
    echo "load: daemon RSS after the run: $(rss_kib) KiB"
    ;;
soak)
    seconds=${2:-600}
    conns=${3:-64}
    target/release/spamgate-loadgen --target "unix:$T/policy.sock" -c "$conns" -n 1000000000 \
        --duration "$seconds" --warmup 0 --listed-share 0 --json >"$T/report.json" &
    LOAD=$!
    : >"$T/rss"
    elapsed=0
    while kill -0 "$LOAD" 2>/dev/null; do
        sleep 10
        elapsed=$((elapsed + 10))
        echo "$elapsed $(rss_kib)" | tee -a "$T/rss"
    done
    wait "$LOAD"
    python3 - "$T/rss" "$T/report.json" <<'PY'
import json, sys
samples = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
r = json.load(open(sys.argv[2]))
first = next((kib for t, kib in samples if t >= 60), samples[0][1])
last = samples[-1][1]; peak = max(k for _, k in samples)
growth = (last - first) / first * 100
print(f"soak: {samples[-1][0]} s, {r['requests']} requests, {r['errors']} errors, "
      f"{r['requests_per_second']:.0f} req/s; RSS at 1 min {first} KiB, end {last} KiB, "
      f"peak {peak} KiB, growth {growth:+.1f} %")
sys.exit(0 if r["errors"] == 0 and growth <= 20 else 1)
PY
    ;;
*)
    echo "usage: $0 load|soak ..." >&2
    exit 2
    ;;
esac
