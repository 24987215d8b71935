#!/usr/bin/env bash
# The load benchmark (issue 11): kmscodec vs a bare AES-256-GCM baseline, same load, one run.
#   ./scripts/bench.sh [--duration SECS] [--connections N] [--scenarios a,b] [--out FILE]
# Builds the release binaries, pins both servers to CPU 0 and the load generator to CPU 1, and
# writes bench-results/latest.json. Figures and the machine they came from: docs/performance.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release --bins
exec taskset -c 1 "$ROOT/target/release/kmscodec-bench" --kmscodec "$ROOT/target/release/kmscodec" "$@"
