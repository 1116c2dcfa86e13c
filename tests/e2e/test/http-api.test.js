// The Pusher HTTP API (docs/PROTOCOL.md, "HTTP API") driven by the official `pusher`
// server SDK, with pusher-js clients observing what gets delivered.

import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import PusherServer from 'pusher';

import {
  APP_ID,
  APP_KEY,
  APP_SECRET,
  EVENT_TIMEOUT_MS,
  HOST,
  PORT,
  SETTLE_MS,
  TEST_TIMEOUT_MS,
  assertServerReachable,
  connectClient,
  rawMessages,
  sleep,
  subscribe,
  uniqueChannel,
  waitFor,
} from '../lib/harness.js';

before(() => assertServerReachable());

/** SDK instance for API calls; every request is aborted after EVENT_TIMEOUT_MS. */
function sdk(overrides = {}) {
  return new PusherServer({
    appId: APP_ID,
    key: APP_KEY,
    secret: APP_SECRET,
    host: HOST,
    port: PORT,
    useTLS: false,
    timeout: EVENT_TIMEOUT_MS,
    ...overrides,
  });
}

const api = sdk();
const wrongSecretApi = sdk({ secret: 'definitely-not-the-app-secret' });

/** Assert a 200 response and return its JSON body. */
async function ok(promise) {
  const res = await promise;
  assert.equal(res.status, 200, `HTTP status of ${res.url}`);
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    assert.fail(`response body of ${res.url} is not JSON: ${JSON.stringify(text)}`);
  }
  assert.equal(typeof body, 'object', `response body must be a JSON object: ${text}`);
  assert.ok(body !== null && !Array.isArray(body), `response body must be a JSON object: ${text}`);
  return body;
}

/** Assert the SDK call is rejected with a RequestError carrying `status`; returns the error. */
async function rejected(promise, status) {
  let err;
  try {
    const res = await promise;
    const text = await res.text().catch(() => '');
    assert.fail(`expected HTTP ${status}, got ${res.status} ${text}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  assert.equal(err.name, 'PusherRequestError', `unexpected error: ${err && (err.stack || err)}`);
  assert.equal(err.status, status, `expected HTTP ${status}, got ${err.status} body ${JSON.stringify(err.body)} (${err.url})`);
  return err;
}

/** Poll `fn` (async) until it stops throwing, for at most `timeout` ms; rethrows the last failure. */
async function eventually(fn, timeout = EVENT_TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      await sleep(100);
    }
  }
}

/**
 * A presence channel with `alice` on two connections and `bob` on one:
 * user_count 2, subscription_count 3.
 */
async function presenceWithThreeSockets(t, name) {
  const alice1 = await connectClient(t, { presence: { user_id: 'alice', user_info: { name: 'Alice' } } });
  const alice2 = await connectClient(t, { presence: { user_id: 'alice', user_info: { name: 'Alice' } } });
  const bob = await connectClient(t, { presence: { user_id: 'bob' } });
  await subscribe(alice1, name);
  await subscribe(alice2, name);
  await subscribe(bob, name);
  return { alice1, alice2, bob };
}

// ---------------------------------------------------------------- trigger

test('trigger: an object reaches a subscriber with the same data, response {}', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('api-trigger');
  const client = await connectClient(t);
  const channel = await subscribe(client, name);

  const payload = { hello: 'world', n: 42, nested: { list: [1, 'two', null, true] }, unicode: 'wörld 🐇' };
  const got = waitFor(channel, 'my-event', { label: 'my-event' });
  const body = await ok(api.trigger(name, 'my-event', payload));
  assert.deepEqual(body, {});
  assert.deepEqual(await got, payload);

  const [raw] = rawMessages(client, { channel: name, event: 'my-event' });
  assert.equal(raw.channel, name);
  assert.equal(raw.event, 'my-event');
});

test('trigger: string data arrives verbatim', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('api-string');
  const client = await connectClient(t);
  const channel = await subscribe(client, name);

  // Not JSON, so pusher-js leaves it as a string: it must arrive byte for byte.
  const text = 'plain text, not JSON: "quotes", \\backslash\\, <b>&amp;</b>, tab\t, newline\n, wörld 🐇';
  const got = waitFor(channel, 'text-event', { label: 'text-event' });
  assert.deepEqual(await ok(api.trigger(name, 'text-event', text)), {});
  assert.equal(await got, text);

  // A string that is itself JSON is passed through untouched as well (pusher-js then parses it).
  const jsonText = '{"already":"encoded","list":[1,2,3]}';
  const got2 = waitFor(channel, 'json-text-event', { label: 'json-text-event' });
  assert.deepEqual(await ok(api.trigger(name, 'json-text-event', jsonText)), {});
  assert.deepEqual(await got2, { already: 'encoded', list: [1, 2, 3] });
});

test('trigger: socket_id excludes that connection only', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('api-exclude');
  const sender = await connectClient(t);
  const other = await connectClient(t);
  await subscribe(sender, name);
  const otherChannel = await subscribe(other, name);

  const got = waitFor(otherChannel, 'excluded-event', { label: 'excluded-event at the other client' });
  const body = await ok(api.trigger(name, 'excluded-event', { x: 1 }, { socket_id: sender.connection.socket_id }));
  assert.deepEqual(body, {});
  assert.deepEqual(await got, { x: 1 });

  await sleep(SETTLE_MS);
  assert.deepEqual(rawMessages(sender, { channel: name, event: 'excluded-event' }), [], 'the excluded socket must not get the event');

  // Without socket_id both get the next one.
  const a = waitFor(sender.channel(name), 'next-event', { label: 'next-event at the sender' });
  const b = waitFor(otherChannel, 'next-event', { label: 'next-event at the other client' });
  await ok(api.trigger(name, 'next-event', { y: 2 }));
  assert.deepEqual(await a, { y: 2 });
  assert.deepEqual(await b, { y: 2 });
});

test('trigger: several channels in one call, each subscriber gets it once', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const names = [uniqueChannel('api-multi'), uniqueChannel('api-multi'), uniqueChannel('api-multi')];
  const all = await connectClient(t);
  const only2 = await connectClient(t);
  const channels = [];
  for (const n of names) channels.push(await subscribe(all, n));
  const second = await subscribe(only2, names[1]);

  const waits = channels.map((c, i) => waitFor(c, 'fanout', { label: `fanout on ${names[i]}` }));
  const waitSecond = waitFor(second, 'fanout', { label: 'fanout at the second client' });
  assert.deepEqual(await ok(api.trigger(names, 'fanout', { to: 'many' })), {});
  for (const w of waits) assert.deepEqual(await w, { to: 'many' });
  assert.deepEqual(await waitSecond, { to: 'many' });

  await sleep(SETTLE_MS);
  for (const n of names) {
    assert.equal(rawMessages(all, { channel: n, event: 'fanout' }).length, 1, `exactly one delivery on ${n}`);
  }
  assert.deepEqual(rawMessages(only2, { event: 'fanout' }).map((m) => m.channel), [names[1]]);
});

test('trigger: info=subscription_count and user_count,subscription_count on a presence channel', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('presence-api-info');
  await presenceWithThreeSockets(t, name);

  assert.deepEqual(await ok(api.trigger(name, 'counted', {}, { info: 'subscription_count' })), {
    channels: { [name]: { subscription_count: 3 } },
  });
  assert.deepEqual(await ok(api.trigger(name, 'counted', {}, { info: 'user_count,subscription_count' })), {
    channels: { [name]: { user_count: 2, subscription_count: 3 } },
  });
  assert.deepEqual(await ok(api.trigger(name, 'counted', {}, { info: 'user_count' })), {
    channels: { [name]: { user_count: 2 } },
  });
});

test('trigger: info=subscription_count on a public channel', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('api-info-public');
  const a = await connectClient(t);
  const b = await connectClient(t);
  await subscribe(a, name);
  await subscribe(b, name);
  assert.deepEqual(await ok(api.trigger(name, 'counted', {}, { info: 'subscription_count' })), {
    channels: { [name]: { subscription_count: 2 } },
  });
});

// ---------------------------------------------------------------- batch

test('triggerBatch: every event reaches its channel, response {}', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const c1 = uniqueChannel('api-batch');
  const c2 = uniqueChannel('api-batch');
  const client = await connectClient(t);
  const ch1 = await subscribe(client, c1);
  const ch2 = await subscribe(client, c2);

  const first = waitFor(ch1, 'batch-a', { label: 'batch-a' });
  const second = waitFor(ch2, 'batch-b', { label: 'batch-b' });
  const third = waitFor(ch1, 'batch-c', { label: 'batch-c' });
  const body = await ok(
    api.triggerBatch([
      { channel: c1, name: 'batch-a', data: { n: 1 } },
      { channel: c2, name: 'batch-b', data: 'plain string in a batch' },
      { channel: c1, name: 'batch-c', data: { n: 3, list: ['x'] } },
    ]),
  );
  assert.deepEqual(body, {});
  assert.deepEqual(await first, { n: 1 });
  assert.equal(await second, 'plain string in a batch');
  assert.deepEqual(await third, { n: 3, list: ['x'] });
});

test('triggerBatch: socket_id in a batch item excludes that connection', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('api-batch-exclude');
  const sender = await connectClient(t);
  const other = await connectClient(t);
  await subscribe(sender, name);
  const otherChannel = await subscribe(other, name);

  const got = waitFor(otherChannel, 'batch-excluded', { label: 'batch-excluded at the other client' });
  await ok(api.triggerBatch([{ channel: name, name: 'batch-excluded', data: { z: 1 }, socket_id: sender.connection.socket_id }]));
  assert.deepEqual(await got, { z: 1 });
  await sleep(SETTLE_MS);
  assert.deepEqual(rawMessages(sender, { channel: name, event: 'batch-excluded' }), []);
});

test('triggerBatch: info returns index-aligned attributes', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const presence = uniqueChannel('presence-api-batch');
  const pub = uniqueChannel('api-batch-info');
  const other = uniqueChannel('api-batch-info');
  const { bob } = await presenceWithThreeSockets(t, presence);
  const p1 = await connectClient(t);
  await subscribe(p1, pub);
  await subscribe(p1, other);

  const delivered = waitFor(bob.channel(presence), 'batch-info-event', { label: 'batch-info-event at bob' });
  const body = await ok(
    api.triggerBatch([
      { channel: presence, name: 'batch-info-event', data: {}, info: 'user_count,subscription_count' },
      { channel: pub, name: 'batch-info-event', data: {}, info: 'subscription_count' },
      { channel: other, name: 'batch-info-event', data: {} },
    ]),
  );
  assert.deepEqual(body, {
    batch: [{ user_count: 2, subscription_count: 3 }, { subscription_count: 1 }, {}],
  });
  assert.deepEqual(await delivered, {});
});

// ---------------------------------------------------------------- queries

test('GET /channels: filter_by_prefix lists occupied channels only, info=user_count on presence', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const base = uniqueChannel('presence-api-list');
  const [pa, pb, pc] = [`${base}-a`, `${base}-b`, `${base}-c`];
  await presenceWithThreeSockets(t, pa);
  const carol = await connectClient(t, { presence: { user_id: 'carol' } });
  await subscribe(carol, pb);
  // pc is subscribed once and left again: it must not be listed.
  const dave = await connectClient(t, { presence: { user_id: 'dave' } });
  await subscribe(dave, pc);
  dave.unsubscribe(pc);

  await eventually(async () => {
    assert.deepEqual(await ok(api.get({ path: '/channels', params: { filter_by_prefix: `${base}-`, info: 'user_count' } })), {
      channels: { [pa]: { user_count: 2 }, [pb]: { user_count: 1 } },
    });
  });
  assert.deepEqual(await ok(api.get({ path: '/channels', params: { filter_by_prefix: `${base}-` } })), {
    channels: { [pa]: {}, [pb]: {} },
  });
  // The plain presence- prefix works with user_count too, and includes ours.
  const everyPresence = await ok(api.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } }));
  assert.deepEqual(everyPresence.channels[pa], { user_count: 2 });
  assert.deepEqual(everyPresence.channels[pb], { user_count: 1 });
  assert.equal(everyPresence.channels[pc], undefined);
  for (const key of Object.keys(everyPresence.channels)) assert.ok(key.startsWith('presence-'), key);
});

test('GET /channels: public channels, with and without a prefix', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const base = uniqueChannel('api-list');
  const [c1, c2] = [`${base}-1`, `${base}-2`];
  const client = await connectClient(t);
  await subscribe(client, c1);
  await subscribe(client, c2);
  // Triggering to a channel nobody is subscribed to does not make it occupied.
  await ok(api.trigger(`${base}-empty`, 'nobody-listens', {}));

  assert.deepEqual(await ok(api.get({ path: '/channels', params: { filter_by_prefix: base } })), {
    channels: { [c1]: {}, [c2]: {} },
  });
  const everything = await ok(api.get({ path: '/channels' }));
  assert.deepEqual(everything.channels[c1], {});
  assert.deepEqual(everything.channels[c2], {});
  assert.equal(everything.channels[`${base}-empty`], undefined);
});

test('GET /channels/{name}: occupied, subscription_count, user_count', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const presence = uniqueChannel('presence-api-chan');
  const pub = uniqueChannel('api-chan');
  await presenceWithThreeSockets(t, presence);
  const a = await connectClient(t);
  const b = await connectClient(t);
  await subscribe(a, pub);
  await subscribe(b, pub);

  assert.deepEqual(
    await ok(api.get({ path: `/channels/${presence}`, params: { info: 'user_count,subscription_count' } })),
    { occupied: true, user_count: 2, subscription_count: 3 },
  );
  assert.deepEqual(await ok(api.get({ path: `/channels/${presence}`, params: { info: 'user_count' } })), {
    occupied: true,
    user_count: 2,
  });
  assert.deepEqual(await ok(api.get({ path: `/channels/${presence}` })), { occupied: true });
  assert.deepEqual(await ok(api.get({ path: `/channels/${pub}`, params: { info: 'subscription_count' } })), {
    occupied: true,
    subscription_count: 2,
  });
  assert.deepEqual(await ok(api.get({ path: `/channels/${pub}` })), { occupied: true });

  // Counts follow unsubscribes.
  b.unsubscribe(pub);
  await eventually(async () => {
    assert.deepEqual(await ok(api.get({ path: `/channels/${pub}`, params: { info: 'subscription_count' } })), {
      occupied: true,
      subscription_count: 1,
    });
  });
  a.unsubscribe(pub);
  await eventually(async () => {
    assert.deepEqual(await ok(api.get({ path: `/channels/${pub}` })), { occupied: false });
  });
});

test('GET /channels/{name}: a channel nobody ever used is not occupied', { timeout: TEST_TIMEOUT_MS }, async () => {
  assert.deepEqual(await ok(api.get({ path: `/channels/${uniqueChannel('api-never')}` })), { occupied: false });
});

test('GET /channels/{name}/users: one entry per distinct user', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('presence-api-users');
  const { bob } = await presenceWithThreeSockets(t, name);

  const body = await ok(api.get({ path: `/channels/${name}/users` }));
  assert.ok(Array.isArray(body.users), JSON.stringify(body));
  assert.deepEqual(
    [...body.users].sort((x, y) => (x.id < y.id ? -1 : 1)),
    [{ id: 'alice' }, { id: 'bob' }],
  );

  bob.unsubscribe(name);
  await eventually(async () => {
    assert.deepEqual(await ok(api.get({ path: `/channels/${name}/users` })), { users: [{ id: 'alice' }] });
  });
});

test('GET /channels/{name}/users: a non-presence channel is 400', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('api-not-presence');
  const client = await connectClient(t);
  await subscribe(client, name);
  await rejected(api.get({ path: `/channels/${name}/users` }), 400);
});

// ---------------------------------------------------------------- users

test('sendToUser: 200 {} even when no connection is signed in as that user', { timeout: TEST_TIMEOUT_MS }, async () => {
  assert.deepEqual(await ok(api.sendToUser(`nobody-${Date.now()}`, 'for-you', { hi: 1 })), {});
});

test('terminateUserConnections: 200 {}', { timeout: TEST_TIMEOUT_MS }, async () => {
  // POST /apps/app-id/users/{id}/terminate_connections with body {}
  assert.deepEqual(await ok(api.terminateUserConnections(`nobody-${Date.now()}`)), {});
});

test('terminateUserConnections: unrelated connections stay open', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('presence-api-terminate');
  const alice = await connectClient(t, { presence: { user_id: 'terminate-me' } });
  const channel = await subscribe(alice, name);
  // A presence member is not a signed-in user: terminating that user id closes nothing.
  assert.deepEqual(await ok(api.terminateUserConnections('terminate-me')), {});
  await sleep(SETTLE_MS);
  assert.equal(alice.connection.state, 'connected');
  const got = waitFor(channel, 'still-here', { label: 'still-here' });
  await ok(api.trigger(name, 'still-here', { ok: true }));
  assert.deepEqual(await got, { ok: true });
});

// ---------------------------------------------------------------- errors

test('error: wrong secret is 401 with a message', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('api-wrong-secret');
  const client = await connectClient(t);
  await subscribe(client, name);

  const err = await rejected(wrongSecretApi.trigger(name, 'forged', { evil: true }), 401);
  assert.equal(typeof err.body, 'string');
  assert.ok(err.body.trim().length > 0, 'the 401 carries a message');

  const getErr = await rejected(wrongSecretApi.get({ path: '/channels' }), 401);
  assert.ok(getErr.body.trim().length > 0, 'the 401 carries a message');

  await sleep(SETTLE_MS);
  assert.deepEqual(rawMessages(client, { channel: name, event: 'forged' }), [], 'a forged event is not delivered');
});

test('error: auth_timestamp more than 600 s off is 401 "Timestamp expired"', { timeout: TEST_TIMEOUT_MS }, async () => {
  // The SDK reads Date.now() synchronously while signing; shift it by an hour for that one call.
  const realNow = Date.now;
  let pending;
  Date.now = () => realNow() - 3600 * 1000;
  try {
    pending = api.trigger(uniqueChannel('api-old'), 'late', {});
  } finally {
    Date.now = realNow;
  }
  const err = await rejected(pending, 401);
  assert.match(err.body, /Timestamp expired/);
});

test('error: info=user_count on /channels without a presence- prefix is 400', { timeout: TEST_TIMEOUT_MS }, async () => {
  const err = await rejected(api.get({ path: '/channels', params: { info: 'user_count' } }), 400);
  assert.ok(err.body.trim().length > 0, 'the 400 carries a message');
  await rejected(api.get({ path: '/channels', params: { filter_by_prefix: 'private-', info: 'user_count' } }), 400);
});

test('error: info=user_count on a non-presence channel is 400', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('api-no-users');
  const client = await connectClient(t);
  await subscribe(client, name);
  await rejected(api.get({ path: `/channels/${name}`, params: { info: 'user_count' } }), 400);
});

test('error: data over 10 KB is 413 and not delivered; exactly 10 KB is accepted', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('api-big');
  const client = await connectClient(t);
  const channel = await subscribe(client, name);

  const limit = 10 * 1024;
  const err = await rejected(api.trigger(name, 'too-big', 'x'.repeat(limit + 1)), 413);
  assert.ok(err.body.trim().length > 0, 'the 413 carries a message');
  const batchErr = await rejected(api.triggerBatch([{ channel: name, name: 'too-big', data: 'y'.repeat(limit + 1) }]), 413);
  assert.ok(batchErr.body.trim().length > 0, 'the 413 carries a message');

  const fits = 'z'.repeat(limit);
  const got = waitFor(channel, 'just-fits', { label: 'just-fits' });
  assert.deepEqual(await ok(api.trigger(name, 'just-fits', fits)), {});
  assert.equal(await got, fits);
  assert.deepEqual(rawMessages(client, { channel: name, event: 'too-big' }), []);
});

test('error: more than 10 events in a batch is 400', { timeout: TEST_TIMEOUT_MS }, async () => {
  const name = uniqueChannel('api-big-batch');
  const batch = Array.from({ length: 11 }, (_, i) => ({ channel: name, name: 'e', data: { i } }));
  await rejected(api.triggerBatch(batch), 400);
  // Ten is fine.
  assert.deepEqual(await ok(api.triggerBatch(batch.slice(0, 10))), {});
});

test('error: more than 100 channels or an invalid channel name is 400 (raw signed POST)', { timeout: TEST_TIMEOUT_MS }, async () => {
  // The SDK's trigger() refuses these itself; its signed post() sends them anyway.
  const many = Array.from({ length: 101 }, (_, i) => `api-many-${i}`);
  await rejected(api.post({ path: '/events', body: { name: 'e', data: '{}', channels: many } }), 400);
  await rejected(api.post({ path: '/events', body: { name: 'e', data: '{}', channels: ['bad channel name!'] } }), 400);
  await rejected(api.post({ path: '/events', body: { name: 'e', data: '{}', channels: ['ok-channel'], socket_id: 'not-a-socket-id' } }), 400);
});

test('error: unknown app id is 404', { timeout: TEST_TIMEOUT_MS }, async () => {
  await rejected(sdk({ appId: 'no-such-app' }).trigger(uniqueChannel('api-404'), 'e', {}), 404);
});
