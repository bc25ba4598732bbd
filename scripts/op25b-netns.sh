#!/usr/bin/env bash
# OP25B in a real kernel: spamgate's rendered nftables rules, applied in a router network
# namespace, between customer namespaces and an outside mail host.
#
#   sg-cust   pool customer     198.51.100.10/25      2001:db8:100:1::10/64   (in a pool)
#   sg-static static-plan cust  198.51.100.130/28     2001:db8:100:ff00::10/64 (exempt)
#   sg-relay  ISP relay         192.0.2.25/24         2001:db8:25::25/64       listens on 25
#   sg-out    outside mail host 203.0.113.25/24       2001:db8:300::25/64      listens on 25, 587, 465
#   sg-router forwards between them; the rules are loaded here with `op25b apply`
#
# It shows: pool customer -> outside:25 is reset (refused at once, not timed out);
# -> outside:587 and :465 connect; -> relay:25 connects; static customer -> outside:25
# connects; the same over IPv6; the per-source hit table counts exactly the blocked
# attempts; `op25b sync` adds an opt-out without reloading the chains (the table keeps its
# handle and its counts) and removes it again; an opt-out with an expiry lapses by itself
# in the kernel; an invalid configuration is refused and leaves the loaded rules alone;
# a `spamgate serve` in the router namespace shows the same counts on its console
# dashboard (the app layer's OP25B monitor reading nftables).
# The abuse desk: `abuse suspend` of the customer an exemption names revokes it at once
# (port 25 from the static block reset), a sync by hand keeps it revoked, `abuse resume`
# restores it, the audit trail shows both; `abuse signals` files the pool customer's
# blocked attempts for the customer the address history names, once.
#
# Usage (as root):  bash scripts/op25b-netns.sh
#   SPAMGATE_BIN=/path/to/spamgate        use this binary instead of building one
#   KEEP=1                                keep the temporary directory (configs, rules)
#
# Everything happens inside the five namespaces (veth pairs are created in them directly);
# a trap kills the listeners this script started and deletes the namespaces. The host's
# own interfaces and firewall are never changed. Prints one PASS/FAIL line per case and
# ends with "op25b-netns: N passed, M failed"; exits non-zero on any failure.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The command that renders/applies/syncs/reads hits.
SPAMGATE_BIN=${SPAMGATE_BIN:-}
OP25B_CMD="${SPAMGATE_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/spamgate} op25b"

NAMESPACES=(sg-cust sg-static sg-router sg-relay sg-out)
TABLE=spamgate_op25b
CUST4=198.51.100.10    CUST6=2001:db8:100:1::10
STATIC4=198.51.100.130 STATIC6=2001:db8:100:ff00::10
RELAY4=192.0.2.25      RELAY6=2001:db8:25::25
OUT4=203.0.113.25      OUT6=2001:db8:300::25

log() { printf '%s\n' "$*" >&2; }
die() { log "op25b-netns: $*"; exit 2; }

[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, nftables)"

install_deps() {
    local missing=()
    command -v nft >/dev/null || missing+=(nftables)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v python3 >/dev/null || missing+=(python3)
    ((${#missing[@]})) || return 0
    log "op25b-netns: installing ${missing[*]}"
    local own_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    [[ -z $own_policy ]] || rm -f /usr/sbin/policy-rc.d
}
install_deps

if [[ -z $SPAMGATE_BIN ]]; then
    (cd "$REPO" && cargo build -q -p spamgate) || die "build failed"
fi
PYTHON=$(command -v python3)

for ns in "${NAMESPACES[@]}"; do
    [[ ! -e /run/netns/$ns ]] || die "namespace $ns exists (left from an earlier run? remove it with: ip netns del $ns)"
done

T=$(mktemp -d /tmp/op25b-netns.XXXXXX)
CREATED=()
LISTENER_PIDS=()
cleanup() {
    local pid ns
    for pid in "${LISTENER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for ns in "${CREATED[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    if [[ -n ${KEEP:-} ]]; then log "op25b-netns: kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'PASS %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$*"; }

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
op25b() { in_ns sg-router $OP25B_CMD "$@"; }   # word-split on purpose: "spamgate op25b"

# ---------------------------------------------------------------------------------------
# Topology. Each veth pair is created inside sg-router with its peer placed straight into
# the other namespace, so no interface ever appears in the host's namespace.

for ns in "${NAMESPACES[@]}"; do
    ip netns add "$ns"
    CREATED+=("$ns")
    in_ns "$ns" ip link set lo up
done
in_ns sg-router sysctl -qw net.ipv4.ip_forward=1
in_ns sg-router sysctl -qw net.ipv6.conf.all.forwarding=1

# link NS ROUTER_IF ROUTER_V4/LEN ROUTER_V6/LEN HOST_V4/LEN HOST_V6/LEN ROUTER_V4 ROUTER_V6
link() {
    local ns=$1 rif=$2 r4=$3 r6=$4 h4=$5 h6=$6 gw4=$7 gw6=$8
    ip -n sg-router link add "$rif" type veth peer name eth0 netns "$ns"
    ip -n sg-router addr add "$r4" dev "$rif"
    ip -n sg-router addr add "$r6" dev "$rif" nodad
    ip -n sg-router link set "$rif" up
    ip -n "$ns" addr add "$h4" dev eth0
    ip -n "$ns" addr add "$h6" dev eth0 nodad
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$gw4"
    ip -n "$ns" -6 route add default via "$gw6"
}
link sg-cust   r-cust   198.51.100.1/25   2001:db8:100:1::1/64    "$CUST4/25"   "$CUST6/64"   198.51.100.1   2001:db8:100:1::1
link sg-static r-static 198.51.100.129/28 2001:db8:100:ff00::1/64 "$STATIC4/28" "$STATIC6/64" 198.51.100.129 2001:db8:100:ff00::1
link sg-relay  r-relay  192.0.2.1/24      2001:db8:25::1/64       "$RELAY4/24"  "$RELAY6/64"  192.0.2.1      2001:db8:25::1
link sg-out    r-out    203.0.113.1/24    2001:db8:300::1/64      "$OUT4/24"    "$OUT6/64"    203.0.113.1    2001:db8:300::1

# A tiny TCP listener: accepts on every given port (IPv4 and IPv6) and closes at once.
LISTENER='
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(64)
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.close()
'
listen() {
    local ns=$1; shift
    in_ns "$ns" "$PYTHON" -c "$LISTENER" "$@" >"$T/listener-$ns.log" 2>&1 &
    LISTENER_PIDS+=($!)
    local i
    for i in $(seq 50); do
        grep -q ready "$T/listener-$ns.log" 2>/dev/null && return 0
        sleep 0.1
    done
    die "listener in $ns did not start: $(cat "$T/listener-$ns.log")"
}
listen sg-out 25 587 465
listen sg-relay 25

# probe NS ADDR PORT: sets PROBE to "connected", "refused", "timeout" or "error: ..." and
# PROBE_MS to the time taken. bash's /dev/tcp makes one connect(); `timeout 3` bounds a dropped SYN.
probe() {
    local ns=$1 addr=$2 port=$3 start rc=0 err
    start=$(date +%s%N)
    err=$(in_ns "$ns" timeout 3 bash -c "exec 3<>/dev/tcp/$addr/$port" 2>&1) || rc=$?
    PROBE_MS=$((($(date +%s%N) - start) / 1000000))
    if ((rc == 0)); then
        PROBE=connected
    elif ((rc == 124)); then
        PROBE=timeout
    elif [[ $err == *"Connection refused"* ]]; then
        PROBE=refused
    else
        PROBE="error: ${err//$'\n'/ }"
    fi
}

# expect WANT LABEL NS ADDR PORT. "refused" must also be immediate (a reset, not a drop).
BLOCKED4=0 BLOCKED6=0
expect() {
    local want=$1 label=$2 ns=$3 addr=$4 port=$5 got
    probe "$ns" "$addr" "$port"
    got=$PROBE
    if [[ $got == refused ]]; then
        [[ $addr == *:* ]] && BLOCKED6=$((BLOCKED6 + 1)) || BLOCKED4=$((BLOCKED4 + 1))
    fi
    if [[ $got == "$want" && ($want != refused || $PROBE_MS -lt 1000) ]]; then
        pass "$label: $got (${PROBE_MS} ms)"
    else
        fail "$label: want $want, got $got (${PROBE_MS} ms)"
    fi
}

# ---------------------------------------------------------------------------------------
# Baseline: without rules everything connects, so a later refusal is the rules' doing.

expect connected "no rules yet: pool customer -> outside:25" sg-cust "$OUT4" 25
expect connected "no rules yet: pool customer -> outside:25 (IPv6)" sg-cust "$OUT6" 25

# ---------------------------------------------------------------------------------------
# Load the rules.

cat >"$T/spamgate.toml" <<EOF
# Other spamgate tables may sit here; op25b reads only [op25b].
[op25b]
table = "$TABLE"
pools = ["198.51.100.0/24", "2001:db8:100::/48"]
relays = ["$RELAY4", "$RELAY6"]
log_rate = "10/minute"
exempt = [
  { prefix = "198.51.100.128/28", reason = "static plan (business)" },
  { prefix = "2001:db8:100:ff00::/56", reason = "static plan (business)" },
  { prefix = "198.51.100.99", reason = "opt-out, expired", expires = 2020-01-01 },
]
EOF

if op25b apply --config "$T/spamgate.toml" 2>"$T/apply.log"; then
    pass "op25b apply loaded table inet $TABLE in sg-router"
else
    fail "op25b apply: $(cat "$T/apply.log")"
fi
grep -q "expired" "$T/apply.log" && pass "apply reported the expired exemption it skipped" \
    || fail "apply did not report the expired exemption: $(cat "$T/apply.log")"
table_handle() { in_ns sg-router nft -a list table inet "$TABLE" 2>/dev/null | sed -n '1s/.*# handle \([0-9]*\).*/\1/p'; }
HANDLE=$(table_handle)

# ---------------------------------------------------------------------------------------
# The cases.

expect refused   "pool customer -> outside:25 is reset"          sg-cust   "$OUT4" 25
expect connected "pool customer -> outside:587 (submission)"     sg-cust   "$OUT4" 587
expect connected "pool customer -> outside:465 (submissions)"    sg-cust   "$OUT4" 465
expect connected "pool customer -> ISP relay:25"                 sg-cust   "$RELAY4" 25
expect connected "static-plan customer -> outside:25"            sg-static "$OUT4" 25
expect refused   "IPv6: pool customer -> outside:25 is reset"    sg-cust   "$OUT6" 25
expect connected "IPv6: pool customer -> outside:587"            sg-cust   "$OUT6" 587
expect connected "IPv6: pool customer -> outside:465"            sg-cust   "$OUT6" 465
expect connected "IPv6: pool customer -> ISP relay:25"           sg-cust   "$RELAY6" 25
expect connected "IPv6: static-plan customer -> outside:25"      sg-static "$OUT6" 25
# A bot retrying: every attempt is reset and counted.
for i in 1 2 3; do
    expect refused "pool customer -> outside:25, retry $i" sg-cust "$OUT4" 25
done

# hits_of ADDR FILE: the packet count reported for ADDR (0 if absent).
hits_of() {
    "$PYTHON" -c 'import json,sys; print(sum(h["packets"] for h in json.load(open(sys.argv[2])) if h["source"]==sys.argv[1]))' "$1" "$2"
}
check_hits() {
    local label=$1 file=$T/hits-$RANDOM.json got4 got6 others
    if ! op25b hits --config "$T/spamgate.toml" --json >"$file" 2>"$T/hits.log"; then
        fail "$label: op25b hits failed: $(cat "$T/hits.log")"
        return
    fi
    got4=$(hits_of "$CUST4" "$file")
    got6=$(hits_of "$CUST6" "$file")
    others=$("$PYTHON" -c 'import json,sys; print(len([h for h in json.load(open(sys.argv[1])) if h["source"] not in sys.argv[2:]]))' "$file" "$CUST4" "$CUST6")
    if [[ $got4 == "$BLOCKED4" && $got6 == "$BLOCKED6" && $others == 0 ]]; then
        pass "$label: hits show $CUST4 x$got4, $CUST6 x$got6, no other source"
    else
        fail "$label: hits $CUST4 x$got4 (want $BLOCKED4), $CUST6 x$got6 (want $BLOCKED6), $others other sources: $(cat "$file")"
    fi
}
check_hits "per-source counts"
op25b hits --config "$T/spamgate.toml" | sed 's/^/    /'

# The daemon's dashboard shows the same counts: `spamgate serve` in sg-router (as root,
# so it may read nftables) with [op25b] and the admin listener on the namespace's
# loopback; its console page, fetched with an API token, carries the kernel's counts.
SG=${OP25B_CMD% op25b}
mkdir -p "$T/serve"
{
    printf '[server]\nlisten = ["127.0.0.1:10041"]\ndisplay_timezone = "+09:00"\n'
    printf '[store]\npath = "%s"\n' "$T/serve/spamgate.db"
    printf '[dns]\nnameservers = ["127.0.0.1:53"]\ntimeout = "1s"\nattempts = 1\n'
    printf '[admin]\nlisten = "127.0.0.1:8025"\n'
    sed -n '/^\[op25b\]/,$p' "$T/spamgate.toml"
} >"$T/serve.toml"
printf 'netns-viewer-password-1\n' | in_ns sg-router $SG admin user add vera --role viewer -c "$T/serve.toml" >/dev/null 2>&1 \
    || fail "admin user add (serve)"
TOKEN=$(in_ns sg-router $SG admin token add vera --label op25b-netns -c "$T/serve.toml" 2>/dev/null)
in_ns sg-router $SG serve -c "$T/serve.toml" >"$T/serve.log" 2>&1 &
LISTENER_PIDS+=($!)
for _ in $(seq 100); do
    in_ns sg-router bash -c 'exec 3<>/dev/tcp/127.0.0.1/8025' 2>/dev/null && break
    sleep 0.1
done
DASH='
import re, sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:8025/console/",
                             headers={"Authorization": "Bearer " + sys.argv[1]})
html = urllib.request.urlopen(req, timeout=15).read().decode()
state = re.search(r"<section id=\"op25b\" data-state=\"([a-z-]+)\"", html)
total = re.search(r"<td id=\"op25b-total\">(\d+)</td>", html)
def bar(source):
    m = re.search(r"data-series=\"" + re.escape(source) + r"\" data-value=\"(\d+)\"", html)
    return m.group(1) if m else "absent"
print(state.group(1) if state else "no-panel", total.group(1) if total else "-",
      bar(sys.argv[2]), bar(sys.argv[3]))
'
if got=$(in_ns sg-router "$PYTHON" -c "$DASH" "$TOKEN" "$CUST4" "$CUST6" 2>"$T/dash.log"); then
    want="counts $((BLOCKED4 + BLOCKED6)) $BLOCKED4 $BLOCKED6"
    if [[ $got == "$want" ]]; then
        pass "the daemon's dashboard shows the kernel's counts: $CUST4 x$BLOCKED4, $CUST6 x$BLOCKED6"
    else
        fail "dashboard OP25B panel: got '$got', want '$want'"
    fi
else
    fail "dashboard fetch: $(cat "$T/dash.log") $(tail -n 5 "$T/serve.log")"
fi

# ---------------------------------------------------------------------------------------
# Opt-outs through sync: set elements only, no reload.

sed 's/^exempt = \[/exempt = [\n  { prefix = "198.51.100.10", reason = "opt-out #42: runs own MTA" },\n  { prefix = "2001:db8:100:1::\/64", reason = "opt-out #42: runs own MTA" },/' \
    "$T/spamgate.toml" >"$T/optout.toml"
if op25b sync --config "$T/optout.toml" 2>"$T/sync.log"; then
    pass "op25b sync added the opt-out"
else
    fail "op25b sync: $(cat "$T/sync.log")"
fi
[[ $(table_handle) == "$HANDLE" && -n $HANDLE ]] && pass "sync kept the table (handle $HANDLE): the chains were not reloaded" \
    || fail "sync replaced the table (handle $HANDLE -> $(table_handle))"
check_hits "after sync, the counts are kept"
expect connected "opted-out customer -> outside:25" sg-cust "$OUT4" 25
expect connected "IPv6: opted-out customer -> outside:25" sg-cust "$OUT6" 25

if op25b sync --config "$T/spamgate.toml" 2>"$T/sync.log"; then
    pass "op25b sync removed the opt-out"
else
    fail "op25b sync (removal): $(cat "$T/sync.log")"
fi
expect refused "opt-out withdrawn: pool customer -> outside:25 is reset again" sg-cust "$OUT4" 25

# An opt-out with an expiry lapses in the kernel at that time, with no command run.
until_time=$(date -u -d '+6 seconds' +%Y-%m-%dT%H:%M:%SZ)
sed "s/^exempt = \[/exempt = [\n  { prefix = \"198.51.100.10\", reason = \"trial opt-out\", expires = \"$until_time\" },/" \
    "$T/spamgate.toml" >"$T/expiring.toml"
op25b sync --config "$T/expiring.toml" 2>"$T/sync.log" || fail "op25b sync (expiring): $(cat "$T/sync.log")"
expect connected "opt-out until $until_time: customer -> outside:25 before it" sg-cust "$OUT4" 25
while [[ $(date -u +%s) -le $(date -u -d "$until_time" +%s) ]]; do sleep 0.5; done
sleep 1
expect refused "opt-out expired in the kernel: customer -> outside:25 is reset" sg-cust "$OUT4" 25

# ---------------------------------------------------------------------------------------
# The abuse desk's ladder: the static customer's IPv4 exemption names it, so `abuse
# suspend` revokes it at once (the desk runs the sync in sg-router), a sync by hand does
# not bring it back, and `abuse resume` restores it. OP25B hits become a report for the
# customer who held the blocked address.

SG_BIN=${OP25B_CMD% op25b}
mkdir -p "$T/desk"
sed 's|{ prefix = "198.51.100.128/28", reason = "static plan (business)" }|{ prefix = "198.51.100.128/28", reason = "static plan (business)", customer = "C-STATIC" }|' \
    "$T/spamgate.toml" >"$T/desk.toml"
printf '\n[store]\npath = "%s"\n\n[desk]\nop25b_nft = ["ip", "netns", "exec", "sg-router", "nft"]\nsignal_op25b_hits = 1\n' \
    "$T/desk/spamgate.db" >>"$T/desk.toml"
desk() { $SG_BIN "$@" --config "$T/desk.toml"; }
desk customer add C-STATIC --name "Static Co" --contact static@example.com --language en --plan business >/dev/null \
    && desk customer add C-POOL --name "Pool user" --contact pool@example.com --language ja --plan home >/dev/null \
    || fail "customer add"
if desk abuse suspend C-STATIC --reason "spam run" --actor alice --approver bob >"$T/suspend.log" 2>&1 \
    && grep -Eq "^op25b [0-9]+	C-STATIC	revoke	done	198.51.100.128/28 revoked" "$T/suspend.log"; then
    pass "abuse suspend revoked the customer's exemption (sync in sg-router)"
else
    fail "abuse suspend: $(cat "$T/suspend.log")"
fi
expect refused   "suspended customer's static block -> outside:25 is reset"      sg-static "$OUT4" 25
expect connected "IPv6 exemption names no customer: static -> outside:25 still" sg-static "$OUT6" 25
expect connected "suspended customer -> outside:587 still"                       sg-static "$OUT4" 587
if op25b sync --config "$T/desk.toml" 2>"$T/sync.log" \
    && grep -q "revoked: the abuse desk has customer C-STATIC" "$T/sync.log"; then
    pass "op25b sync by hand keeps the revocation and says so"
else
    fail "op25b sync with the desk: $(cat "$T/sync.log")"
fi
expect refused   "after a sync by hand: still reset"                             sg-static "$OUT4" 25
if desk abuse resume C-STATIC --reason "cleaned up" --actor alice >"$T/resume.log" 2>&1 \
    && grep -Eq "^op25b [0-9]+	C-STATIC	restore	done	198.51.100.128/28 in force" "$T/resume.log"; then
    pass "abuse resume restored the exemption"
else
    fail "abuse resume: $(cat "$T/resume.log")"
fi
expect connected "resumed customer's static block -> outside:25"                 sg-static "$OUT4" 25
if desk customer show C-STATIC >"$T/show.log" 2>&1 \
    && grep -q "op25b-revoke" "$T/show.log" && grep -q "op25b-restore" "$T/show.log"; then
    pass "the audit trail records the revocation and the restoration"
else
    fail "audit trail: $(cat "$T/show.log")"
fi
# The pool customer's blocked attempts above: a report for the address's holder.
printf 'C-POOL,%s/32,2020-01-01T00:00:00Z\n' "$CUST4" >"$T/static.csv"
desk sessions import --format static "$T/static.csv" >/dev/null || fail "sessions import"
if desk abuse signals >"$T/signals.log" 2>&1 \
    && grep -Eq "^filed report [0-9]+	C-POOL	case [0-9]+" "$T/signals.log"; then
    pass "abuse signals filed the OP25B hits of $CUST4 for C-POOL"
else
    fail "abuse signals: $(cat "$T/signals.log")"
fi
if desk abuse signals >"$T/signals2.log" 2>&1 && ! grep -q "^filed report" "$T/signals2.log"; then
    pass "abuse signals again: nothing filed twice"
else
    fail "abuse signals (again): $(cat "$T/signals2.log")"
fi

# ---------------------------------------------------------------------------------------
# Invalid input: clear error, nothing applied.

in_ns sg-router nft list table inet "$TABLE" | grep -v expires >"$T/before.nft"
# refuse LABEL FILE EXPECTED_TEXT: `op25b apply` must fail and say EXPECTED_TEXT.
refuse() {
    local label=$1 file=$2 want=$3 rc=0
    op25b apply --config "$file" 2>"$T/refused.log" || rc=$?
    if ((rc != 0)) && grep -qF "$want" "$T/refused.log"; then
        pass "$label refused (exit $rc): $(grep -m1 -F "$want" "$T/refused.log" | sed 's/^[ -]*//')"
    else
        fail "$label: exit $rc, $(cat "$T/refused.log")"
    fi
}
sed 's|^pools = .*|pools = ["198.51.100.0/24", "198.51.100.128/25", "2001:db8:100::/48"]|' \
    "$T/spamgate.toml" >"$T/overlap.toml"
refuse "overlapping pools" "$T/overlap.toml" "overlap"
sed 's|^pools = .*|pools = ["198.51.100.0/24", "2001:db8:100::1/48"]|' "$T/spamgate.toml" >"$T/hostbits.toml"
refuse "a pool with host bits set" "$T/hostbits.toml" "did you mean 2001:db8:100::/48?"
sed 's|^log_rate.*|log_rate = "10/minute"\nports_blocked = [25, 587]|' "$T/spamgate.toml" >"$T/port587.toml"
refuse "ports_blocked = [25, 587]" "$T/port587.toml" "587 and 465"
in_ns sg-router nft list table inet "$TABLE" | grep -v expires >"$T/after.nft"
if cmp -s "$T/before.nft" "$T/after.nft" && [[ $(table_handle) == "$HANDLE" ]]; then
    pass "after the refused config the loaded rules are unchanged"
else
    fail "the refused config changed the loaded rules"
fi

# A full reload does replace the table (so the handle check above can tell).
op25b apply --config "$T/spamgate.toml" 2>/dev/null
[[ $(table_handle) != "$HANDLE" ]] && pass "apply replaces the table atomically (handle $HANDLE -> $(table_handle))" \
    || fail "apply kept table handle $HANDLE"
expect refused "after re-apply: pool customer -> outside:25 is reset" sg-cust "$OUT4" 25

# Nothing reached the host: no table of ours and no veth of ours in the host's namespace.
if ! nft list tables 2>/dev/null | grep -qx "table inet $TABLE" \
    && ! ip -o link show | grep -Eq ' (r-cust|r-static|r-relay|r-out)[@:]'; then
    pass "the host namespace has no $TABLE table and none of the veths"
else
    fail "something leaked into the host namespace"
fi

echo "op25b-netns: $PASSED passed, $FAILED failed"
((FAILED == 0))
