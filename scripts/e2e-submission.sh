#!/usr/bin/env bash
# End-to-end suite of the submission policy: spamgate behind a real Postfix submission
# service (587-style STARTTLS and 465-style TLS-on-connect, self-signed certificate made
# here) with SMTP AUTH from a real Dovecot (auth only, passwd-file users). swaks plays the
# ISP's customers: a normal account sends; an account over its hourly limit is deferred
# at the right message and the trip is an event; a suspended account is rejected at its
# next attempt and sends again once resumed (no reload); an unauthenticated client and a
# wrong password are refused; a customer the abuse desk's ladder suspends (`spamgate abuse
# suspend`, approved by a second person) is refused at its next attempt and sends again
# after `spamgate abuse resume`.
#
# Usage (as root):  bash scripts/e2e-submission.sh
#   SPAMGATE_BIN=/path/to/spamgate  use this binary instead of building one
#   KEEP=1                          keep the temporary directory (logs, mailboxes)
#
# The Postfix, Dovecot and spamgate settings under test are copied verbatim from the
# "e2e:..." blocks of docs/submission.md (and the "e2e:main.cf" block of docs/postfix.md);
# only /etc/postfix, /var/spool/postfix and /etc/dovecot become the suite's directories,
# and the service names "submission"/"submissions" become test ports. Everything runs
# inside a private network + mount + PID namespace (unshare): loopback only, the customer
# addresses exist only there, /etc/hosts and /etc/resolv.conf are replaced by bind mounts
# visible only inside, and every process still alive at the end dies with the namespace.
# The machine's Postfix, Dovecot, resolver and ports are never touched. Prints one
# PASS/FAIL line per case and ends with "e2e-submission: N passed, M failed".
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FIX=$REPO/tests/e2e/submission
DOC=$REPO/docs/submission.md
SUITE=e2e-submission
# shellcheck source=scripts/lib/e2e-common.sh
source "$REPO/scripts/lib/e2e-common.sh"

# Ports inside the private network namespace.
SUB_PORT=2587       # "submission" of docs/submission.md (587)
SUBS_PORT=2465      # "submissions" (465, TLS on connect)
POLICY_PORT=10023   # spamgate, as docs/submission.md's master.cf lines ask
# The name customers enter as their outgoing server (the certificate's name).
HOST=smtp.example.com
# Customers' (dynamic) addresses, on lo: each customer connects from its own.
ALICE_ADDR=198.51.100.11
BOB_ADDR=198.51.100.12
BOB_NEW_ADDR=198.51.100.22   # bob after a reconnect: limits follow the login, not the address
CAROL_ADDR=198.51.100.13
DAVE_ADDR=198.51.100.14
ERIN_ADDR=198.51.100.15
FRANK_ADDR=198.51.100.16     # a customer the abuse desk suspends and resumes
STRANGER_ADDR=198.51.100.66  # never logs in

# ---------------------------------------------------------------------------------------
# Outside the namespace.

outside() {
    [[ $(id -u) == 0 ]] || die "run as root (private Postfix and Dovecot instances, namespaces)"
    install_missing postfix=postfix dovecot=dovecot-core doveadm=dovecot-core swaks=swaks \
        perl:Net::SSLeay=libnet-ssleay-perl openssl=openssl python3=python3 ip=iproute2 unshare=util-linux
    build_spamgate
    run_in_namespaces "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------------------------------
# Inside the namespace.

# fill TEMPLATE OUT: replaces @VARS@ with the suite's values.
fill() {
    sed -e "s|@T@|$T|g" -e "s|@SUB_PORT@|$SUB_PORT|g" -e "s|@SUBS_PORT@|$SUBS_PORT|g" \
        -e "s|@POLICY_PORT@|$POLICY_PORT|g" "$1" >"$2"
}

# from_doc NAME: a tested block of docs/submission.md with the system paths replaced by
# the suite's. Nothing else is changed.
from_doc() {
    doc_block "$DOC" "$1" | sed -e "s|/etc/postfix/|$T/sub/etc/|g" \
        -e "s|/var/spool/postfix/|$T/sub/queue/|g" -e "s|/etc/dovecot/|$T/dovecot/|g"
}

cleanup() {
    local rc=$?
    set +e
    [[ -n ${SPAMGATE_PID:-} ]] && kill "$SPAMGATE_PID" 2>/dev/null
    [[ -f $T/sub/etc/main.cf ]] && postfix -c "$T/sub/etc" stop >/dev/null 2>&1
    [[ -f $T/dovecot/run/master.pid ]] && dovecot -c "$T/dovecot/dovecot.conf" stop >/dev/null 2>&1
    wait 2>/dev/null
    finish "$rc" "$T/spamgate.log" "$T/sub/maillog" "$T/dovecot/dovecot.log"
}

setup_namespace() {
    ip link set lo up
    local a
    for a in "$ALICE_ADDR" "$BOB_ADDR" "$BOB_NEW_ADDR" "$CAROL_ADDR" "$DAVE_ADDR" "$ERIN_ADDR" "$FRANK_ADDR" "$STRANGER_ADDR"; do
        ip addr add "$a/32" dev lo
    done
    mkdir -p "$T/etc"
    # No DNS server in here: lookups of the customers' names fail at once (nothing listens
    # on 127.0.0.1:53), and the customers find the server by the name they configured.
    printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$T/etc/resolv.conf"
    printf '127.0.0.1 localhost %s\n::1 localhost\n' "$HOST" >"$T/etc/hosts"
    chmod 644 "$T"/etc/*
    # Private mount namespace: these bind mounts are invisible outside and vanish with it.
    local f
    for f in resolv.conf hosts; do mount --bind "$T/etc/$f" "/etc/$f"; done
}

# Dovecot's passwd-file from the test accounts, hashed the way docs/submission.md says.
write_users() {
    local login password
    : >"$T/dovecot/submission-users"
    while read -r login password; do
        [[ -n $login && $login != \#* ]] || continue
        printf '%s:%s\n' "$login" "$(doveadm -c "$T/dovecot/dovecot.conf" pw -s SHA512-CRYPT -p "$password")" \
            >>"$T/dovecot/submission-users"
    done <"$FIX/accounts"
    chown root:dovecot "$T/dovecot/submission-users"
    chmod 640 "$T/dovecot/submission-users"
}

# password LOGIN: the test account's password.
password() { awk -v l="$1" '$1 == l { print $2 }' "$FIX/accounts"; }

check_doc_blocks() {
    local master dovecot main
    master=$(doc_block "$DOC" submission-master.cf)
    main=$(doc_block "$DOC" submission-main.cf)
    dovecot=$(doc_block "$DOC" dovecot.conf)
    if [[ $(grep -c 'check_policy_service inet:127.0.0.1:10023' <<<"$master") -ge 4 ]] &&
        grep -q '^submission ' <<<"$master" && grep -q '^submissions ' <<<"$master" &&
        grep -q 'smtpd_sasl_type = dovecot' <<<"$main" &&
        grep -q 'unix_listener /var/spool/postfix/private/auth' <<<"$dovecot"; then
        pass docs-submission-blocks "master.cf, main.cf and Dovecot blocks of docs/submission.md used verbatim"
    else
        fail docs-submission-blocks "docs/submission.md lacks its e2e:submission-master.cf, submission-main.cf or dovecot.conf block"
    fi
    # The documented production [submission] table is a valid spamgate configuration.
    {
        printf '[store]\npath = "%s/doc-check.db"\n\n' "$T/spamgate"
        doc_block "$DOC" spamgate-submission
        printf '\n'
        doc_block "$DOC" spamgate-replies
    } >"$T/doc-spamgate.toml"
    if grep -q '^\[submission\]' "$T/doc-spamgate.toml" &&
        "$SPAMGATE_BIN" config check --config "$T/doc-spamgate.toml" >"$T/doc-spamgate.log" 2>&1; then
        pass docs-spamgate-blocks "[submission] and [replies] of docs/submission.md pass spamgate config check"
    else
        fail docs-spamgate-blocks "$(tail -n 3 "$T/doc-spamgate.log" | tr '\n' ' ')"
    fi
}

make_certificate() {
    mkdir -p "$T/sub/etc/tls"
    # The command docs/submission.md shows, with the suite's paths.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
        -keyout "$T/sub/etc/tls/submission.key" -out "$T/sub/etc/tls/submission.crt" \
        >"$T/openssl.log" 2>&1 || { cat "$T/openssl.log" >&2; die "openssl req failed"; }
    chmod 600 "$T/sub/etc/tls/submission.key"
}

start_spamgate() {
    mkdir -p "$T/spamgate"
    if [[ ! -f $T/spamgate.toml ]]; then
        fill "$FIX/spamgate.toml.in" "$T/spamgate.toml"
        printf '\n# ---- from docs/submission.md (e2e:spamgate-replies) ----\n%s\n' \
            "$(doc_block "$DOC" spamgate-replies)" >>"$T/spamgate.toml"
    fi
    "$SPAMGATE_BIN" serve --config "$T/spamgate.toml" >>"$T/spamgate.log" 2>&1 &
    SPAMGATE_PID=$!
    if ! wait_for "spamgate on 127.0.0.1:$POLICY_PORT" 20 tcp_open 127.0.0.1 "$POLICY_PORT"; then
        tail -n 30 "$T/spamgate.log" >&2
        die "spamgate did not start"
    fi
}

stop_spamgate() {
    kill "$SPAMGATE_PID"
    wait "$SPAMGATE_PID" 2>/dev/null || true
    SPAMGATE_PID=
}

setup_postfix() {
    local etc=$T/sub/etc
    mkdir -p "$etc" "$T/sub/queue" "$T/sub/data" "$T/mail"
    chown nobody:nogroup "$T/mail"
    fill "$FIX/main.cf.in" "$etc/main.cf"
    {
        printf '\n# ---- from docs/postfix.md (e2e:main.cf) ----\n'
        doc_block "$REPO/docs/postfix.md" main.cf
        printf '\n# ---- from docs/submission.md (e2e:submission-main.cf) ----\n'
        from_doc submission-main.cf
    } >>"$etc/main.cf"
    fill "$FIX/master.cf.in" "$etc/master.cf"
    # The documented services on test ports: only the service names change.
    {
        printf '# ---- from docs/submission.md (e2e:submission-master.cf), ports %s/%s ----\n' "$SUB_PORT" "$SUBS_PORT"
        from_doc submission-master.cf | sed -e "s/^submission /$SUB_PORT /" -e "s/^submissions /$SUBS_PORT /"
    } >>"$etc/master.cf"
    cp "$FIX/vmailbox" "$FIX/sender_logins" "$etc/"
    # The chrooted services resolve names inside $queue_directory, as Debian's init
    # script arranges for the system instance.
    mkdir -p "$T/sub/queue/etc"
    local f
    for f in resolv.conf hosts nsswitch.conf services; do
        [[ ! -e /etc/$f ]] || cp "/etc/$f" "$T/sub/queue/etc/"
    done
    start_postfix sub
}

start_dovecot() {
    mkdir -p "$T/dovecot/run" "$T/dovecot/state"
    fill "$FIX/dovecot.conf.in" "$T/dovecot/dovecot.conf"
    printf '\n# ---- from docs/submission.md (e2e:dovecot.conf) ----\n%s\n' "$(from_doc dovecot.conf)" \
        >>"$T/dovecot/dovecot.conf"
    write_users
    dovecot -c "$T/dovecot/dovecot.conf" >"$T/dovecot/start.log" 2>&1 || {
        cat "$T/dovecot/start.log" "$T/dovecot/dovecot.log" >&2 2>/dev/null
        die "dovecot did not start"
    }
    wait_for "Dovecot's auth socket" 10 test -S "$T/sub/queue/private/auth" ||
        die "Dovecot did not create $T/sub/queue/private/auth"
}

# ---------------------------------------------------------------------------------------
# SMTP cases.

# submit NAME ADDR [swaks args...]: one session from ADDR to the submission server;
# transcript to $T/swaks/NAME, the subject is NAME.
submit() {
    local name=$1 addr=$2
    shift 2
    swaks --server "$HOST" --timeout 30 --local-interface "$addr" --helo customer-pc.example \
        --header "Subject: $name" --body "spamgate submission e2e message $name" "$@" \
        >"$T/swaks/$name" 2>&1 || true
}

# login_as LOGIN: sets AS to the swaks arguments for SMTP AUTH PLAIN as LOGIN, sending from
# LOGIN's own address.
login_as() { AS=(--from "$1" --auth PLAIN --auth-user "$1" --auth-password "$(password "$1")"); }

# reply NAME COMMAND: the server's (first) reply line to COMMAND in a swaks transcript.
reply() {
    awk -v cmd="$2" '
        $0 ~ "^ *[-~]> " cmd { getline; sub(/^ *<[-*~ ]*/, ""); print; exit }' "$T/swaks/$1"
}

in_mailbox() { grep -rqsl -- "^Subject: $1\$" "$T"/mail/example.com/*/new/; }
count_in_mailbox() { grep -rlsx -- "Subject: $1" "$T"/mail/example.com/*/new/ | wc -l; }
copies_in_mailbox() { (($(count_in_mailbox "$1") == $2)); }

# expect NAME COMMAND REGEX [delivered]: the reply to COMMAND matches; with "delivered" the
# message must also arrive in a mailbox.
expect() {
    local name=$1 cmd=$2 want=$3 got
    got=$(reply "$name" "$cmd")
    if [[ ! $got =~ $want ]]; then
        fail "$name" "$cmd got '${got:-<no reply, see $T/swaks/$name>}', want /$want/"
        return 1
    fi
    if [[ ${4:-} == delivered ]] && ! wait_for "delivery of $name" 15 in_mailbox "$name"; then
        fail "$name" "$got, but the message is not in the mailbox"
        return 1
    fi
    pass "$name" "$got${4:+ (delivered)}"
}

LIMIT_HOURLY='^451 4\.7\.1 .*Sending limit reached \(messages-per-hour\), please try again in [0-9]+ seconds'
LIMIT_DAILY='^451 4\.7\.1 .*Sending limit reached \(recipients-per-day\), please try again in [0-9]+ seconds'
REFUSED='^554 5\.7\.1 .*Sending refused: account carol@example\.com is suspended'
REFUSED_FRANK='^554 5\.7\.1 .*Sending refused: account frank@example\.com is suspended'

# An unauthenticated client: no AUTH before STARTTLS, nothing at all without TLS, and
# after STARTTLS but without AUTH, spamgate's 530 for the recipient.
unauthenticated() {
    local t=$T/swaks/no-tls
    submit no-tls "$STRANGER_ADDR" --port "$SUB_PORT" --from stranger@example.net --to friend@example.com
    if grep -q '250-STARTTLS' "$t" && ! grep -q 'AUTH' "$t"; then
        expect no-tls "MAIL FROM" '^530 5\.7\.0 Must issue a STARTTLS command first' || true
    else
        fail no-tls "EHLO before TLS must offer STARTTLS and no AUTH (see $t)"
    fi
    submit unauthenticated "$STRANGER_ADDR" --port "$SUB_PORT" --tls --from stranger@example.net --to friend@example.com
    if ! grep -Eq '^ *<~ +250[- ]AUTH PLAIN LOGIN' "$T/swaks/unauthenticated"; then
        fail auth-after-starttls "EHLO after STARTTLS does not offer AUTH PLAIN LOGIN"
    else
        pass auth-after-starttls "AUTH PLAIN LOGIN offered only after STARTTLS"
    fi
    expect unauthenticated "RCPT TO" '^530 5\.7\.0 .*Authentication required' || true
}

# A stranger tries alice's login (from its own address: Dovecot slows down further
# attempts from an address that failed).
wrong_password() {
    submit wrong-password "$STRANGER_ADDR" --port "$SUB_PORT" --tls --from alice@example.com \
        --to friend@example.com --auth PLAIN --auth-user alice@example.com --auth-password not-her-password
    expect wrong-password "AUTH" '^535 5\.7\.8 ' || true
}

normal_account() {
    local ca=$T/sub/etc/tls/submission.crt
    # STARTTLS with the certificate verified against the one made for this run.
    login_as alice@example.com
    submit normal-sends "$ALICE_ADDR" --port "$SUB_PORT" --tls --tls-verify --tls-ca-path "$ca" \
        "${AS[@]}" --to friend@example.com
    if expect normal-sends "DATA" '^354 ' delivered; then
        local msg
        msg=$(grep -rlsx -- 'Subject: normal-sends' "$T"/mail/example.com/friend/new/ | head -n 1)
        # ESMTPSA (RFC 3848): received over TLS with SMTP AUTH.
        if grep -q "^Received: from customer-pc.example (unknown \[$ALICE_ADDR\])" "$msg" &&
            grep -q "by $HOST (Postfix) with ESMTPSA id" "$msg"; then
            pass normal-sends-received "Received: from customer-pc.example (unknown [$ALICE_ADDR]) by $HOST with ESMTPSA"
        else
            fail normal-sends-received "the Received header lacks ESMTPSA or the client (see $msg)"
        fi
    fi
    # The check is real: without the suite's certificate as CA, TLS does not come up.
    submit tls-verify-untrusted "$ALICE_ADDR" --port "$SUB_PORT" --tls --tls-verify --quit-after TLS \
        --from alice@example.com --to friend@example.com
    if grep -q 'TLS started' "$T/swaks/tls-verify-untrusted" ||
        ! grep -q 'TLS startup failed.*certificate verify failed' "$T/swaks/tls-verify-untrusted"; then
        fail tls-verify-untrusted "TLS came up without the CA, so --tls-verify proves nothing (see $T/swaks/tls-verify-untrusted)"
    else
        pass tls-verify-untrusted "$(grep -m1 'TLS startup failed' "$T/swaks/tls-verify-untrusted" | sed 's/^\*\** *//')"
    fi
    submit submissions-tls-on-connect "$ALICE_ADDR" --port "$SUBS_PORT" --tls-on-connect \
        "${AS[@]}" --to colleague@example.com
    expect submissions-tls-on-connect "DATA" '^354 ' delivered || true
    # The envelope sender belongs to another login.
    submit sender-not-owned "$ALICE_ADDR" --port "$SUB_PORT" --tls --from bob@example.com \
        --auth PLAIN --auth-user alice@example.com --auth-password "$(password alice@example.com)" --to friend@example.com
    expect sender-not-owned "RCPT TO" '^553 5\.7\.1 .*not owned by user alice@example\.com' || true
}

# bob: 3 messages pass (message_burst = 3), the 4th is deferred at DATA, also from a new address.
hourly_limit() {
    local i ok=1
    login_as bob@example.com
    for i in 1 2 3; do
        submit "bob-$i" "$BOB_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" --to friend@example.com
        expect "bob-$i" "DATA" '^354 ' delivered || ok=
    done
    submit bob-4-over-limit "$BOB_NEW_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" --to friend@example.com
    if expect bob-4-over-limit "DATA" "$LIMIT_HOURLY"; then
        # Nothing of the 4th reached a mailbox, and exactly 3 of bob's did.
        local n
        n=$(grep -rlsE -- '^Subject: bob-[0-9]' "$T"/mail/example.com/*/new/ | wc -l)
        if [[ -n $ok ]] && ((n == 3)) && ! in_mailbox bob-4-over-limit; then
            pass bob-exactly-3-delivered "3 of bob's messages in the mailbox, the 4th deferred"
        else
            fail bob-exactly-3-delivered "$n of bob's messages delivered, want 3"
        fi
    fi
    local ev=$T/events-bob.log
    "$SPAMGATE_BIN" account events bob@example.com --config "$T/spamgate.toml" >"$ev" 2>&1 || true
    if grep -q 'messages-per-hour' "$ev" && grep -q "$BOB_NEW_ADDR" "$ev"; then
        pass events-show-trip "$(grep -m1 'messages-per-hour' "$ev" | tr '\t' ' ')"
    else
        fail events-show-trip "spamgate account events bob@example.com: $(tr '\n' ' ' <"$ev" | cut -c1-200)"
    fi
}

# BDAT (CHUNKING, which Postfix offers) instead of DATA must not get bob past his limit.
bdat_over_limit() {
    local out=$T/swaks/bob-bdat got
    python3 "$FIX/bdat.py" "$HOST" "$SUB_PORT" "$BOB_NEW_ADDR" bob@example.com "$(password bob@example.com)" \
        friend@example.com >"$out" 2>&1 || true
    got=$(awk '/^-> BDAT/ { getline; sub(/^<- /, ""); print; exit }' "$out")
    if [[ $got =~ $LIMIT_HOURLY ]]; then
        pass bob-bdat-over-limit "$got"
    else
        fail bob-bdat-over-limit "BDAT got '${got:-<none, see $out>}', want /$LIMIT_HOURLY/"
    fi
}

# The counters are in the store: a restarted spamgate still defers bob.
limit_after_restart() {
    stop_spamgate
    start_spamgate
    login_as bob@example.com
    submit bob-5-after-restart "$BOB_NEW_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" --to friend@example.com
    expect bob-5-after-restart "DATA" "$LIMIT_HOURLY" || true
}

# dave: 3 recipients pass (recipient_burst = 5); 3 more would make 6.
recipient_limit() {
    login_as dave@example.com
    submit dave-3-recipients "$DAVE_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" \
        --to friend@example.com,colleague@example.com,family@example.com
    if expect dave-3-recipients "DATA" '^354 ' delivered; then
        local n
        wait_for "3 copies" 10 copies_in_mailbox dave-3-recipients 3 || true
        n=$(count_in_mailbox dave-3-recipients)
        if ((n == 3)); then
            pass dave-3-recipients-delivered "one copy in each of the 3 mailboxes"
        else
            fail dave-3-recipients-delivered "in $n mailboxes, want 3"
        fi
    fi
    submit dave-3-more-recipients "$DAVE_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" \
        --to friend@example.com,colleague@example.com,family@example.com
    expect dave-3-more-recipients "DATA" "$LIMIT_DAILY" || true
}

# erin gets a lower limit while the daemon runs: it applies to her next message.
account_override() {
    if ! "$SPAMGATE_BIN" account add erin@example.com --messages-per-hour 1 --note "e2e: lowered" \
        --config "$T/spamgate.toml" >"$T/account-add.log" 2>&1; then
        fail override-applies "spamgate account add failed: $(tr '\n' ' ' <"$T/account-add.log")"
        return
    fi
    login_as erin@example.com
    submit erin-1 "$ERIN_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" --to friend@example.com
    expect erin-1 "DATA" '^354 ' delivered || true
    submit erin-2-override "$ERIN_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" --to friend@example.com
    expect erin-2-override "DATA" "$LIMIT_HOURLY" || true
}

# carol sends, is suspended (next attempt: 554 at RCPT), is resumed (sends again).
suspend_resume() {
    local cfg=$T/spamgate.toml
    login_as carol@example.com
    submit carol-1-active "$CAROL_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" --to friend@example.com
    expect carol-1-active "DATA" '^354 ' delivered || true
    "$SPAMGATE_BIN" account suspend carol@example.com --create --note "e2e: infected PC, ticket 4712" \
        --config "$cfg" >"$T/account-suspend.log" 2>&1 || fail carol-suspend "spamgate account suspend failed"
    submit carol-2-suspended "$CAROL_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" --to friend@example.com
    expect carol-2-suspended "RCPT TO" "$REFUSED" || true
    if in_mailbox carol-2-suspended; then fail carol-2-not-delivered "delivered while suspended"; fi
    local ev=$T/events-carol.log
    "$SPAMGATE_BIN" account events carol@example.com --config "$cfg" >"$ev" 2>&1 || true
    if grep -q 'active -> suspended' "$ev" && grep -q 'rejected' "$ev"; then
        pass events-show-suspension "status change and refused attempt recorded"
    else
        fail events-show-suspension "spamgate account events carol@example.com: $(tr '\n' ' ' <"$ev" | cut -c1-200)"
    fi
    "$SPAMGATE_BIN" account resume carol@example.com --note "e2e: cleaned" \
        --config "$cfg" >"$T/account-resume.log" 2>&1 || fail carol-resume "spamgate account resume failed"
    submit carol-3-resumed "$CAROL_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" --to friend@example.com
    expect carol-3-resumed "DATA" '^354 ' delivered || true
}

# frank is a customer of the abuse desk (customer C-FRANK, account linked): the ladder's
# suspension (approved by a second person) refuses his account at once, without a reload
# of the running daemon; the ladder's resume lets him send again.
desk_suspend_resume() {
    local cfg=$T/spamgate.toml step
    run_desk() { "$SPAMGATE_BIN" "$@" --config "$cfg" >>"$T/desk-frank.log" 2>&1; }
    login_as frank@example.com
    if ! run_desk account add frank@example.com ||
        ! run_desk customer add C-FRANK --name Frank --contact frank@example.com --language en ||
        ! run_desk customer link C-FRANK --account frank@example.com; then
        fail desk-frank-setup "customer add/link failed: $(tail -n 3 "$T/desk-frank.log" | tr '\n' ' ')"
        return
    fi
    submit frank-1-active "$FRANK_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" --to friend@example.com
    expect frank-1-active "DATA" '^354 ' delivered || true
    if ! run_desk abuse suspend C-FRANK --reason "e2e: spam run" --actor sato --approver suzuki; then
        fail desk-frank-suspend "spamgate abuse suspend failed: $(tail -n 3 "$T/desk-frank.log" | tr '\n' ' ')"
        return
    fi
    submit frank-2-suspended "$FRANK_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" --to friend@example.com
    expect frank-2-suspended "RCPT TO" "$REFUSED_FRANK" || true
    if in_mailbox frank-2-suspended; then fail frank-2-not-delivered "delivered while suspended"; fi
    if ! run_desk abuse resume C-FRANK --reason "e2e: cleaned" --actor sato; then
        fail desk-frank-resume "spamgate abuse resume failed: $(tail -n 3 "$T/desk-frank.log" | tr '\n' ' ')"
        return
    fi
    submit frank-3-resumed "$FRANK_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" --to friend@example.com
    expect frank-3-resumed "DATA" '^354 ' delivered || true
    step=$("$SPAMGATE_BIN" customer show C-FRANK --config "$cfg" 2>&1 || true)
    if grep -q suspended <<<"$step" && grep -q resumed <<<"$step"; then
        pass desk-frank-ladder "customer show records the suspension and the resume"
    else
        fail desk-frank-ladder "customer show C-FRANK: $(tr '\n' ' ' <<<"$step" | cut -c1-300)"
    fi
}

# spamgate stopped: Postfix's smtpd_policy_service_default_action (docs/postfix.md).
spamgate_down() {
    stop_spamgate
    login_as alice@example.com
    submit spamgate-down "$ALICE_ADDR" --port "$SUB_PORT" --tls "${AS[@]}" --to friend@example.com
    expect spamgate-down "RCPT TO" '^451 4\.3\.5 ' || true
}

show_logs() {
    local ml=$T/sub/maillog sl=$T/spamgate.log
    printf '\n--- bob over the hourly limit (4th message, from %s) ---\n' "$BOB_NEW_ADDR"
    grep -h "\[$BOB_NEW_ADDR\]" "$ml" | grep -E 'sasl_username|reject:' | head -n 2 || true
    grep -h 'spamgate::decision' "$sl" | grep "client=$BOB_NEW_ADDR" | grep -v 'action=pass' | head -n 1 || true
    printf -- '--- carol suspended ---\n'
    grep -h "\[$CAROL_ADDR\]" "$ml" | grep -E 'reject: RCPT' | head -n 1 || true
    grep -h 'spamgate::decision' "$sl" | grep "client=$CAROL_ADDR" | grep 'action=reject' | head -n 1 || true
    printf -- '--- an unauthenticated client (%s) ---\n' "$STRANGER_ADDR"
    grep -h "\[$STRANGER_ADDR\]" "$ml" | grep -E 'reject:' | head -n 1 || true
    grep -h 'spamgate::decision' "$sl" | grep "client=$STRANGER_ADDR" | head -n 1 || true
    printf -- '---\n'
}

inside() {
    T=$1
    SPAMGATE_BIN=$2
    trap cleanup EXIT
    mkdir -p "$T/swaks"
    setup_namespace
    check_doc_blocks
    make_certificate
    start_spamgate
    setup_postfix
    start_dovecot
    wait_for "submission service" 20 tcp_open 127.0.0.1 "$SUB_PORT"
    wait_for "submissions service" 20 tcp_open 127.0.0.1 "$SUBS_PORT"

    unauthenticated
    wrong_password
    normal_account
    hourly_limit
    bdat_over_limit
    limit_after_restart
    recipient_limit
    account_override
    suspend_resume
    desk_suspend_resume
    spamgate_down
    show_logs
}

if [[ ${1:-} == --inside ]]; then
    inside "$2" "$3"
else
    outside
fi
