// pusher-js itself reconnecting after the server closed its connection with 4200, 4201 and
// 4100, each provoked by its real cause, not by a test-only path:
//
// - 4200: a node stops gracefully (SIGTERM), as on a deploy; the load balancer in front (a
//   proxy) sends new connections to the other node.
// - 4201: the network between pusher-js and the server stalls (a proxy stops forwarding in
//   both directions) for longer than `activity_timeout` + `pong_timeout`: the server's ping
//   goes unanswered.
// - 4100: the network stalls while events pour in: the connection's queue on the server
//   overflows (`max_outbound_queue`), as for any slow consumer.
//
// In each case pusher-js must see the code, reconnect on its own, subscribe again on its own,
// and receive what is published next. Each test starts its own `warren serve` (WARREN_BIN)
// with the limits it needs. Run by scripts/test.sh: `npm run test:reconnect`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';

import PusherServer from 'pusher';

import { APP_ID, APP_KEY, APP_SECRET, TEST_TIMEOUT_MS, createClient, subscribe, waitFor } from '../lib/harness.js';

const BIN = process.env.WARREN_BIN;
if (!BIN) throw new Error('WARREN_BIN must name the warren binary');

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** `warren serve --port PORT` with `env`; resolves once it listens. Killed when the test ends. */
async function startWarren(t, port, env = {}) {
  const child = spawn(BIN, ['serve', '--port', String(port)], {
    env: { ...process.env, WARREN_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => stop(child, 'SIGKILL'));
  await new Promise((resolve, reject) => {
    let banner = '';
    const onData = (d) => {
      banner += d;
      if (banner.includes(' listening on ')) {
        child.stdout.off('data', onData);
        child.stdout.resume();
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`warren exited with ${code} before listening`)));
  });
  return child;
}

function stop(child, signal) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

/**
 * A TCP proxy to `firstTarget` (or where `retarget` says) whose forwarding can be frozen: `freeze()` stops reading on both
 * sides of every connection (bytes wait in the kernel's buffers, which fill up, as on a
 * stalled network), `thaw()` goes on. Closed when the test ends.
 */
async function stallingProxy(t, firstTarget) {
  let target = firstTarget;
  const pairs = new Set();
  let frozen = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    const pair = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', () => setTimeout(end, 50));
    if (frozen) pair.forEach((s) => s.pause());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const [a, b] of pairs) {
      a.destroy();
      b.destroy();
    }
    server.close();
  });
  return {
    port: server.address().port,
    freeze() {
      frozen = true;
      for (const pair of pairs) pair.forEach((s) => s.pause());
    },
    thaw() {
      frozen = false;
      for (const pair of pairs) pair.forEach((s) => s.resume());
    },
    /** Sends new connections to `port` from now on (a load balancer's other node). */
    retarget(port) {
      target = port;
    },
  };
}

function sdkFor(port) {
  return new PusherServer({ appId: APP_ID, key: APP_KEY, secret: APP_SECRET, host: '127.0.0.1', port, useTLS: false });
}

const codeOf = (err) => err?.data?.code ?? err?.error?.data?.code;

/** A pusher-js client connecting to `port`, subscribed to a fresh channel. */
async function subscribedClient(t, port, name) {
  const client = createClient(t, { extra: { wsPort: port } });
  const channel = await subscribe(client, name);
  return { client, channel };
}

/**
 * Starts watching, before the cause is set off: pusher-js must report `code`, connect again
 * under a new socket id and subscribe again to the channel on its own; then an event published
 * through `sdk` reaches it. Resolves once all of that happened.
 */
function expectReconnect(code, { client, channel }, sdk, timeout) {
  const oldSocketId = client.connection.socket_id;
  const told = waitFor(client.connection, 'error', {
    filter: (e) => codeOf(e) === code,
    timeout,
    label: `an error with code ${code}`,
  });
  const resubscribed = waitFor(channel, 'pusher:subscription_succeeded', {
    timeout,
    label: 'subscription_succeeded again',
  });
  return (async () => {
    await told;
    await resubscribed;
    assert.equal(client.connection.state, 'connected');
    assert.notEqual(client.connection.socket_id, oldSocketId, 'a new connection');
    const got = waitFor(channel, 'after', { timeout, label: 'the event published after the reconnect' });
    await sdk.trigger(channel.name, 'after', { code });
    assert.deepEqual(await got, { code });
  })();
}

test('4200: a graceful stop, and pusher-js reconnects to the other node at once', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  // Two nodes behind a "load balancer" (the proxy): one is stopped as on a deploy.
  const [portA, portB] = [await freePort(), await freePort()];
  const a = await startWarren(t, portA);
  await startWarren(t, portB);
  const balancer = await stallingProxy(t, portA);
  const sub = await subscribedClient(t, balancer.port, `stop-${process.pid}`);
  const done = expectReconnect(4200, sub, sdkFor(portB), 10000);
  balancer.retarget(portB);
  await stop(a, 'SIGTERM');
  await done;
});

test('4201: a stalled network misses the ping, and pusher-js reconnects once it flows again', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const port = await freePort();
  await startWarren(t, port, { WARREN_SERVER__ACTIVITY_TIMEOUT: '1', WARREN_SERVER__PONG_TIMEOUT: '1' });
  const proxy = await stallingProxy(t, port);
  const sub = await subscribedClient(t, proxy.port, `stall-${process.pid}`);
  const done = expectReconnect(4201, sub, sdkFor(port), 15000);
  proxy.freeze();
  // Idle for activity_timeout (1 s), then no pong within pong_timeout (1 s): closed with 4201.
  await new Promise((r) => setTimeout(r, 4000));
  proxy.thaw();
  await done;
});

test('4100: events pour into a stalled connection, and pusher-js reconnects after the overflow', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const port = await freePort();
  await startWarren(t, port, { WARREN_SERVER__MAX_OUTBOUND_QUEUE: '16', WARREN_SERVER__WRITE_TIMEOUT_MS: '30000' });
  const proxy = await stallingProxy(t, port);
  const name = `flood-${process.pid}`;
  const sub = await subscribedClient(t, proxy.port, name);
  const sdk = sdkFor(port);
  const done = expectReconnect(4100, sub, sdk, 20000);
  proxy.freeze();
  // More than the kernel's buffers hold (about 20 MB in 9 KB events): the server's socket
  // stops taking bytes, its queue for the connection overflows.
  const data = 'x'.repeat(9000);
  for (let i = 0; i < 240; i += 1) {
    const batch = [];
    for (let j = 0; j < 10; j += 1) batch.push({ channel: name, name: 'flood', data });
    await sdk.triggerBatch(batch);
  }
  proxy.thaw();
  await done;
});
