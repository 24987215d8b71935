#!/usr/bin/env node
// Opens one workflow in the real Temporal Web UI with headless Chromium (playwright-core) and
// reports what the page shows and which codec calls the browser made.
//
// Run by tests/temporal_security.rs with `.tools/bin/node` and NODE_PATH pointing at the
// playwright-core installed by scripts/tools.sh:
//
//     node tests/e2e/ui_codec.cjs '{"chromium": "/usr/bin/chromium",
//       "url": "http://127.0.0.1:8233/namespaces/default/workflows/wf1",
//       "codecEndpoint": "http://127.0.0.1:8443", "includeCredentials": true,
//       "cookies": [{"name": "kmscodec_token", "value": "..."}],
//       "expect": ["Input", "Result", "Hello"], "minCodecCalls": 2, "timeoutMs": 45000}'
//
// Codec settings: the UI keeps the per-browser codec settings in localStorage, each value
// JSON-encoded (temporalio/ui src/lib/stores/data-encoder-config.ts, persistStore): `endpoint`,
// `passAccessToken`, `includeCredentials` and `overrideRemoteCodecConfiguration`. The browser's
// values win over the server's settings (`/api/v1/settings` Codec.Endpoint / IncludeCredentials)
// only when `overrideRemoteCodecConfiguration` is true and `endpoint` is set
// (src/lib/utilities/get-codec.ts). The dev server has no flag for IncludeCredentials, so this
// script sets all three before any page script runs (context.addInitScript). With
// includeCredentials the UI's fetch to `<endpoint>/decode` uses `credentials: "include"`, so the
// browser sends the 127.0.0.1 cookies (cookies are per host, not per port) and requires
// `Access-Control-Allow-Credentials: true` in the answers.
//
// The script waits until every `expect` string is in the page text, at least `minCodecCalls`
// POSTs to the codec endpoint have finished (answered or failed) and none is in flight; then it
// prints one JSON line:
//   {"done": bool, "missing": [...], "url": "...", "text": "<page text>",
//    "codecCalls": [{"method", "url", "status" (null when the browser failed it), "failure",
//                    "cookieNames": [names of the cookies the browser sent]}]}
// and exits 0 (the caller asserts). It exits 1 only when the browser cannot run at all.
'use strict';

const { chromium } = require('playwright-core');

async function main() {
  const opts = JSON.parse(process.argv[2] || '{}');
  const timeoutMs = opts.timeoutMs || 45000;
  const expect = opts.expect || [];
  const minCodecCalls = opts.minCodecCalls || 1;
  const endpoint = opts.codecEndpoint;

  const browser = await chromium.launch({
    executablePath: opts.chromium,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
  try {
    // A fresh context is a fresh profile: no cookies or localStorage from earlier runs.
    const context = await browser.newContext();
    if (opts.cookies && opts.cookies.length > 0) {
      await context.addCookies(
        opts.cookies.map((c) => ({
          name: c.name,
          value: c.value,
          domain: '127.0.0.1',
          path: '/',
          sameSite: 'Lax',
        })),
      );
    }
    const settings = {
      endpoint,
      includeCredentials: !!opts.includeCredentials,
      overrideRemoteCodecConfiguration: true,
      passAccessToken: false,
    };
    await context.addInitScript((s) => {
      // Only on the UI's origin (the init script runs in every frame).
      for (const [key, value] of Object.entries(s)) {
        window.localStorage.setItem(key, JSON.stringify(value));
      }
    }, settings);

    const page = await context.newPage();
    const calls = [];
    const byRequest = new Map();
    const isCodecCall = (request) =>
      endpoint && request.url().startsWith(endpoint) && request.method() === 'POST';
    page.on('request', (request) => {
      if (!isCodecCall(request)) return;
      const call = {
        method: request.method(),
        url: request.url(),
        status: null,
        failure: null,
        cookieNames: [],
        finished: false,
      };
      calls.push(call);
      byRequest.set(request, call);
    });
    page.on('requestfinished', async (request) => {
      const call = byRequest.get(request);
      if (!call) return;
      try {
        const response = await request.response();
        call.status = response ? response.status() : null;
        // Names only: which cookies the browser attached (the UI sets its own `_csrf` too).
        const cookie = (await request.allHeaders())['cookie'] || '';
        call.cookieNames = cookie
          .split(';')
          .map((pair) => pair.split('=')[0].trim())
          .filter((name) => name.length > 0);
      } catch (error) {
        call.failure = String(error);
      }
      call.finished = true;
    });
    page.on('requestfailed', (request) => {
      const call = byRequest.get(request);
      if (!call) return;
      const failure = request.failure();
      call.failure = failure ? failure.errorText : 'failed';
      call.finished = true;
    });

    await page.goto(opts.url, { waitUntil: 'domcontentloaded', timeout: timeoutMs });

    const deadline = Date.now() + timeoutMs;
    let text = '';
    let missing = expect;
    let done = false;
    for (;;) {
      text = await page.evaluate(() => (document.body ? document.body.innerText : ''));
      missing = expect.filter((s) => !text.includes(s));
      const finished = calls.filter((c) => c.finished).length;
      const inFlight = calls.length - finished;
      if (missing.length === 0 && finished >= minCodecCalls && inFlight === 0) {
        done = true;
        break;
      }
      if (Date.now() > deadline) break;
      await page.waitForTimeout(200);
    }
    const result = {
      done,
      missing,
      url: page.url(),
      text,
      codecCalls: calls.map(({ finished, ...call }) => call),
    };
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  process.stderr.write(`ui_codec.cjs: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
