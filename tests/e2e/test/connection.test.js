import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  assertServerReachable,
  TEST_TIMEOUT_MS,
  createClient,
  connectClient,
  waitFor,
} from '../lib/harness.js';

before(() => assertServerReachable());

test('pusher-js connects and gets a well-formed socket_id', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const client = await connectClient(t);
  assert.equal(client.connection.state, 'connected');
  const socketId = client.connection.socket_id;
  assert.equal(typeof socketId, 'string');
  assert.match(socketId, /^\d+\.\d+$/);
});

test('two connections get distinct socket_ids', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const [a, b] = await Promise.all([connectClient(t), connectClient(t)]);
  assert.match(a.connection.socket_id, /^\d+\.\d+$/);
  assert.match(b.connection.socket_id, /^\d+\.\d+$/);
  assert.notEqual(a.connection.socket_id, b.connection.socket_id);
});

test('unknown app key is refused with error code 4001 and no reconnect loop', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const client = createClient(t, { key: 'no-such-app-key' });
  const states = [];
  client.connection.bind('state_change', (s) => states.push(s.current));

  // pusher-js surfaces the handshake failure as a WebSocketError wrapping the PusherError.
  const codeOf = (err) => err?.data?.code ?? err?.error?.data?.code;
  const err = await waitFor(client.connection, 'error', {
    filter: (e) => codeOf(e) === 4001,
    label: 'connection error with code 4001',
  });
  assert.equal(codeOf(err), 4001);

  // A 40xx code means "refused": pusher-js must end up disconnected, never connected.
  if (client.connection.state !== 'disconnected') {
    await waitFor(client.connection, 'disconnected', { label: 'state "disconnected" after refusal' });
  }
  assert.ok(!states.includes('connected'), `states seen: ${states.join(' -> ')}`);
});
