#!/usr/bin/env bash
# THE test command: installs the test tools (scripts/tools.sh), then runs rustfmt, clippy and
# every test target. Extra arguments go to `cargo test`, e.g.
#   ./scripts/test.sh --test codec_e2e -- --nocapture
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export KMSCODEC_TOOLS="${KMSCODEC_TOOLS:-$ROOT/.tools}"
mkdir -p "$KMSCODEC_TOOLS"
KMSCODEC_TOOLS="$(cd "$KMSCODEC_TOOLS" && pwd)"
export KMSCODEC_TOOLS

TIMINGS=()
phase() { # NAME CMD...
    local name=$1 start end rc=0
    shift
    echo "==> [$name] $*" >&2
    start=$(date +%s%N)
    "$@" || rc=$?
    end=$(date +%s%N)
    local ms=$(((end - start) / 1000000))
    TIMINGS+=("$(printf '%-8s %4d.%03ds' "$name" $((ms / 1000)) $((ms % 1000)))")
    if [ "$rc" != 0 ]; then
        echo "==> [$name] FAILED (exit $rc) after $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s" >&2
        print_timings
        exit "$rc"
    fi
    echo "==> [$name] ok in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s" >&2
}
print_timings() {
    echo "==> timings:" >&2
    printf '      %s\n' "${TIMINGS[@]}" >&2
}

phase tools "$ROOT/scripts/tools.sh"
export PATH="$KMSCODEC_TOOLS/bin:$PATH"

phase fmt cargo fmt --all -- --check
phase clippy cargo clippy --all-targets -- -D warnings
phase test cargo test --all-targets "$@"
print_timings
