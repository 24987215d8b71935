#!/usr/bin/env python3
"""Starts the demo workflow, queries it, signals it and prints its result as one JSON line.
Works against the Python worker and the TypeScript one (same type, signal and query names).

    python client.py --codec http://127.0.0.1:8089 --name Ada --card 4111-1111 --note ok
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import traceback
import time
import uuid

from temporalio.client import Client

from demo import DemoInput, KmscodecDemo
from kmscodec_codec import codec_for, kmscodec_data_converter


async def main(args: argparse.Namespace) -> dict[str, object]:
    deadline = time.monotonic() + args.timeout
    codec = codec_for(args.codec, args.namespace, timeout=args.codec_timeout)
    client = await Client.connect(
        args.address, namespace=args.namespace, data_converter=kmscodec_data_converter(codec)
    )
    handle = await client.start_workflow(
        KmscodecDemo.run,
        DemoInput(order=args.order, name=args.name, card=args.card),
        id=args.workflow_id,
        task_queue=args.task_queue,
    )
    # Query results travel through the codec too. Poll until the workflow waits for the signal.
    status = ""
    while "Waiting for approval" not in status:
        if time.monotonic() > deadline:
            raise TimeoutError(f"workflow never asked for approval (status: {status!r})")
        await asyncio.sleep(0.2)
        try:
            status = await handle.query(KmscodecDemo.status)
        except Exception:  # noqa: BLE001 - not ready yet: no workflow task completed
            status = ""
    await handle.signal(KmscodecDemo.approve, args.note)
    result = await asyncio.wait_for(handle.result(), max(deadline - time.monotonic(), 1))
    return {"workflowId": handle.id, "status": status, "result": dataclasses.asdict(result)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:7233", help="Temporal frontend HOST:PORT")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", default="kmscodec-demo")
    parser.add_argument("--codec", default="http://127.0.0.1:8089",
                        help="http(s)://HOST:PORT, grpc://HOST:PORT or unix:///PATH")
    parser.add_argument("--codec-timeout", type=float, default=1.5, help="seconds per codec call")
    parser.add_argument("--workflow-id", default=f"kmscodec-demo-{uuid.uuid4()}")
    parser.add_argument("--order", default="order-1", help="OrderId search attribute (plain text)")
    parser.add_argument("--name", default="Ada")
    parser.add_argument("--card", default="4111-1111-1111-1111")
    parser.add_argument("--note", default="approved by the night shift", help="signal argument")
    parser.add_argument("--timeout", type=float, default=60.0, help="overall limit in seconds")
    code = 0
    try:
        print(json.dumps(asyncio.run(main(parser.parse_args()))), flush=True)
    except Exception as exc:  # noqa: BLE001 - report, exit non-zero
        traceback.print_exc()
        print(f"client failed: {exc!r}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # see worker.py: skip the SDK's fragile interpreter teardown
