from plugins.request_id import choose_request_id
from proxy.app import create_app
from proxy.config import Settings
from tests.support.fake_store import PUBLIC_BASE, FakeStore


def client(store):
    return create_app(
        Settings(public_base_url=PUBLIC_BASE, plugins=["request_id"], auth=False), store=store
    ).test_client()


def test_callers_request_id_is_kept_sent_to_the_store_and_returned():
    store = FakeStore()
    r = client(store).get("/fhir/Patient/1", headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    sent = {k.lower(): v for k, v in store.calls[0]["headers"].items()}
    assert sent["x-request-id"] == "abc-123"


def test_missing_request_id_is_generated():
    r = client(FakeStore()).get("/fhir/Patient/1")
    assert len(r.headers["X-Request-ID"]) == 32


def test_unsafe_request_id_is_replaced():
    assert choose_request_id("bad id\r\nX-Evil: 1") != "bad id\r\nX-Evil: 1"


def test_error_responses_carry_the_request_id_too():
    r = client(FakeStore()).get("/nowhere", headers={"X-Request-ID": "r1"})
    assert r.status_code == 404 and r.headers["X-Request-ID"] == "r1"
