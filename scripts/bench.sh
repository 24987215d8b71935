#!/usr/bin/env bash
# The load benchmark (issue 11): kmscodec vs a bare AES-256-GCM baseline, same load, one run.
#   ./scripts/bench.sh [--previous REF] [--duration SECS] [--connections N] [--scenarios a,b]
#                      [--out FILE]
# Builds the release binaries, pins the servers to CPU 0 and the load generator to CPU 1, and
# writes bench-results/latest.json. Figures and the machine they came from: docs/performance.md.
#
# --previous REF (a commit, tag or branch) also builds `kmscodec` as it was at REF and measures
# it as a third server in the same rounds (issue 21: "today's MB/s in the same run"). The old
# source is exported with `git archive` into target/bench/previous-src and built into the same
# target folder, so only the kmscodec crate itself is compiled again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

previous=""
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --previous)
      [[ $# -ge 2 ]] || { echo "bench.sh: --previous needs a git revision" >&2; exit 2; }
      previous="$2"
      shift 2
      ;;
    *)
      args+=("$1")
      shift
      ;;
  esac
done

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BENCH_DIR="$TARGET/bench"
mkdir -p "$BENCH_DIR"

if [[ -n "$previous" ]]; then
  commit="$(git rev-parse --verify "$previous^{commit}")"
  src="$BENCH_DIR/previous-src"
  rm -rf "$src"
  mkdir -p "$src"
  git archive "$commit" | tar -x -C "$src"
  echo "bench.sh: building kmscodec at ${commit:0:12} ($previous)" >&2
  # Same target folder: the dependencies are shared; the old crate is a different package
  # (another path), so its artifacts do not replace today's. Its binary is copied out at once,
  # before today's build puts target/release/kmscodec back.
  CARGO_TARGET_DIR="$TARGET" cargo build --release --locked --bin kmscodec \
    --manifest-path "$src/Cargo.toml"
  cp "$TARGET/release/kmscodec" "$BENCH_DIR/kmscodec-previous"
  # target/release/kmscodec now holds the old binary: make cargo link today's again.
  rm -f "$TARGET/release/kmscodec"
fi

cargo build --release --bins
cp "$TARGET/release/kmscodec" "$BENCH_DIR/kmscodec"
cp "$TARGET/release/kmscodec-bench" "$BENCH_DIR/kmscodec-bench"
if [[ -n "$previous" ]]; then
  if cmp -s "$BENCH_DIR/kmscodec" "$BENCH_DIR/kmscodec-previous"; then
    echo "bench.sh: today's kmscodec is byte for byte the previous one; was it relinked?" >&2
    exit 1
  fi
  args+=(--previous "$BENCH_DIR/kmscodec-previous")
fi
exec taskset -c 1 "$BENCH_DIR/kmscodec-bench" --kmscodec "$BENCH_DIR/kmscodec" "${args[@]}"
