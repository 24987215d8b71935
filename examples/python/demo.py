"""The demo workflow: an activity, a child workflow, a failing activity, a query, a signal and a
search attribute, so every kind of payload goes through the codec.

Type, signal and query names match ``examples/typescript/src/workflows.ts``: a client in either
language can drive a worker in the other, and payloads sealed by one sidecar open in another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

from temporalio import activity, workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

# A Keyword search attribute; register it once:
#   temporal operator search-attribute create --name OrderId --type Keyword
ORDER_ID = SearchAttributeKey.for_keyword("OrderId")


@dataclass
class DemoInput:
    """Workflow input. Single-word fields: the JSON is the same in Python and TypeScript."""

    order: str  # becomes the OrderId search attribute: readable by design, never a secret
    name: str
    card: str


@dataclass
class DemoResult:
    greeting: str
    child: str
    declined: str
    approval: str


@activity.defn
async def compose_greeting(name: str) -> str:
    return f"Hello, {name}!"


@activity.defn
async def charge_card(card: str) -> str:
    """Always fails: its message (which names the card) must be stored sealed."""
    raise ApplicationError(f"card {card} was declined", type="CardDeclined")


@workflow.defn(name="kmscodecDemoChild")
class KmscodecDemoChild:
    @workflow.run
    async def run(self, greeting: str) -> str:
        return f"{greeting} (checked by a child workflow)"


@workflow.defn(name="kmscodecDemo")
class KmscodecDemo:
    def __init__(self) -> None:
        self._status = "started"
        self._approval: Optional[str] = None

    @workflow.run
    async def run(self, input: DemoInput) -> DemoResult:
        workflow.upsert_search_attributes([ORDER_ID.value_set(input.order)])
        greeting = await workflow.execute_activity(
            compose_greeting, input.name, start_to_close_timeout=timedelta(seconds=10)
        )
        child = await workflow.execute_child_workflow(
            KmscodecDemoChild.run, greeting, id=f"{workflow.info().workflow_id}-child"
        )
        declined = ""
        try:
            await workflow.execute_activity(
                charge_card,
                input.card,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(
                    maximum_attempts=2, initial_interval=timedelta(milliseconds=100)
                ),
            )
        except ActivityError as err:
            # Retries exhausted: the failure (sealed in history) comes back decoded.
            if not isinstance(err.cause, ApplicationError):
                raise
            declined = err.cause.message
        self._status = f"{greeting} Waiting for approval."
        await workflow.wait_condition(lambda: self._approval is not None)
        self._status = "approved"
        return DemoResult(greeting, child, declined, self._approval or "")

    @workflow.signal(name="approve")
    def approve(self, note: str) -> None:
        self._approval = note

    @workflow.query(name="status")
    def status(self) -> str:
        return self._status
