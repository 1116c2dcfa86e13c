"""End-to-end tests of Warren's Pusher HTTP API with the official Python SDK.

The server under test listens on WARREN_HOST:WARREN_PORT (default 127.0.0.1:6001).
pusher-http-python only accepts numeric app ids (``app_id_re = \A[0-9]+\Z``), so
the demo app ``app-id`` cannot be used: the server must also have a numeric app,
by default id ``424242``, key ``py-app-key``, secret ``py-app-secret``
(WARREN_PY_APP_ID / WARREN_PY_APP_KEY / WARREN_PY_APP_SECRET), e.g. started with
``WARREN_APPS__1__ID=424242 WARREN_APPS__1__KEY=py-app-key
WARREN_APPS__1__SECRET=py-app-secret warren serve``.

Every HTTP call goes through the official ``pusher`` package from PyPI
(pusher-http-python). Channels are only listed/occupied while something is
subscribed, and Python has no WebSocket client in its standard library, so
the subscribers are ``hold_presence.mjs`` processes: the official pusher-js
client (from ../e2e/node_modules) holding a connection open and printing the
events it receives. See README.md.

Run: python -m unittest discover -s tests/e2e-python -v
"""

import json
import os
import queue
import shutil
import subprocess
import threading
import time
import unittest
import uuid
from unittest import mock

import pusher
from pusher.errors import PusherBadAuth, PusherBadRequest, PusherBadStatus

HOST = os.environ.get("WARREN_HOST", "127.0.0.1")
PORT = int(os.environ.get("WARREN_PORT", "6001"))
APP_ID = os.environ.get("WARREN_PY_APP_ID", "424242")
APP_KEY = os.environ.get("WARREN_PY_APP_KEY", "py-app-key")
APP_SECRET = os.environ.get("WARREN_PY_APP_SECRET", "py-app-secret")
# Wait for one expected event, and HTTP timeout of the SDK.
TIMEOUT = float(os.environ.get("WARREN_E2E_EVENT_TIMEOUT_MS", "5000")) / 1000
# Quiet period when asserting that something does not arrive.
SETTLE = float(os.environ.get("WARREN_E2E_SETTLE_MS", "300")) / 1000
READY_TIMEOUT = 15.0

HERE = os.path.dirname(os.path.abspath(__file__))
HOLDER_SCRIPT = os.path.join(HERE, "hold_presence.mjs")
E2E_NODE_MODULES = os.path.join(HERE, "..", "e2e", "node_modules")


def client(secret=APP_SECRET, app_id=APP_ID):
    return pusher.Pusher(
        app_id=app_id,
        key=APP_KEY,
        secret=secret,
        host=HOST,
        port=PORT,
        ssl=False,
        timeout=TIMEOUT,
    )


API = client()


def setUpModule():
    """Fail every test at once, with a useful message, when the server or the app is missing."""
    try:
        API.channels_info(prefix_filter="py-probe-")
    except (PusherBadStatus, PusherBadAuth) as err:
        raise RuntimeError(
            "Warren at %s:%d does not accept app id %s / key %s (%s); start it with "
            "WARREN_APPS__1__ID=%s WARREN_APPS__1__KEY=%s WARREN_APPS__1__SECRET=<secret>"
            % (HOST, PORT, APP_ID, APP_KEY, err, APP_ID, APP_KEY)
        )
    except Exception as err:
        raise RuntimeError("Warren is not reachable at %s:%d (%s); set WARREN_HOST / WARREN_PORT" % (HOST, PORT, err))


def unique(prefix):
    """A channel name no other test (or earlier run) uses."""
    return "%s-py-%d-%s" % (prefix, os.getpid(), uuid.uuid4().hex[:10])


class Holder(object):
    """A pusher-js connection (hold_presence.mjs) subscribed to `channels` as `user_id`."""

    def __init__(self, user_id, channels, signin=False, key=APP_KEY, secret=APP_SECRET):
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH; the subscriber helper needs Node.js 20+")
        if not os.path.isdir(os.path.join(E2E_NODE_MODULES, "pusher-js")):
            raise RuntimeError("tests/e2e/node_modules is missing: run `npm ci` in tests/e2e first")
        env = dict(
            os.environ, WARREN_HOST=HOST, WARREN_PORT=str(PORT), WARREN_APP_KEY=key, WARREN_APP_SECRET=secret
        )
        if signin:
            env["WARREN_HOLD_SIGNIN"] = "1"
        self.channels = list(channels)
        self.proc = subprocess.Popen(
            [node, HOLDER_SCRIPT, user_id] + self.channels,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            universal_newlines=True,
            encoding="utf-8",
        )
        self._lines = queue.Queue()
        self._events = []
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        self.socket_id = None
        deadline = time.monotonic() + READY_TIMEOUT
        while self.socket_id is None:
            line = self._next_line(deadline)
            if line is None:
                self.close()
                raise RuntimeError("subscriber helper for %s did not become READY" % self.channels)
            if line.startswith("READY "):
                self.socket_id = line.split(" ", 1)[1].strip()
            elif line.startswith("ERROR "):
                self.close()
                raise RuntimeError("subscriber helper: %s" % line)

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # EOF

    def _next_line(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            return self._lines.get(timeout=remaining)
        except queue.Empty:
            return None

    def _pump(self, deadline):
        """Move the next line into self._events; False on timeout/EOF."""
        line = self._next_line(deadline)
        if line is None:
            return False
        if line.startswith("EVENT "):
            self._events.append(json.loads(line[len("EVENT "):]))
        return True

    def wait_event(self, channel, event, timeout=TIMEOUT):
        """The first received event named `event` on `channel` (consumed from the list)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self._events):
                if e.get("channel") == channel and e["event"] == event:
                    return self._events.pop(i)
            if not self._pump(deadline):
                raise AssertionError(
                    "timed out after %.1f s waiting for %r on %r (seen: %r)"
                    % (timeout, event, channel, self._events)
                )

    def seen(self, channel=None, event=None):
        """Everything received so far (without waiting)."""
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is not None and line.startswith("EVENT "):
                self._events.append(json.loads(line[len("EVENT "):]))
        return [
            e
            for e in self._events
            if (channel is None or e.get("channel") == channel) and (event is None or e["event"] == event)
        ]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # the helper exits when its stdin closes
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()


def hold(test_class, user_id, channels, signin=False):
    holder = Holder(user_id, channels, signin=signin)
    test_class.addClassCleanup(holder.close)
    return holder


def eventually(fn, timeout=TIMEOUT):
    """Retry `fn` until it stops raising AssertionError, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


class TriggerTest(unittest.TestCase):
    """POST /apps/{id}/events and /batch_events, observed by a pusher-js subscriber."""

    @classmethod
    def setUpClass(cls):
        cls.c1 = unique("py-trigger")
        cls.c2 = unique("py-trigger")
        cls.sub = hold(cls, "py-trigger-user", [cls.c1, cls.c2])

    def test_trigger_object_is_delivered(self):
        data = {"hello": "world", "n": 42, "nested": {"list": [1, "two", None, True]}, "unicode": "w\u00f6rld"}
        self.assertEqual(API.trigger(self.c1, "py-object", data), {})
        got = self.sub.wait_event(self.c1, "py-object")
        self.assertEqual(got["data"], data)

    def test_trigger_string_arrives_verbatim(self):
        text = 'plain text, not JSON: "quotes", \\backslash, tab\t, newline\n, w\u00f6rld \U0001f407'
        self.assertEqual(API.trigger(self.c1, "py-string", text), {})
        self.assertEqual(self.sub.wait_event(self.c1, "py-string")["data"], text)

    def test_trigger_several_channels(self):
        self.assertEqual(API.trigger([self.c1, self.c2], "py-fanout", {"to": "many"}), {})
        self.assertEqual(self.sub.wait_event(self.c1, "py-fanout")["data"], {"to": "many"})
        self.assertEqual(self.sub.wait_event(self.c2, "py-fanout")["data"], {"to": "many"})

    def test_trigger_socket_id_excludes_that_connection(self):
        self.assertEqual(API.trigger(self.c1, "py-excluded", {"x": 1}, socket_id=self.sub.socket_id), {})
        # A later event on the same channel arrives; the excluded one must not have come before it.
        self.assertEqual(API.trigger(self.c1, "py-marker", {}), {})
        self.sub.wait_event(self.c1, "py-marker")
        time.sleep(SETTLE)
        self.assertEqual(self.sub.seen(self.c1, "py-excluded"), [])

    def test_trigger_batch(self):
        batch = [
            {"channel": self.c1, "name": "py-batch-a", "data": {"n": 1}},
            {"channel": self.c2, "name": "py-batch-b", "data": "plain string in a batch"},
            {"channel": self.c1, "name": "py-batch-c", "data": {"n": 3}},
        ]
        self.assertEqual(API.trigger_batch(batch), {})
        self.assertEqual(self.sub.wait_event(self.c1, "py-batch-a")["data"], {"n": 1})
        self.assertEqual(self.sub.wait_event(self.c2, "py-batch-b")["data"], "plain string in a batch")
        self.assertEqual(self.sub.wait_event(self.c1, "py-batch-c")["data"], {"n": 3})

    def test_trigger_batch_with_info_is_index_aligned(self):
        batch = [
            {"channel": self.c1, "name": "py-batch-info", "data": {}, "info": "subscription_count"},
            {"channel": self.c2, "name": "py-batch-info", "data": {}},
        ]
        self.assertEqual(API.trigger_batch(batch), {"batch": [{"subscription_count": 1}, {}]})
        self.sub.wait_event(self.c1, "py-batch-info")
        self.sub.wait_event(self.c2, "py-batch-info")


class QueryTest(unittest.TestCase):
    """GET /channels, /channels/{name}, /channels/{name}/users."""

    @classmethod
    def setUpClass(cls):
        cls.base = unique("presence-py-query")
        cls.pa = cls.base + "-a"  # alice + bob
        cls.pb = cls.base + "-b"  # alice
        cls.pub = unique("py-query-public")  # alice
        cls.alice = hold(cls, "py-alice", [cls.pa, cls.pb, cls.pub])
        cls.bob = hold(cls, "py-bob", [cls.pa])

    def test_channels_info_presence_prefix_with_user_count(self):
        self.assertEqual(
            API.channels_info(prefix_filter=self.base + "-", attributes=["user_count"]),
            {"channels": {self.pa: {"user_count": 2}, self.pb: {"user_count": 1}}},
        )

    def test_channels_info_prefix_without_attributes(self):
        self.assertEqual(
            API.channels_info(prefix_filter=self.base + "-"),
            {"channels": {self.pa: {}, self.pb: {}}},
        )

    def test_channels_info_all_lists_occupied_channels_only(self):
        unused = unique("py-query-unused")
        self.assertEqual(API.trigger(unused, "nobody-listens", {}), {})
        channels = API.channels_info()["channels"]
        self.assertEqual(channels.get(self.pub), {})
        self.assertEqual(channels.get(self.pa), {})
        self.assertNotIn(unused, channels)

    def test_channels_info_presence_prefix_lists_only_presence(self):
        channels = API.channels_info(prefix_filter="presence-", attributes=["user_count"])["channels"]
        self.assertEqual(channels.get(self.pa), {"user_count": 2})
        self.assertEqual(channels.get(self.pb), {"user_count": 1})
        for name in channels:
            self.assertTrue(name.startswith("presence-"), name)

    def test_channels_info_user_count_without_presence_prefix_is_400(self):
        with self.assertRaises(PusherBadRequest):
            API.channels_info(attributes=["user_count"])
        with self.assertRaises(PusherBadRequest):
            API.channels_info(prefix_filter="py-", attributes=["user_count"])

    def test_channel_info_presence(self):
        self.assertEqual(
            API.channel_info(self.pa, ["user_count", "subscription_count"]),
            {"occupied": True, "user_count": 2, "subscription_count": 2},
        )
        self.assertEqual(API.channel_info(self.pb, ["user_count"]), {"occupied": True, "user_count": 1})
        self.assertEqual(API.channel_info(self.pa), {"occupied": True})

    def test_channel_info_public(self):
        self.assertEqual(
            API.channel_info(self.pub, ["subscription_count"]),
            {"occupied": True, "subscription_count": 1},
        )
        self.assertEqual(API.channel_info(unique("py-query-never")), {"occupied": False})

    def test_channel_info_user_count_on_public_channel_is_400(self):
        with self.assertRaises(PusherBadRequest):
            API.channel_info(self.pub, ["user_count"])

    def test_users_info(self):
        users = API.users_info(self.pa)["users"]
        self.assertEqual(sorted(users, key=lambda u: u["id"]), [{"id": "py-alice"}, {"id": "py-bob"}])
        self.assertEqual(API.users_info(self.pb), {"users": [{"id": "py-alice"}]})

    def test_users_info_on_public_channel_is_400(self):
        with self.assertRaises(PusherBadRequest):
            API.users_info(self.pub)

    def test_counts_follow_a_member_leaving(self):
        # A member that leaves drops out of the counts.
        lonely = unique("presence-py-leave")
        carol = Holder("py-carol", [lonely])
        try:
            self.assertEqual(API.users_info(lonely), {"users": [{"id": "py-carol"}]})
        finally:
            carol.close()

        def gone():
            self.assertEqual(API.channel_info(lonely), {"occupied": False})
            self.assertNotIn(lonely, API.channels_info(prefix_filter="presence-")["channels"])

        eventually(gone)


class UserTest(unittest.TestCase):
    def test_send_to_user_without_signed_in_user(self):
        self.assertEqual(API.send_to_user("py-nobody-%s" % uuid.uuid4().hex[:8], "for-you", {"hi": 1}), {})

    def test_terminate_user_connections(self):
        # The pinned SDK has it: a missing method must fail, not skip.
        self.assertTrue(hasattr(API, "terminate_user_connections"), "the pusher SDK lacks terminate_user_connections")
        # pusher-http-python posts to /users/{id}/terminate_connections (no /apps/{id} prefix).
        self.assertEqual(API.terminate_user_connections("py-nobody-%s" % uuid.uuid4().hex[:8]), {})

    def test_send_to_user_reaches_the_signed_in_user_only(self):
        user = "py-user-%s" % uuid.uuid4().hex[:8]
        target = hold(type(self), user, [], signin=True)
        other = hold(type(self), user + "-other", [], signin=True)
        self.assertEqual(API.send_to_user(user, "for-you", {"hi": 1}), {})
        got = target.wait_event("#server-to-user-" + user, "for-you")
        self.assertEqual(got["data"], {"hi": 1})
        time.sleep(SETTLE)
        self.assertEqual(other.seen(event="for-you"), [])

    def test_terminate_user_connections_closes_them_with_4009(self):
        self.assertTrue(hasattr(API, "terminate_user_connections"), "the pusher SDK lacks terminate_user_connections")
        user = "py-term-%s" % uuid.uuid4().hex[:8]
        first = hold(type(self), user, [], signin=True)
        second = hold(type(self), user, [], signin=True)
        bystander = hold(type(self), user + "-stays", [], signin=True)
        self.assertEqual(API.terminate_user_connections(user), {})
        for h in (first, second):
            error = h.wait_event(None, "pusher:error")
            self.assertEqual(error["data"]["code"], 4009)
        time.sleep(SETTLE)
        self.assertEqual(bystander.seen(event="pusher:error"), [])


class ErrorTest(unittest.TestCase):
    def test_wrong_secret_is_401_with_message(self):
        bad = client(secret="definitely-not-the-app-secret")
        with self.assertRaises(PusherBadAuth) as ctx:
            bad.trigger(unique("py-err"), "forged", {})
        self.assertTrue(str(ctx.exception).strip(), "401 carries a message")
        with self.assertRaises(PusherBadAuth):
            bad.channels_info()

    def test_expired_timestamp_is_401(self):
        an_hour_ago = time.time() - 3600
        with mock.patch("pusher.http.time.time", return_value=an_hour_ago):
            with self.assertRaises(PusherBadAuth) as ctx:
                API.trigger(unique("py-err"), "late", {})
        self.assertIn("Timestamp expired", str(ctx.exception))

    def test_data_over_10kb_is_413(self):
        name = unique("py-err-big")
        with self.assertRaises(PusherBadStatus) as ctx:
            API.trigger(name, "too-big", "x" * (10 * 1024 + 1))
        self.assertTrue(str(ctx.exception).startswith("413"), str(ctx.exception))
        # The SDK checks batch data itself; already_encoded=True sends it as is.
        with self.assertRaises(PusherBadStatus) as ctx:
            API.trigger_batch(
                [{"channel": name, "name": "too-big", "data": "y" * (10 * 1024 + 1)}], already_encoded=True
            )
        self.assertTrue(str(ctx.exception).startswith("413"), str(ctx.exception))
        self.assertEqual(API.trigger(name, "just-fits", "z" * (10 * 1024)), {})

    def test_more_than_10_batch_events_is_400(self):
        name = unique("py-err-batch")
        with self.assertRaises(PusherBadRequest):
            API.trigger_batch([{"channel": name, "name": "e", "data": {"i": i}} for i in range(11)])

    def test_unknown_app_is_404(self):
        with self.assertRaises(PusherBadStatus) as ctx:
            client(app_id="999999999").trigger(unique("py-err"), "e", {})
        self.assertTrue(str(ctx.exception).startswith("404"), str(ctx.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
