#!/usr/bin/env bash
# Metrics against a real daemon: starts `spamgate serve` (loopback, a temporary SQLite
# store, no DNS server), asks it a few policy questions, then checks with promtool that
#  - /metrics in text format 0.0.4 (what promtool reads) passes `promtool check metrics`
#    and says `text/plain; version=0.0.4`, and a scraper asking for OpenMetrics gets
#    `application/openmetrics-text` ending in `# EOF`;
#  - dist/prometheus/spamgate-alerts.yml passes `promtool check rules`;
#  - every spamgate_* metric the alert rules and dist/grafana/spamgate.json use is in
#    the daemon's /metrics.
# Needs promtool (Debian package prometheus) and python3.
#   SPAMGATE_BIN=/path/to/spamgate  use this binary instead of building one
set -Eeuo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v promtool >/dev/null || { echo "metrics-check: promtool missing (apt-get install prometheus)" >&2; exit 1; }
if [[ -z ${SPAMGATE_BIN:-} ]]; then
    (cd "$REPO" && CARGO_INCREMENTAL=0 cargo build -q -p spamgate)
    SPAMGATE_BIN=$REPO/target/debug/spamgate
fi
T=$(mktemp -d)
PID=
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$T/spamgate.toml" <<TOML
[server]
listen = ["unix:$T/policy.sock"]
[store]
path = "$T/spamgate.db"
[dns]
nameservers = ["127.0.0.1:9"]
timeout = "200ms"
attempts = 1
[greylist]
min_delay = "1s"
[metrics]
listen = "127.0.0.1:$PORT"
TOML
"$SPAMGATE_BIN" serve -c "$T/spamgate.toml" 2>"$T/log" &
PID=$!

python3 - "$T" "$PORT" <<'PY'
import socket, sys, time, urllib.request
tmp, port = sys.argv[1], sys.argv[2]
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1); break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit("metrics-check: the daemon did not start: " + open(f"{tmp}/log").read())
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(f"{tmp}/policy.sock")
# A dynamic-looking client greylisted, then passing after the (1 s) delay; a client
# without a name greylisted and never back.
asks = [("203.0.113.7", "203-0-113-7.dyn.example.net"), ("198.51.100.9", "unknown"),
        None, ("203.0.113.7", "203-0-113-7.dyn.example.net")]
for ask in asks:
    if ask is None:
        time.sleep(1.5); continue
    client, name = ask
    req = (f"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address={client}\n"
           f"client_name={name}\nreverse_client_name={name}\nsender=a@example.org\n"
           "recipient=user@example.net\n\n")
    s.sendall(req.encode())
    reply = b""
    while not reply.endswith(b"\n\n"):
        chunk = s.recv(4096)
        if not chunk: sys.exit("metrics-check: connection closed")
        reply += chunk
    print("policy:", reply.decode().strip())
def get(accept):
    r = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(r, timeout=5) as resp:
        return resp.headers["Content-Type"], resp.read().decode()
ctype, body = get(None)
assert ctype.startswith("text/plain; version=0.0.4"), ctype
assert "# EOF" not in body
open(f"{tmp}/metrics.txt", "w").write(body)
ctype, om = get("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
assert ctype.startswith("application/openmetrics-text; version=1.0.0"), ctype
assert om.rstrip().endswith("# EOF"), om[-200:]
PY

echo "== promtool check metrics (text 0.0.4 from the daemon)"
promtool check metrics <"$T/metrics.txt"
echo "== promtool check rules"
promtool check rules "$REPO/dist/prometheus/spamgate-alerts.yml"
echo "== metric names used by the rules and the dashboard"
missing=0
for name in $(grep -ohE 'spamgate_[a-z_]+' "$REPO/dist/prometheus/spamgate-alerts.yml" "$REPO/dist/grafana/spamgate.json" | sort -u); do
    # A histogram's series are NAME_bucket/_sum/_count of a family NAME.
    family=${name%_bucket}
    if grep -qE "^# TYPE ($name|$family) " "$T/metrics.txt"; then
        echo "ok   $name"
    else
        echo "MISSING $name (not in the daemon's /metrics)"; missing=1
    fi
done
((missing == 0)) || exit 1
echo "metrics-check: passed"
