import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  assertServerReachable,
  SETTLE_MS,
  TEST_TIMEOUT_MS,
  connectClient,
  disconnect,
  rawMessages,
  record,
  sleep,
  subscribe,
  uniqueChannel,
  waitFor,
} from '../lib/harness.js';

before(() => assertServerReachable());

test('presence: members.count and members.me after subscribing alone', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('presence');
  const alice = await connectClient(t, { presence: { user_id: 'alice', user_info: { name: 'Alice' } } });
  const channel = alice.subscribe(name);
  const members = await waitFor(channel, 'pusher:subscription_succeeded');

  assert.equal(members, channel.members);
  assert.equal(members.count, 1);
  assert.deepEqual(members.me, { id: 'alice', info: { name: 'Alice' } });
  assert.deepEqual(members.get('alice'), { id: 'alice', info: { name: 'Alice' } });

  // Wire format: ids, hash and count, the new member included.
  const [succeeded] = rawMessages(alice, { channel: name, event: 'pusher_internal:subscription_succeeded' });
  assert.ok(succeeded, 'subscription_succeeded message seen on the connection');
  assert.deepEqual(succeeded.data, {
    presence: { ids: ['alice'], hash: { alice: { name: 'Alice' } }, count: 1 },
  });
});

test('presence: member_added / member_removed between two users', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('presence');
  const alice = await connectClient(t, { presence: { user_id: 'alice', user_info: { name: 'Alice' } } });
  const aliceChannel = await subscribe(alice, name);
  assert.equal(aliceChannel.members.count, 1);

  const added = waitFor(aliceChannel, 'pusher:member_added', { label: 'member_added for bob' });
  const bob = await connectClient(t, { presence: { user_id: 'bob', user_info: { name: 'Bob', role: 'tester' } } });
  const bobChannel = bob.subscribe(name);
  const bobMembers = await waitFor(bobChannel, 'pusher:subscription_succeeded');

  // Bob sees both members, himself included.
  assert.equal(bobMembers.count, 2);
  assert.deepEqual(bobMembers.me, { id: 'bob', info: { name: 'Bob', role: 'tester' } });
  assert.deepEqual(bobMembers.get('alice'), { id: 'alice', info: { name: 'Alice' } });
  const ids = [];
  bobMembers.each((m) => ids.push(m.id));
  assert.deepEqual(ids.sort(), ['alice', 'bob']);

  // Alice is told about Bob, with his user_info.
  const member = await added;
  assert.deepEqual(member, { id: 'bob', info: { name: 'Bob', role: 'tester' } });
  assert.equal(aliceChannel.members.count, 2);

  // Bob's own connection must not receive a member_added about himself.
  await sleep(SETTLE_MS);
  assert.deepEqual(rawMessages(bob, { channel: name, event: 'pusher_internal:member_added' }), []);

  // Bob leaves: Alice gets member_removed.
  const removed = waitFor(aliceChannel, 'pusher:member_removed', { label: 'member_removed for bob' });
  await disconnect(bob);
  const gone = await removed;
  assert.equal(gone.id, 'bob');
  assert.equal(aliceChannel.members.count, 1);
  assert.equal(aliceChannel.members.get('bob'), null);
});

test('presence: member_removed when a member unsubscribes (connection stays open)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('presence');
  const alice = await connectClient(t, { presence: { user_id: 'alice' } });
  const aliceChannel = await subscribe(alice, name);
  const carol = await connectClient(t, { presence: { user_id: 'carol' } });
  const added = waitFor(aliceChannel, 'pusher:member_added');
  await subscribe(carol, name);
  assert.equal((await added).id, 'carol');

  const removed = waitFor(aliceChannel, 'pusher:member_removed', { label: 'member_removed for carol' });
  carol.unsubscribe(name);
  assert.equal((await removed).id, 'carol');
  assert.equal(aliceChannel.members.count, 1);
  assert.equal(carol.connection.state, 'connected');
});

test('presence: member without user_info appears with null info', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('presence');
  const anon = await connectClient(t, { presence: { user_id: 'anon' } });
  await subscribe(anon, name);
  const other = await connectClient(t, { presence: { user_id: 'other', user_info: { x: 1 } } });
  const channel = await subscribe(other, name);

  assert.equal(channel.members.count, 2);
  const [succeeded] = rawMessages(other, { channel: name, event: 'pusher_internal:subscription_succeeded' });
  const { presence } = succeeded.data;
  assert.deepEqual([...presence.ids].sort(), ['anon', 'other']);
  assert.ok(Object.prototype.hasOwnProperty.call(presence.hash, 'anon'), 'every id is a key of hash');
  assert.equal(presence.hash.anon, null);
  assert.deepEqual(presence.hash.other, { x: 1 });
  assert.equal(presence.count, 2);
});

test('presence: several sockets with the same user_id count as one member', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('presence');
  const alice = await connectClient(t, { presence: { user_id: 'alice', user_info: { name: 'Alice' } } });
  const aliceChannel = await subscribe(alice, name);
  const added = record(aliceChannel, 'pusher:member_added');
  const removed = record(aliceChannel, 'pusher:member_removed');

  // First socket of user "dup": Alice gets member_added.
  const firstAdded = waitFor(aliceChannel, 'pusher:member_added');
  const dup1 = await connectClient(t, { presence: { user_id: 'dup', user_info: { n: 1 } } });
  await subscribe(dup1, name);
  assert.equal((await firstAdded).id, 'dup');

  // Second socket of the same user: no new member anywhere.
  const dup2 = await connectClient(t, { presence: { user_id: 'dup', user_info: { n: 1 } } });
  const dup2Channel = await subscribe(dup2, name);
  assert.equal(dup2Channel.members.count, 2, 'alice + dup, not alice + dup + dup');
  const dup2Ids = [];
  dup2Channel.members.each((m) => dup2Ids.push(m.id));
  assert.deepEqual(dup2Ids.sort(), ['alice', 'dup']);
  assert.equal(dup2Channel.members.me.id, 'dup');

  // Barrier: a third user joins; its member_added must be the second one Alice ever sees.
  const thirdAdded = waitFor(aliceChannel, 'pusher:member_added', { filter: (m) => m.id === 'zed' });
  const zed = await connectClient(t, { presence: { user_id: 'zed' } });
  await subscribe(zed, name);
  await thirdAdded;
  assert.deepEqual(added.map(([m]) => m.id), ['dup', 'zed'], 'member_added only on the first socket of a user');
  assert.equal(aliceChannel.members.count, 3);
  assert.equal(rawMessages(alice, { channel: name, event: 'pusher_internal:member_added' }).length, 2);

  // One of dup's two sockets leaves: dup is still present.
  await disconnect(dup1);
  await sleep(SETTLE_MS);
  // Barrier: zed leaves; its member_removed must be the first one Alice sees.
  const zedRemoved = waitFor(aliceChannel, 'pusher:member_removed', { filter: (m) => m.id === 'zed' });
  await disconnect(zed);
  await zedRemoved;
  assert.deepEqual(removed.map(([m]) => m.id), ['zed'], 'no member_removed while dup still has a socket');
  assert.equal(rawMessages(alice, { channel: name, event: 'pusher_internal:member_removed' }).length, 1);
  assert.equal(aliceChannel.members.count, 2);

  // Last socket of dup leaves: now Alice gets member_removed for dup.
  const dupRemoved = waitFor(aliceChannel, 'pusher:member_removed', { filter: (m) => m.id === 'dup' });
  await disconnect(dup2);
  await dupRemoved;
  assert.deepEqual(removed.map(([m]) => m.id), ['zed', 'dup']);
  assert.equal(aliceChannel.members.count, 1);
});

test('presence: numeric user_id is delivered as a string everywhere', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('presence');
  const observer = await connectClient(t, { presence: { user_id: 'observer' } });
  const observerChannel = await subscribe(observer, name);

  const added = waitFor(observerChannel, 'pusher:member_added');
  const numeric = await connectClient(t, { presence: { user_id: 42, user_info: { name: 'Forty-Two' } } });
  const numericChannel = await subscribe(numeric, name);

  // member_added to the other subscriber: user_id "42" (string).
  const member = await added;
  assert.equal(member.id, '42');
  assert.deepEqual(member.info, { name: 'Forty-Two' });
  const [rawAdded] = rawMessages(observer, { channel: name, event: 'pusher_internal:member_added' });
  assert.deepEqual(rawAdded.data, { user_id: '42', user_info: { name: 'Forty-Two' } });

  // subscription_succeeded to the numeric user: ids are strings, hash keyed by "42".
  const [succeeded] = rawMessages(numeric, { channel: name, event: 'pusher_internal:subscription_succeeded' });
  const { presence } = succeeded.data;
  assert.deepEqual([...presence.ids].sort(), ['42', 'observer']);
  for (const id of presence.ids) assert.equal(typeof id, 'string');
  assert.deepEqual(presence.hash['42'], { name: 'Forty-Two' });
  assert.equal(presence.count, 2);
  assert.equal(numericChannel.members.count, 2);
  assert.ok(numericChannel.members.me, 'members.me is resolved for a numeric id');

  // Client event from the numeric user: metadata user_id is "42".
  const received = waitFor(observerChannel, 'client-num', { all: true });
  numericChannel.trigger('client-num', { n: 42 });
  const [data, metadata] = await received;
  assert.deepEqual(data, { n: 42 });
  assert.equal(metadata.user_id, '42');

  // member_removed: "42" as well.
  const removed = waitFor(observerChannel, 'pusher:member_removed');
  await disconnect(numeric);
  assert.equal((await removed).id, '42');
  const [rawRemoved] = rawMessages(observer, { channel: name, event: 'pusher_internal:member_removed' });
  assert.deepEqual(rawRemoved.data, { user_id: '42' });
});
