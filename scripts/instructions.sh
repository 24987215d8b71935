#!/usr/bin/env bash
# User-space instructions per request of `kmscodec serve`, counted by valgrind's callgrind: a
# figure that does not move with the host's load, for A/B comparisons that the wall-clock load
# bench (scripts/bench.sh) cannot resolve on a shared machine.
#   ./scripts/instructions.sh [--requests N] [BINARY...]
# Each BINARY (default: target/release/kmscodec, built first) serves on the embedded default; a
# keep-alive client sends 200 warm-up requests, the counters are zeroed, then N (default 2,000)
# HTTP requests of one 1 KiB payload each are counted, for encode and then decode. Kernel time is
# not counted, and valgrind runs without AVX-512, so the figures compare builds with each other,
# not with wall-clock cost. Needs valgrind and python3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUESTS=2000
BINARIES=()
while [ $# -gt 0 ]; do
    case "$1" in
        --requests) REQUESTS="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) BINARIES+=("$1"); shift ;;
    esac
done
for tool in valgrind callgrind_control python3; do
    command -v "$tool" >/dev/null || { echo "instructions.sh: $tool not found" >&2; exit 2; }
done
if [ ${#BINARIES[@]} -eq 0 ]; then
    (cd "$ROOT" && cargo build --release --bin kmscodec)
    BINARIES=("$ROOT/target/release/kmscodec")
fi

# Sends COUNT requests of OP on one keep-alive connection; exits non-zero on any non-200.
client() {
    python3 - "$@" <<'EOF'
import base64, http.client, json, os, sys, time
port, op, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
deadline = time.time() + 120
while True:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("kmscodec did not start")
        time.sleep(0.5)
headers = {"content-type": "application/json", "X-Namespace": "default"}
plain = {"metadata": {"encoding": base64.b64encode(b"binary/plain").decode()},
         "data": base64.b64encode(os.urandom(1024)).decode()}
body = json.dumps({"payloads": [plain]}).encode()
if op == "decode":
    conn.request("POST", "/encode", body, headers)
    body = conn.getresponse().read()
for _ in range(count):
    conn.request("POST", "/" + op, body, headers)
    response = conn.getresponse()
    answer = response.read()
    if response.status != 200:
        sys.exit(f"{op}: HTTP {response.status}: {answer[:200]!r}")
EOF
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WORK="$(mktemp -d)"
SERVER=""
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

printf '%-50s %-7s %14s\n' binary op "instr/request"
for binary in "${BINARIES[@]}"; do
    for op in encode decode; do
        run="$WORK/run"
        rm -rf "$run" && mkdir -p "$run"
        port="$(free_port)" grpc="$(free_port)" admin="$(free_port)"
        valgrind --tool=callgrind --callgrind-out-file="$run/out" \
            "$binary" serve --log warn --data-dir "$run/data" --listen "127.0.0.1:$port" \
            --grpc-listen "127.0.0.1:$grpc" --admin-listen "127.0.0.1:$admin" \
            >"$run/log" 2>&1 &
        SERVER=$!
        client "$port" "$op" 200
        callgrind_control -z "$SERVER" >/dev/null 2>&1
        client "$port" "$op" "$REQUESTS"
        callgrind_control -d "$SERVER" >/dev/null 2>&1
        kill "$SERVER"
        wait "$SERVER" 2>/dev/null || true
        SERVER=""
        # The dump after zeroing holds exactly the counted requests.
        dump="$(ls "$run"/out.* | head -1)"
        total="$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")"
        printf '%-50s %-7s %14d\n' "$binary" "$op" $((total / REQUESTS))
    done
done
