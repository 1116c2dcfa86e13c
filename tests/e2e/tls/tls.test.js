// Native TLS (`[server.tls]`) with the official clients: pusher-js with `forceTLS: true` and
// the `pusher` server SDK with `useTLS: true`, against a server that scripts/e2e-tls.sh
// starts with a certificate from a CA it makes on the spot. Node trusts that CA through
// NODE_EXTRA_CA_CERTS, as an operator's clients would trust a private CA. The last test swaps
// the certificate files and sends SIGHUP while clients are connected.
//
// Environment (set by scripts/e2e-tls.sh): WARREN_TLS_PORT, WARREN_TLS_PID (the server's
// process), WARREN_TLS_DIR (server.pem / server.key in use, next.pem / next.key to swap in).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';

import PusherServer from 'pusher';

import {
  APP_ID,
  APP_KEY,
  APP_SECRET,
  EVENT_TIMEOUT_MS,
  TEST_TIMEOUT_MS,
  connectClient,
  sleep,
  subscribe,
  uniqueChannel,
  waitFor,
} from '../lib/harness.js';

const HOST = '127.0.0.1';
const PORT = Number(process.env.WARREN_TLS_PORT);
const DIR = process.env.WARREN_TLS_DIR;
const PID = Number(process.env.WARREN_TLS_PID);
assert.ok(PORT && DIR && PID, 'run through scripts/e2e-tls.sh (WARREN_TLS_PORT, _DIR, _PID)');

const sdk = new PusherServer({
  appId: APP_ID,
  key: APP_KEY,
  secret: APP_SECRET,
  host: HOST,
  port: PORT,
  useTLS: true,
  timeout: EVENT_TIMEOUT_MS,
});

/** A pusher-js client over wss:// only, as a page served over https would connect. */
function connectTls(t) {
  return connectClient(t, {
    sdk,
    extra: { wsHost: HOST, wssPort: PORT, forceTLS: true, enabledTransports: ['ws', 'wss'] },
  });
}

/** The SHA-256 fingerprint of the certificate the server presents to a new connection. */
function presented() {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: HOST, port: PORT, servername: 'localhost' }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fingerprint);
    });
    socket.once('error', reject);
  });
}

function fingerprintOf(file) {
  return new X509Certificate(fs.readFileSync(path.join(DIR, file))).fingerprint256;
}

test('pusher-js with forceTLS receives what the SDK with useTLS triggers', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const client = await connectTls(t);
  assert.equal(client.connection.isUsingTLS(), true);
  assert.match(client.connection.socket_id, /^\d+\.\d+$/);
  const channel = uniqueChannel('private-tls');
  const subscribed = await subscribe(client, channel);
  const received = waitFor(subscribed, 'greeting');
  await sdk.trigger(channel, 'greeting', { over: 'tls' });
  assert.deepEqual(await received, { over: 'tls' });
});

test('the SDK with useTLS queries the API', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const client = await connectTls(t);
  const channel = uniqueChannel('tls-query');
  await subscribe(client, channel);
  const response = await sdk.get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } });
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { occupied: true, subscription_count: 1 });
});

test('SIGHUP swaps the certificate; connected clients keep receiving', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const before = await presented();
  assert.equal(before, fingerprintOf('server.pem'));
  const next = fingerprintOf('next.pem');
  assert.notEqual(before, next);

  const client = await connectTls(t);
  const channel = uniqueChannel('tls-reload');
  const subscribed = await subscribe(client, channel);

  fs.copyFileSync(path.join(DIR, 'next.pem'), path.join(DIR, 'server.pem'));
  fs.copyFileSync(path.join(DIR, 'next.key'), path.join(DIR, 'server.key'));
  process.kill(PID, 'SIGHUP');
  // The signal is handled in the server's own time: look until the new one shows.
  let now = before;
  for (let i = 0; i < 100 && now !== next; i += 1) {
    await sleep(50);
    now = await presented();
  }
  assert.equal(now, next, 'new connections get the new certificate');

  const received = waitFor(subscribed, 'after-reload');
  await sdk.trigger(channel, 'after-reload', { still: 'connected' });
  assert.deepEqual(await received, { still: 'connected' });
  assert.equal(client.connection.state, 'connected');

  const fresh = await connectTls(t);
  const freshChannel = await subscribe(fresh, channel);
  const both = [waitFor(subscribed, 'both'), waitFor(freshChannel, 'both')];
  await sdk.trigger(channel, 'both', { n: 2 });
  assert.deepEqual(await Promise.all(both), [{ n: 2 }, { n: 2 }]);
});
