/**
 * Payload codecs that hand every payload to a kmscodec sidecar, for the Temporal TypeScript SDK.
 *
 * - {@link KmscodecHttpCodec}: the Temporal Codec Server protocol (`POST {endpoint}/encode` and
 *   `/decode`, proto3 JSON `{"payloads": [...]}`, the namespace in `X-Namespace`) over one shared
 *   keep-alive `http.Agent`, so a worker reuses a few warm connections instead of paying a TCP
 *   handshake per call.
 * - {@link KmscodecGrpcCodec}: the `kmscodec.v1.Codec` gRPC service over one HTTP/2 channel, on TCP
 *   (`grpc://127.0.0.1:9090`) or a Unix socket (`unix:///run/kmscodec/codec.sock`).
 *
 * Both keep no key material: the worker only ever sees plaintext it produced and ciphertext the
 * sidecar sealed. Both fail the call (never pass a payload through unsealed) when the sidecar is
 * down, answers an error, or answers a different number of payloads.
 *
 * Codecs run on the worker's main thread, outside the workflow sandbox: every workflow task waits
 * for them, so the default deadline (1.5 s per call, retries included) stays well inside the
 * workflow task timeout (10 s) and below the 2 s other SDKs allow. See docs/sdk-integration.md.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as grpc from '@grpc/grpc-js';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

const ProtoPayload = temporal.api.common.v1.Payload;
const ProtoPayloads = temporal.api.common.v1.Payloads;

/** Options shared by both codecs. */
export interface KmscodecCodecOptions {
  /** The Temporal namespace the payloads belong to (sent as `X-Namespace` / `namespace`). */
  namespace: string;
  /** Deadline for one encode/decode call, retries included. Default 1500 ms. */
  timeoutMs?: number;
  /** Extra request headers (HTTP) or metadata (gRPC), e.g. `{ authorization: 'Bearer T' }`. */
  headers?: Record<string, string>;
}

/** The sidecar could not be reached, refused the call, or answered something unusable. */
export class KmscodecCodecError extends Error {
  override readonly name = 'KmscodecCodecError';
}

/** Agents shared by every HTTP codec in the process: keep-alive, a bounded number of sockets. */
const sharedAgents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 16 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 16 }),
};

/** Connection-level errors worth one more try: the sidecar restarted or closed an idle socket. */
const RETRYABLE_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ENOENT']);
const HTTP_ATTEMPTS = 3;

/** A PayloadCodec that POSTs payloads to a kmscodec sidecar's `/encode` and `/decode`. */
export class KmscodecHttpCodec implements PayloadCodec {
  private readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly headers: Record<string, string>;

  /**
   * @param endpoint the sidecar's base URL, e.g. `http://127.0.0.1:8089`; `{namespace}` in it is
   *   replaced by the namespace, as the Temporal CLI does.
   */
  constructor(endpoint: string, options: KmscodecCodecOptions) {
    const url = new URL(endpoint.replace('{namespace}', encodeURIComponent(options.namespace)));
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError(`codec endpoint must be an http(s) URL, got ${endpoint}`);
    }
    this.baseUrl = url.href.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 1500;
    this.headers = {
      ...options.headers,
      'content-type': 'application/json',
      accept: 'application/json',
      'x-namespace': options.namespace,
    };
  }

  encode(payloads: Payload[]): Promise<Payload[]> {
    return this.call('encode', payloads);
  }

  decode(payloads: Payload[]): Promise<Payload[]> {
    return this.call('decode', payloads);
  }

  private async call(op: 'encode' | 'decode', payloads: Payload[]): Promise<Payload[]> {
    if (payloads.length === 0) return [];
    // protobufjs' toJSON is proto3 JSON: bytes as base64, camelCase field names.
    const body = JSON.stringify(ProtoPayloads.fromObject({ payloads }).toJSON());
    const url = `${this.baseUrl}/${op}`;
    const deadline = Date.now() + this.timeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const text = await this.post(url, body, deadline);
        const out = ProtoPayloads.fromObject(JSON.parse(text) as Record<string, unknown>).payloads;
        if (out.length !== payloads.length) {
          throw new KmscodecCodecError(`kmscodec ${op}: sent ${payloads.length} payloads, got ${out.length}`);
        }
        return out;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        const retryable = RETRYABLE_ERRORS.has(code) || (err as { status?: number }).status === 503;
        if (!retryable || attempt >= HTTP_ATTEMPTS || Date.now() + 50 >= deadline) {
          if (err instanceof KmscodecCodecError) throw err;
          throw new KmscodecCodecError(`kmscodec ${op}: POST ${url} failed: ${(err as Error).message}`, { cause: err });
        }
        await new Promise((resolve) => setTimeout(resolve, 25 * attempt));
      }
    }
  }

  /** One POST; resolves with the body of a 200, rejects with anything else. */
  private post(url: string, body: string, deadline: number): Promise<string> {
    const target = new URL(url);
    const transport = target.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = transport.request(
        target,
        {
          method: 'POST',
          agent: sharedAgents[target.protocol as 'http:' | 'https:'],
          headers: { ...this.headers, 'content-length': Buffer.byteLength(body) },
          // The whole exchange, not just one socket read, must finish before the deadline.
          signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if (res.statusCode === 200) return resolve(text);
            const err = new KmscodecCodecError(`HTTP ${res.statusCode}: ${text.slice(0, 500)}`);
            reject(Object.assign(err, { status: res.statusCode }));
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
}

/** gRPC retries inside the call's deadline: only UNAVAILABLE (sidecar restarting, KMS outage). */
const GRPC_SERVICE_CONFIG = JSON.stringify({
  methodConfig: [
    {
      name: [{ service: 'kmscodec.v1.Codec' }],
      retryPolicy: {
        maxAttempts: 3,
        initialBackoff: '0.025s',
        maxBackoff: '0.2s',
        backoffMultiplier: 2,
        retryableStatusCodes: ['UNAVAILABLE'],
      },
    },
  ],
});

/** A PayloadCodec that calls the sidecar's `kmscodec.v1.Codec` gRPC service. */
export class KmscodecGrpcCodec implements PayloadCodec {
  private readonly client: grpc.Client;
  private readonly namespace: string;
  private readonly timeoutMs: number;
  private readonly metadata: grpc.Metadata;

  /**
   * @param target `grpc://HOST:PORT`, `HOST:PORT` or `unix:///path/to/codec.sock` (plaintext: the
   *   sidecar listens on loopback or a socket file only its pod can reach).
   */
  constructor(target: string, options: KmscodecCodecOptions) {
    this.client = new grpc.Client(target.replace(/^grpc:\/\//, ''), grpc.credentials.createInsecure(), {
      'grpc.service_config': GRPC_SERVICE_CONFIG,
      'grpc.enable_retries': 1,
      'grpc.keepalive_time_ms': 30_000,
    });
    this.namespace = options.namespace;
    this.timeoutMs = options.timeoutMs ?? 1500;
    this.metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(options.headers ?? {})) this.metadata.set(key, value);
  }

  encode(payloads: Payload[]): Promise<Payload[]> {
    return this.call('Encode', payloads);
  }

  decode(payloads: Payload[]): Promise<Payload[]> {
    return this.call('Decode', payloads);
  }

  /** Closes the channel (call on shutdown). */
  close(): void {
    this.client.close();
  }

  private call(method: 'Encode' | 'Decode', payloads: Payload[]): Promise<Payload[]> {
    if (payloads.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        `/kmscodec.v1.Codec/${method}`,
        (request: Payload[]) => encodeRequest(this.namespace, request),
        (bytes: Buffer) => ProtoPayloads.decode(bytes).payloads,
        payloads,
        this.metadata,
        { deadline: Date.now() + this.timeoutMs },
        (err, out) => {
          if (err || !out) {
            return reject(new KmscodecCodecError(`kmscodec ${method}: ${err?.message ?? 'empty answer'}`, { cause: err }));
          }
          if (out.length !== payloads.length) {
            return reject(new KmscodecCodecError(`kmscodec ${method}: sent ${payloads.length} payloads, got ${out.length}`));
          }
          resolve(out);
        },
      );
    });
  }
}

/**
 * `EncodeRequest`/`DecodeRequest { string namespace = 1; repeated Payload payloads = 2; }` in
 * protobuf wire format, built by hand: field 1 and each field-2 entry are length-delimited
 * (wire type 2), and a Payload is Temporal's own message, so no generated code is needed.
 */
function encodeRequest(namespace: string, payloads: Payload[]): Buffer {
  const parts: Uint8Array[] = [];
  const field = (tag: number, bytes: Uint8Array): void => {
    parts.push(Uint8Array.of(tag), varint(bytes.length), bytes);
  };
  field(0x0a, Buffer.from(namespace, 'utf8'));
  for (const payload of payloads) field(0x12, ProtoPayload.encode(payload).finish());
  return Buffer.concat(parts);
}

function varint(value: number): Uint8Array {
  const bytes: number[] = [];
  while (value > 0x7f) {
    bytes.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  bytes.push(value);
  return Uint8Array.from(bytes);
}

/** `http(s)://…` → {@link KmscodecHttpCodec}; `grpc://…` or `unix:…` → {@link KmscodecGrpcCodec}. */
export function codecFor(endpoint: string, options: KmscodecCodecOptions): KmscodecHttpCodec | KmscodecGrpcCodec {
  if (/^https?:\/\//.test(endpoint)) return new KmscodecHttpCodec(endpoint, options);
  if (/^(grpc:\/\/|unix:)/.test(endpoint)) return new KmscodecGrpcCodec(endpoint, options);
  throw new TypeError(`unsupported codec endpoint ${endpoint}: use http(s)://, grpc:// or unix://`);
}
