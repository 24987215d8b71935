#!/usr/bin/env bash
# Builds the kmscodec container image as an OCI image layout archive, without a container engine:
#
#   scripts/image.sh [OUT]        (default: target/kmscodec-oci.tar)
#
# One layer holds the stripped binary (cargo profile `image`: the release build without symbols),
# the shared libraries it loads (from `ldd`, with the dynamic loader), the CA certificates of this
# machine (Debian's ca-certificates), /etc/passwd and /etc/group with the non-root user `nonroot`
# (65532, as distroless), /home/nonroot and /tmp. The image runs as 65532:65532 with the
# entrypoint /usr/local/bin/kmscodec and `serve --config /etc/kmscodec/kmscodec.toml`, the same
# contract as the Dockerfile and the Helm chart.
#
# OUT is a tar of the OCI layout (oci-layout, index.json, blobs/sha256/...): `skopeo copy
# oci-archive:OUT docker://REGISTRY/kmscodec:TAG` pushes it, `podman load -i OUT` loads it. The
# layer's files carry fixed owners and times (SOURCE_DATE_EPOCH, default the last commit's time),
# so the same binary gives the same digests. Needs cargo, python3, tar, gzip, ldd and the
# host's CA bundle (Debian ca-certificates).
#
# `cargo build --profile image` runs every time and rebuilds nothing when the binary is current:
# the test suite (tests/image.rs) and a release pipeline share one build (in target/image-build).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/kmscodec-oci.tar}
case $out in /*) ;; *) out=$PWD/$out ;; esac

cd "$root"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[[ -n $version ]] || { echo "image.sh: no version in Cargo.toml" >&2; exit 2; }
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[[ -s $ca_bundle ]] || { echo "image.sh: $ca_bundle is missing (apt-get install ca-certificates)" >&2; exit 2; }

# A target directory of its own: the test suite runs this script while `cargo test` holds the
# lock of the default one (the dev and image profiles share no artifacts anyway).
target_dir=${KMSCODEC_IMAGE_TARGET_DIR:-$root/target/image-build}
started=$(date +%s)
cargo build --profile image --locked --bin kmscodec --target-dir "$target_dir"
binary=$target_dir/image/kmscodec
echo "image.sh: binary ready in $(( $(date +%s) - started ))s ($(stat -c %s "$binary") bytes)" >&2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/home/nonroot" "$rootfs/tmp" \
  "$rootfs/etc/kmscodec"
cp "$binary" "$rootfs/usr/local/bin/kmscodec"
cp "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"

# Every shared library the binary loads, under the path the loader looks it up by (symlinks
# resolved to their files), and the loader itself.
libraries=$(ldd "$binary" | awk '/=> \// { print $3 } /^[ \t]*\/[^ ]+ \(0x/ { print $1 }')
[[ -n $libraries ]] || { echo "image.sh: ldd found no libraries (a static binary?)" >&2; exit 2; }
for library in $libraries; do
  mkdir -p "$rootfs$(dirname "$library")"
  cp -L "$library" "$rootfs$library"
done

cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
cat > "$rootfs/etc/nsswitch.conf" <<'NSS'
passwd: files
group: files
hosts: files dns
NSS

python3 - "$work" "$out" "$version" "$epoch" <<'PYTHON'
# Writes the layer (fixed owners, modes and times), the image configuration, the manifest, the
# index and the oci-layout file, and tars the layout into OUT.
import datetime, gzip, hashlib, io, json, os, sys, tarfile

work, out, version, epoch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rootfs = os.path.join(work, "rootfs")
layout = os.path.join(work, "layout")
blobs = os.path.join(layout, "blobs", "sha256")
os.makedirs(blobs)
NONROOT = 65532

def entry(path, arcname):
    info = tarfile.TarInfo(arcname)
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if arcname == "home/nonroot":
        info.uid = info.gid = NONROOT
    if os.path.isdir(path):
        info.type = tarfile.DIRTYPE
        info.mode = 0o1777 if arcname == "tmp" else 0o755
        return info, None
    data = open(path, "rb").read()
    info.size = len(data)
    executable = os.access(path, os.X_OK)
    info.mode = 0o755 if executable else 0o644
    return info, data

raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
    paths = []
    for directory, dirs, files in os.walk(rootfs):
        dirs.sort()
        for name in dirs + sorted(files):
            paths.append(os.path.join(directory, name))
    for path in sorted(paths, key=lambda p: os.path.relpath(p, rootfs)):
        arcname = os.path.relpath(path, rootfs)
        info, data = entry(path, arcname)
        tar.addfile(info, io.BytesIO(data) if data is not None else None)
layer = raw.getvalue()
compressed = io.BytesIO()
with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=epoch, compresslevel=9) as gz:
    gz.write(layer)
compressed = compressed.getvalue()

def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}

def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
layer_blob = blob(compressed)
config = {
    "created": created,
    "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
    "os": "linux",
    "config": {
        "User": "65532:65532",
        "Entrypoint": ["/usr/local/bin/kmscodec"],
        "Cmd": ["serve", "--config", "/etc/kmscodec/kmscodec.toml"],
        "Env": [
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        ],
        "WorkingDir": "/home/nonroot",
        "ExposedPorts": {"8089/tcp": {}, "8090/tcp": {}, "9464/tcp": {}},
        "Labels": {
            "org.opencontainers.image.title": "kmscodec",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.source": "https://github.com/kmscodec/kmscodec",
        },
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    "history": [{"created": created, "created_by": "scripts/image.sh"}],
}
config_blob = blob(canonical(config))
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_blob},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer_blob}],
    "annotations": {"org.opencontainers.image.version": version},
}
manifest_blob = blob(canonical(manifest))
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **manifest_blob,
        "annotations": {"org.opencontainers.image.ref.name": version},
    }],
}
with open(os.path.join(layout, "index.json"), "wb") as f:
    f.write(canonical(index))
with open(os.path.join(layout, "oci-layout"), "wb") as f:
    f.write(canonical({"imageLayoutVersion": "1.0.0"}))

os.makedirs(os.path.dirname(out), exist_ok=True)
partial = out + ".partial"
with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
    names = ["oci-layout", "index.json", "blobs", "blobs/sha256"] + sorted(
        "blobs/sha256/" + name for name in os.listdir(blobs))
    for name in names:
        path = os.path.join(layout, name)
        info = tar.gettarinfo(path, name)
        info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
        if info.isdir():
            tar.addfile(info)
        else:
            with open(path, "rb") as f:
                tar.addfile(info, f)
os.replace(partial, out)
print(f"image.sh: {out}: manifest {manifest_blob['digest']}, layer {layer_blob['size']} bytes compressed, {len(layer)} bytes", file=sys.stderr)
PYTHON
