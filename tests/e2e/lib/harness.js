// Shared helpers for the Warren end-to-end suite.
//
// Every test drives the server exclusively through the official Pusher
// libraries: `pusher-js` (the WebSocket client) and `pusher` (the server SDK,
// used here only to sign channel authorizations).

import PusherClient from 'pusher-js';
import PusherServer from 'pusher';

export const HOST = process.env.WARREN_HOST || '127.0.0.1';
export const PORT = Number(process.env.WARREN_PORT || 6001);
export const APP_ID = 'app-id';
export const APP_KEY = 'app-key';
export const APP_SECRET = 'app-secret';

/** How long to wait for any single expected event before failing. */
export const EVENT_TIMEOUT_MS = Number(process.env.WARREN_E2E_EVENT_TIMEOUT_MS || 5000);
/** Upper bound for a whole test (passed as the `timeout` option of node:test). */
export const TEST_TIMEOUT_MS = Number(process.env.WARREN_E2E_TEST_TIMEOUT_MS || 30000);
/** Short pause used when asserting that something does NOT happen. */
export const SETTLE_MS = Number(process.env.WARREN_E2E_SETTLE_MS || 300);

if (process.env.WARREN_E2E_DEBUG) {
  PusherClient.logToConsole = true;
}

// Process-level watchdog: whatever happens (a leaked socket, a hung promise),
// this test file's process terminates, so `node --test` always finishes.
// unref() keeps it from holding the event loop open on its own.
const WATCHDOG_MS = Number(process.env.WARREN_E2E_FILE_TIMEOUT_MS || 120000);
setTimeout(() => {
  console.error(`[warren-e2e] watchdog: test file still running after ${WATCHDOG_MS} ms, exiting`);
  process.exit(1);
}, WATCHDOG_MS).unref();

/** Server SDK instance with the right credentials. */
export const serverSdk = new PusherServer({
  appId: APP_ID,
  key: APP_KEY,
  secret: APP_SECRET,
  host: HOST,
  port: PORT,
  useTLS: false,
});

/** Same app key, wrong secret: produces well-formed but invalid signatures. */
export const wrongSecretSdk = new PusherServer({
  appId: APP_ID,
  key: APP_KEY,
  secret: 'definitely-not-the-app-secret',
  host: HOST,
  port: PORT,
  useTLS: false,
});

let nameCounter = 0;
/** A channel name that no other test (or earlier run) uses. */
export function uniqueChannel(prefix) {
  nameCounter += 1;
  const rand = Math.random().toString(36).slice(2, 8);
  return `${prefix}-e2e-${process.pid}-${Date.now().toString(36)}-${rand}-${nameCounter}`;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Create a pusher-js client (not yet waited for).
 *
 * @param {import('node:test').TestContext} t  the client is disconnected when the test ends
 * @param {object} [opts]
 * @param {{user_id: string|number, user_info?: any}} [opts.presence]  channel_data for presence channels
 * @param {object} [opts.sdk]  server SDK used to sign (default: correct credentials)
 * @param {string} [opts.key]  app key to connect with (default `app-key`)
 * @param {object} [opts.extra]  extra pusher-js options
 */
export function createClient(t, opts = {}) {
  const sdk = opts.sdk || serverSdk;
  const client = new PusherClient(opts.key || APP_KEY, {
    cluster: 'mt1',
    wsHost: HOST,
    wsPort: PORT,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: (params, callback) => {
        try {
          const data = params.channelName.startsWith('presence-') ? opts.presence : undefined;
          callback(null, sdk.authorizeChannel(params.socketId, params.channelName, data));
        } catch (err) {
          callback(err, null);
        }
      },
    },
    ...(opts.extra || {}),
  });

  // Record every decoded protocol message the connection hands to pusher-js,
  // including events for channels pusher-js no longer tracks.
  client.__messages = [];
  client.connection.bind('message', (msg) => client.__messages.push(msg));
  client.__errors = [];
  client.connection.bind('error', (err) => client.__errors.push(err));

  if (t) {
    t.after(() => disconnect(client));
  }
  return client;
}

/** Create a client and wait until it is connected. */
export async function connectClient(t, opts = {}) {
  const client = createClient(t, opts);
  await waitForConnected(client);
  return client;
}

export async function waitForConnected(client, timeout = EVENT_TIMEOUT_MS) {
  if (client.connection.state === 'connected') return client;
  await waitFor(client.connection, 'connected', { timeout, label: 'connection state "connected"' });
  return client;
}

/** Disconnect a client; never throws, resolves once the socket is closed (or after a short grace time). */
export async function disconnect(client) {
  if (!client || client.connection.state === 'disconnected' || client.__disconnected) return;
  client.__disconnected = true;
  const closed = waitFor(client.connection, 'disconnected', { timeout: 2000 }).catch(() => {});
  try {
    client.disconnect();
  } catch {
    // ignore
  }
  await closed;
}

/**
 * Resolve with the arguments of the next `event` emitted by a pusher-js
 * Dispatcher (a channel, `client.connection`, or the client itself) for
 * which `filter(...args)` is truthy; reject after `timeout` ms.
 * Resolves with the first argument, or with all arguments if `all` is set.
 */
export function waitFor(emitter, event, { timeout = EVENT_TIMEOUT_MS, filter, all = false, label } = {}) {
  return new Promise((resolve, reject) => {
    const onEvent = (...args) => {
      let ok;
      try {
        ok = filter ? filter(...args) : true;
      } catch (err) {
        ok = false;
      }
      if (!ok) return;
      clearTimeout(timer);
      emitter.unbind(event, onEvent);
      resolve(all ? args : args[0]);
    };
    const timer = setTimeout(() => {
      emitter.unbind(event, onEvent);
      reject(new Error(`timed out after ${timeout} ms waiting for ${label || `event "${event}"`}`));
    }, timeout);
    emitter.bind(event, onEvent);
  });
}

/** Record every emission of `event`; returns the (live) array of argument lists. */
export function record(emitter, event) {
  const seen = [];
  emitter.bind(event, (...args) => seen.push(args));
  return seen;
}

/**
 * Subscribe and wait for pusher:subscription_succeeded (or fail on
 * pusher:subscription_error / timeout). Resolves with the channel.
 */
export async function subscribe(client, channelName, timeout = EVENT_TIMEOUT_MS) {
  await waitForConnected(client, timeout);
  const channel = client.subscribe(channelName);
  await new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      channel.unbind('pusher:subscription_succeeded', onOk);
      channel.unbind('pusher:subscription_error', onErr);
    };
    const onOk = () => {
      done();
      resolve();
    };
    const onErr = (data) => {
      done();
      reject(new Error(`subscription to ${channelName} failed: ${JSON.stringify(data)}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeout} ms waiting for subscription_succeeded on ${channelName}`));
    }, timeout);
    channel.bind('pusher:subscription_succeeded', onOk);
    channel.bind('pusher:subscription_error', onErr);
  });
  return channel;
}

/** Messages for `channel` named `event` that reached this client's connection (even if pusher-js dropped them). */
export function rawMessages(client, { channel, event } = {}) {
  return client.__messages.filter(
    (m) => (channel === undefined || m.channel === channel) && (event === undefined || m.event === event),
  );
}

/**
 * Fail fast (instead of one 5 s timeout per connection) when nothing listens
 * on WARREN_HOST:WARREN_PORT. Meant for a file-level `before()` hook.
 */
export async function assertServerReachable(timeout = 3000) {
  const net = await import('node:net');
  await new Promise((resolve, reject) => {
    const socket = net.connect({ host: HOST, port: PORT });
    const fail = (why) => {
      socket.destroy();
      reject(new Error(`Warren is not reachable at ${HOST}:${PORT} (${why}); set WARREN_HOST / WARREN_PORT`));
    };
    socket.setTimeout(timeout, () => fail('timeout'));
    socket.once('error', (err) => fail(err.code || err.message));
    socket.once('connect', () => {
      socket.end();
      resolve();
    });
  });
}
