/**
 * A worker whose payloads are sealed by a kmscodec sidecar. Runs until SIGINT/SIGTERM.
 *
 *   npx tsx src/worker.ts --codec http://127.0.0.1:8089        # HTTP
 *   npx tsx src/worker.ts --codec unix:///run/kmscodec.sock    # gRPC on a Unix socket
 */
import { parseArgs } from 'node:util';
import { NativeConnection, Worker } from '@temporalio/worker';
import * as activities from './activities';
import { codecFor } from './codec';

async function main(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      address: { type: 'string', default: '127.0.0.1:7233' },
      namespace: { type: 'string', default: 'default' },
      'task-queue': { type: 'string', default: 'kmscodec-demo' },
      codec: { type: 'string', default: 'http://127.0.0.1:8089' },
    },
  });
  const codec = codecFor(args.codec, { namespace: args.namespace });
  const connection = await NativeConnection.connect({ address: args.address });
  const worker = await Worker.create({
    connection,
    namespace: args.namespace,
    taskQueue: args['task-queue'],
    workflowsPath: require.resolve('./workflows'),
    activities,
    dataConverter: {
      // Payload codecs run here, on the main thread; the failure converter is loaded by path
      // because workflow code runs in a sandbox that has its own copy.
      payloadCodecs: [codec],
      failureConverterPath: require.resolve('./failure-converter'),
    },
  });
  console.log(`worker polling task queue ${args['task-queue']} (codec ${args.codec})`);
  await worker.run(); // resolves after SIGINT/SIGTERM, once in-flight tasks are done
  await connection.close();
  if ('close' in codec) codec.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
