/**
 * The demo workflow: an activity, a child workflow, a failing activity, a query, a signal and a
 * search attribute. Type, signal and query names match examples/python/demo.py, so a client in
 * either language can drive a worker in the other.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  defineQuery,
  defineSignal,
  executeChild,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type * as activities from './activities';

/** Workflow input. Single-word keys: the JSON is the same from Python and TypeScript clients. */
export interface DemoInput {
  /** Set as the `OrderId` search attribute: never secret, it stays readable for the index. */
  order: string;
  name: string;
  card: string;
}

export interface DemoResult {
  greeting: string;
  child: string;
  declined: string;
  approval: string;
}

/** A Keyword search attribute; register it once: `temporal operator search-attribute create --name OrderId --type Keyword`. */
export const orderIdKey = defineSearchAttributeKey('OrderId', SearchAttributeType.KEYWORD);
export const approveSignal = defineSignal<[string]>('approve');
export const statusQuery = defineQuery<string>('status');

const { composeGreeting } = proxyActivities<typeof activities>({ startToCloseTimeout: '10 seconds' });
const { chargeCard } = proxyActivities<typeof activities>({
  startToCloseTimeout: '10 seconds',
  retry: { maximumAttempts: 2, initialInterval: '100 milliseconds' },
});

export async function kmscodecDemo(input: DemoInput): Promise<DemoResult> {
  let status = 'started';
  let approval: string | undefined;
  setHandler(statusQuery, () => status);
  setHandler(approveSignal, (note) => {
    approval = note;
  });

  upsertSearchAttributes([{ key: orderIdKey, value: input.order }]);
  const greeting = await composeGreeting(input.name);
  const child = await executeChild(kmscodecDemoChild, {
    args: [greeting],
    workflowId: `${workflowInfo().workflowId}-child`,
  });
  let declined = '';
  try {
    await chargeCard(input.card);
  } catch (err) {
    // Retries exhausted: the failure (sealed in history) comes back decoded.
    if (!(err instanceof ActivityFailure && err.cause instanceof ApplicationFailure)) throw err;
    declined = err.cause.message;
  }
  status = `${greeting} Waiting for approval.`;
  await condition(() => approval !== undefined);
  status = 'approved';
  return { greeting, child, declined, approval: approval ?? '' };
}

export async function kmscodecDemoChild(greeting: string): Promise<string> {
  return `${greeting} (checked by a child workflow)`;
}
