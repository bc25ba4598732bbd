#!/usr/bin/env bash
# Every crate in the build (normal, build and dev dependencies, every target) must be under
# a permissive licence: no GPL, LGPL or AGPL. Checked by cargo-deny against deny.toml (the
# allowed licences and the banned crates), offline from the lock file; installs the pinned
# cargo-deny first when it is missing or another version. Exits non-zero naming any crate
# that fails. Advisories are not checked: see deny.toml. `--install-only` installs and stops
# (scripts/test-all.sh starts it early, in the background).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Pinned: deny.toml's format follows cargo-deny's releases. 0.20.2 needs Rust 1.88+. Built
# from source it took 4.6 and 4.5 min (183 and 193 s of CPU) on this 2-core machine while
# other builds ran; then each check takes about 3 s.
CARGO_DENY_VERSION=0.20.2

if [[ $(cargo deny --version 2>/dev/null) != "cargo-deny $CARGO_DENY_VERSION" ]]; then
    printf 'installing cargo-deny %s\n' "$CARGO_DENY_VERSION"
    cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION"
fi

[[ ${1:-} == --install-only ]] && exit 0
cargo deny --locked --color never check --show-stats licenses bans
