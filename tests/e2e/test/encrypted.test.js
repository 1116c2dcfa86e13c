// End-to-end encrypted channels (docs/PROTOCOL.md, "Encrypted channels"): the `pusher`
// server SDK encrypts with the app's master key, the auth endpoint hands pusher-js the
// channel's shared secret, pusher-js decrypts; Warren only relays ciphertext.

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
  record,
  sleep,
  subscribe,
  uniqueChannel,
  waitFor,
} from '../lib/harness.js';

before(() => assertServerReachable());

/** The app's master key: only the app server and (per channel) its clients know it. */
const MASTER_KEY = '7Wpz1OcdT4d/YQH1Q+/afCBnR7U/1k7N0qQ41RhmYk4=';

/** The app server: signs subscriptions (adding `shared_secret`) and encrypts what it triggers. */
const appServer = new PusherServer({
  appId: APP_ID,
  key: APP_KEY,
  secret: APP_SECRET,
  host: HOST,
  port: PORT,
  useTLS: false,
  timeout: EVENT_TIMEOUT_MS,
  encryptionMasterKeyBase64: MASTER_KEY,
});

const isPusherError = (e) => e && e.type === 'PusherError';

test('an encrypted event is decrypted by pusher-js; Warren relays only ciphertext', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('private-encrypted');
  const client = await connectClient(t, { sdk: appServer });
  const channel = await subscribe(client, name);

  const secret = { text: 'meet at noon', n: 42, unicode: 'héllo ✓' };
  const received = waitFor(channel, 'secret-event');
  const res = await appServer.trigger(name, 'secret-event', secret);
  assert.equal(res.status, 200);
  assert.deepEqual(await received, secret);

  const [raw] = rawMessages(client, { channel: name, event: 'secret-event' });
  assert.ok(raw, 'the frame reached the connection');
  assert.deepEqual(Object.keys(raw.data).sort(), ['ciphertext', 'nonce']);
  assert.ok(!JSON.stringify(raw).includes('meet at noon'), 'no plaintext on the wire');
});

test('client events on an encrypted channel are refused by the server too', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('private-encrypted');
  const [sender, other] = await Promise.all([
    connectClient(t, { sdk: appServer }),
    connectClient(t, { sdk: appServer }),
  ]);
  const [senderChannel, otherChannel] = await Promise.all([subscribe(sender, name), subscribe(other, name)]);
  // pusher-js refuses them itself...
  assert.throws(() => senderChannel.trigger('client-x', { a: 1 }), /encrypted/);
  const leaked = record(otherChannel, 'client-x');

  // ...and a client that sends one anyway gets a pusher:error; nobody receives it.
  const error = waitFor(sender.connection, 'error', { filter: isPusherError, label: 'pusher:error on the sender' });
  sender.send_event('client-x', { nonce: 'n', ciphertext: 'c' }, name);
  const err = await error;
  assert.equal(err.data.code, null);
  assert.match(err.data.message, /encrypted/);
  await sleep(SETTLE_MS);
  assert.deepEqual(leaked, []);
  assert.deepEqual(rawMessages(other, { channel: name, event: 'client-x' }), []);
  assert.equal(sender.connection.state, 'connected');
});

test('one event to an encrypted channel and another channel is 400', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const encrypted = uniqueChannel('private-encrypted');
  const plain = uniqueChannel('public');
  const client = await connectClient(t);
  const plainChannel = await subscribe(client, plain);
  const leaked = record(plainChannel, 'e');
  // The SDK refuses this itself; a raw signed request shows what the server does.
  assert.throws(() => appServer.trigger([encrypted, plain], 'e', {}), /multiple channels/);
  await assert.rejects(
    appServer.post({ path: '/events', body: { name: 'e', channels: [encrypted, plain], data: '{}' } }),
    (err) => err.status === 400,
  );
  await sleep(SETTLE_MS);
  assert.deepEqual(leaked, []);
});
