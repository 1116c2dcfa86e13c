// Webhooks checked with the official server SDK's verifier (`pusher` `webhook()`).
//
// scripts/test.sh starts the server with an app `hook-app` whose webhooks go to
// http://127.0.0.1:$WARREN_WEBHOOK_PORT/webhooks, with removals delayed by 300 ms. This file
// listens on that port (a real HTTP server), drives pusher-js clients of that app and checks
// every request: the SDK accepts it, a wrong secret does not, and the events are right.
// Without WARREN_WEBHOOK_PORT the tests are skipped.

import http from 'node:http';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import PusherServer from 'pusher';

import {
  HOST,
  PORT,
  TEST_TIMEOUT_MS,
  assertServerReachable,
  connectClient,
  disconnect,
  subscribe,
  uniqueChannel,
  waitFor,
} from '../lib/harness.js';

const HOOK_PORT = Number(process.env.WARREN_WEBHOOK_PORT || 0);
const skip = HOOK_PORT ? false : 'WARREN_WEBHOOK_PORT is not set';
const credentials = { appId: 'hook-app', key: 'hook-app-key', host: HOST, port: PORT, useTLS: false };
const hookSdk = new PusherServer({ ...credentials, secret: 'hook-app-secret' });
const wrongSdk = new PusherServer({ ...credentials, secret: 'not-the-secret' });

/** Every request received, verified; events waiting to be taken. */
const requests = [];
const events = [];
let waiters = [];
let server;

before(async () => {
  if (skip) return;
  await assertServerReachable();
  server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const webhook = hookSdk.webhook({ headers: req.headers, rawBody });
      requests.push({ rawHeaders: req.rawHeaders, headers: req.headers, rawBody, webhook });
      if (webhook.isValid()) events.push(...webhook.getEvents());
      res.writeHead(200).end();
      waiters = waiters.filter((w) => !w());
    });
  });
  await new Promise((resolve) => server.listen(HOOK_PORT, '127.0.0.1', resolve));
});

after(() => server && server.close());

/** Resolves with the next `n` events of `channel`, in order. */
function nextEvents(channel, n, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const mine = events.filter((e) => e.channel === channel);
      if (mine.length < n) return false;
      for (const e of mine.slice(0, n)) events.splice(events.indexOf(e), 1);
      clearTimeout(timer);
      resolve(mine.slice(0, n));
      return true;
    };
    const timer = setTimeout(() => {
      waiters = waiters.filter((w) => w !== check);
      reject(new Error(`${n} webhook events of ${channel} in ${timeout} ms; got ${JSON.stringify(events)}`));
    }, timeout);
    if (!check()) waiters.push(check);
  });
}

test('webhooks pass the official SDK verifier and carry every field', { skip, timeout: TEST_TIMEOUT_MS }, async (t) => {
  const channel = uniqueChannel('presence');
  const opts = (id) => ({ key: 'hook-app-key', sdk: hookSdk, presence: { user_id: id } });
  const alice = await connectClient(t, opts('alice'));
  await subscribe(alice, channel);
  assert.deepEqual(await nextEvents(channel, 2), [
    { name: 'channel_occupied', channel },
    { name: 'member_added', channel, user_id: 'alice' },
  ]);

  const bob = await connectClient(t, opts('bob'));
  const bobChannel = await subscribe(bob, channel);
  assert.deepEqual(await nextEvents(channel, 1), [{ name: 'member_added', channel, user_id: 'bob' }]);
  const heard = waitFor(alice.channel(channel), 'client-wave');
  bobChannel.trigger('client-wave', { hi: 1 });
  await heard;
  assert.deepEqual(await nextEvents(channel, 1), [{
    name: 'client_event', channel, event: 'client-wave', data: '{"hi":1}',
    socket_id: bob.connection.socket_id, user_id: 'bob',
  }]);

  await disconnect(bob);
  assert.deepEqual(await nextEvents(channel, 1), [{ name: 'member_removed', channel, user_id: 'bob' }]);
  await disconnect(alice);
  const last = await nextEvents(channel, 2);
  assert.deepEqual(new Set(last.map((e) => e.name)), new Set(['member_removed', 'channel_vacated']));

  assert.ok(requests.length > 0);
  for (const r of requests) {
    assert.equal(r.webhook.isValid(), true, r.rawBody);
    assert.equal(wrongSdk.webhook({ headers: r.headers, rawBody: r.rawBody }).isValid(), false);
    assert.equal(hookSdk.webhook({ headers: r.headers, rawBody: r.rawBody + ' ' }).isValid(), false);
    assert.ok(Math.abs(r.webhook.getTime().getTime() - Date.now()) < 60000);
    for (const name of ['X-Pusher-Key', 'X-Pusher-Signature', 'Content-Type', 'X-Warren-Webhook-Id']) {
      assert.ok(r.rawHeaders.includes(name), `${name} title-cased in ${r.rawHeaders}`);
    }
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.headers['x-pusher-key'], 'hook-app-key');
  }
});

test('a page reload within the removal delay sends no webhook', { skip, timeout: TEST_TIMEOUT_MS }, async (t) => {
  const channel = uniqueChannel('presence');
  const opts = { key: 'hook-app-key', sdk: hookSdk, presence: { user_id: 'carol' } };
  const first = await connectClient(t, opts);
  await subscribe(first, channel);
  assert.equal((await nextEvents(channel, 2)).length, 2);
  await disconnect(first);
  const again = await connectClient(t, opts);
  await subscribe(again, channel);
  await new Promise((resolve) => setTimeout(resolve, 800));
  assert.deepEqual(events.filter((e) => e.channel === channel), []);
  await disconnect(again);
  assert.equal((await nextEvents(channel, 2)).length, 2, 'left for good: removed and vacated');
});
