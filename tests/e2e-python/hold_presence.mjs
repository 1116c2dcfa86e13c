// Keeps one pusher-js connection subscribed to some channels while the Python
// tests query the HTTP API, and reports what that connection receives.
//
//   node hold_presence.mjs USER_ID CHANNEL [CHANNEL ...]
//   WARREN_HOLD_SIGNIN=1 node hold_presence.mjs USER_ID [CHANNEL ...]
//
// Connects to WARREN_HOST:WARREN_PORT (default 127.0.0.1:6001) with app key
// WARREN_APP_KEY (default `app-key`; secret WARREN_APP_SECRET, default
// `app-secret`) with the official pusher-js client from ../e2e/node_modules, subscribes to
// every CHANNEL (presence channels as USER_ID, signed with the official
// `pusher` SDK) and, with WARREN_HOLD_SIGNIN=1, signs in as USER_ID (signed with the
// SDK's `authenticateUser`; pusher-js then subscribes to `#server-to-user-USER_ID`),
// then prints one line per fact on stdout:
//
//   READY <socket_id>          all subscriptions (and the sign-in) succeeded
//   EVENT <json>               {"channel","event","data"} of every non-pusher event received,
//                              and of every pusher:error
//   ERROR <text>               something went wrong; the process exits 1
//
// It exits when its stdin closes (so it never outlives the Python test
// process), on SIGTERM/SIGINT, or after WARREN_HOLD_MAX_MS (default 120 s).

import { createRequire } from 'node:module';

const require = createRequire(new URL('../e2e/package.json', import.meta.url));
let PusherClient;
let PusherServer;
try {
  PusherClient = require('pusher-js');
  PusherServer = require('pusher');
} catch (err) {
  console.log(`ERROR cannot load pusher-js/pusher from tests/e2e/node_modules (run npm ci there): ${err.message}`);
  process.exit(1);
}

const HOST = process.env.WARREN_HOST || '127.0.0.1';
const PORT = Number(process.env.WARREN_PORT || 6001);
const TIMEOUT_MS = 10000;
const APP_KEY = process.env.WARREN_APP_KEY || 'app-key';
const APP_SECRET = process.env.WARREN_APP_SECRET || 'app-secret';
const MAX_MS = Number(process.env.WARREN_HOLD_MAX_MS || 120000);

const SIGNIN = process.env.WARREN_HOLD_SIGNIN === '1';
const [userId, ...channels] = process.argv.slice(2);
if (!userId || (channels.length === 0 && !SIGNIN)) {
  console.log('ERROR usage: node hold_presence.mjs USER_ID CHANNEL [CHANNEL ...]');
  process.exit(2);
}

const sdk = new PusherServer({
  appId: 'unused', // only authorizeChannel is used: key and secret matter
  key: APP_KEY,
  secret: APP_SECRET,
  host: HOST,
  port: PORT,
  useTLS: false,
});

const client = new PusherClient(APP_KEY, {
  cluster: 'mt1',
  wsHost: HOST,
  wsPort: PORT,
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
  channelAuthorization: {
    customHandler: (params, callback) => {
      try {
        const data = params.channelName.startsWith('presence-')
          ? { user_id: userId, user_info: { name: userId } }
          : undefined;
        callback(null, sdk.authorizeChannel(params.socketId, params.channelName, data));
      } catch (err) {
        callback(err, null);
      }
    },
  },
  userAuthentication: {
    customHandler: (params, callback) => {
      try {
        callback(null, sdk.authenticateUser(params.socketId, { id: userId }));
      } catch (err) {
        callback(err, null);
      }
    },
  },
});

let finished = false;
function finish(code, line) {
  if (finished) return;
  finished = true;
  if (line) console.log(line);
  try {
    client.disconnect();
  } catch {
    // ignore
  }
  // Give the close frame a moment, then go.
  setTimeout(() => process.exit(code), 100).unref();
}

process.stdin.on('end', () => finish(0));
process.stdin.on('close', () => finish(0));
process.stdin.resume();
process.on('SIGTERM', () => finish(0));
process.on('SIGINT', () => finish(0));
setTimeout(() => finish(1, `ERROR still running after ${MAX_MS} ms`), MAX_MS).unref();

client.connection.bind('message', (msg) => {
  if (!msg || typeof msg.event !== 'string') return;
  if (msg.event.startsWith('pusher') && msg.event !== 'pusher:error') return;
  console.log(`EVENT ${JSON.stringify({ channel: msg.channel, event: msg.event, data: msg.data })}`);
});
client.connection.bind('error', (err) => {
  console.log(`ERROR connection: ${JSON.stringify(err && (err.data || err.error || err))}`);
});

const readyTimer = setTimeout(
  () => finish(1, `ERROR not subscribed within ${TIMEOUT_MS} ms (state ${client.connection.state})`),
  TIMEOUT_MS,
);

let pending = channels.length + (SIGNIN ? 1 : 0);
function done() {
  pending -= 1;
  if (pending === 0) {
    clearTimeout(readyTimer);
    console.log(`READY ${client.connection.socket_id}`);
  }
}
let subscribed = false;
client.connection.bind('connected', () => {
  if (subscribed) return; // pusher-js resubscribes by itself after a reconnect
  subscribed = true;
  for (const name of channels) {
    const channel = client.subscribe(name);
    channel.bind('pusher:subscription_succeeded', done);
    channel.bind('pusher:subscription_error', (e) => finish(1, `ERROR subscription to ${name}: ${JSON.stringify(e)}`));
  }
  if (SIGNIN) {
    // Ready once pusher-js, signed in, holds its server-to-user channel.
    client.connection.bind('message', (msg) => {
      if (msg.event === 'pusher_internal:subscription_succeeded' && msg.channel === `#server-to-user-${userId}`) {
        done();
      }
    });
    client.signin();
  }
});
