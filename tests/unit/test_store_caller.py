"""The caller assertion the proxy signs for the store: its form, its secret, and who it names."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from http.server import ThreadingHTTPServer

import pytest
import requests

from proxy.store_caller import (
    CALLER_KEY,
    HEADER,
    CallerSigner,
    StoreAuth,
    StoreSecretMissing,
    caller_of,
    secret_from_env,
)
from proxy.upstream import StoreClient
from tests.support.http_stub import QuietHandler

SECRET = "s" * 40


def verify(header: str, secret: str = SECRET) -> list[str]:
    """What the store checks (store/…/CallerAssertion.java), written again independently."""
    signed, _, sig = header.rpartition(";")
    mac = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)), mac)
    return signed.split(";")


def test_the_header_names_role_ods_and_time_and_verifies_under_the_secret():
    h = CallerSigner(SECRET).header("spoke", "FA001", now=1_700_000_000)
    assert verify(h) == ["v1", "spoke", "FA001", "1700000000"]


def test_a_header_signed_under_another_secret_does_not_verify():
    h = CallerSigner("t" * 40).header("admin")
    with pytest.raises(AssertionError):
        verify(h)


@pytest.mark.parametrize(
    "role,ods", [("spoke;admin", "X"), ("spoke", "FA001;admin"), ("a b", ""), ("x\n", "")]
)
def test_separators_cannot_be_smuggled_into_an_assertion(role, ods):
    with pytest.raises(ValueError):
        CallerSigner(SECRET).header(role, ods)


def test_a_short_secret_is_refused():
    with pytest.raises(StoreSecretMissing):
        CallerSigner("short")


def test_the_secret_comes_from_the_environment_or_its_file(tmp_path):
    assert secret_from_env({"FHIRPLUG_STORE_SECRET": SECRET}) == SECRET
    f = tmp_path / "secret"
    f.write_text(SECRET + "\n")
    assert secret_from_env({"FHIRPLUG_STORE_SECRET_FILE": str(f)}) == SECRET
    with pytest.raises(StoreSecretMissing, match="FHIRPLUG_STORE_SECRET"):
        secret_from_env({"FHIRPLUG_STORE_SECRET_FILE": str(tmp_path / "none")})
    with pytest.raises(StoreSecretMissing):
        secret_from_env({"FHIRPLUG_STORE_SECRET": "too-short"})


class Echo(QuietHandler):
    seen: list[str | None] = []

    def do_GET(self):  # http.server calls it by this name
        Echo.seen.append(self.headers.get(HEADER))
        self.reply(200, b"{}")


@pytest.fixture
def echo():
    Echo.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/fhir"
    srv.shutdown()


def test_the_store_client_signs_the_relayed_caller_and_sends_no_unsigned_value(echo):
    client = StoreClient(echo, 1, 5, 2, signer=CallerSigner(SECRET))
    r = client.send("GET", "Task/1", [], {CALLER_KEY: caller_of("spoke", "FB002")}, None)
    r.read()
    r = client.send("GET", "Task/1", [], {}, None)  # the proxy's own request
    r.read()
    assert [verify(h)[1:3] for h in Echo.seen] == [["spoke", "FB002"], ["admin", ""]]


def test_direct_store_requests_go_as_admin(echo):
    requests.get(f"{echo}/Basic", auth=StoreAuth(CallerSigner(SECRET)), timeout=5)
    assert verify(Echo.seen[0])[1:3] == ["admin", ""]
