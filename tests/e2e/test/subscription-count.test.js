// pusher:subscription_count (docs/PROTOCOL.md, "Subscription counts") on an app with
// `subscription_count_events = true`: the third app of scripts/test.sh.

import { before, test } from 'node:test';
import assert from 'node:assert/strict';

import PusherServer from 'pusher';

import {
  HOST,
  PORT,
  SETTLE_MS,
  TEST_TIMEOUT_MS,
  assertServerReachable,
  connectClient,
  disconnect,
  record,
  sleep,
  subscribe,
  uniqueChannel,
  waitFor,
} from '../lib/harness.js';

before(() => assertServerReachable());

/** The app with subscription counts switched on (see tests/e2e/README.md). */
const COUNTING_KEY = 'count-app-key';
const countingSdk = new PusherServer({
  appId: 'count-app',
  key: COUNTING_KEY,
  secret: 'count-app-secret',
  host: HOST,
  port: PORT,
  useTLS: false,
});

const count = (channel, n) =>
  waitFor(channel, 'pusher:subscription_count', {
    filter: (data) => data && data.subscription_count === n,
    label: `pusher:subscription_count ${n}`,
  });

test('subscribers learn the count on every subscribe and unsubscribe', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const name = uniqueChannel('public');
  const first = await connectClient(t, { key: COUNTING_KEY });
  const firstChannel = first.subscribe(name);
  await count(firstChannel, 1);
  assert.equal(firstChannel.subscriptionCount, 1);

  const second = await connectClient(t, { key: COUNTING_KEY });
  const firstSeesTwo = count(firstChannel, 2);
  const secondChannel = second.subscribe(name);
  await Promise.all([firstSeesTwo, count(secondChannel, 2)]);
  assert.equal(secondChannel.subscriptionCount, 2);

  const back = count(firstChannel, 1);
  await disconnect(second);
  await back;
  assert.equal(firstChannel.subscriptionCount, 1);
});

test('no counts on presence channels nor for apps without the switch', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const presence = uniqueChannel('presence');
  const opts = (id) => ({ key: COUNTING_KEY, sdk: countingSdk, presence: { user_id: id } });
  const [ann, ben] = await Promise.all([connectClient(t, opts('ann')), connectClient(t, opts('ben'))]);
  const annChannel = await subscribe(ann, presence);
  const presenceCounts = record(annChannel, 'pusher:subscription_count');
  const added = waitFor(annChannel, 'pusher:member_added');
  await subscribe(ben, presence);
  await added;
  await sleep(SETTLE_MS);
  assert.deepEqual(presenceCounts, [], 'presence channels have members, not counts');

  const plain = uniqueChannel('public');
  const [a, b] = await Promise.all([connectClient(t), connectClient(t)]);
  const aChannel = await subscribe(a, plain);
  const counts = record(aChannel, 'pusher:subscription_count');
  await subscribe(b, plain);
  await sleep(SETTLE_MS);
  assert.deepEqual(counts, [], 'the demo app does not send counts');
});
