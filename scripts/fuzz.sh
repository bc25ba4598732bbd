#!/usr/bin/env bash
# Runs every fuzz target for a bounded number of executions or time:
#   scripts/fuzz.sh [--runs N] [--seconds S] [--asan] [target ...]
# Defaults: 10^7 executions per target, at most 3600 s each. Prints libFuzzer's final
# "Done N runs in S second(s)" per target; a crash stops the script with libFuzzer's
# report and leaves the input in fuzz/artifacts/<target>/.
#
# Without --asan the targets are built with no sanitizer: spamgate forbids unsafe code,
# so AddressSanitizer would only watch its dependencies, at a quarter of the speed.
# Needs cargo-fuzz (cargo install cargo-fuzz --locked); RUSTC_BOOTSTRAP lets it use the
# nightly-only instrumentation flags on the stable toolchain.
set -euo pipefail

runs=10000000
seconds=3600
sanitizer=none
targets=()
while (($#)); do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --asan) sanitizer=address; shift ;;
        -h|--help) sed -n 2,11p "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done
# Add new targets here (names of fuzz/fuzz_targets/*.rs).
((${#targets[@]})) || targets=(policy_decode config_parse)

cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s "$sanitizer"
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== fuzzing $target: $runs executions or ${seconds}s (sanitizer: $sanitizer)"
    # seeds/<target> (committed, if any) starts the corpus off with realistic inputs.
    seeds=()
    [[ -d "seeds/$target" ]] && seeds=("seeds/$target")
    log="$(mktemp)"
    if ! cargo fuzz run -s "$sanitizer" "$target" "corpus/$target" "${seeds[@]}" -- \
        -runs="$runs" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "== $target: FAILED (see above; input in fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added)' "$log" | sed "s/^/$target: /"
    rm -f "$log"
done
