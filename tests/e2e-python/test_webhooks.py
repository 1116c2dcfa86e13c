"""Warren's webhooks checked with the official Python SDK's ``validate_webhook``.

scripts/test.sh starts the server with an app ``hook-app`` (key ``hook-app-key``, secret
``hook-app-secret``) whose webhooks go to http://127.0.0.1:$WARREN_WEBHOOK_PORT/webhooks,
removals delayed by 300 ms. This test listens on that port with a real HTTP server, holds a
pusher-js presence subscriber of that app (``hold_presence.mjs``) and validates every request
with pusher-http-python. Skipped without WARREN_WEBHOOK_PORT.
"""

import http.server
import os
import queue
import threading
import time
import unittest
import uuid

import pusher

from test_api import Holder

HOOK_PORT = int(os.environ.get("WARREN_WEBHOOK_PORT", "0"))
HOOK_KEY = "hook-app-key"
HOOK_SECRET = "hook-app-secret"
TIMEOUT = 5.0


def sdk(secret=HOOK_SECRET):
    # The app id only has to look like one to the SDK; webhooks are checked by key and secret.
    return pusher.Pusher(app_id="1", key=HOOK_KEY, secret=secret)


@unittest.skipUnless(HOOK_PORT, "WARREN_WEBHOOK_PORT is not set")
class WebhookTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.requests = queue.Queue()
        received = cls.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.put((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", HOOK_PORT), Handler)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    def events_of(self, channel, n):
        """The next `n` events of `channel`, each request validated by the SDK."""
        got, deadline = [], time.monotonic() + TIMEOUT
        while len(got) < n:
            try:
                headers, body = self.requests.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.fail("timed out waiting for %d events of %s (got %r)" % (n, channel, got))
            self.assertEqual(headers.get("Content-Type"), "application/json")
            key, signature = headers.get("X-Pusher-Key"), headers.get("X-Pusher-Signature")
            payload = sdk().validate_webhook(key, signature, body.decode("utf-8"))
            self.assertIsNotNone(payload, "validate_webhook accepts %r" % body)
            self.assertIsNone(sdk("wrong-secret").validate_webhook(key, signature, body.decode("utf-8")))
            self.assertIsNone(sdk().validate_webhook(key, signature, body.decode("utf-8") + " "))
            self.assertTrue(headers.get("X-Warren-Webhook-Id"))
            got.extend(e for e in payload["events"] if e["channel"] == channel)
        self.assertEqual(len(got), n, got)
        return got

    def test_presence_webhooks_validate(self):
        channel = "presence-py-hook-%s" % uuid.uuid4().hex[:8]
        holder = Holder("py-user", [channel], key=HOOK_KEY, secret=HOOK_SECRET)
        try:
            self.assertEqual(
                self.events_of(channel, 2),
                [
                    {"name": "channel_occupied", "channel": channel},
                    {"name": "member_added", "channel": channel, "user_id": "py-user"},
                ],
            )
        finally:
            holder.close()
        got = self.events_of(channel, 2)
        self.assertEqual(
            sorted(e["name"] for e in got), ["channel_vacated", "member_removed"]
        )


if __name__ == "__main__":
    unittest.main()
