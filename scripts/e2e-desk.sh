#!/usr/bin/env bash
# End-to-end suite of the abuse desk's intake: a real Postfix delivers mail for
# abuse@isp.example.jp through the alias pipe docs/abuse-desk.md documents
# (abuse: "|spamgate abuse ingest -c ..."), run by local(8) as an unprivileged user.
# swaks plays the reporting providers: an ARF report is stored and filed against the
# customer who held the address per an imported RADIUS detail file; the same report sent
# again is stored once; while the desk file cannot be written, ingest exits 75 and
# Postfix keeps the report queued (deferred), and once it can, a queue flush stores it:
# nothing accepted is lost.
#
# Usage (as root):  bash scripts/e2e-desk.sh
#   SPAMGATE_BIN=/path/to/spamgate  use this binary instead of building one
#   KEEP=1                          keep the temporary directory (logs, mailboxes)
#
# Everything runs inside a private network + mount + PID namespace (unshare): loopback
# only, /etc/hosts and /etc/resolv.conf replaced by bind mounts visible only inside. The
# machine's Postfix (/etc/postfix), resolver and port 25 are never touched. Prints one
# PASS/FAIL line per case and ends with "e2e-desk: N passed, M failed".
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESK_FIX=$REPO/crates/desk/tests
SUITE=e2e-desk
# shellcheck source=scripts/lib/e2e-common.sh
source "$REPO/scripts/lib/e2e-common.sh"

MX_PORT=2525   # the ISP's MX for isp.example.jp, inside the namespace
ACCOUNT=alice-smtp@isp.example.jp

outside() {
    [[ $(id -u) == 0 ]] || die "run as root (a private Postfix instance, namespaces)"
    install_missing postfix=postfix postalias=postfix swaks=swaks ip=iproute2 unshare=util-linux
    build_spamgate
    run_in_namespaces "${BASH_SOURCE[0]}"
}

cleanup() {
    local rc=$?
    set +e
    [[ -f $T/mx/etc/main.cf ]] && postfix -c "$T/mx/etc" stop >/dev/null 2>&1
    wait 2>/dev/null
    finish "$rc" "$T/mx/maillog"
}

setup_namespace() {
    ip link set lo up
    mkdir -p "$T/etc"
    printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$T/etc/resolv.conf"
    printf '127.0.0.1 localhost mx.isp.example.jp\n::1 localhost\n' >"$T/etc/hosts"
    chmod 644 "$T"/etc/*
    local f
    for f in resolv.conf hosts; do mount --bind "$T/etc/$f" "/etc/$f"; done
}

# The desk's configuration, the binary where the delivery user can run it, and the
# customer C-ALICE with her account, RADIUS user and the detail file imported.
setup_desk() {
    mkdir -p "$T/bin" "$T/state" "$T/desk"
    install -m 755 "$SPAMGATE_BIN" "$T/bin/spamgate"
    SG=$T/bin/spamgate
    cat >"$T/spamgate.toml" <<EOF
[store]
path = "$T/state/spamgate.db"
[desk]
path = "$T/desk/desk.db"
EOF
    chmod 644 "$T/spamgate.toml"
    "$SG" account add "$ACCOUNT" -c "$T/spamgate.toml" >/dev/null
    "$SG" customer add C-ALICE --name Alice --contact alice@example.jp -c "$T/spamgate.toml" >/dev/null
    "$SG" customer link C-ALICE --account "$ACCOUNT" --radius-user alice@isp.example.jp \
        -c "$T/spamgate.toml" >/dev/null
    "$SG" sessions import --format radius-detail "$DESK_FIX/history/radius-detail" \
        -c "$T/spamgate.toml" >/dev/null 2>&1
    # local(8) runs a root-owned alias's command as default_privs (nobody): it writes the
    # desk file, as docs/abuse-desk.md says.
    chown -R nobody:nogroup "$T/desk"
}

setup_mx() {
    local etc=$T/mx/etc
    mkdir -p "$etc" "$T/mx/queue" "$T/mx/data"
    cat >"$etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $T/mx/queue
data_directory = $T/mx/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $T/mx/maillog
maillog_file_prefixes = $T
myhostname = mx.isp.example.jp
mydomain = isp.example.jp
mydestination = isp.example.jp
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = \$myhostname ESMTP
alias_maps = hash:$etc/aliases
alias_database = hash:$etc/aliases
local_recipient_maps = \$alias_maps
default_privs = nobody
# A deferred report is retried on a flush, not on a timer, so the suite decides when.
queue_run_delay = 1h
minimal_backoff_time = 1h
biff = no
EOF
    cat >"$etc/master.cf" <<EOF
127.0.0.1:$MX_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
local     unix  -       n       n       -       -       local
showq     unix  n       -       n       -       -       showq
anvil     unix  -       -       n       -       1       anvil
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    # The alias line of docs/abuse-desk.md, with the suite's binary and configuration.
    printf 'abuse: "|%s abuse ingest -c %s"\n' "$SG" "$T/spamgate.toml" >"$etc/aliases"
    postalias -c "$etc" "hash:$etc/aliases"
    start_postfix mx
}

# report N: the RFC 5965 example about alice's line (192.0.2.10 at 10:00 JST, the
# address rewritten as in crates/spamgate/tests/desk.rs), made distinct by N.
report() {
    sed -e 's/192\.0\.2\.1/192.0.2.10/g' -e "s/^Subject: FW: Earn money/Subject: FW: Earn money $1/" \
        "$DESK_FIX/reports/arf-rfc5965.eml"
}

send_report() {
    report "$1" >"$T/report-$1.eml"
    swaks --server 127.0.0.1 --port "$MX_PORT" --from abusedesk@mail.example.net \
        --to abuse@isp.example.jp --data "$T/report-$1.eml" >"$T/swaks-$1.log" 2>&1
}

reports_stored() { "$SG" abuse reports -c "$T/spamgate.toml" 2>/dev/null | wc -l; }
delivered_count() { grep -c 'status=sent (delivered to command' "$T/mx/maillog" 2>/dev/null || true; }
have_delivered() { [[ $(delivered_count) -ge $1 ]]; }
deferred_seen() { grep -q 'status=deferred' "$T/mx/maillog" 2>/dev/null; }

run_cases() {
    if send_report 1 && wait_for "the alias pipe" 30 have_delivered 1 &&
        [[ $(reports_stored) == 1 ]]; then
        pass alias-pipe-stores "Postfix delivered the ARF report to abuse ingest; 1 report stored"
    else
        fail alias-pipe-stores "$(tail -n 2 "$T/mx/maillog" | tr '\n' ' ')"
    fi
    local cases
    cases=$("$SG" abuse cases -c "$T/spamgate.toml" 2>&1)
    if grep -q $'\tC-ALICE\tspam\topen\treports=1' <<<"$cases"; then
        pass report-attributed "filed against C-ALICE (RADIUS detail): ${cases%%$'\n'*}"
    else
        fail report-attributed "cases: $cases"
    fi

    # The very same message again (same bytes through the same pipe): counted, stored once.
    if swaks --server 127.0.0.1 --port "$MX_PORT" --from abusedesk@mail.example.net \
        --to abuse@isp.example.jp --data "$T/report-1.eml" >"$T/swaks-1b.log" 2>&1 &&
        wait_for "the second delivery" 30 have_delivered 2; then
        # swaks adds nothing to a --data message, but Postfix prepends its own Received:
        # and the queue id differs: the bytes differ, so it is a second raw message whose
        # original Message-ID the case has seen: it counts on the case, opens nothing.
        cases=$("$SG" abuse cases -c "$T/spamgate.toml" 2>&1)
        if [[ $(wc -l <<<"$cases") == 1 ]] && grep -q $'\treports=2\tduplicates=1' <<<"$cases"; then
            pass same-report-twice "one case, the copy counted as a duplicate: ${cases%%$'\n'*}"
        else
            fail same-report-twice "cases: $cases"
        fi
    else
        fail same-report-twice "second delivery not seen"
    fi

    # The desk file cannot be written: ingest exits 75, Postfix keeps the report.
    chmod 0555 "$T/desk"
    chmod 0444 "$T/desk/desk.db"
    local before
    before=$(reports_stored)
    if send_report 3 && wait_for "a deferral" 30 deferred_seen &&
        grep 'status=deferred' "$T/mx/maillog" | grep -q 'temporary failure' &&
        [[ $(reports_stored) == "$before" ]]; then
        pass tempfail-defers "exit 75 -> Postfix deferred the report: $(grep -o 'status=deferred.*' "$T/mx/maillog" | head -n 1 | cut -c1-120)"
    else
        fail tempfail-defers "$(grep -E 'status=' "$T/mx/maillog" | tail -n 2 | tr '\n' ' ')"
    fi
    chmod 0755 "$T/desk"
    chmod 0644 "$T/desk/desk.db"
    postqueue -c "$T/mx/etc" -f
    if wait_for "the retried delivery" 30 have_delivered 3 &&
        [[ $(reports_stored) == $((before + 1)) ]]; then
        pass retry-stores "after the flush the deferred report is stored ($(reports_stored) reports)"
    else
        fail retry-stores "reports: $(reports_stored); $(grep -E 'status=' "$T/mx/maillog" | tail -n 2 | tr '\n' ' ')"
    fi
    local raw_files
    raw_files=$(ls "$T"/report-*.eml | wc -l)
    printf -- '--- maillog deliveries (%s report files sent) ---\n' "$raw_files"
    grep -E 'status=(sent|deferred)' "$T/mx/maillog" | sed 's/^.*status=/status=/' | cut -c1-140
    printf -- '---\n'
}

inside() {
    T=$1
    SPAMGATE_BIN=$2
    trap cleanup EXIT
    setup_namespace
    setup_desk
    setup_mx
    wait_for "MX" 20 tcp_open 127.0.0.1 "$MX_PORT"
    run_cases
}

if [[ ${1:-} == --inside ]]; then
    inside "$2" "$3"
else
    outside
fi
