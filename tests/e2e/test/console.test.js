// The web debug console (/console) in a real headless Chromium (Debian's chromium driven by
// playwright-core): the page signs its requests with the app's key and secret through
// WebCrypto, shows a pusher-js client's subscription and presence membership, triggers an
// event from its form and sees it in the live log, while the pusher-js client receives it.
// The server must run with [console] enabled (scripts/test.sh sets WARREN_CONSOLE__ENABLED).
// WARREN_CONSOLE_SCREENSHOT=path saves a screenshot of the page at the end.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import {
  APP_ID,
  APP_KEY,
  APP_SECRET,
  HOST,
  PORT,
  TEST_TIMEOUT_MS,
  assertServerReachable,
  connectClient,
  subscribe,
  uniqueChannel,
  waitFor,
} from '../lib/harness.js';

const CHROMIUM = process.env.WARREN_CHROMIUM || '/usr/bin/chromium';
const BASE = `http://${HOST}:${PORT}`;
let context;
let profile;

before(async () => {
  await assertServerReachable();
  profile = mkdtempSync(join(tmpdir(), 'warren-console-'));
  // A fresh profile directory (playwright passes it as --user-data-dir).
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 860 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('the console shows a subscription and members, and logs an event triggered from its form', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const page = await context.newPage();
  t.after(() => page.close());
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));

  await page.goto(`${BASE}/console`);
  await page.fill('#app-id', APP_ID);
  await page.fill('#key', APP_KEY);
  await page.fill('#secret', APP_SECRET);
  await page.click('#connect');
  await page.waitForSelector('#status.on', { timeout: 5000 });

  const room = uniqueChannel('presence-console');
  const client = await connectClient(t, { presence: { user_id: 'ada', user_info: { name: 'Ada' } } });
  await subscribe(client, room);
  await page.waitForSelector(`#log tr[data-type="subscribed"]:has-text("${room}")`, { timeout: 5000 });
  await page.waitForSelector(`#channels tr[data-channel="${room}"]`, { timeout: 8000 });
  await page.click(`#channels tr[data-channel="${room}"]`);
  await page.waitForSelector('#members li:has-text("ada")', { timeout: 5000 });

  const received = waitFor(client.channel(room), 'console-hello');
  await page.fill('#trigger-channel', room);
  await page.fill('#trigger-event', 'console-hello');
  await page.fill('#trigger-data', '{"from":"the console"}');
  await page.click('#trigger-send');
  const row = await page.waitForSelector('#log tr[data-type="api_publish"]:has-text("console-hello")', { timeout: 5000 });
  assert.match(await row.textContent(), new RegExp(room));
  assert.deepEqual(await received, { from: 'the console' });
  assert.equal(await page.textContent('#trigger-result'), 'sent');

  // Everything came from this server; the secret never travelled.
  assert.ok(requests.every((u) => u.startsWith(BASE)), requests.join('\n'));
  assert.ok(requests.every((u) => !u.includes(APP_SECRET)));
  assert.deepEqual(problems, []);
  if (process.env.WARREN_CONSOLE_SCREENSHOT) {
    await page.screenshot({ path: process.env.WARREN_CONSOLE_SCREENSHOT });
  }
});

test('the console says why when the secret is wrong', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const page = await context.newPage();
  t.after(() => page.close());
  await page.goto(`${BASE}/console`);
  await page.fill('#app-id', APP_ID);
  await page.fill('#key', APP_KEY);
  await page.fill('#secret', 'not-the-secret');
  await page.click('#connect');
  await page.waitForSelector('#status.error', { timeout: 5000 });
  assert.match(await page.textContent('#status'), /signature/i);
});
