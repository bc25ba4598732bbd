#!/usr/bin/env bash
# Memory and file size per greylist entry, and whether expiry disturbs answers.
#
#   bench/greylist-size.sh [--entries N] [--window DURATION] [--no-build] [--keep]
#
# 1. Starts spamgate with no DNS lists, greylisting every client that Postfix calls
#    `unknown` (the workload sends only such clients, each request a new triplet, so every
#    request stores one entry; clients spread over 100,000 IPv6 /64s so no network reaches
#    max_pending_per_network).
# 2. Stores N entries (default 1,000,000) and reports RSS growth per entry and the SQLite
#    file size (database + WAL) per entry.
# 3. Measures p99 for 20 s right after the fill (nothing expired yet), waits until every
#    entry is past its retry window (default 6 minutes after it was stored), then measures
#    p99 again for 60 s while the cleanup task deletes the expired entries in batches.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENTRIES=1000000
WINDOW_SECONDS=360
BUILD=1
KEEP=0
while (($#)); do
    case $1 in
        --entries) ENTRIES=$2; shift 2 ;;
        --window) WINDOW_SECONDS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 64 ;;
    esac
done
log() { printf '[greylist-size] %s\n' "$*" >&2; }

if ((BUILD)); then
    (cd "$ROOT" && cargo build --release -q -p spamgate -p spamgate-loadgen)
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
SPAMGATE=${SPAMGATE_BIN:-$BIN/spamgate}
LOADGEN=$BIN/spamgate-loadgen

WORK=$(mktemp -d /tmp/spamgate-size.XXXXXX)
PID=""
cleanup() {
    [[ -n $PID ]] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    if ((KEEP)); then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$((20000 + RANDOM % 20000))
cat >"$WORK/spamgate.toml" <<EOF
# The cleanup task logs each run at info.
log_level = "warn,spamgate::daemon=info"
[server]
listen = ["127.0.0.1:$PORT"]
[store]
path = "$WORK/spamgate.db"
cleanup_interval = "15s"
[dns]
# Never asked: no lists, and Postfix's "unknown" is taken as is.
nameservers = ["127.0.0.1:9"]
lookup_unknown = false
[dnsbl]
zones = []
[greylist]
min_delay = "10s"
retry_window = "${WINDOW_SECONDS}s"
EOF

start() {
    "$SPAMGATE" serve -c "$WORK/spamgate.toml" >>"$WORK/spamgate.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        kill -0 "$PID" 2>/dev/null || { log "spamgate exited:"; cat "$WORK/spamgate.log" >&2; exit 1; }
        sleep 0.1
    done
}
stop() { # SIGTERM: the store commits, checkpoints and folds the WAL into the database
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}
start

FILL=(--mode fill --clients 200000 --ipv6-share 1 --unknown-share 1 --generic-share 0
      --listed-share 0 --warmup 0 --target "127.0.0.1:$PORT")
field() { grep -o "\"$1\":[0-9.]*" <<<"$2" | head -1 | cut -d: -f2; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$PID/status"; }
hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$PID/status"; }
db_bytes() { stat -c %s "$WORK/spamgate.db"; }
wal_bytes() { stat -c %s "$WORK/spamgate.db-wal" 2>/dev/null || echo 0; }
stored() { "$SPAMGATE" greylist stats -c "$WORK/spamgate.toml" 2>/dev/null | tr '\n' ' '; }

# A small first fill so the allocator, runtime and page cache are warm.
first=0
json=$("$LOADGEN" "${FILL[@]}" --connections 8 --requests 20000 --json)
first=$(field next_index "$json")
rss0=$(rss)
log "warm: RSS $rss0 KiB"

log "storing $ENTRIES entries"
started=$(date +%s)
json=$("$LOADGEN" "${FILL[@]}" --server-pid "$PID" --connections 64 --requests "$ENTRIES" --first "$first" --json)
first=$(field next_index "$json")
fill_rate=$(field requests_per_second "$json")
fill_cpu=$(field server_cpu_us_per_request "$json")
sleep 2 # let the last group commit land
rss1=$(rss); hwm1=$(hwm); wal1=$(wal_bytes)
counts=$(stored)
stop
db1=$(db_bytes) # all entries, WAL folded in
entries1=$(awk '{ for (i = 1; i < NF; i++) if ($i == "pending" || $i == "passed") n += $(i + 1) } END { print n }' <<<"$counts")
start

json=$("$LOADGEN" "${FILL[@]}" --connections 8 --requests 100000000 --duration 20 --first "$first" --json)
first=$(field next_index "$json")
p99_before=$(field p99 "$json"); p50_before=$(field p50 "$json"); rate_before=$(field requests_per_second "$json")

wait_until=$((started + WINDOW_SECONDS + 10))
now=$(date +%s)
if ((now < wait_until)); then
    log "waiting $((wait_until - now)) s until the filled entries are past their retry window"
    sleep $((wait_until - now))
fi
json=$("$LOADGEN" "${FILL[@]}" --connections 8 --requests 100000000 --duration 60 --first "$first" --json)
p99_during=$(field p99 "$json"); p50_during=$(field p50 "$json"); rate_during=$(field requests_per_second "$json")
sleep 1
rss2=$(rss); wal2=$(wal_bytes)
stop
db2=$(db_bytes)

awk -v n="$ENTRIES" -v e="$entries1" -v r0="$rss0" -v r1="$rss1" -v h="$hwm1" -v d1="$db1" \
    -v w1="$wal1" -v rate="$fill_rate" -v cpu="$fill_cpu" 'BEGIN {
    printf "| measure | value |\n|---|---|\n"
    printf "| entries stored by the fill | %d (at %.0f req/s, %.0f µs server CPU each); %d in the store |\n", n, rate, cpu, e
    printf "| RSS before → after the fill | %.1f MiB → %.1f MiB (peak %.1f MiB) |\n", r0/1024, r1/1024, h/1024
    printf "| RSS growth per entry | %.1f bytes |\n", (r1 - r0) * 1024 / n
    printf "| database file (WAL folded in) | %.1f MiB: %.0f bytes per entry, %.0f MB per 10^6 entries |\n", d1/1048576, d1/e, d1/e
    printf "| WAL file right after the fill | %.1f MiB |\n", w1/1048576
}'
echo "| p50 / p99 before expiry (20 s, C=8) | ${p50_before} / ${p99_before} µs at ${rate_before%.*} req/s |"
echo "| p50 / p99 during cleanup (60 s, C=8) | ${p50_during} / ${p99_during} µs at ${rate_during%.*} req/s |"
echo "| RSS / WAL at the end of cleanup | $((rss2 / 1024)) MiB / $((wal2 / 1048576)) MiB |"
echo "| database file after cleanup | $((db2 / 1048576)) MiB (freed pages are reused; the file does not shrink) |"
echo
echo "Cleanup runs logged by the daemon:"
grep -i 'expired' "$WORK/spamgate.log" | sed 's/^/    /' || echo "    (none)"
