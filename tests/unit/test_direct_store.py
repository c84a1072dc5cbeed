"""DirectStore: every request signed as admin, every write (and only writes) inside the read
cache's write fence, and no write sent when the fence cannot be taken."""

from types import SimpleNamespace

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from proxy.direct_store import DirectStore
from proxy.errors import FhirError
from proxy.store_caller import HEADER, CallerSigner, StoreAuth


class ScriptRedis:
    """Records the fence's two scripts (begin, end) in the order they run."""

    def __init__(self, events, down=False):
        self.events, self.down, self.scripts = events, down, 0

    def register_script(self, _source):
        name = ("begin", "end")[self.scripts]
        self.scripts += 1

        def run(keys, args):
            if self.down:
                raise RedisConnectionError("down")
            self.events.append(name)

        return run


def store_with(events, down=False) -> DirectStore:
    auth = StoreAuth(CallerSigner("s" * 32))
    store = DirectStore("http://store/fhir/", ScriptRedis(events, down), auth=auth)

    def send(prepared, **kwargs):  # instead of the network: what was sent, and how it was signed
        events.append((prepared.method, prepared.url, prepared.headers.get(HEADER, "")[:9]))
        return SimpleNamespace(status_code=200)

    store.http.send = send
    return store


def test_a_write_is_signed_and_inside_the_fence():
    events = []
    store = store_with(events)
    store.post("AuditEvent", {"resourceType": "AuditEvent"})
    store.delete("Basic/1")
    assert events == [
        "begin",
        ("POST", "http://store/fhir/AuditEvent", "v1;admin;"),
        "end",
        "begin",
        ("DELETE", "http://store/fhir/Basic/1", "v1;admin;"),
        "end",
    ]


def test_reads_are_signed_and_not_fenced():
    events = []
    store = store_with(events)
    store.get("Basic", params={"code": "x"})
    store.read_batch({"resourceType": "Bundle", "entry": [{"request": {"method": "GET", "url": "Basic/1"}}]})
    assert events == [
        ("GET", "http://store/fhir/Basic?code=x", "v1;admin;"),
        ("POST", "http://store/fhir", "v1;admin;"),
    ]


def test_a_batch_with_a_write_is_not_a_read():
    store = store_with([])
    with pytest.raises(ValueError):
        store.read_batch({"entry": [{"request": {"method": "DELETE", "url": "Basic/1"}}]})


def test_without_redis_to_fence_with_nothing_is_written():
    events = []
    store = store_with(events, down=True)
    with pytest.raises(FhirError) as exc:
        store.post("AuditEvent", {})
    assert exc.value.status == 503 and events == []
