// Cache channels (docs/PROTOCOL.md, "Cache channels"): a new subscriber gets the last event
// triggered through the HTTP API right after subscribing, or `pusher:cache_miss`.

import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  SETTLE_MS,
  TEST_TIMEOUT_MS,
  assertServerReachable,
  connectClient,
  rawMessages,
  record,
  serverSdk,
  sleep,
  subscribe,
  uniqueChannel,
  waitFor,
} from '../lib/harness.js';

before(() => assertServerReachable());

/** Subscribes and records every event the channel emits from the start, in order. */
function subscribeRecording(client, name) {
  const channel = client.subscribe(name);
  const seen = [];
  channel.bind_global((event, data) => seen.push([event, data]));
  return { channel, seen };
}

async function until(seen, n, timeout = 5000) {
  const deadline = Date.now() + timeout;
  while (seen.length < n && Date.now() < deadline) await sleep(20);
  assert.ok(seen.length >= n, `expected ${n} events, got ${JSON.stringify(seen)}`);
}

test('a new subscriber gets pusher:cache_miss, then the cached event after a trigger', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('cache');
  const first = await connectClient(t);
  const { channel, seen } = subscribeRecording(first, name);
  const miss = await waitFor(channel, 'pusher:cache_miss');
  assert.equal(miss, undefined, 'cache_miss carries no data');
  assert.deepEqual(seen.map(([e]) => e), ['pusher:subscription_succeeded', 'pusher:cache_miss']);

  const live = waitFor(channel, 'price');
  await serverSdk.trigger(name, 'price', { v: 1 });
  assert.deepEqual(await live, { v: 1 });

  const second = await connectClient(t);
  const later = subscribeRecording(second, name);
  await until(later.seen, 2);
  assert.deepEqual(later.seen, [
    ['pusher:subscription_succeeded', {}],
    ['price', { v: 1 }],
  ]);
  await sleep(SETTLE_MS);
  assert.equal(later.seen.length, 2, 'the cached event comes once');
  assert.deepEqual(rawMessages(second, { channel: name, event: 'pusher:cache_miss' }), []);
});

test('private cache channels keep events too; client events are not kept', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('private-cache');
  const [a, b] = await Promise.all([connectClient(t), connectClient(t)]);
  const [aChannel, bChannel] = await Promise.all([subscribe(a, name), subscribe(b, name)]);
  const got = waitFor(bChannel, 'client-typing');
  aChannel.trigger('client-typing', { who: 'a' });
  assert.deepEqual(await got, { who: 'a' });

  const c = await connectClient(t);
  const missed = subscribeRecording(c, name);
  await until(missed.seen, 2);
  assert.deepEqual(missed.seen.map(([e]) => e), ['pusher:subscription_succeeded', 'pusher:cache_miss']);

  await serverSdk.trigger(name, 'status', 'open');
  const d = await connectClient(t);
  const kept = subscribeRecording(d, name);
  await until(kept.seen, 2);
  assert.deepEqual(kept.seen[1], ['status', 'open']);
});

test('GET /channels/{name}?info=cache shows the kept event and its ttl', { timeout: TEST_TIMEOUT_MS }, async () => {
  const name = uniqueChannel('cache');
  await serverSdk.trigger(name, 'e', { kept: true });
  const res = await serverSdk.get({ path: `/channels/${name}`, params: { info: 'cache' } });
  const body = await res.json();
  assert.equal(body.occupied, false);
  assert.equal(body.cache.data, '{"kept":true}');
  assert.ok(body.cache.ttl > 1700 && body.cache.ttl <= 1800, `ttl ${body.cache.ttl}`);
});
