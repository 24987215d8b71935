#!/usr/bin/env node
// Opens one workflow in the real Temporal Web UI with headless Chromium (playwright-core),
// waits for a payload stored in External Storage to be shown as a reference (the UI decodes with
// `?preserveStorageRefs=true` and shows a download button labelled with the stored size), clicks
// that button and reads the file the browser saves (the UI posts the reference to
// `<endpoint>/download` and saves `payloads[0]` as JSON).
//
// Run by tests/external_storage.rs with `.tools/bin/node` and NODE_PATH at the playwright-core
// installed by scripts/tools.sh:
//
//     node tests/e2e/ui_download.cjs '{"chromium": "/usr/bin/chromium",
//       "url": "http://127.0.0.1:8233/namespaces/default/workflows/wf1",
//       "codecEndpoint": "http://127.0.0.1:8443", "downloadDir": "/tmp/d", "timeoutMs": 60000}'
//
// Prints one JSON line: {"done": bool, "sizeText": "<button label>", "text": "<page text>",
// "download": {"filename", "content"}, "codecCalls": [{"url", "status"}]} and exits 0 (the caller
// asserts); exits 1 only when the browser cannot run.
'use strict';

const fs = require('fs');
const { chromium } = require('playwright-core');

// The label of the download button: the stored size as the UI formats it ("307.2 kB").
const SIZE_LABEL = /^\s*\d+(\.\d+)?\s*(B|bytes|kB|KB|KiB|MB|MiB)\s*$/i;

async function main() {
  const opts = JSON.parse(process.argv[2] || '{}');
  const timeoutMs = opts.timeoutMs || 60000;
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
  const result = { done: false, sizeText: '', text: '', download: null, codecCalls: [] };
  try {
    const context = await browser.newContext({ acceptDownloads: true });
    await context.addInitScript((s) => {
      for (const [key, value] of Object.entries(s)) {
        window.localStorage.setItem(key, JSON.stringify(value));
      }
    }, {
      endpoint,
      includeCredentials: false,
      overrideRemoteCodecConfiguration: true,
      passAccessToken: false,
    });
    const page = await context.newPage();
    page.on('requestfinished', async (request) => {
      if (!endpoint || !request.url().startsWith(endpoint) || request.method() !== 'POST') return;
      const response = await request.response();
      result.codecCalls.push({ url: request.url(), status: response ? response.status() : null });
    });
    page.on('requestfailed', (request) => {
      if (!endpoint || !request.url().startsWith(endpoint)) return;
      result.codecCalls.push({ url: request.url(), status: null, failure: String(request.failure() && request.failure().errorText) });
    });
    await page.goto(opts.url, { waitUntil: 'domcontentloaded', timeout: timeoutMs });

    const deadline = Date.now() + timeoutMs;
    let button = null;
    while (Date.now() < deadline) {
      const buttons = page.locator('button');
      const count = await buttons.count();
      for (let i = 0; i < count; i++) {
        const candidate = buttons.nth(i);
        const label = (await candidate.innerText().catch(() => '')) || '';
        if (SIZE_LABEL.test(label) && (await candidate.isVisible().catch(() => false))) {
          button = candidate;
          result.sizeText = label.trim();
          break;
        }
      }
      if (button) break;
      await page.waitForTimeout(250);
    }
    result.text = await page.evaluate(() => (document.body ? document.body.innerText : ''));
    if (button) {
      // The button is enabled once the UI knows a codec endpoint.
      const [download] = await Promise.all([
        page.waitForEvent('download', { timeout: timeoutMs }),
        button.click({ timeout: timeoutMs }),
      ]);
      fs.mkdirSync(opts.downloadDir, { recursive: true });
      const target = `${opts.downloadDir}/${download.suggestedFilename()}`;
      await download.saveAs(target);
      result.download = {
        filename: download.suggestedFilename(),
        content: fs.readFileSync(target, 'utf8'),
      };
      result.done = true;
    }
  } finally {
    process.stdout.write(JSON.stringify(result) + '\n');
    await browser.close();
  }
}

main().catch((error) => {
  process.stderr.write(`ui_download.cjs: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
