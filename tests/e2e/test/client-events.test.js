import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  assertServerReachable,
  SETTLE_MS,
  TEST_TIMEOUT_MS,
  connectClient,
  rawMessages,
  record,
  sleep,
  subscribe,
  uniqueChannel,
  waitFor,
} from '../lib/harness.js';

before(() => assertServerReachable());

const isPusherError = (e) => e && e.type === 'PusherError';

test('client event on a private channel reaches the other subscriber and is not echoed', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('private');
  const [sender, receiver] = await Promise.all([connectClient(t), connectClient(t)]);
  const [senderChannel, receiverChannel] = await Promise.all([subscribe(sender, name), subscribe(receiver, name)]);
  const echoed = record(senderChannel, 'client-x');

  const received = waitFor(receiverChannel, 'client-x', { all: true });
  assert.equal(senderChannel.trigger('client-x', { a: 1 }), true);
  const [data] = await received;
  assert.deepEqual(data, { a: 1 });
  const [raw] = rawMessages(receiver, { channel: name, event: 'client-x' });
  assert.equal(raw.user_id, undefined, 'no user_id on non-presence client events');

  // Barrier: the receiver answers; by the time the answer reaches the sender,
  // any (wrong) echo of client-x would already have arrived.
  const ack = waitFor(senderChannel, 'client-ack');
  receiverChannel.trigger('client-ack', { ok: true });
  assert.deepEqual(await ack, { ok: true });
  await sleep(SETTLE_MS);
  assert.deepEqual(echoed, [], 'sender must not receive its own client event');
  assert.deepEqual(rawMessages(sender, { channel: name, event: 'client-x' }), []);
  assert.deepEqual(rawMessages(receiver, { channel: name, event: 'client-ack' }), []);
  assert.deepEqual(sender.__errors.filter(isPusherError), []);
});

test('client events preserve data of various JSON shapes', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('private');
  const [sender, receiver] = await Promise.all([connectClient(t), connectClient(t)]);
  const [senderChannel, receiverChannel] = await Promise.all([subscribe(sender, name), subscribe(receiver, name)]);
  const payloads = [
    { nested: { list: [1, 'two', null, true], unicode: 'héllo ✓ 日本' }, quote: 'say "hi"\n' },
    ['an', 'array'],
    'a plain string',
    12345,
  ];
  const got = record(receiverChannel, 'client-shape');
  for (const p of payloads) senderChannel.trigger('client-shape', p);
  const deadline = Date.now() + 5000;
  while (got.length < payloads.length && Date.now() < deadline) await sleep(20);
  assert.deepEqual(got.map(([d]) => d), payloads);
});

test('client event on a presence channel carries the sender user_id', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('presence');
  const ann = await connectClient(t, { presence: { user_id: 'ann', user_info: { name: 'Ann' } } });
  const ben = await connectClient(t, { presence: { user_id: 'ben' } });
  const annChannel = await subscribe(ann, name);
  const benChannel = await subscribe(ben, name);
  const echoed = record(annChannel, 'client-hello');

  const received = waitFor(benChannel, 'client-hello', { all: true });
  annChannel.trigger('client-hello', { msg: 'hi' });
  const [data, metadata] = await received;
  assert.deepEqual(data, { msg: 'hi' });
  assert.deepEqual(metadata, { user_id: 'ann' });
  const [raw] = rawMessages(ben, { channel: name, event: 'client-hello' });
  assert.equal(raw.user_id, 'ann');

  // And the other way round; also serves as the no-echo barrier.
  const back = waitFor(annChannel, 'client-reply', { all: true });
  benChannel.trigger('client-reply', { msg: 'hello' });
  const [replyData, replyMeta] = await back;
  assert.deepEqual(replyData, { msg: 'hello' });
  assert.equal(replyMeta.user_id, 'ben');
  await sleep(SETTLE_MS);
  assert.deepEqual(echoed, []);
});

test('client event on a public channel is rejected with pusher:error', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('public');
  const [sender, other] = await Promise.all([connectClient(t), connectClient(t)]);
  const [senderChannel, otherChannel] = await Promise.all([subscribe(sender, name), subscribe(other, name)]);
  const leaked = record(otherChannel, 'client-x');

  const error = waitFor(sender.connection, 'error', { filter: isPusherError, label: 'pusher:error on the sender connection' });
  senderChannel.trigger('client-x', { a: 1 });
  const err = await error;
  assert.equal(typeof err.data, 'object');
  assert.equal(typeof err.data.message, 'string');
  assert.ok(err.data.message.length > 0);
  assert.ok(err.data.code === null || Number.isInteger(err.data.code), `code: ${err.data.code}`);
  assert.ok(!(err.data.code >= 4000 && err.data.code < 4300), `non-fatal error must not carry a close code, got ${err.data.code}`);

  await sleep(SETTLE_MS);
  assert.deepEqual(leaked, [], 'client event must not be delivered on a public channel');
  assert.deepEqual(rawMessages(other, { channel: name, event: 'client-x' }), []);

  // The socket stays open and usable.
  assert.equal(sender.connection.state, 'connected');
  const socketId = sender.connection.socket_id;
  await subscribe(sender, uniqueChannel('public'));
  assert.equal(sender.connection.socket_id, socketId);
});

test('client event on a channel the sender is not subscribed to is rejected', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('private');
  const [sender, member] = await Promise.all([connectClient(t), connectClient(t)]);
  const memberChannel = await subscribe(member, name);
  const leaked = record(memberChannel, 'client-sneak');

  const error = waitFor(sender.connection, 'error', { filter: isPusherError, label: 'pusher:error on the sender connection' });
  sender.send_event('client-sneak', { a: 1 }, name);
  await error;
  await sleep(SETTLE_MS);
  assert.deepEqual(leaked, []);
  assert.equal(sender.connection.state, 'connected');
});

test('after unsubscribing, client events are no longer received', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const gone = uniqueChannel('private');
  const kept = uniqueChannel('private');
  const [sender, receiver] = await Promise.all([connectClient(t), connectClient(t)]);
  const senderGone = await subscribe(sender, gone);
  const senderKept = await subscribe(sender, kept);
  const receiverGone = await subscribe(receiver, gone);
  const receiverKept = await subscribe(receiver, kept);

  // Sanity: delivery works before unsubscribing.
  const first = waitFor(receiverGone, 'client-x');
  senderGone.trigger('client-x', { n: 1 });
  assert.deepEqual(await first, { n: 1 });

  receiver.unsubscribe(gone);
  // Barrier for the unsubscribe: a later subscribe on the same socket is answered after it is processed.
  await subscribe(receiver, uniqueChannel('public'));

  // Sender triggers on the abandoned channel, then on the kept one. Server-side
  // ordering means a wrongly delivered event on `gone` would arrive first.
  const keptEvent = waitFor(receiverKept, 'client-y');
  senderGone.trigger('client-x', { n: 2 });
  senderKept.trigger('client-y', { n: 3 });
  assert.deepEqual(await keptEvent, { n: 3 });
  await sleep(SETTLE_MS);

  const onGone = rawMessages(receiver, { channel: gone, event: 'client-x' });
  assert.deepEqual(onGone.map((m) => m.data), [{ n: 1 }], 'only the event sent before unsubscribing');
  assert.deepEqual(sender.__errors.filter(isPusherError), []);
});
