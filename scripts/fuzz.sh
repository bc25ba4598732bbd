#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: scripts/fuzz.sh [seconds per target, default 60]
# Needs cargo-fuzz (cargo install cargo-fuzz --locked); RUSTC_BOOTSTRAP lets it use the
# nightly-only sanitizer flags on the stable toolchain.
set -euo pipefail

seconds="${1:-60}"
# Add new targets here (names of fuzz/fuzz_targets/*.rs).
targets=(policy_decode config_parse)

cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
cargo fuzz build
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== fuzzing $target for ${seconds}s"
    # seeds/<target> (committed, if any) starts the corpus off with realistic inputs.
    seeds=()
    [[ -d "seeds/$target" ]] && seeds=("seeds/$target")
    cargo fuzz run "$target" "corpus/$target" "${seeds[@]}" -- -max_total_time="$seconds" -max_len=4096
done
