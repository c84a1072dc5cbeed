"""Sending one notification: the subscriber's header secret or our signed-JWT client for a
partner, and which answers are retried, which are final (forwarding's policy)."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from forwarding.policy import PermanentFailure, RetryableFailure
from proxy.partners import Partner
from subscriptions.resource import Spec
from tests.support.fake_redis import FakeRedis
from tests.support.http_stub import QuietHandler
from worker import notifications

TOPIC = "https://fhirplug.org/fhir/SubscriptionTopic/task-status-changed"
BUNDLE = {"resourceType": "Bundle", "type": "history", "entry": []}


@pytest.fixture
def endpoint():
    seen: list[dict] = []
    answer = {"status": 200}

    class Handler(QuietHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"headers": dict(self.headers), "body": body})
            self.reply(answer["status"], b"")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen, answer
    server.shutdown()
    server.server_close()


def spec(url: str, **kw) -> Spec:
    return Spec(id="s1", topic=TOPIC, endpoint=url, headers=["Authorization: Bearer s3cret"], **kw)


def test_the_bundle_goes_with_the_subscribers_header_secret(endpoint):
    url, seen, _ = endpoint
    assert notifications.send(FakeRedis(), spec(url), BUNDLE) == 200
    assert seen[0]["body"] == BUNDLE
    assert seen[0]["headers"]["Authorization"] == "Bearer s3cret"
    assert seen[0]["headers"]["Content-Type"] == "application/fhir+json"


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_a_busy_or_failing_subscriber_is_tried_again(endpoint, status):
    url, _, answer = endpoint
    answer["status"] = status
    with pytest.raises(RetryableFailure):
        notifications.send(FakeRedis(), spec(url), BUNDLE)


@pytest.mark.parametrize("status", [400, 401, 404, 410])
def test_a_refusal_is_final(endpoint, status):
    url, _, answer = endpoint
    answer["status"] = status
    with pytest.raises(PermanentFailure):
        notifications.send(FakeRedis(), spec(url), BUNDLE)


def test_an_unreachable_subscriber_is_tried_again():
    with pytest.raises(RetryableFailure):
        notifications.send(FakeRedis(), spec("http://127.0.0.1:9/hook"), BUNDLE)


def test_a_partner_is_sent_to_with_our_signed_jwt_client(monkeypatch, tmp_path):
    sent = []

    class Client:
        def request(self, method, url, headers, data):
            sent.append((method, url, json.loads(data)))
            return type("R", (), {"status_code": 202, "text": "", "headers": {}})()

    partner = Partner(
        "FH001", "hub", "https://hub.example/fhir", "https://hub.example/oauth2/token", "us", "k"
    )
    monkeypatch.setattr(
        notifications, "PartnerDirectory", lambda redis: type("D", (), {"get": lambda s, o: partner})()
    )
    monkeypatch.setattr(notifications, "_client", lambda p: Client())
    s = Spec(id="s1", topic=TOPIC, endpoint="https://hub.example/fhir/notify", partner="FH001")
    assert notifications.send(FakeRedis(), s, BUNDLE) == 202
    assert sent == [("POST", "https://hub.example/fhir/notify", BUNDLE)]


def test_a_partner_no_longer_registered_is_final(monkeypatch):
    monkeypatch.setattr(
        notifications, "PartnerDirectory", lambda redis: type("D", (), {"get": lambda s, o: None})()
    )
    s = Spec(id="s1", topic=TOPIC, endpoint="https://hub.example/fhir/notify", partner="FH001")
    with pytest.raises(PermanentFailure):
        notifications.send(FakeRedis(), s, BUNDLE)
