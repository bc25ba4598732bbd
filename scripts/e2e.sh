#!/usr/bin/env bash
# End-to-end suite: spamgate behind a real Postfix, with a real DNSBL server (rbldnsd), a
# real resolver (dnsmasq) and a real retrying MTA (a second Postfix). It plays the seed's
# diagram: a proper server's mail arrives; a suspicious server gets "send -> temporary
# error -> resend" and its mail arrives; a bot that never resends never gets through; a
# DNSBL-listed host is refused. With the tarpit on (a second spamgate, docs/postfix.md's
# tarpitted service), a client that waits out the held reply is accepted on its first
# attempt, and a bot that gives up is greylisted when it retries; a real sending Postfix
# on a generic-named address waits out the hold and is delivered without a greylist
# deferral, a bot on another one gives up and its mail never arrives, and beyond
# [tarpit] max_concurrent a client is greylisted at once (the metrics count each).
#
# Usage (as root):  bash scripts/e2e.sh
#   SPAMGATE_BIN=/path/to/spamgate  use this binary instead of building one
#   KEEP=1                          keep the temporary directory (logs, mailboxes)
#
# Installs what is missing from Debian's packages without starting any system service,
# builds spamgate, then runs everything inside a private network + mount + PID namespace
# (unshare): loopback only, the test addresses exist only there, dnsmasq is the
# namespace's resolver through a bind mount over /etc/resolv.conf (the real file is never
# written), and every process still alive when the suite ends is killed with the
# namespace. The machine's resolver, its system Postfix (/etc/postfix) and its port 25 are
# never touched. Prints one PASS/FAIL line per case and ends with "e2e: N passed, M failed".
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FIX=$REPO/tests/e2e
SUITE=e2e
# log, die, install_missing, build_spamgate, run_in_namespaces, pass, fail, finish,
# doc_block, wait_for, now, sleep_past, tcp_open, start_postfix.
# shellcheck source=scripts/lib/e2e-common.sh
source "$REPO/scripts/lib/e2e-common.sh"

# Seconds; spamgate's greylist min_delay for this run (production default: 5 minutes).
MIN_DELAY=5
# Ports inside the private network namespace.
MX_PORT=2525        # receiving MX, main.cf's TCP policy check
MX_UNIX_PORT=2526   # receiving MX, the chrooted listener from docs/postfix.md (UNIX socket)
RELAY_PORT=2625     # sending MTA's submission point for the harness
POLICY_PORT=10023   # spamgate, as in docs/postfix.md
RBLDNSD_PORT=5301
DEAD_PORT=5309      # nothing listens here: dnsmasq forwards the "temporary failure" PTR to it
TARPIT_PORT=2527    # receiving MX, the tarpitted service from docs/postfix.md (e2e:tarpit.master.cf)
TARPIT_POLICY_PORT=10024  # a second spamgate, [tarpit] on (tests/e2e/tarpit/spamgate.toml.in)
TARPIT_DELAY=4      # seconds that spamgate holds a first attempt there
TARPIT_METRICS_PORT=9124   # the tarpit spamgate's /metrics
TARPIT_SENDER_PORT=2626    # the tarpit case's sending MTA, submission point for the harness
# Real source addresses on lo (no XCLIENT): the sending MTA and the bot, and the same
# pair for the tarpitted service.
RELAY_ADDR=198.51.100.25
BOT_ADDR=198.51.100.66
TARPIT_SENDER_ADDR=198.51.100.27
TARPIT_BOT_ADDR=198.51.100.67
TARPIT_KILLED_ADDR=198.51.100.68

# ---------------------------------------------------------------------------------------
# Outside the namespace: dependencies and the build.

outside() {
    [[ $(id -u) == 0 ]] || die "run as root (private Postfix instances, namespaces)"
    install_missing postfix=postfix rbldnsd=rbldnsd dnsmasq=dnsmasq-base swaks=swaks \
        ip=iproute2 unshare=util-linux
    build_spamgate
    run_in_namespaces "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------------------------------
# Inside the namespace.

# fill TEMPLATE OUT: replaces @VARS@ with the suite's values.
fill() {
    sed -e "s|@T@|$T|g" -e "s|@MX_PORT@|$MX_PORT|g" -e "s|@MX_UNIX_PORT@|$MX_UNIX_PORT|g" \
        -e "s|@RELAY_PORT@|$RELAY_PORT|g" -e "s|@POLICY_PORT@|$POLICY_PORT|g" \
        -e "s|@RBLDNSD_PORT@|$RBLDNSD_PORT|g" -e "s|@DEAD_PORT@|$DEAD_PORT|g" \
        -e "s|@MIN_DELAY@|$MIN_DELAY|g" -e "s|@TARPIT_POLICY_PORT@|$TARPIT_POLICY_PORT|g" \
        -e "s|@TARPIT_DELAY@|$TARPIT_DELAY|g" -e "s|@TARPIT_PORT@|$TARPIT_PORT|g" \
        -e "s|@TARPIT_METRICS_PORT@|$TARPIT_METRICS_PORT|g" "$1" >"$2"
}

cleanup() {
    local rc=$?
    set +e
    [[ -n ${SPAMGATE_PID:-} ]] && kill "$SPAMGATE_PID" 2>/dev/null
    [[ -n ${TARPIT_PID:-} ]] && kill "$TARPIT_PID" 2>/dev/null
    [[ -f $T/mx/etc/main.cf ]] && postfix -c "$T/mx/etc" stop >/dev/null 2>&1
    [[ -f $T/relay/etc/main.cf ]] && postfix -c "$T/relay/etc" stop >/dev/null 2>&1
    [[ -f $T/tarpit-sender/etc/main.cf ]] && postfix -c "$T/tarpit-sender/etc" stop >/dev/null 2>&1
    [[ -n ${DNSMASQ_PID:-} ]] && kill "$DNSMASQ_PID" 2>/dev/null
    [[ -n ${RBLDNSD_PID:-} ]] && kill "$RBLDNSD_PID" 2>/dev/null
    wait 2>/dev/null
    finish "$rc" "$T/spamgate.log" "$T/mx/maillog" "$T/relay/maillog" "$T/spamgate-tarpit.log" \
        "$T/tarpit-sender/maillog"
}

setup_namespace() {
    ip link set lo up
    ip addr add "$RELAY_ADDR/32" dev lo
    ip addr add "$BOT_ADDR/32" dev lo
    ip addr add "$TARPIT_SENDER_ADDR/32" dev lo
    ip addr add "$TARPIT_BOT_ADDR/32" dev lo
    ip addr add "$TARPIT_KILLED_ADDR/32" dev lo
    mkdir -p "$T/etc"
    printf 'nameserver 127.0.0.1\noptions timeout:2 attempts:2\n' >"$T/etc/resolv.conf"
    printf 'hosts: files dns\n' >"$T/etc/nsswitch.conf"
    printf '127.0.0.1 localhost\n::1 localhost\n' >"$T/etc/hosts"
    chmod 644 "$T"/etc/*
    # Private mount namespace: these bind mounts are invisible outside and vanish with it.
    local f
    for f in resolv.conf nsswitch.conf hosts; do mount --bind "$T/etc/$f" "/etc/$f"; done
}

start_dns() {
    mkdir -p "$T/dns"
    cp "$FIX"/dns/*.v4 "$FIX"/dns/*.v6 "$T/dns/"
    fill "$FIX/dns/dnsmasq.conf" "$T/dns/dnsmasq.conf"
    chmod -R a+rX "$T/dns"
    rbldnsd -n -u nobody -b "127.0.0.1/$RBLDNSD_PORT" -w "$T/dns" \
        bl.test:ip4set:bl.test.v4 bl.test:ip6trie:bl.test.v6 wl.test:ip4set:wl.test.v4 \
        >"$T/rbldnsd.log" 2>&1 &
    RBLDNSD_PID=$!
    dnsmasq --keep-in-foreground --conf-file="$T/dns/dnsmasq.conf" >"$T/dnsmasq.log" 2>&1 &
    DNSMASQ_PID=$!
    wait_for "dnsmasq" 10 getent hosts mail.example.org >/dev/null
    wait_for "rbldnsd" 10 getent ahostsv4 10.2.0.192.bl.test >/dev/null
}

# check_lookup NAME QUERY EXPECTED: getent goes through libc, as Postfix's lookups do.
check_lookup() {
    local got
    got=$(getent ahosts "$2" 2>/dev/null | awk 'NR == 1 { print $1 }' || true)
    [[ $got == "$3" ]] || got=$(getent hosts "$2" 2>/dev/null | awk '{ print $2; exit }' || true)
    if [[ $got == "$3" ]]; then pass "$1" "$2 -> $3"; else fail "$1" "$2 -> '${got}', want $3"; fi
}

check_dns() {
    check_lookup dns-fcrdns-ptr 192.0.2.5 mail.example.org
    check_lookup dns-fcrdns-a mail.example.org 192.0.2.5
    check_lookup dns-generic-ptr "$RELAY_ADDR" 198-51-100-25.dyn.example.net
    check_lookup dns-unconfirmed-ptr 203.0.113.21 mail.forged.test
    check_lookup dns-unconfirmed-a mail.forged.test 192.0.2.99
    check_lookup dns-bl-v4 10.2.0.192.bl.test 127.0.0.2
    check_lookup dns-bl-v4-code 11.2.0.192.bl.test 127.0.0.4
    check_lookup dns-bl-v6 0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.a.b.0.8.b.d.0.1.0.0.2.bl.test 127.0.0.2
    check_lookup dns-wl 30.113.0.203.wl.test 127.0.10.2
    if getent hosts 203.0.113.20 >/dev/null; then
        fail dns-no-ptr "203.0.113.20 has a name"
    else
        pass dns-no-ptr "203.0.113.20 -> (none)"
    fi
}

start_spamgate() {
    mkdir -p "$T/spamgate" "$T/mx/queue/spamgate"
    fill "$FIX/spamgate.toml.in" "$T/spamgate.toml"
    "$SPAMGATE_BIN" serve --config "$T/spamgate.toml" >"$T/spamgate.log" 2>&1 &
    SPAMGATE_PID=$!
    if ! wait_for "spamgate on 127.0.0.1:$POLICY_PORT" 20 tcp_open 127.0.0.1 "$POLICY_PORT" ||
        ! wait_for "spamgate's UNIX socket" 5 test -S "$T/mx/queue/spamgate/policy.sock"; then
        tail -n 30 "$T/spamgate.log" >&2
        die "spamgate did not start"
    fi
}

# The second spamgate, tarpit on, for the tarpitted MX service.
start_tarpit_spamgate() {
    mkdir -p "$T/spamgate-tarpit"
    fill "$FIX/tarpit/spamgate.toml.in" "$T/spamgate-tarpit.toml"
    "$SPAMGATE_BIN" serve --config "$T/spamgate-tarpit.toml" >"$T/spamgate-tarpit.log" 2>&1 &
    TARPIT_PID=$!
    if ! wait_for "tarpit spamgate on 127.0.0.1:$TARPIT_POLICY_PORT" 20 tcp_open 127.0.0.1 "$TARPIT_POLICY_PORT" ||
        ! wait_for "its metrics on 127.0.0.1:$TARPIT_METRICS_PORT" 5 tcp_open 127.0.0.1 "$TARPIT_METRICS_PORT"; then
        tail -n 30 "$T/spamgate-tarpit.log" >&2
        die "the tarpit spamgate did not start"
    fi
}

# The shipped deployment files: the default config parses, the unit is well-formed.
check_dist() {
    local f name
    for f in dist/spamgate.toml dist/spamgate.example.toml; do
        name=dist-config-$(basename "$f" .toml); name=${name/spamgate./}
        if "$SPAMGATE_BIN" config check --config "$REPO/$f" >"$T/$name.log" 2>&1; then
            pass "$name" "spamgate config check --config $f"
        else
            fail "$name" "$(head -n 3 "$T/$name.log" | tr '\n' ' ')"
        fi
    done
    if command -v systemd-analyze >/dev/null; then
        sed "s|/usr/local/bin/spamgate|$SPAMGATE_BIN|" "$REPO/dist/spamgate.service" >"$T/spamgate.service"
        if systemd-analyze verify "$T/spamgate.service" >"$T/unit-verify.log" 2>&1; then
            pass dist-unit-verify "systemd-analyze verify dist/spamgate.service"
        else
            fail dist-unit-verify "$(head -n 3 "$T/unit-verify.log" | tr '\n' ' ')"
        fi
    fi
}

# check_doc_tarpit_sizing MASTER_BLOCK: the documented [tarpit] block (e2e:tarpit.spamgate.toml)
# passes `spamgate config check`, its delay is under the master.cf block's
# smtpd_policy_service_timeout and its max_concurrent under the block's process limit.
check_doc_tarpit_sizing() {
    local master=$1 toml delay cap timeout maxproc
    toml=$(doc_block "$REPO/docs/postfix.md" tarpit.spamgate.toml)
    printf '%s\n' "$toml" >"$T/doc-tarpit.toml"
    delay=$(sed -n 's/^delay = "\([0-9]*\)s"$/\1/p' <<<"$toml")
    cap=$(sed -n 's/^max_concurrent = \([0-9]*\)$/\1/p' <<<"$toml")
    timeout=$(grep -o 'smtpd_policy_service_timeout=[0-9]*s' <<<"$master" | grep -o '[0-9]*' || true)
    maxproc=$(awk 'NR == 1 { print $7 }' <<<"$master")
    if ! "$SPAMGATE_BIN" config check --config "$T/doc-tarpit.toml" >"$T/doc-tarpit.log" 2>&1; then
        fail docs-tarpit-sizing "the e2e:tarpit.spamgate.toml block fails config check: $(tail -n 1 "$T/doc-tarpit.log")"
    elif [[ ! $delay =~ ^[0-9]+$ || ! $cap =~ ^[0-9]+$ || ! $timeout =~ ^[0-9]+$ || ! $maxproc =~ ^[0-9]+$ ]]; then
        fail docs-tarpit-sizing "delay='$delay' max_concurrent='$cap' timeout='$timeout' maxproc='$maxproc' in docs/postfix.md"
    elif ((delay >= timeout || cap >= maxproc)); then
        fail docs-tarpit-sizing "delay ${delay}s vs timeout ${timeout}s, max_concurrent $cap vs maxproc $maxproc"
    else
        pass docs-tarpit-sizing "delay ${delay}s < smtpd_policy_service_timeout ${timeout}s, max_concurrent $cap < maxproc $maxproc"
    fi
}

# The receiving MX: test plumbing from tests/e2e/mx plus the blocks of docs/postfix.md.
setup_mx() {
    local etc=$T/mx/etc main_block master_block
    mkdir -p "$etc" "$T/mx/queue" "$T/mx/data" "$T/mail"
    chown nobody:nogroup "$T/mail"
    main_block=$(doc_block "$REPO/docs/postfix.md" main.cf)
    master_block=$(doc_block "$REPO/docs/postfix.md" master.cf)
    if grep -q 'check_policy_service inet:127.0.0.1:10023' <<<"$main_block" &&
        grep -q 'check_policy_service unix:spamgate/policy.sock' <<<"$master_block"; then
        pass docs-postfix-blocks "main.cf and master.cf blocks of docs/postfix.md used verbatim"
    else
        fail docs-postfix-blocks "docs/postfix.md lacks the e2e:main.cf / e2e:master.cf blocks"
    fi
    fill "$FIX/mx/main.cf.in" "$etc/main.cf"
    printf '# ---- from docs/postfix.md (e2e:main.cf) ----\n%s\n' "$main_block" >>"$etc/main.cf"
    fill "$FIX/mx/master.cf.in" "$etc/master.cf"
    # The documented block configures the "smtp" service (port 25); here the same lines
    # run on a test port. Nothing else is changed.
    printf '# ---- from docs/postfix.md (e2e:master.cf), service smtp -> %s ----\n%s\n' \
        "$MX_UNIX_PORT" "$(sed "1s/^smtp /$MX_UNIX_PORT /" <<<"$master_block")" >>"$etc/master.cf"
    # The tarpitted service of docs/postfix.md on its own test port, asking the second
    # spamgate (tarpit on). Nothing else is changed.
    local tarpit_block
    tarpit_block=$(doc_block "$REPO/docs/postfix.md" tarpit.master.cf)
    if grep -q 'smtpd_data_restrictions = check_policy_service inet:127.0.0.1:10023' <<<"$tarpit_block"; then
        pass docs-postfix-tarpit-block "e2e:tarpit.master.cf block of docs/postfix.md used verbatim"
    else
        fail docs-postfix-tarpit-block "docs/postfix.md lacks the e2e:tarpit.master.cf block"
    fi
    check_doc_tarpit_sizing "$tarpit_block"
    printf '# ---- from docs/postfix.md (e2e:tarpit.master.cf), smtp -> %s, policy -> %s ----\n%s\n' \
        "$TARPIT_PORT" "$TARPIT_POLICY_PORT" \
        "$(sed -e "1s/^smtp /$TARPIT_PORT /" -e "s/127\.0\.0\.1:$POLICY_PORT/127.0.0.1:$TARPIT_POLICY_PORT/g" <<<"$tarpit_block")" \
        >>"$etc/master.cf"
    cp "$FIX/mx/vmailbox" "$etc/vmailbox"
    # The chrooted listener resolves names inside $queue_directory, as Debian's init script
    # arranges for the system instance.
    mkdir -p "$T/mx/queue/etc"
    local f
    for f in resolv.conf nsswitch.conf hosts services; do
        [[ ! -e /etc/$f ]] || cp "/etc/$f" "$T/mx/queue/etc/"
    done
    start_postfix mx
}

setup_relay() {
    local etc=$T/relay/etc
    mkdir -p "$etc" "$T/relay/queue" "$T/relay/data"
    fill "$FIX/relay/main.cf.in" "$etc/main.cf"
    fill "$FIX/relay/master.cf.in" "$etc/master.cf"
    start_postfix relay
}

# The tarpit case's sending MTA: its own main.cf, the relay's master.cf on its own port.
setup_tarpit_sender() {
    local etc=$T/tarpit-sender/etc
    mkdir -p "$etc" "$T/tarpit-sender/queue" "$T/tarpit-sender/data"
    fill "$FIX/tarpit/sender.main.cf.in" "$etc/main.cf"
    RELAY_PORT=$TARPIT_SENDER_PORT fill "$FIX/relay/master.cf.in" "$etc/master.cf"
    start_postfix tarpit-sender
}

# ---------------------------------------------------------------------------------------
# SMTP cases.

# send OUT PORT XCLIENT FROM TO [swaks args...]: one SMTP transaction; transcript to OUT.
send() {
    local out=$1 port=$2 xclient=$3 from=$4 to=$5
    shift 5
    local args=(--server 127.0.0.1 --port "$port" --timeout 30 --from "$from" --to "$to"
        --helo "${HELO:-client.example}" --header "Subject: $(basename "$out")"
        --body "spamgate e2e message $(basename "$out")")
    [[ -z $xclient ]] || args+=(--xclient "$xclient")
    swaks "${args[@]}" "$@" >"$out" 2>&1 || true
}

# rcpt_reply OUT: the server's reply to RCPT TO in a swaks transcript.
rcpt_reply() {
    awk '/^ *-> RCPT TO:/ { getline; sub(/^<[-*~ ]*/, ""); print; exit }' "$1"
}

delivered() { grep -rqsl -- "$1" "$T"/mail/example.com/*/new/; }

# smtp_case NAME PORT XCLIENT RCPT EXPECT-REGEX [deliver|-]
# The sender is unique per case so greylist triplets of different cases never meet.
smtp_case() {
    local name=$1 port=$2 xclient=$3 rcpt=$4 want=$5 deliver=${6:--}
    local out=$T/swaks/$name reply
    HELO=${HELO:-client.example} send "$out" "$port" "$xclient" "$name@sender.example" "$rcpt"
    reply=$(rcpt_reply "$out")
    if [[ ! $reply =~ $want ]]; then
        fail "$name" "RCPT got '${reply:-<no reply, see $out>}', want /$want/"
        return
    fi
    if [[ $deliver == deliver ]] && ! wait_for "delivery of $name" 15 delivered "Subject: $name"; then
        fail "$name" "$reply, but the message is not in the mailbox"
        return
    fi
    pass "$name" "$reply"
}

REJECT='^5[0-9][0-9] .*blocked using bl\.test'
GREY='^4[0-9][0-9] 4\.7\.1 .*greylisted by spamgate'
# grey CLASS: a greylist deferral naming the client class (the test config's reply has {class}).
grey() { printf '^4[0-9][0-9] 4\\.7\\.1 .*%s: .*greylisted by spamgate' "$1"; }
OK='^250 '

run_xclient_matrix() {
    local p=$MX_PORT a=alice@example.com
    # DNSBL: listed v4 (two return codes) and v6 are refused at RCPT, even with a proper name.
    smtp_case dnsbl-v4 $p "ADDR=192.0.2.10 NAME=spam-cannon.example.org REVERSE_NAME=spam-cannon.example.org" $a "$REJECT"
    smtp_case dnsbl-v4-code-4 $p "ADDR=192.0.2.11 NAME=192-0-2-11.dsl.example.net REVERSE_NAME=192-0-2-11.dsl.example.net" $a "$REJECT"
    smtp_case dnsbl-v6 $p "ADDR=IPV6:2001:db8:bad::10 NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE]" $a "$REJECT"
    # A return code outside the zone's filter (127.0.0.10) does not count.
    smtp_case dnsbl-code-filtered $p "ADDR=192.0.2.12 NAME=relay.example.org REVERSE_NAME=relay.example.org" $a "$OK" deliver
    # Proper, forward-confirmed servers pass at once.
    smtp_case proper-v4 $p "ADDR=192.0.2.5 NAME=mail.example.org REVERSE_NAME=mail.example.org" $a "$OK" deliver
    smtp_case proper-v6 $p "ADDR=IPV6:2001:db8:2::25 NAME=mx6.example.org REVERSE_NAME=mx6.example.org" bob@example.com "$OK" deliver
    # Each suspicious class gets a temporary error.
    smtp_case no-ptr $p "ADDR=203.0.113.20 NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE]" $a "$(grey no-ptr)"
    smtp_case ptr-not-confirmed $p "ADDR=203.0.113.21 NAME=[UNAVAILABLE] REVERSE_NAME=mail.forged.test" $a "$(grey ptr-not-confirmed)"
    smtp_case dns-tempfail $p "ADDR=203.0.113.22 NAME=[TEMPUNAVAIL] REVERSE_NAME=[TEMPUNAVAIL]" $a "$(grey dns-tempfail)"
    smtp_case generic-v6 $p "ADDR=IPV6:2001:db8:3::7 NAME=ip6-2001-db8-3--7.dynamic.example.net REVERSE_NAME=ip6-2001-db8-3--7.dynamic.example.net" $a "$(grey generic)"
    # Allow-listed: by DNSWL (despite a generic name), by address, and RFC 2142 postmaster.
    smtp_case allow-dnswl $p "ADDR=203.0.113.30 NAME=203-0-113-30.dsl.example.net REVERSE_NAME=203-0-113-30.dsl.example.net" $a "$OK" deliver
    smtp_case allow-address $p "ADDR=203.0.113.40 NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE]" $a "$OK" deliver
    smtp_case allow-postmaster $p "ADDR=203.0.113.41 NAME=[UNAVAILABLE] REVERSE_NAME=[UNAVAILABLE]" postmaster@example.com "$OK" deliver
    # The chrooted listener asks spamgate over the UNIX socket (docs/postfix.md master.cf).
    smtp_case unix-socket-generic $MX_UNIX_PORT "ADDR=203.0.113.8 NAME=203-0-113-8.dyn.example.net REVERSE_NAME=203-0-113-8.dyn.example.net" $a "$(grey generic)"
    smtp_case unix-socket-proper $MX_UNIX_PORT "ADDR=192.0.2.5 NAME=mail.example.org REVERSE_NAME=mail.example.org" $a "$OK" deliver
}

# `spamgate check` without a client name: spamgate looks the client up itself through
# dnsmasq (PTR, then forward confirmation), as the daemon does with always_lookup.
cli_case() {
    local name=$1 addr=$2 want=$3 out=$T/cli-$1.log
    "$SPAMGATE_BIN" check --config "$T/spamgate.toml" --client-address "$addr" \
        --sender cli@sender.example --recipient alice@example.com >"$out" 2>&1 || true
    if grep -Eq -- "$want" "$out"; then
        pass "$name" "$addr: $(grep -E -- "$want" "$out" | head -n 1 | sed 's/^ *//')"
    else
        fail "$name" "$addr: want /$want/, got: $(tr '\n' ' ' <"$out" | cut -c1-200)"
    fi
}

run_cli_cases() {
    cli_case cli-lookup-proper 192.0.2.5 '^action: +pass'
    cli_case cli-lookup-generic 203.0.113.8 'client:generic'
    cli_case cli-lookup-not-confirmed 203.0.113.21 'client:ptr-not-confirmed'
    cli_case cli-lookup-no-ptr 203.0.113.20 'client:no-ptr'
}

# The seed's "send -> temporary error -> resend" with swaks playing the client.
GENERIC_XCLIENT="ADDR=203.0.113.7 NAME=203-0-113-7.dyn.example.net REVERSE_NAME=203-0-113-7.dyn.example.net"
retry_first() {
    smtp_case retry-1-first $MX_PORT "$GENERIC_XCLIENT" alice@example.com "$(grey generic)"
    # Taken after the reply: spamgate recorded the first attempt no later than this.
    RETRY_T0=$(now)
    # Same client, sender and recipient: an immediate resend is still too early.
    smtp_case retry-2-too-early $MX_PORT "$GENERIC_XCLIENT" alice@example.com "$(grey generic)"
}
retry_after_delay() {
    sleep_past "$RETRY_T0" "$MIN_DELAY.5"
    # smtp_case uses the case name as sender: keep the triplet of retry-1-first.
    local out=$T/swaks/retry-3-after-delay reply
    send "$out" $MX_PORT "$GENERIC_XCLIENT" retry-1-first@sender.example alice@example.com
    reply=$(rcpt_reply "$out")
    if [[ $reply =~ $OK ]] && wait_for "delivery" 15 delivered "Subject: retry-3-after-delay"; then
        pass retry-3-after-delay "$reply (and delivered)"
    else
        fail retry-3-after-delay "RCPT got '${reply:-<none>}' after ${MIN_DELAY}s, want 250 and delivery"
    fi
}

# A real MTA from a generic-named source, and a bot from another one.
relay_and_bot_start() {
    local out=$T/swaks/relay-inject
    send "$out" "$RELAY_PORT" "" carol@smallco.test alice@example.com --header "Subject: relay-message"
    RELAY_QID=$(awk '/queued as/ { print $NF; exit }' "$out")
    [[ -n $RELAY_QID ]] || fail relay-inject "the sending MTA did not queue the message (see $out)"
    out=$T/swaks/bot
    # The bot connects from its own address; the MX looks its name up through dnsmasq.
    send "$out" "$MX_PORT" "" bot@spam.example alice@example.com --local-interface "$BOT_ADDR" \
        --header "Subject: bot-message"
    BOT_REPLY=$(rcpt_reply "$out")
    BOT_T0=$(now)
}

relay_and_bot_check() {
    local rl=$T/relay/maillog ml=$T/mx/maillog
    if [[ -n ${RELAY_QID:-} ]] && wait_for "relay delivery" 60 delivered "Subject: relay-message"; then
        # Postfix's own retries: at least one deferral with spamgate's text, then sent.
        local deferred sent
        deferred=$(grep -c "$RELAY_QID: .*status=deferred.*greylisted by spamgate" "$rl" || true)
        sent=$(grep -c "$RELAY_QID: .*status=sent" "$rl" || true)
        if ((deferred >= 1 && sent == 1)) &&
            grep -q "reject: RCPT from 198-51-100-25.dyn.example.net\[$RELAY_ADDR\]: 45[0-9] 4.7.1 .*greylisted by spamgate" "$ml"; then
            pass relay-greylisted-then-delivered "$deferred deferral(s) by spamgate, then delivered"
        else
            fail relay-greylisted-then-delivered "deferred=$deferred sent=$sent (see $rl, $ml)"
        fi
    else
        fail relay-greylisted-then-delivered "message not delivered within 60s (see $rl)"
    fi
    if [[ ! ${BOT_REPLY:-} =~ $(grey generic) ]]; then
        fail bot-never-delivered "bot's RCPT got '${BOT_REPLY:-<none>}', want /$GREY/"
        return
    fi
    sleep_past "$BOT_T0" "$MIN_DELAY.5"
    if delivered "Subject: bot-message" || grep -q "client=p198051100066.pool.example.com" "$ml"; then
        fail bot-never-delivered "the MX accepted the bot's message"
    elif ! grep -q "reject: RCPT from p198051100066.pool.example.com\[$BOT_ADDR\]" "$ml"; then
        fail bot-never-delivered "no MX log line for the bot (see $ml)"
    else
        pass bot-never-delivered "$BOT_REPLY; not in the mailbox $(awk -v a="$BOT_T0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')s later"
    fi
}

# taRgrey's flow through real Postfix: a client from a generic name that waits out the
# held RCPT reply is accepted on its first attempt (no greylist delay) and recorded as
# having waited (it reached DATA); a bot that gives up during the hold is not, is counted
# as hung up, and its retry is greylisted rather than held again.
TARPIT_WAITER="ADDR=203.0.113.60 NAME=203-0-113-60.dyn.example.net REVERSE_NAME=203-0-113-60.dyn.example.net"
TARPIT_BOT="ADDR=203.0.113.61 NAME=203-0-113-61.dyn.example.net REVERSE_NAME=203-0-113-61.dyn.example.net"
tarpit_log_has() { grep -q "client=$1 .*$2" "$T/spamgate-tarpit.log"; }
tarpit_cases() {
    local out reply t0 took
    # The waiter: swaks waits up to 30 s per reply, like an MTA (RFC 5321: 5 minutes).
    t0=$(now)
    smtp_case tarpit-waiter-accepted-at-once $TARPIT_PORT "$TARPIT_WAITER" alice@example.com "$OK" deliver
    took=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    if wait_for "tarpit:held" 5 tarpit_log_has 203.0.113.60 'state=RCPT .*tarpit:held' &&
        wait_for "tarpit:waited" 5 tarpit_log_has 203.0.113.60 'state=DATA .*greylist:passed.* tarpit:waited'; then
        pass tarpit-waiter-recorded "held at RCPT, seen at DATA: recorded as a passed retry (session ${took}s, hold ${TARPIT_DELAY}s)"
    else
        fail tarpit-waiter-recorded "no tarpit:held / tarpit:waited lines for 203.0.113.60 in $T/spamgate-tarpit.log"
    fi
    # Its next message passes without a hold: auto-whitelisted.
    smtp_case tarpit-waiter-whitelisted $TARPIT_PORT "$TARPIT_WAITER" bob@example.com "$OK" deliver
    if wait_for "greylist:awl" 5 tarpit_log_has 203.0.113.60 'recipient=<bob@example.com> .*greylist:awl'; then
        pass tarpit-waiter-whitelisted-log "greylist:awl, no hold"
    else
        fail tarpit-waiter-whitelisted-log "no greylist:awl line for the waiter's second message"
    fi

    # The bot gives up after 2 s, before the held reply comes.
    out=$T/swaks/tarpit-bot
    t0=$(now)
    send "$out" $TARPIT_PORT "$TARPIT_BOT" tarpit-bot@sender.example alice@example.com --timeout 2
    reply=$(rcpt_reply "$out")
    if [[ $reply =~ ^[245][0-9][0-9] ]]; then
        fail tarpit-bot-gave-up "the bot got an RCPT reply within 2 s: '$reply'"
    else
        pass tarpit-bot-gave-up "no RCPT reply within 2 s; swaks hung up"
    fi
    # Past the hold and the confirm window (2 s): it never reached DATA.
    sleep_past "$t0" "$((TARPIT_DELAY + 3)).5"
    # Its retry, same triplet: greylisted at once, not held again, and it is counted.
    send "$out-retry" $TARPIT_PORT "$TARPIT_BOT" tarpit-bot@sender.example alice@example.com
    reply=$(rcpt_reply "$out-retry")
    if [[ ! $reply =~ $(grey generic) ]]; then
        fail tarpit-bot-retry-greylisted "retry got '${reply:-<none>}', want /$(grey generic)/"
    elif ! wait_for "tarpit:hung-up" 5 grep -q 'tarpit:hung-up' "$T/spamgate-tarpit.log" ||
        ! wait_for "greylist:too-early" 5 tarpit_log_has 203.0.113.61 'greylist:too-early'; then
        fail tarpit-bot-retry-greylisted "no tarpit:hung-up / greylist:too-early in $T/spamgate-tarpit.log"
    else
        pass tarpit-bot-retry-greylisted "$reply (counted as hung up, greylisted as today)"
    fi
    sleep 1
    if delivered "Subject: tarpit-bot"; then
        fail tarpit-bot-never-delivered "the MX accepted the bot's message"
    else
        pass tarpit-bot-never-delivered "not in the mailbox"
    fi
}

# metric NAME: a value from the tarpit spamgate's /metrics (0 when absent).
tarpit_metric() {
    local text
    text=$( (exec 3<>"/dev/tcp/127.0.0.1/$TARPIT_METRICS_PORT" &&
        printf 'GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3 &&
        timeout 5 cat <&3) 2>/dev/null || true)
    awk -v name="$1" '$1 == name { v = $2 } END { printf "%d", v + 0 }' <<<"$text"
}
tarpit_metric_is() { [[ $(tarpit_metric "$1") == "$2" ]]; }

# taRgrey with a real sending MTA, end to end: a second Postfix on a generic-named source
# address relays to the tarpitted service; it waits out the held RCPT reply and its mail
# is delivered on the first attempt, with no greylist deferral in its log. Two bots from
# other generic-named source addresses (swaks, real sources, no XCLIENT) give up before
# the held reply: one times out and says QUIT, the other is killed (the connection just
# closes); their mail never arrives. spamgate's decision log and metrics say who waited
# and who hung up.
tarpit_sender_cases() {
    local sl=$T/tarpit-sender/maillog ml=$T/mx/maillog tl=$T/spamgate-tarpit.log out qid reply killed
    # The bots first, at once: both give up after 2 s, before the 4 s hold ends.
    out=$T/swaks/tarpit-real-bot
    TARPIT_BOT_T0=$(now)
    timeout -s KILL 2 swaks --server 127.0.0.1 --port "$TARPIT_PORT" --timeout 30 --helo bot.example \
        --from killed-bot@spam.example --to alice@example.com --local-interface "$TARPIT_KILLED_ADDR" \
        --header "Subject: tarpit-killed-bot" >"$T/swaks/tarpit-killed-bot" 2>&1 &
    killed=$!
    send "$out" "$TARPIT_PORT" "" real-bot@spam.example alice@example.com --local-interface "$TARPIT_BOT_ADDR" \
        --timeout 2 --header "Subject: tarpit-real-bot"
    wait "$killed" || true
    reply=$(rcpt_reply "$out")
    if [[ $reply =~ ^[245][0-9][0-9] ]]; then
        fail tarpit-real-bot-gave-up "the bot got an RCPT reply within 2 s: '$reply'"
    elif ! grep -q "client=$TARPIT_BOT_ADDR name=p198051100067.pool.example.com .*state=RCPT .*tarpit:held" "$tl"; then
        fail tarpit-real-bot-gave-up "no tarpit:held line for $TARPIT_BOT_ADDR in $tl"
    else
        pass tarpit-real-bot-gave-up "held at RCPT (name from the test DNS); swaks gave up after 2 s"
    fi
    reply=$(rcpt_reply "$T/swaks/tarpit-killed-bot")
    if [[ $reply =~ ^[245][0-9][0-9] ]]; then
        fail tarpit-killed-bot-gave-up "the killed bot got an RCPT reply within 2 s: '$reply'"
    elif ! grep -q "client=$TARPIT_KILLED_ADDR name=p198051100068.pool.example.com .*state=RCPT .*tarpit:held" "$tl"; then
        fail tarpit-killed-bot-gave-up "no tarpit:held line for $TARPIT_KILLED_ADDR in $tl"
    else
        pass tarpit-killed-bot-gave-up "held at RCPT; swaks killed after 2 s (no QUIT)"
    fi
    # Both holds end before the real MTA comes, so it is never beyond the cap (2).
    wait_for "the bots' holds to end" 15 tarpit_metric_is spamgate_tarpit_active 0 || true

    # The real MTA: the harness submits to it, it relays to the tarpitted MX service.
    out=$T/swaks/tarpit-sender-inject
    send "$out" "$TARPIT_SENDER_PORT" "" dave@tarpitco.test alice@example.com --header "Subject: tarpit-sender-message"
    qid=$(awk '/queued as/ { print $NF; exit }' "$out")
    if [[ -z $qid ]]; then
        fail tarpit-sender-delivered-at-once "the sending MTA did not queue the message (see $out)"
    elif ! wait_for "delivery through the tarpit" 60 delivered "Subject: tarpit-sender-message"; then
        fail tarpit-sender-delivered-at-once "not delivered within 60 s (see $sl, $ml)"
    else
        local deferred sent delays
        wait_for "the sender's status=sent" 10 grep -q "$qid: .*status=sent" "$sl" || true
        deferred=$(grep -c "$qid: .*status=deferred" "$sl" || true)
        sent=$(grep -c "$qid: .*status=sent" "$sl" || true)
        delays=$(grep -o "$qid: .*status=sent" "$sl" | grep -o 'delays=[0-9./]*' | head -n 1)
        if ((deferred == 0 && sent == 1)) &&
            ! grep -q "reject: RCPT from 198-51-100-27.dyn.example.net\[$TARPIT_SENDER_ADDR\]" "$ml" &&
            grep -q "client=198-51-100-27.dyn.example.net\[$TARPIT_SENDER_ADDR\]" "$ml"; then
            # delays=a/b/c/d: c is the SMTP session's connect/greeting/EHLO, d the
            # transmission (MAIL..end of DATA, the held RCPT included). Shown, not asserted.
            pass tarpit-sender-delivered-at-once "first attempt, no deferral, sent once ($delays)"
        else
            fail tarpit-sender-delivered-at-once "deferred=$deferred sent=$sent (see $sl, $ml)"
        fi
    fi
    if wait_for "tarpit:waited" 5 grep -q "client=$TARPIT_SENDER_ADDR .*state=DATA .*greylist:passed.* tarpit:waited" "$tl" &&
        grep -q "client=$TARPIT_SENDER_ADDR name=198-51-100-27.dyn.example.net .*state=RCPT .*tarpit:held" "$tl"; then
        pass tarpit-sender-recorded "held at RCPT, its pipelined DATA recorded it as a passed retry (tarpit:waited)"
    else
        fail tarpit-sender-recorded "no tarpit:held / tarpit:waited lines for $TARPIT_SENDER_ADDR in $tl"
    fi
}

# The cap: with max_concurrent = 2 held, a third suspicious client is greylisted at once
# (tarpit:full), while the two held ones are let in when their hold ends.
TARPIT_CAP_A="ADDR=203.0.113.70 NAME=203-0-113-70.dyn.example.net REVERSE_NAME=203-0-113-70.dyn.example.net"
TARPIT_CAP_B="ADDR=203.0.113.71 NAME=203-0-113-71.dyn.example.net REVERSE_NAME=203-0-113-71.dyn.example.net"
TARPIT_CAP_C="ADDR=203.0.113.72 NAME=203-0-113-72.dyn.example.net REVERSE_NAME=203-0-113-72.dyn.example.net"
tarpit_cap_cases() {
    local tl=$T/spamgate-tarpit.log pa pb reply
    HELO=client.example send "$T/swaks/tarpit-cap-a" "$TARPIT_PORT" "$TARPIT_CAP_A" tarpit-cap-a@sender.example alice@example.com &
    pa=$!
    HELO=client.example send "$T/swaks/tarpit-cap-b" "$TARPIT_PORT" "$TARPIT_CAP_B" tarpit-cap-b@sender.example alice@example.com &
    pb=$!
    if ! wait_for "two replies held" 10 tarpit_metric_is spamgate_tarpit_active 2; then
        fail tarpit-cap-full "spamgate_tarpit_active never reached 2"
        wait "$pa" "$pb" || true
        return
    fi
    smtp_case tarpit-cap-full "$TARPIT_PORT" "$TARPIT_CAP_C" alice@example.com "$(grey generic)"
    wait "$pa" "$pb" || true
    if grep -q "client=203.0.113.72 .*tarpit:full" "$tl"; then
        pass tarpit-cap-full-logged "tarpit:full in the decision log"
    else
        fail tarpit-cap-full-logged "no tarpit:full line for 203.0.113.72 in $tl"
    fi
    for c in a b; do
        reply=$(rcpt_reply "$T/swaks/tarpit-cap-$c")
        if [[ $reply =~ $OK ]] && wait_for "delivery of tarpit-cap-$c" 15 delivered "Subject: tarpit-cap-$c"; then
            pass "tarpit-cap-held-$c" "$reply after the hold (and delivered)"
        else
            fail "tarpit-cap-held-$c" "RCPT got '${reply:-<none>}', want 250 and delivery"
        fi
    done
}

# Who hung up is counted once the confirm window (2 s) after its hold has passed and a
# request arrives; then the totals of every tarpit case above.
tarpit_totals() {
    local tl=$T/spamgate-tarpit.log ml=$T/mx/maillog
    sleep_past "$TARPIT_BOT_T0" "$((TARPIT_DELAY + 3)).5"
    # Any request runs the sweep: a proper server's message.
    smtp_case tarpit-proper-passes $TARPIT_PORT "ADDR=192.0.2.5 NAME=mail.example.org REVERSE_NAME=mail.example.org" \
        alice@example.com "$OK" deliver
    if wait_for "tarpit:hung-up of the bot" 5 grep -q "tarpit:hung-up .*client=$TARPIT_BOT_ADDR sender=real-bot@spam.example" "$tl"; then
        pass tarpit-real-bot-hung-up "tarpit:hung-up logged for $TARPIT_BOT_ADDR"
    else
        fail tarpit-real-bot-hung-up "no tarpit:hung-up line for $TARPIT_BOT_ADDR in $tl"
    fi
    if wait_for "tarpit:hung-up of the killed bot" 5 grep -q "tarpit:hung-up .*client=$TARPIT_KILLED_ADDR sender=killed-bot@spam.example" "$tl"; then
        pass tarpit-killed-bot-hung-up "tarpit:hung-up logged for $TARPIT_KILLED_ADDR"
    else
        fail tarpit-killed-bot-hung-up "no tarpit:hung-up line for $TARPIT_KILLED_ADDR in $tl"
    fi
    # smtpd logs "QUEUEID: client=..." once it accepts a RCPT (after the hold); the
    # message itself exists only if DATA came, which smtpd's disconnect line counts.
    local gone bot name addr
    for bot in real killed; do
        if [[ $bot == real ]]; then name=p198051100067.pool.example.com addr=$TARPIT_BOT_ADDR
        else name=p198051100068.pool.example.com addr=$TARPIT_KILLED_ADDR; fi
        gone=$(grep -h "disconnect from $name\[$addr\]" "$ml" || true)
        if delivered "Subject: tarpit-$bot-bot" || grep -q "from=<$bot-bot@spam.example>" "$ml"; then
            fail "tarpit-$bot-bot-never-delivered" "the MX queued the bot's message"
        elif [[ -z $gone || $gone == *data=* ]]; then
            fail "tarpit-$bot-bot-never-delivered" "want a disconnect line without DATA for $addr, got '${gone}'"
        else
            pass "tarpit-$bot-bot-never-delivered" "not queued, not in the mailbox; smtpd:${gone##*\]}"
        fi
    done
    # held: the swaks waiter and bot, the real MTA and two bots, the two cap holders;
    # waited: the waiter, the real MTA, the two cap holders; hung up: the three bots;
    # full: one.
    local want="held=7 waited=4 hung_up=3 full=1 cut=0" got="" r
    for r in held waited hung_up full cut; do
        got+="$r=$(tarpit_metric "spamgate_tarpit_total{result=\"$r\"}") "
    done
    got=${got% }
    if [[ $got == "$want" ]]; then
        pass tarpit-metrics "spamgate_tarpit_total: $got"
    else
        fail tarpit-metrics "spamgate_tarpit_total: $got, want $want"
    fi
}

# With spamgate gone, Postfix applies smtpd_policy_service_default_action: never a 5xx.
spamgate_down() {
    kill "$SPAMGATE_PID"
    wait "$SPAMGATE_PID" 2>/dev/null || true
    SPAMGATE_PID=
    smtp_case spamgate-down-defers $MX_PORT "ADDR=192.0.2.5 NAME=mail.example.org REVERSE_NAME=mail.example.org" \
        alice@example.com '^451 4\.3\.5 '
}

show_logs() {
    local rl=$T/relay/maillog ml=$T/mx/maillog
    printf '\n--- greylisted, retried by Postfix, delivered (sending MTA %s, queue id %s) ---\n' "$RELAY_ADDR" "${RELAY_QID:-?}"
    [[ -z ${RELAY_QID:-} ]] || grep -h -- "$RELAY_QID" "$rl" | grep -E 'status=|from=<' || true
    local mx_qid
    mx_qid=$(grep -h "client=198-51-100-25.dyn.example.net\[$RELAY_ADDR\]" "$ml" | awk '{ sub(/:$/, "", $6); print $6; exit }' || true)
    grep -h "RCPT from 198-51-100-25.dyn.example.net\[$RELAY_ADDR\]" "$ml" || true
    [[ -z $mx_qid ]] || grep -h -- "$mx_qid" "$ml" | grep -E 'client=|status=' || true
    grep -h "$RELAY_ADDR" "$T/spamgate.log" | head -n 6 || true
    printf -- '--- the bot (%s): one attempt, never retried ---\n' "$BOT_ADDR"
    grep -h "$BOT_ADDR" "$ml" | grep -E 'connect from|reject:' || true
    grep -h "$BOT_ADDR" "$T/spamgate.log" | head -n 3 || true
    printf -- '--- tarpit: a real sending MTA (%s) waits out the hold, bots (%s, %s) give up ---\n' \
        "$TARPIT_SENDER_ADDR" "$TARPIT_BOT_ADDR" "$TARPIT_KILLED_ADDR"
    grep -h -E 'status=|from=<' "$T/tarpit-sender/maillog" 2>/dev/null || true
    grep -h -E "(client=|from )[^ ]*\[($TARPIT_SENDER_ADDR|$TARPIT_BOT_ADDR|$TARPIT_KILLED_ADDR)\]" "$ml" || true
    grep -h -E "client=($TARPIT_SENDER_ADDR|$TARPIT_BOT_ADDR|$TARPIT_KILLED_ADDR) |tarpit:(hung-up|full)" "$T/spamgate-tarpit.log" |
        sed 's/ helo=[^ ]*//' || true
    printf -- '---\n'
}

inside() {
    T=$1
    SPAMGATE_BIN=$2
    trap cleanup EXIT
    mkdir -p "$T/swaks"
    setup_namespace
    start_dns
    check_dns
    check_dist
    start_spamgate
    start_tarpit_spamgate
    setup_mx
    setup_relay
    setup_tarpit_sender
    wait_for "MX" 20 tcp_open 127.0.0.1 "$MX_PORT"
    wait_for "MX UNIX-socket listener" 20 tcp_open 127.0.0.1 "$MX_UNIX_PORT"
    wait_for "sending MTA" 20 tcp_open 127.0.0.1 "$RELAY_PORT"
    wait_for "MX tarpitted listener" 20 tcp_open 127.0.0.1 "$TARPIT_PORT"
    wait_for "tarpit sending MTA" 20 tcp_open 127.0.0.1 "$TARPIT_SENDER_PORT"

    retry_first
    relay_and_bot_start
    run_xclient_matrix
    run_cli_cases
    tarpit_cases
    tarpit_sender_cases
    tarpit_cap_cases
    tarpit_totals
    retry_after_delay
    relay_and_bot_check
    spamgate_down
    show_logs
}

if [[ ${1:-} == --inside ]]; then
    inside "$2" "$3"
else
    outside
fi
