/**
 * Starts the demo workflow, queries it, signals it and prints its result as one JSON line.
 * Works against the TypeScript worker and the Python one (same type, signal and query names).
 *
 *   npx tsx src/client.ts --codec http://127.0.0.1:8089 --name Ada --card 4111-1111 --note ok
 */
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { codecFor } from './codec';
import { approveSignal, kmscodecDemo, statusQuery, type DemoInput } from './workflows';

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      address: { type: 'string', default: '127.0.0.1:7233' },
      namespace: { type: 'string', default: 'default' },
      'task-queue': { type: 'string', default: 'kmscodec-demo' },
      codec: { type: 'string', default: 'http://127.0.0.1:8089' },
      'workflow-id': { type: 'string', default: `kmscodec-demo-${randomUUID()}` },
      order: { type: 'string', default: 'order-1' },
      name: { type: 'string', default: 'Ada' },
      card: { type: 'string', default: '4111-1111-1111-1111' },
      note: { type: 'string', default: 'approved by the night shift' },
      timeout: { type: 'string', default: '60' },
    },
  });
  const deadline = Date.now() + Number(args.timeout) * 1000;
  const codec = codecFor(args.codec, { namespace: args.namespace });
  const connection = await Connection.connect({ address: args.address });
  const client = new Client({
    connection,
    namespace: args.namespace,
    dataConverter: { payloadCodecs: [codec], failureConverterPath: require.resolve('./failure-converter') },
  });

  const input: DemoInput = { order: args.order, name: args.name, card: args.card };
  const handle = await client.workflow.start(kmscodecDemo, {
    args: [input],
    taskQueue: args['task-queue'],
    workflowId: args['workflow-id'],
  });
  // Query results travel through the codec too. Poll until the workflow waits for the signal.
  let status = '';
  while (!status.includes('Waiting for approval')) {
    if (Date.now() > deadline) throw new Error(`workflow never asked for approval (status: ${status})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    status = await handle.query(statusQuery).catch(() => ''); // not ready yet: no task completed
  }
  await handle.signal(approveSignal, args.note);
  const result = await handle.result();
  console.log(JSON.stringify({ workflowId: handle.workflowId, status, result }));
  await connection.close();
  if ('close' in codec) codec.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
