#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need, then runs
# formatting and lint checks, the Rust tests (unit, integration with an in-process DNS
# server, real SQLite files, real processes), and the end-to-end suites with real
# Postfix/rbldnsd/dnsmasq (scripts/e2e.sh), a real Postfix submission service with
# Dovecot SASL (scripts/e2e-submission.sh), the abuse desk's intake through a Postfix
# alias pipe (scripts/e2e-desk.sh), the web console in a real chromium
# (scripts/e2e-console.sh), a real kernel nftables in network namespaces
# (scripts/op25b-netns.sh), schemathesis against the admin API's OpenAPI document
# (scripts/api-fuzz.sh), and the Debian package built, installed and purged
# (scripts/test-deb.sh). Needs root for the installs and namespaces.
#
# Usage: bash scripts/test-all.sh        (CI runs exactly this: .ci/run)
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n=== %s\n' "$*"; }

install_packages() {
    # Command → Debian package. Only what is missing is installed, and no package may
    # start a system service while installing (policy-rc.d exits 101).
    local -A wanted=(
        [postfix]=postfix [rbldnsd]=rbldnsd [dnsmasq]=dnsmasq-base [swaks]=swaks
        [nft]=nftables [ip]=iproute2 [redis-server]=redis-server [sqlite3]=sqlite3
        [unshare]=util-linux [dovecot]=dovecot-core [openssl]=openssl [python3]=python3
        [promtool]=prometheus
        [chromium]=chromium [chromedriver]=chromium-driver
    )
    local missing=() cmd
    for cmd in "${!wanted[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${wanted[$cmd]}")
    done
    # swaks only recommends its TLS module (--tls for the submission suite).
    perl -MNet::SSLeay -e 1 2>/dev/null || missing+=(libnet-ssleay-perl)
    # Named display zones (Asia/Tokyo) come from the system's time-zone database.
    [[ -e /usr/share/zoneinfo/Asia/Tokyo ]] || missing+=(tzdata)
    ((${#missing[@]})) || return 0
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing packages (${missing[*]}) and not root: cannot install" >&2
        exit 1
    fi
    log "installing ${missing[*]}"
    local own_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    [[ -z $own_policy ]] || rm -f /usr/sbin/policy-rc.d
}

# cargo-deny (for the licence check below) builds from source for minutes: start it now,
# so that it overlaps the package installs (network-bound) and the first builds.
DENY_LOG=$(mktemp)
bash scripts/check-licenses.sh --install-only >"$DENY_LOG" 2>&1 &
DENY_INSTALL=$!

install_packages

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "dependency licences and bans: cargo-deny, deny.toml (no GPL/LGPL/AGPL)"
# Installs the pinned cargo-deny when it is missing (about 4.5 min from source here).
wait "$DENY_INSTALL" || { cat "$DENY_LOG"; exit 1; }
cat "$DENY_LOG"
bash scripts/check-licenses.sh

log "cargo test"
cargo test --workspace --locked

# The Debian package (last) needs a release build: several minutes of CPU. Start it now,
# at the lowest priority, so that it runs while the end-to-end suites below mostly wait
# (greylist delays, tarpit holds, a browser); scripts/test-deb.sh then finds it built.
RELEASE_LOG=$(mktemp)
nice -n 19 cargo build --release --locked -p spamgate >"$RELEASE_LOG" 2>&1 &
RELEASE_BUILD=$!

log "API fuzzing: schemathesis against spamgate serve, driven by its OpenAPI document"
# The debug binary `cargo test` just built (CARGO_BIN_EXE); run alone, the script builds it.
SPAMGATE_BIN=target/debug/spamgate bash scripts/api-fuzz.sh

log "end-to-end: Postfix + rbldnsd + dnsmasq + spamgate"
bash scripts/e2e.sh

log "end-to-end: submission (Postfix 587/465 + Dovecot SASL + spamgate limits)"
bash scripts/e2e-submission.sh

log "end-to-end: abuse desk intake (Postfix alias pipe -> spamgate abuse ingest)"
bash scripts/e2e-desk.sh

log "metrics: promtool check metrics/rules against a real daemon (scripts/metrics-check.sh)"
bash scripts/metrics-check.sh

log "end-to-end: the web console in chromium (WebDriver) against spamgate serve"
bash scripts/e2e-console.sh

if [[ -f scripts/op25b-netns.sh ]]; then
    log "OP25B in network namespaces (real nftables)"
    bash scripts/op25b-netns.sh
fi

log "Debian package: build (release), install, verify, remove, purge"
wait "$RELEASE_BUILD" || { cat "$RELEASE_LOG"; exit 1; }
bash scripts/test-deb.sh

log "all suites passed"
