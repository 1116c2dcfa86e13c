"""The official Python SDK with ``ssl=True`` against Warren with ``[server.tls]``.

scripts/e2e-tls.sh starts the server with a certificate from a CA it makes, and runs this
with WARREN_TLS_CA naming that CA's PEM file and WARREN_TLS_PORT. With ``ssl=True`` the SDK
verifies against the CA bundle it ships and ignores ``verify`` given to it, so a private CA
is trusted through its ``backend`` option: the SDK's own requests backend, told to verify
against that CA. The numeric app (the SDK accepts no other) is id 424242, key
``py-app-key``, secret ``py-app-secret``, as in the plain suite.

Run: python -m unittest discover -s tests/e2e-python/tls -v
"""

import os
import unittest
import uuid

import pusher
import requests
from pusher.requests import RequestsBackend

PORT = int(os.environ["WARREN_TLS_PORT"])
CA = os.environ["WARREN_TLS_CA"]


class TrustingTheTestCa(RequestsBackend):
    def __init__(self, client, **options):
        super().__init__(client, **options)
        self.options["verify"] = CA


def client(**overrides):
    options = dict(
        app_id="424242",
        key="py-app-key",
        secret="py-app-secret",
        host="127.0.0.1",
        port=PORT,
        ssl=True,
        timeout=5,
        backend=TrustingTheTestCa,
    )
    options.update(overrides)
    return pusher.Pusher(**options)


class TlsApi(unittest.TestCase):
    def test_trigger_and_query_over_https(self):
        channel = "tls-py-" + uuid.uuid4().hex[:8]
        self.assertEqual(client().trigger(channel, "hello", {"over": "tls"}), {})
        info = client().channel_info(channel, ["subscription_count"])
        self.assertEqual(info, {"occupied": False, "subscription_count": 0})

    def test_a_bad_signature_is_refused_over_https_too(self):
        with self.assertRaises(pusher.errors.PusherBadAuth):
            client(secret="not-the-secret").trigger("tls-py", "hello", {})

    def test_the_sdk_checks_the_certificate(self):
        # Its own CA bundle does not know the test CA: the connection is refused.
        with self.assertRaises(requests.exceptions.SSLError):
            client(backend=RequestsBackend).trigger("tls-py", "hello", {})

    def test_the_server_really_speaks_tls(self):
        # A plain request gets no HTTP answer from a TLS port.
        with self.assertRaises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{PORT}/health", timeout=5)
        health = requests.get(f"https://127.0.0.1:{PORT}/health", timeout=5, verify=CA)
        self.assertEqual(health.status_code, 200)


if __name__ == "__main__":
    unittest.main()
