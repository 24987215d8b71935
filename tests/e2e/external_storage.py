#!/usr/bin/env python3
"""External Storage end to end: a real Temporal Python worker and client whose DataConverter
seals payloads through kmscodec (the codec) and offloads large ones to S3 (the SDK's
ExternalStorage with its S3 driver on aioboto3), in that order, as Temporal documents it.

Run by tests/external_storage.rs with .tools/bin/python against `temporal server start-dev`,
kmscodec and moto (static credentials and the region come from the environment):

    python tests/e2e/external_storage.py --address 127.0.0.1:7233 --namespace default \
        --codec-endpoint http://127.0.0.1:8089 --s3-endpoint http://127.0.0.1:5000 \
        --bucket temporal-payloads --threshold 1024 --task-queue q1 --workflow-id wf1 \
        big-result --size 307200

Commands:
  create-bucket          create --bucket in S3 and exit
  big-result --size N    run BigResultWorkflow, whose activity returns a string of N characters
                         (the workflow returns it too); prints {"length": N, "sha256": "..."}
  big-input              run a worker until the workflow --workflow-id (BigInputWorkflow, started
                         elsewhere, e.g. by `temporal workflow start --input @big.json`)
                         completes; prints its result {"length": N, "sha256": "..."}, computed
                         by the workflow from the input it received.

The big value is MARKER followed by letters, so the caller can check that no plaintext reaches
history or the bucket. Exit 0 with one JSON line on stdout; exit 1 with the error on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import sys
import traceback
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow

if not workflow.unsafe.in_sandbox():
    _EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"
    if str(_EXAMPLES) not in sys.path:
        sys.path.insert(0, str(_EXAMPLES))

with workflow.unsafe.imports_passed_through():
    import aioboto3
    import temporalio.converter
    from kmscodec_codec import KmscodecHttpCodec
    from temporalio.client import Client
    from temporalio.contrib.aws.s3driver import S3StorageDriver
    from temporalio.contrib.aws.s3driver.aioboto3 import new_aioboto3_client
    from temporalio.converter import ExternalStorage
    from temporalio.worker import Worker

MARKER = "EXTSTORE-PLAINTEXT-MARKER-5521"


def big_value(size: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    body = (letters * (size // len(letters) + 1))[: max(0, size - len(MARKER))]
    return MARKER + body


@activity.defn
async def make_big(size: int) -> str:
    return big_value(size)


@workflow.defn
class BigResultWorkflow:
    @workflow.run
    async def run(self, size: int) -> str:
        return await workflow.execute_activity(
            make_big, size, start_to_close_timeout=timedelta(seconds=60)
        )


@workflow.defn
class BigInputWorkflow:
    @workflow.run
    async def run(self, value: str) -> dict:
        return {
            "length": len(value),
            "sha256": hashlib.sha256(value.encode()).hexdigest(),
            "starts_with_marker": value.startswith(MARKER),
        }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", default="")
    p.add_argument("--namespace", default="default")
    p.add_argument("--codec-endpoint", default="")
    p.add_argument("--s3-endpoint", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--threshold", type=int, default=1024)
    p.add_argument("--task-queue", default="")
    p.add_argument("--workflow-id", default="")
    p.add_argument("--timeout", type=float, default=90.0)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("create-bucket")
    big = sub.add_parser("big-result")
    big.add_argument("--size", type=int, default=300 * 1024)
    sub.add_parser("big-input")
    return p.parse_args(argv)


def converter(args, s3_client) -> temporalio.converter.DataConverter:
    codec = KmscodecHttpCodec(args.codec_endpoint, args.namespace, timeout=15.0)
    driver = S3StorageDriver(client=new_aioboto3_client(s3_client), bucket=args.bucket)
    return dataclasses.replace(
        temporalio.converter.default(),
        # Codec first (seals), then storage (offloads the sealed bytes): the SDK applies them
        # in this order outbound and in reverse inbound.
        payload_codec=codec,
        external_storage=ExternalStorage(
            drivers=[driver], payload_size_threshold=args.threshold
        ),
    )


async def run(args: argparse.Namespace) -> dict:
    session = aioboto3.Session()
    async with session.client("s3", endpoint_url=args.s3_endpoint) as s3:
        if args.command == "create-bucket":
            await s3.create_bucket(Bucket=args.bucket)
            return {"created": args.bucket}
        client = await Client.connect(
            args.address, namespace=args.namespace, data_converter=converter(args, s3)
        )
        async with Worker(
            client,
            task_queue=args.task_queue,
            workflows=[BigResultWorkflow, BigInputWorkflow],
            activities=[make_big],
        ):
            if args.command == "big-result":
                result = await client.execute_workflow(
                    BigResultWorkflow.run,
                    args.size,
                    id=args.workflow_id,
                    task_queue=args.task_queue,
                    execution_timeout=timedelta(seconds=args.timeout),
                )
                return {
                    "length": len(result),
                    "sha256": hashlib.sha256(result.encode()).hexdigest(),
                }
            return await client.get_workflow_handle(args.workflow_id).result()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        result = asyncio.run(asyncio.wait_for(run(args), timeout=args.timeout + 10))
    except BaseException as exc:  # noqa: BLE001 - report everything, exit non-zero
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        traceback.print_exc()
        print(f"external_storage: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown (temporalio/sdk-python#300; see python_workflow.py).
    os._exit(code)
