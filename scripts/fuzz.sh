#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (default 60 s each) on the stable toolchain.
#   ./scripts/fuzz.sh [SECONDS] [TARGET...]
# cargo-fuzz is installed into .tools/cargo on first use. libFuzzer needs nightly-only compiler
# flags; RUSTC_BOOTSTRAP=1 lets the machine's stable rustc accept them (there is no nightly here).
# A crash is written to fuzz/artifacts/TARGET/: commit it as a regression test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(envelope_header payloads_json)
CARGO_FUZZ_VERSION=0.13.2
BIN="$ROOT/.tools/cargo/bin"
if ! "$BIN/cargo-fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install --locked --root "$ROOT/.tools/cargo" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi
export PATH="$BIN:$PATH" RUSTC_BOOTSTRAP=1
cd "$ROOT"
for target in "${TARGETS[@]}"; do
    # New inputs go to .tools/fuzz-corpus (not committed); fuzz/corpus holds the committed seeds.
    mkdir -p "$ROOT/.tools/fuzz-corpus/$target"
    echo "==> fuzzing $target for ${SECONDS_EACH}s"
    cargo fuzz run "$target" "$ROOT/.tools/fuzz-corpus/$target" "fuzz/corpus/$target" -- -max_total_time="$SECONDS_EACH" -max_len=65536 2>&1 \
        | tee "/tmp/fuzz-$target.log" | grep -E "^(#[0-9]+ +DONE|Done|==|SUMMARY)|stat::number_of_executed_units" || true
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "/tmp/fuzz-$target.log" | tail -1
done
