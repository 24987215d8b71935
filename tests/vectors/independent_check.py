#!/usr/bin/env python3
"""Opens and re-seals tests/vectors/envelope-v1.json with an independent implementation
(pyca/cryptography), written only from docs/format.md. Exit 0 when every vector agrees."""

import json
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives import hmac

SUITE = 0x0478


def derive(data_key: bytes, message_id: bytes) -> tuple[bytes, bytes]:
    # HKDF-Extract(salt=message_id, IKM=data_key) with SHA-512 (RFC 5869 section 2.2).
    h = hmac.HMAC(message_id, hashes.SHA512())
    h.update(data_key)
    prk = h.finalize()
    enc = HKDFExpand(hashes.SHA512(), 32, struct.pack(">H", SUITE) + b"DERIVEKEY").derive(prk)
    commit = HKDFExpand(hashes.SHA512(), 32, b"COMMITKEY").derive(prk)
    return enc, commit


def header(v: dict, message_id: bytes, commitment: bytes) -> bytes:
    ns = v["namespace"].encode()
    kek = v["kek_key"].encode()
    wrapped = bytes.fromhex(v["wrapped_key"])
    return (
        b"KMSC"
        + bytes([1])
        + struct.pack(">H", SUITE)
        + bytes([v["provider"], len(ns)])
        + ns
        + struct.pack(">H", len(kek))
        + kek
        + struct.pack(">I", v["kek_version"])
        + struct.pack(">H", len(wrapped))
        + wrapped
        + message_id
        + commitment
    )


def main() -> int:
    path = Path(__file__).with_name("envelope-v1.json")
    vectors = json.loads(path.read_text())
    for v in vectors["valid"]:
        key = bytes.fromhex(v["data_key"])
        message_id = bytes.fromhex(v["message_id"])
        plaintext = bytes.fromhex(v["plaintext"])
        enc, commit = derive(key, message_id)
        aad = header(v, message_id, commit)
        sealed = aad + AESGCM(enc).encrypt(bytes(12), plaintext, aad)
        if sealed.hex() != v["sealed"]:
            print(f"MISMATCH: {v['name']}", file=sys.stderr)
            return 1
        opened = AESGCM(enc).decrypt(bytes(12), bytes.fromhex(v["sealed"])[len(aad):], aad)
        assert opened == plaintext
        print(f"ok: {v['name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
