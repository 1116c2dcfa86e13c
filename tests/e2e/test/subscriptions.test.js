import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  assertServerReachable,
  TEST_TIMEOUT_MS,
  connectClient,
  serverSdk,
  subscribe,
  uniqueChannel,
  waitFor,
  wrongSecretSdk,
} from '../lib/harness.js';

before(() => assertServerReachable());

test('public channel: pusher:subscription_succeeded fires', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const client = await connectClient(t);
  const name = uniqueChannel('public');
  const channel = client.subscribe(name);
  const data = await waitFor(channel, 'pusher:subscription_succeeded');
  assert.equal(channel.subscribed, true);
  // The server always sends data ("{}") for non-presence subscription_succeeded.
  assert.deepEqual(data, {});
});

test('private channel with a valid signature: subscription succeeds', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const client = await connectClient(t);
  const name = uniqueChannel('private');
  const channel = client.subscribe(name);
  const errors = [];
  channel.bind('pusher:subscription_error', (e) => errors.push(e));
  await waitFor(channel, 'pusher:subscription_succeeded');
  assert.equal(channel.subscribed, true);
  assert.deepEqual(errors, []);
});

test('private channel with a bad signature: pusher:subscription_error 401, socket stays usable', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const bad = await connectClient(t, { sdk: wrongSecretSdk });
  const name = uniqueChannel('private');
  const channel = bad.subscribe(name);
  const succeeded = [];
  channel.bind('pusher:subscription_succeeded', () => succeeded.push(true));

  const err = await waitFor(channel, 'pusher:subscription_error', { label: 'pusher:subscription_error' });
  assert.equal(typeof err, 'object', `error payload: ${JSON.stringify(err)}`);
  assert.equal(err.type, 'AuthError', `error payload: ${JSON.stringify(err)}`);
  assert.equal(err.status, 401, `error payload: ${JSON.stringify(err)}`);
  assert.equal(typeof err.error, 'string');
  assert.ok(err.error.length > 0);
  assert.equal(channel.subscribed, false);
  assert.deepEqual(succeeded, []);

  // The failure is not fatal: the connection stays open and public channels still work.
  assert.equal(bad.connection.state, 'connected');
  const socketId = bad.connection.socket_id;
  await subscribe(bad, uniqueChannel('public'));
  assert.equal(bad.connection.socket_id, socketId, 'connection must not have been re-established');
});

test('private channel signed for a different socket is rejected', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  // Sign for a socket id that is not ours: the signature is valid HMAC but over the wrong string.
  const forger = {
    authorizeChannel: (socketId, channelName, data) => serverSdk.authorizeChannel('1.1', channelName, data),
  };
  const client = await connectClient(t, { sdk: forger });
  const channel = client.subscribe(uniqueChannel('private'));
  const err = await waitFor(channel, 'pusher:subscription_error');
  assert.equal(err.type, 'AuthError');
  assert.equal(err.status, 401);
  assert.equal(channel.subscribed, false);
});

test('presence channel with a bad signature is rejected', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const client = await connectClient(t, { sdk: wrongSecretSdk, presence: { user_id: 'mallory' } });
  const channel = client.subscribe(uniqueChannel('presence'));
  const err = await waitFor(channel, 'pusher:subscription_error');
  assert.equal(err.type, 'AuthError');
  assert.equal(err.status, 401);
  assert.equal(channel.subscribed, false);
});
