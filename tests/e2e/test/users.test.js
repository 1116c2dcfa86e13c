// Users with the official clients: pusher-js `signin()`, `user.bind` and
// `user.watchlist.bind`; the `pusher` Node SDK's `authenticateUser`, `sendToUser`
// and `terminateUserConnections`. The server must run the demo app with
// `watchlist_events = true` (scripts/test.sh sets WARREN_APPS__0__WATCHLIST_EVENTS).

import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  assertServerReachable,
  SETTLE_MS,
  TEST_TIMEOUT_MS,
  connectClient,
  rawMessages,
  serverSdk,
  sleep,
  subscribe,
  uniqueChannel,
  waitFor,
  wrongSecretSdk,
} from '../lib/harness.js';

before(() => assertServerReachable());

let userCounter = 0;
/** A user id no other test (or earlier run) uses. */
function uniqueUser(prefix) {
  userCounter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${userCounter}`;
}

/** pusher-js options that sign users in as `userData`, signed by `sdk` (the Node SDK). */
function signinAs(userData, sdk = serverSdk) {
  return {
    userAuthentication: {
      customHandler: (params, callback) => {
        try {
          callback(null, sdk.authenticateUser(params.socketId, userData));
        } catch (err) {
          callback(err, null);
        }
      },
    },
  };
}

/**
 * Connects a client that signs in as `userData` and waits until it is signed in and
 * subscribed to its server-to-user channel. Resolves with [client, signin_success data].
 */
async function signedIn(t, userData, opts = {}) {
  const client = await connectClient(t, { ...opts, extra: signinAs(userData) });
  const success = waitFor(client.connection, 'message', {
    filter: (m) => m.event === 'pusher:signin_success',
    label: 'pusher:signin_success',
  });
  client.signin();
  const message = await success;
  // pusher-js created the user's channel while handling signin_success.
  const channel = client.user.serverToUserChannel;
  assert.equal(channel.name, `#server-to-user-${userData.id}`);
  if (!channel.subscribed) {
    await waitFor(channel, 'pusher:subscription_succeeded', { label: 'server-to-user subscription' });
  }
  return [client, message.data];
}

test('signin: signin_success echoes the user data, and pusher-js knows the user', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const id = uniqueUser('signin');
  const [client, data] = await signedIn(t, { id, user_info: { name: 'Ann' } });
  assert.equal(typeof data.user_data, 'string');
  assert.deepEqual(JSON.parse(data.user_data), { id, user_info: { name: 'Ann' } });
  assert.deepEqual(client.user.user_data, { id, user_info: { name: 'Ann' } });
  assert.equal(client.connection.state, 'connected');
});

test('signin: a bad signature is refused with 4009 and pusher-js stops', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const id = uniqueUser('forged');
  const client = await connectClient(t, { extra: signinAs({ id }, wrongSecretSdk) });
  const error = waitFor(client.connection, 'error', { label: 'connection error' });
  const disconnected = waitFor(client.connection, 'disconnected', { label: 'disconnected after 4009' });
  client.signin();
  const err = await error;
  assert.equal(err.data.code, 4009, JSON.stringify(err));
  await disconnected;
  await sleep(SETTLE_MS);
  assert.equal(client.connection.state, 'disconnected', 'no reconnection after 4009');
});

test('user.bind: sendToUser reaches every connection of the user and nobody else', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const id = uniqueUser('to-user');
  const [first] = await signedIn(t, { id });
  const [second] = await signedIn(t, { id });
  const [other] = await signedIn(t, { id: uniqueUser('bystander') });
  const strays = [];
  other.user.bind('for-you', (data) => strays.push(data));

  const got = [first, second].map((c) => waitFor(c.user, 'for-you', { label: 'user event' }));
  const response = await serverSdk.sendToUser(id, 'for-you', { hello: 'there' });
  assert.equal(response.status, 200);
  assert.deepEqual(await Promise.all(got), [{ hello: 'there' }, { hello: 'there' }]);
  await sleep(SETTLE_MS);
  assert.deepEqual(strays, []);
});

test('presence: a signed-in user joins without channel_data, as itself', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const id = uniqueUser('presence-user');
  // No `presence` option: the channel authorization carries no channel_data.
  const [client] = await signedIn(t, { id, user_info: { name: 'Signed In' } });
  const name = uniqueChannel('presence-signed-in');
  const channel = client.subscribe(name);
  const members = await waitFor(channel, 'pusher:subscription_succeeded');
  assert.equal(members.count, 1);
  assert.deepEqual(members.me, { id, info: { name: 'Signed In' } });
});

test('terminateUserConnections: closes the user\'s connections with 4009 and ends their presence', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const id = uniqueUser('terminated');
  const name = uniqueChannel('presence-terminate');
  const observer = await connectClient(t, { presence: { user_id: uniqueUser('observer') } });
  const observed = await subscribe(observer, name);
  const [a] = await signedIn(t, { id });
  const [b] = await signedIn(t, { id });
  const [bystander] = await signedIn(t, { id: uniqueUser('stays') });
  const added = waitFor(observed, 'pusher:member_added', { label: 'member_added' });
  await subscribe(a, name);
  assert.equal((await added).id, id);

  const errors = [a, b].map((c) => waitFor(c.connection, 'error', { label: 'terminate error' }));
  const removed = waitFor(observed, 'pusher:member_removed', { label: 'member_removed' });
  const response = await serverSdk.terminateUserConnections(id);
  assert.equal(response.status, 200);
  for (const err of await Promise.all(errors)) {
    assert.equal(err.data.code, 4009, JSON.stringify(err));
  }
  assert.equal((await removed).id, id);
  await sleep(SETTLE_MS);
  assert.equal(a.connection.state, 'disconnected');
  assert.equal(b.connection.state, 'disconnected');
  assert.equal(bystander.connection.state, 'connected');
});

test('user.watchlist.bind: the initial state, then online and offline', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const watched = uniqueUser('watched');
  const alreadyOn = uniqueUser('already-on');
  await signedIn(t, { id: alreadyOn });

  // Bind before signing in: the initial state follows signin_success at once.
  const watcher = await connectClient(t, { extra: signinAs({ id: uniqueUser('watcher'), watchlist: [watched, alreadyOn] }) });
  const seen = [];
  for (const status of ['online', 'offline']) {
    watcher.user.watchlist.bind(status, (event) => seen.push([status, event.user_ids]));
  }
  const initial = waitFor(watcher.connection, 'message', {
    filter: (m) => m.event === 'pusher_internal:watchlist_events',
    label: 'initial watchlist_events',
  });
  watcher.signin();
  await initial;
  assert.deepEqual(seen, [['online', [alreadyOn]], ['offline', [watched]]]);

  // The watched user has no watchlist of its own.
  const online = waitFor(watcher.user.watchlist, 'online', { label: 'online' });
  const [u] = await signedIn(t, { id: watched });
  assert.deepEqual((await online).user_ids, [watched]);

  const offline = waitFor(watcher.user.watchlist, 'offline', { label: 'offline' });
  u.disconnect();
  assert.deepEqual((await offline).user_ids, [watched]);
  assert.equal(rawMessages(watcher, { event: 'pusher_internal:watchlist_events' }).length, 3);
});

test('watchlist: over 100 ids, the first 100 are kept and pusher:error 4302 follows signin_success', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const ids = Array.from({ length: 105 }, (_, i) => uniqueUser(`w${i}`));
  const client = await connectClient(t, { extra: signinAs({ id: uniqueUser('greedy'), watchlist: ids }) });
  const state = waitFor(client.user.watchlist, 'offline', { label: 'initial state' });
  const warning = waitFor(client.connection, 'error', { label: '4302' });
  client.signin();
  assert.equal((await warning).data.code, 4302);
  assert.deepEqual((await state).user_ids, ids.slice(0, 100));
  const order = ['pusher:signin_success', 'pusher:error', 'pusher_internal:watchlist_events'];
  const events = client.__messages.map((m) => m.event).filter((e) => order.includes(e));
  assert.deepEqual(events, order);
  assert.equal(client.connection.state, 'connected');
});
