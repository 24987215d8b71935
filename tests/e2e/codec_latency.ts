/**
 * Per-call latency of the TypeScript example codecs, as the SDK sees it: the time an awaited
 * `codec.encode`/`codec.decode` takes, for each endpoint given, on 1 and on 10 payloads of about
 * 100 bytes. Prints one JSON line per endpoint and batch size (same fields as codec_latency.py).
 * The test copies it next to the example's `src/codec.ts` and runs
 * `node --import tsx src/codec_latency.ts --calls 200 ENDPOINT...`.
 */
import { codecFor } from './codec';

const DATA = Buffer.from('{"name":"Ada Lovelace","card":"4111-1111-1111-1111","note":"approved by the night shift"}');

function quantile(samples: number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] * 1000) / 1000;
}

async function measure(endpoint: string, batch: number, calls: number): Promise<Record<string, unknown>> {
  const codec = codecFor(endpoint, { namespace: 'default' });
  const payloads = Array.from({ length: batch }, () => ({ metadata: { encoding: Buffer.from('json/plain') }, data: DATA }));
  for (let i = 0; i < 20; i++) await codec.decode(await codec.encode(payloads));
  const encode: number[] = [];
  const decode: number[] = [];
  for (let i = 0; i < calls; i++) {
    let start = performance.now();
    const sealed = await codec.encode(payloads);
    encode.push(performance.now() - start);
    start = performance.now();
    const opened = await codec.decode(sealed);
    decode.push(performance.now() - start);
    if (!opened.every((p) => Buffer.from(p.data ?? []).equals(DATA))) throw new Error('round trip changed the data');
  }
  if ('close' in codec) codec.close();
  return {
    sdk: 'typescript', endpoint, batch,
    encode_p50_ms: quantile(encode, 0.5), encode_p99_ms: quantile(encode, 0.99),
    decode_p50_ms: quantile(decode, 0.5), decode_p99_ms: quantile(decode, 0.99),
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let calls = 200;
  if (args[0] === '--calls') {
    calls = Number(args[1]);
    args.splice(0, 2);
  }
  for (const endpoint of args) {
    for (const batch of [1, 10]) console.log(JSON.stringify(await measure(endpoint, batch, calls)));
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
