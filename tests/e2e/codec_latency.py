#!/usr/bin/env python3
"""Per-call latency of the Python example codecs (examples/python), as the SDK sees it: the time
an awaited ``codec.encode``/``codec.decode`` takes, for each endpoint given, on 1 and on 10
payloads of about 100 bytes. Prints one JSON line per endpoint and batch size:

    {"sdk": "python", "endpoint": "...", "batch": 1, "encode_p50_ms": 0.6, "encode_p99_ms": ...}

    python tests/e2e/codec_latency.py --calls 200 http://127.0.0.1:8089 grpc://127.0.0.1:9090
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "python"))

from kmscodec_codec import codec_for  # noqa: E402
from temporalio.api.common.v1 import Payload  # noqa: E402

DATA = b'{"name":"Ada Lovelace","card":"4111-1111-1111-1111","note":"approved by the night shift"}'


def quantile(samples: list[float], q: float) -> float:
    return round(sorted(samples)[min(len(samples) - 1, int(len(samples) * q))] * 1000, 3)


async def measure(endpoint: str, batch: int, calls: int) -> dict[str, object]:
    codec = codec_for(endpoint, "default")
    payloads = [Payload(metadata={"encoding": b"json/plain"}, data=DATA)] * batch
    for _ in range(20):  # warm up: connections, the namespace's data key
        await codec.decode(await codec.encode(payloads))
    encode, decode = [], []
    for _ in range(calls):
        start = time.perf_counter()
        sealed = await codec.encode(payloads)
        encode.append(time.perf_counter() - start)
        start = time.perf_counter()
        opened = await codec.decode(sealed)
        decode.append(time.perf_counter() - start)
        assert [p.data for p in opened] == [DATA] * batch
    if hasattr(codec, "close"):
        await codec.close()
    return {
        "sdk": "python", "endpoint": endpoint, "batch": batch,
        "encode_p50_ms": quantile(encode, 0.5), "encode_p99_ms": quantile(encode, 0.99),
        "decode_p50_ms": quantile(decode, 0.5), "decode_p99_ms": quantile(decode, 0.99),
    }


async def main(args: argparse.Namespace) -> None:
    for endpoint in args.endpoints:
        for batch in (1, 10):
            print(json.dumps(await measure(endpoint, batch, args.calls)), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("endpoints", nargs="+")
    code = 0
    try:
        asyncio.run(main(parser.parse_args()))
    except Exception as exc:  # noqa: BLE001 - report, exit non-zero
        print(f"codec_latency failed: {exc!r}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    os._exit(code)  # skip the SDK's fragile interpreter teardown (temporalio/sdk-python#300)
