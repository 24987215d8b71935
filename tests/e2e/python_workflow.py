#!/usr/bin/env python3
"""End-to-end check: a real Temporal Python worker and client whose payloads go through kmscodec.

Run by the Rust integration tests (with .tools/bin/python) against a `temporal server start-dev`
and a kmscodec sidecar:

    python tests/e2e/python_workflow.py --address 127.0.0.1:7233 --namespace default \
        --codec-endpoint http://127.0.0.1:8089 --task-queue q1 --workflow-id wf1 --input World

It runs GreetingWorkflow (one activity, compose_greeting) with the given id and input, prints
{"result": "Hello, World!"} as one JSON line on stdout and exits 0; on failure it prints the error
on stderr and exits 1. `--no-codec` (hidden) uses the default converter, to check the script
without a sidecar.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import traceback
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow

# examples/python/kmscodec_codec.py is the codec the project documents; use it as shipped.
# The workflow sandbox re-imports this module and forbids filesystem calls there; by then the
# path is set and the codec module is passed through from the host.
if not workflow.unsafe.in_sandbox():
    _EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"
    if str(_EXAMPLES) not in sys.path:
        sys.path.insert(0, str(_EXAMPLES))

# The workflow sandbox re-imports this module: pass the non-deterministic imports through.
with workflow.unsafe.imports_passed_through():
    import temporalio.converter
    from kmscodec_codec import KmscodecHttpCodec
    from temporalio.client import Client
    from temporalio.worker import Worker


@activity.defn
async def compose_greeting(text: str) -> str:
    return "Hello, " + text + "!"


@workflow.defn
class GreetingWorkflow:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(
            compose_greeting, text, start_to_close_timeout=timedelta(seconds=30)
        )


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True, help="Temporal frontend HOST:PORT")
    p.add_argument("--namespace", default="default")
    p.add_argument("--codec-endpoint", help="kmscodec base URL, e.g. http://127.0.0.1:8089")
    p.add_argument("--codec-header", action="append", default=[], metavar="K=V",
                   help="extra header for codec calls (repeatable)")
    p.add_argument("--codec-timeout", type=float, default=1.5, help="seconds per codec call")
    p.add_argument("--task-queue", required=True)
    p.add_argument("--workflow-id", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--timeout", type=float, default=60.0, help="overall limit in seconds")
    p.add_argument("--no-codec", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.no_codec and not args.codec_endpoint:
        p.error("--codec-endpoint is required")
    return args


def make_converter(args: argparse.Namespace) -> temporalio.converter.DataConverter:
    converter = temporalio.converter.default()
    if args.no_codec:
        return converter
    headers = {}
    for kv in args.codec_header:
        k, sep, v = kv.partition("=")
        if not sep:
            raise SystemExit(f"--codec-header wants K=V, got {kv!r}")
        headers[k] = v
    codec = KmscodecHttpCodec(
        args.codec_endpoint, args.namespace, timeout=args.codec_timeout, headers=headers
    )
    return dataclasses.replace(
        converter,
        payload_codec=codec,
        # Failure messages and stack traces go through the codec too.
        failure_converter_class=temporalio.converter.DefaultFailureConverterWithEncodedAttributes,
    )


async def run(args: argparse.Namespace) -> str:
    client = await Client.connect(
        args.address, namespace=args.namespace, data_converter=make_converter(args)
    )
    async with Worker(
        client,
        task_queue=args.task_queue,
        workflows=[GreetingWorkflow],
        activities=[compose_greeting],
    ):
        return await client.execute_workflow(
            GreetingWorkflow.run,
            args.input,
            id=args.workflow_id,
            task_queue=args.task_queue,
            execution_timeout=timedelta(seconds=args.timeout),
        )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        result = asyncio.run(asyncio.wait_for(run(args), timeout=args.timeout + 10))
    except BaseException as exc:  # noqa: BLE001 - report everything, exit non-zero
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        traceback.print_exc()
        cause = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        print(f"python_workflow: FAILED: {type(exc).__name__}: {exc}"
              + (f" (cause: {type(cause).__name__}: {cause})" if cause is not exc else ""),
              file=sys.stderr)
        return 1
    print(json.dumps({"result": result}), flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: temporalio's Rust runtime threads can abort CPython's
    # finalization ("PyGILState_Release: thread state ... must be current", SIGABRT, exit 134;
    # temporalio/sdk-python#300), which would turn a passing run into a failure.
    os._exit(code)
