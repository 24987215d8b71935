#!/usr/bin/env python3
"""Opens and re-seals tests/vectors/envelope-v1.json, envelope-v2.json and envelope-v3.json with
an independent implementation (pyca/cryptography), written only from docs/format.md and the C2SP
XAES-256-GCM specification. Exit 0 when every vector agrees. Format 3's zstd frames are checked
too when the `zstandard` module is importable (it is not a test dependency)."""

import json
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

SUITE_V1 = 0x0478
SUITE_V2 = 0x5801
FORMAT2_SALT = b"kmscodec envelope format 2"


def derive_v1(data_key: bytes, message_id: bytes) -> tuple[bytes, bytes]:
    # HKDF-Extract(salt=message_id, IKM=data_key) with SHA-512 (RFC 5869 section 2.2).
    h = hmac.HMAC(message_id, hashes.SHA512())
    h.update(data_key)
    prk = h.finalize()
    enc = HKDFExpand(hashes.SHA512(), 32, struct.pack(">H", SUITE_V1) + b"DERIVEKEY").derive(prk)
    commit = HKDFExpand(hashes.SHA512(), 32, b"COMMITKEY").derive(prk)
    return enc, commit


def derive_v2(data_key: bytes) -> tuple[bytes, bytes]:
    # Once per data key: HKDF-SHA512 with a constant salt.
    def expand(label: bytes) -> bytes:
        info = struct.pack(">H", SUITE_V2) + label
        return HKDF(hashes.SHA512(), 32, FORMAT2_SALT, info).derive(data_key)

    return expand(b"DERIVEKEY"), expand(b"COMMITKEY")


def aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def xaes_key_and_nonce(key: bytes, nonce: bytes) -> tuple[bytes, bytes]:
    # C2SP XAES-256-GCM: a CMAC-based KDF (NIST SP 800-108r1, counter mode) over nonce[:12].
    assert len(nonce) == 24
    l_value = int.from_bytes(aes_block(key, bytes(16)), "big")
    k1 = (l_value << 1) & ((1 << 128) - 1)
    if l_value >> 127:
        k1 ^= 0x87
    k1_bytes = k1.to_bytes(16, "big")
    derived = b""
    for counter in (1, 2):
        block = bytes([0, counter]) + b"X" + bytes([0]) + nonce[:12]
        derived += aes_block(key, bytes(a ^ b for a, b in zip(block, k1_bytes)))
    return derived, nonce[12:]


def check_xaes() -> None:
    # The two vectors of the C2SP specification.
    nonce = b"ABCDEFGHIJKLMNOPQRSTUVWX"
    for key, aad, expected in [
        (bytes([1]) * 32, b"", "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271"),
        (
            bytes([3]) * 32,
            b"c2sp.org/XAES-256-GCM",
            "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d",
        ),
    ]:
        message_key, gcm_nonce = xaes_key_and_nonce(key, nonce)
        assert AESGCM(message_key).encrypt(gcm_nonce, b"XAES-256-GCM", aad).hex() == expected


def header(v: dict, version: int, random: bytes, commitment: bytes) -> bytes:
    ns = v["namespace"].encode()
    kek = v["kek_key"].encode()
    wrapped = bytes.fromhex(v["wrapped_key"])
    suite = SUITE_V1 if version == 1 else SUITE_V2
    # Format 3: one byte after the wrapped key says how the plaintext was compressed.
    compression = bytes([v["compression"]]) if version == 3 else b""
    return (
        b"KMSC"
        + bytes([version])
        + struct.pack(">H", suite)
        + bytes([v["provider"], len(ns)])
        + ns
        + struct.pack(">H", len(kek))
        + kek
        + struct.pack(">I", v["kek_version"])
        + struct.pack(">H", len(wrapped))
        + wrapped
        + compression
        + random
        + commitment
    )


def check_file(version: int) -> bool:
    path = Path(__file__).with_name(f"envelope-v{version}.json")
    vectors = json.loads(path.read_text())
    for v in vectors["valid"]:
        key = bytes.fromhex(v["data_key"])
        plaintext = bytes.fromhex(v["plaintext"])
        if version == 1:
            random = bytes.fromhex(v["message_id"])
            message_key, commit = derive_v1(key, random)
            gcm_nonce = bytes(12)
        else:
            random = bytes.fromhex(v["nonce"])
            xaes_key, commit = derive_v2(key)
            message_key, gcm_nonce = xaes_key_and_nonce(xaes_key, random)
        aad = header(v, version, random, commit)
        sealed = aad + AESGCM(message_key).encrypt(gcm_nonce, plaintext, aad)
        if sealed.hex() != v["sealed"]:
            print(f"MISMATCH: format {version}: {v['name']}", file=sys.stderr)
            return False
        opened = AESGCM(message_key).decrypt(gcm_nonce, sealed[len(aad):], aad)
        assert opened == plaintext
        if version == 3 and v["compression"] == 1:
            try:
                import zstandard  # noqa: PLC0415 (optional)
            except ImportError:
                zstandard = None
            if zstandard is not None:
                inflated = zstandard.ZstdDecompressor().decompress(opened)
                assert inflated == bytes.fromhex(v["decompressed"])
        print(f"ok: format {version}: {v['name']}")
    return True


def main() -> int:
    check_xaes()
    for version in (1, 2, 3):
        if not check_file(version):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
