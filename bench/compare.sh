#!/usr/bin/env bash
# Benchmark spamgate against the protocol limit (policy-baseline) and its peers (postgrey,
# sqlgrey, gross) under one seeded workload, at several connection counts, and print one
# Markdown table with the headline ratios. Everything runs on loopback; nothing leaves the
# machine. See docs/performance.md for the workload and how to read the figures.
#
#   bench/compare.sh [--seconds S] [--connections "1 8 64"] [--servers "baseline spamgate ..."]
#                    [--out FILE] [--keep] [--no-build] [--max-load L]
#
# Needs root only to install missing Debian packages and to start the peers as their users.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CELL_SECONDS=8          # measured seconds per (server, C) cell
LEVELS="1 8 64"
SERVERS="baseline spamgate spamgate-window spamgate-all spamgate-info postgrey sqlgrey gross"
OUT=""
KEEP=0
BUILD=1
MAX_LOAD=1.5            # wait while the 1-minute load average is above this
SEED=1
WARMUP=5000             # the first WARMUP requests visit each of the 5000 clients once
MAX_REQUESTS=5000000    # per cell; the time limit is what normally ends a cell

while (($#)); do
    case $1 in
        --seconds) CELL_SECONDS=$2; shift 2 ;;
        --connections) LEVELS=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --max-load) MAX_LOAD=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 64 ;;
    esac
done

log() { printf '[compare] %s\n' "$*" >&2; }

# --- packages ---------------------------------------------------------------------------
install_missing() {
    local missing=()
    command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
    command -v rbldnsd >/dev/null || missing+=(rbldnsd)
    [[ " $SERVERS " == *" postgrey "* ]] && ! command -v postgrey >/dev/null && missing+=(postgrey)
    [[ " $SERVERS " == *" sqlgrey "* ]] && ! command -v sqlgrey >/dev/null && missing+=(sqlgrey)
    [[ " $SERVERS " == *" sqlgrey "* ]] && ! perl -MDBD::SQLite -e1 2>/dev/null && missing+=(libdbd-sqlite3-perl)
    [[ " $SERVERS " == *" gross "* ]] && ! command -v grossd >/dev/null && missing+=(gross)
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    local made_policy=0
    # Keep the packages' own services from starting: we start private instances.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    return 0
}

# --- processes we start, and only those, are stopped on exit ------------------------------
PIDS=()
WORK=""
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $WORK && $KEEP == 0 ]]; then
        rm -rf "$WORK"
    elif [[ -n $WORK ]]; then
        log "kept $WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop() { # stop one server we started: by its pid, then forget it
    local pid=$1 i
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in "${!PIDS[@]}"; do
        [[ ${PIDS[$i]} == "$pid" ]] && unset 'PIDS[i]'
    done
}

USED_PORTS=" "
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 20000))
        [[ $USED_PORTS == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            USED_PORTS+="$port "
            echo "$port"
            return
        fi
    done
}

wait_tcp() { # wait until PORT accepts connections, or fail if PID died
    local port=$1 pid=$2 name=$3 i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited; its log:"; tail -20 "$WORK/$name.log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    log "$name did not listen on $port within 10 s"; return 1
}

wait_quiet() {
    local load i
    for i in 1 2 3 4 5 6; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        if awk -v l="$load" -v m="$MAX_LOAD" 'BEGIN { exit !(l <= m) }'; then
            echo "$load"; return
        fi
        log "load average $load > $MAX_LOAD; waiting 30 s ($i/6)"
        sleep 30
    done
    load=$(cut -d' ' -f1 /proc/loadavg)
    log "measuring anyway at load $load"
    echo "$load"
}

# --- build --------------------------------------------------------------------------------
install_missing
if ((BUILD)); then
    log "building (release)"
    (cd "$ROOT" && cargo build --release -q -p spamgate -p spamgate-loadgen)
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
SPAMGATE=${SPAMGATE_BIN:-$BIN/spamgate}
LOADGEN=$BIN/spamgate-loadgen
BASELINE=$BIN/policy-baseline
for b in "$SPAMGATE" "$LOADGEN" "$BASELINE"; do
    [[ -x $b ]] || { log "missing $b (build it, or drop --no-build)"; exit 1; }
done

WORK=$(mktemp -d /tmp/spamgate-bench.XXXXXX)
chmod 755 "$WORK" # rbldnsd, postgrey, sqlgrey and gross run as their own users
RESULTS=$WORK/results.jsonl
NOTES=$WORK/notes.md
: >"$RESULTS"
: >"$NOTES"
WORKLOAD=(--seed "$SEED")

# --- local DNS: rbldnsd serves bl.test, dnsmasq answers PTR/A and forwards bl.test --------
mkdir -p "$WORK/dns"
"$LOADGEN" "${WORKLOAD[@]}" --write-zones "$WORK/dns" >/dev/null
chmod -R a+rX "$WORK/dns"
RBL_PORT=$(free_port)
DNS_PORT=$(free_port)
rbldnsd -n -q -b "127.0.0.1/$RBL_PORT" -w "$WORK/dns" \
    bl.test:ip4set:bl.test.ip4set bl.test:ip6trie:bl.test.ip6trie >"$WORK/rbldnsd.log" 2>&1 &
PIDS+=($!)
dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
    --listen-address=127.0.0.1 --port="$DNS_PORT" --pid-file= --cache-size=10000 \
    --conf-file="$WORK/dns/dnsmasq.conf" --server="/bl.test/127.0.0.1#$RBL_PORT" \
    >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)
wait_tcp "$DNS_PORT" "$!" dnsmasq

# --- servers ------------------------------------------------------------------------------
spamgate_config() { # NAME LOG_LEVEL GREYLIST_CLASSES PORT [DURABILITY_WINDOW]
    local name=$1 level=$2 classes=$3 port=$4 window=${5:-0s}
    mkdir -p "$WORK/$name"
    cat >"$WORK/$name/spamgate.toml" <<EOF
log_level = "$level"
[server]
listen = ["127.0.0.1:$port"]
[store]
path = "$WORK/$name/spamgate.db"
durability_window = "$window"
[dns]
nameservers = ["127.0.0.1:$DNS_PORT"]
[dnsbl]
zones = ["bl.test"]
[greylist]
classes = $classes
EOF
}

SELECTIVE='["no-ptr", "ptr-not-confirmed", "dns-tempfail", "generic"]'
EVERYONE='["no-ptr", "ptr-not-confirmed", "dns-tempfail", "generic", "proper"]'

start_server() { # NAME PORT -> sets SERVER_PID
    local name=$1 port=$2 dir=$WORK/$1
    mkdir -p "$dir"
    case $name in
        baseline)
            "$BASELINE" --listen "127.0.0.1:$port" >"$WORK/$name.log" 2>&1 & ;;
        spamgate)
            spamgate_config "$name" warn "$SELECTIVE" "$port"
            "$SPAMGATE" serve -c "$dir/spamgate.toml" >"$WORK/$name.log" 2>&1 & ;;
        spamgate-window)
            # A 50 ms durability window: answers before the commit (a crash loses the
            # window's changes). The default commits before answering.
            spamgate_config "$name" warn "$SELECTIVE" "$port" 50ms
            "$SPAMGATE" serve -c "$dir/spamgate.toml" >"$WORK/$name.log" 2>&1 & ;;
        spamgate-all)
            spamgate_config "$name" warn "$EVERYONE" "$port"
            "$SPAMGATE" serve -c "$dir/spamgate.toml" >"$WORK/$name.log" 2>&1 & ;;
        spamgate-info)
            # Every decision logged (one line each) to a file.
            spamgate_config "$name" info "$SELECTIVE" "$port"
            "$SPAMGATE" serve -c "$dir/spamgate.toml" >"$WORK/$name.log" 2>&1 & ;;
        postgrey)
            chown postgrey:postgrey "$dir"
            # -q: no line per decision (its quietest setting); default delay and windows.
            postgrey -q --inet="127.0.0.1:$port" --dbdir="$dir" --user=postgrey \
                --group=postgrey >"$WORK/$name.log" 2>&1 & ;;
        sqlgrey)
            chown sqlgrey:sqlgrey "$dir"
            cat >"$dir/sqlgrey.conf" <<EOF
loglevel = 0
inet = 127.0.0.1:$port
db_type = SQLite
db_name = $dir/sqlgrey.db
admin_mail =
EOF
            sqlgrey -f "$dir/sqlgrey.conf" >"$WORK/$name.log" 2>&1 & ;;
        gross)
            chown gross "$dir"
            # No checks configured: gross greylists every triplet (classic greylisting).
            cat >"$dir/grossd.conf" <<EOF
host = 127.0.0.1
port = $port
protocol = postfix
statefile = $dir/grossd.state
log_level = error
EOF
            grossd -f "$dir/grossd.conf" -C >/dev/null 2>&1 || true
            chown gross "$dir"/grossd.state 2>/dev/null || true
            grossd -d -r -u gross -f "$dir/grossd.conf" >"$WORK/$name.log" 2>&1 & ;;
        *) log "unknown server $name"; return 1 ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_tcp "$port" "$SERVER_PID" "$name"
}

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

# Other work on the machine moves every figure: wait (a while) for it to calm down once,
# then record the load before each server's runs.
START_LOAD=$(wait_quiet)
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
for server in $SERVERS; do
    port=$(free_port)
    load=$(cut -d' ' -f1 /proc/loadavg)
    start_server "$server" "$port" || { log "skipping $server"; continue; }
    first=0
    for c in $LEVELS; do
        log "$server C=$c (${CELL_SECONDS} s)"
        json=$("$LOADGEN" "${WORKLOAD[@]}" --target "127.0.0.1:$port" --connections "$c" \
            --requests "$MAX_REQUESTS" --duration "$CELL_SECONDS" --warmup "$WARMUP" --warmup-connections 64 \
            --first "$first" --label "$server" --server-pid "$SERVER_PID" --json) || { log "$server C=$c failed"; continue; }
        echo "$json" >>"$RESULTS"
        first=$(grep -o '"next_index":[0-9]*' <<<"$json" | cut -d: -f2)
    done
    echo "- $server: load average $load before its runs; RSS after $(rss_kib "$SERVER_PID") KiB" >>"$NOTES"
    stop "$SERVER_PID"
done

{
    echo "Run $START_DATE on $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p')), $CELL_SECONDS s per cell, seed $SEED, load average $START_LOAD at the start."
    echo
    "$LOADGEN" --summarize "$RESULTS"
    echo
    cat "$NOTES"
} | if [[ -n $OUT ]]; then tee "$OUT"; else cat; fi
if [[ -n $OUT ]]; then cp "$RESULTS" "${OUT%.*}.jsonl"; fi
