#!/usr/bin/env python3
"""A worker whose payloads are sealed by a kmscodec sidecar. Runs until SIGINT/SIGTERM.

    python worker.py --codec http://127.0.0.1:8089                 # HTTP
    python worker.py --codec unix:///run/kmscodec/codec.sock       # gRPC on a Unix socket
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import traceback

from temporalio.client import Client
from temporalio.worker import Worker

from demo import KmscodecDemo, KmscodecDemoChild, charge_card, compose_greeting
from kmscodec_codec import codec_for, kmscodec_data_converter


async def main(args: argparse.Namespace) -> None:
    codec = codec_for(args.codec, args.namespace, timeout=args.codec_timeout)
    client = await Client.connect(
        args.address, namespace=args.namespace, data_converter=kmscodec_data_converter(codec)
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with Worker(
        client,
        task_queue=args.task_queue,
        workflows=[KmscodecDemo, KmscodecDemoChild],
        activities=[compose_greeting, charge_card],
    ):
        print(f"worker polling task queue {args.task_queue} (codec {args.codec})", flush=True)
        await stop.wait()  # leaving the block shuts the worker down gracefully


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:7233", help="Temporal frontend HOST:PORT")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", default="kmscodec-demo")
    parser.add_argument("--codec", default="http://127.0.0.1:8089",
                        help="http(s)://HOST:PORT, grpc://HOST:PORT or unix:///PATH")
    parser.add_argument("--codec-timeout", type=float, default=1.5, help="seconds per codec call")
    code = 0
    try:
        asyncio.run(main(parser.parse_args()))
    except Exception as exc:  # noqa: BLE001 - report, exit non-zero
        traceback.print_exc()
        print(f"worker failed: {exc!r}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the SDK's Rust threads can abort CPython's finalization
    # (temporalio/sdk-python#300) and turn a clean exit into SIGABRT.
    os._exit(code)
