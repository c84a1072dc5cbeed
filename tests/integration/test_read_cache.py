"""The read cache (proxy/read_cache.py): hits are served, and no read ever returns less than the
last acknowledged write. First its rules, with a stand-in store and the test run's real Redis
(a database of its own, so the live proxy's cache is not disturbed); then through the real
proxy, with the real HAPI, concurrent readers and every kind of write."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests
from redis import Redis

from proxy.errors import FhirError
from proxy.read_cache import GENERATION, CachingStore, is_write
from proxy.store_caller import store_auth
from tests.support.fake_store import FakeStore

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json"}
ACCEPT = {"accept": "application/fhir+json"}


@pytest.fixture
def redis(stack):
    r = Redis.from_url(stack.redis_url.rsplit("/", 1)[0] + "/14")
    r.flushdb()
    yield r
    r.flushdb()


def cached(redis, store=None, max_bytes=1000, marker_ttl_s=60) -> tuple[CachingStore, FakeStore]:
    store = store or FakeStore(body={"resourceType": "Patient", "id": "1", "v": 1})
    return CachingStore(store, redis, 60, max_bytes, marker_ttl_s), store


def read(cache, path="Patient/1", headers=ACCEPT, query=()) -> tuple[int, bytes]:
    r = cache.send("GET", path, list(query), dict(headers), None)
    try:
        return r.status, r.read()
    finally:
        r.release_conn()


# --- the rules, with a stand-in store ---------------------------------------------------------


def test_a_second_read_is_a_hit_and_a_write_of_its_type_makes_the_next_a_miss(redis):
    cache, store = cached(redis)
    assert read(cache) == read(cache)
    assert len(store.calls) == 1
    store.body = {"resourceType": "Patient", "id": "1", "v": 2}
    cache.send("PUT", "Patient/2", [], {}, b"{}")  # another Patient: a search could show it
    assert b'"v": 2' in read(cache)[1]
    assert [c["method"] for c in store.calls] == ["GET", "PUT", "GET"]


def test_a_write_of_another_type_leaves_the_cached_reads_of_this_one(redis):
    cache, store = cached(redis)
    read(cache)
    read(cache, "Patient", query=[("name", "x")])
    cache.send("POST", "Observation", [], {}, b"{}")
    cache.send(
        "POST", "", [], {}, b'{"resourceType":"Bundle","entry":[{"request":{"method":"PUT","url":"Task/1"}}]}'
    )
    read(cache)
    read(cache, "Patient", query=[("name", "x")])
    assert [c["method"] for c in store.calls] == ["GET", "GET", "POST", "POST"]


@pytest.mark.parametrize(
    "path,query,body",
    [
        ("", [], b'{"resourceType":"Bundle","entry":[{"request":{"method":"POST","url":"Patient"}}]}'),
        ("Patient/9/$meta-add", [], b"{}"),  # an operation: anything may have changed
        ("Organization/1", [("_cascade", "delete")], None),  # deletes what refers to it
        ("", [], b'{"resourceType": "Parameters"}'),  # not a bundle: cannot say
    ],
)
def test_a_write_of_this_type_or_of_unknown_types_makes_the_next_read_a_miss(redis, path, query, body):
    cache, store = cached(redis)
    read(cache)
    cache.send("DELETE" if body is None else "POST", path, query, {}, body)
    read(cache)
    assert [c["method"] for c in store.calls][-1] == "GET" and len(store.calls) == 3


@pytest.mark.parametrize(
    "path,query",
    [
        ("Task", [("_include", "Task:focus")]),
        ("Patient/1/Observation", []),
        ("Task", [("focus.subject", "x")]),
    ],
)
def test_a_read_across_types_is_a_miss_after_a_write_of_any_type(redis, path, query):
    cache, store = cached(redis)
    read(cache, path, query=query)
    read(cache, path, query=query)
    assert len(store.calls) == 1  # cached, like any read
    cache.send("PUT", "Observation/1", [], {}, b"{}")
    read(cache, path, query=query)
    assert len(store.calls) == 3


def test_a_write_in_flight_keeps_its_type_uncached_and_others_cached(redis):
    cache, store = cached(redis)
    other = cached(redis, store)[0]  # another proxy process
    read(cache, "Task/1")
    with other.fence.write(["Patient"]):
        read(cache)
        read(cache)
        read(cache, "Task/1")
    assert [c["path"] for c in store.calls] == ["Task/1", "Patient/1", "Patient/1"]


def test_a_hit_keeps_the_stores_headers(redis):
    store = FakeStore(headers={"ETag": 'W/"3"', "Last-Modified": "Sun, 22 Nov 2026 10:00:00 GMT"})
    cache, _ = cached(redis, store)
    read(cache)
    hit = cache.send("GET", "Patient/1", [], dict(ACCEPT), None)
    assert hit.headers.get("etag") == 'W/"3"'
    assert hit.headers.get("Last-Modified") == "Sun, 22 Nov 2026 10:00:00 GMT"
    assert len(store.calls) == 1


def test_a_read_that_raced_a_write_is_not_kept(redis):
    """The reader asked the store before the write committed; it must not fill the cache after."""
    cache, store = cached(redis)
    real_send = store.send

    def slow_read(method, path, query, headers, body):
        answer = real_send(method, path, query, headers, body)  # the old version...
        if method == "GET" and len(store.calls) == 1:
            with cache.fence.write():  # ...while a write begins and ends elsewhere
                pass
        return answer

    store.send = slow_read
    read(cache)
    read(cache)
    assert [c["method"] for c in store.calls] == ["GET", "GET"], "the raced answer was served again"


def test_nothing_is_kept_while_a_write_is_in_flight(redis):
    cache, store = cached(redis)
    other = cached(redis, store)[0]  # another proxy process
    with other.fence.write():
        read(cache)
        read(cache)
    assert len(store.calls) == 2


def test_a_write_the_store_never_answered_keeps_the_cache_off_until_its_marker_expires(redis):
    cache, store = cached(redis, marker_ttl_s=1)
    store.fail = FhirError(503, "The FHIR store did not answer in time")
    with pytest.raises(FhirError):
        cache.send("PUT", "Patient/1", [], {}, b"{}")  # may yet be applied by the store
    store.fail = None
    read(cache)
    read(cache)
    assert len(store.calls) == 3, "cached while the store could still apply the write"
    time.sleep(1.5)  # the marker (1 s) has expired: the store's state is final
    read(cache)
    read(cache)
    assert len(store.calls) == 4


def test_without_redis_reads_go_to_the_store_and_writes_are_refused():
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=0.5, socket_connect_timeout=0.5)
    cache, store = cached(dead)
    assert read(cache)[0] == 200 and read(cache)[0] == 200
    assert len(store.calls) == 2
    with pytest.raises(FhirError) as refused:
        cache.send("PUT", "Patient/1", [], {}, b"{}")
    assert refused.value.status == 503 and len(store.calls) == 2  # never reached the store


def test_large_answers_are_relayed_whole_and_not_kept(redis):
    big = {"resourceType": "Bundle", "text": "x" * 5000}
    cache, store = cached(redis, FakeStore(body=big), max_bytes=1000)
    r = cache.send("GET", "Patient", [("name", "x")], dict(ACCEPT), None)
    assert len(r.read(3000)) == 3000 and len(r.read()) > 2000
    read(cache, "Patient", query=[("name", "x")])
    assert len(store.calls) == 2


@pytest.mark.parametrize(
    "path,headers",
    [
        ("Patient/1", {**ACCEPT, "if-none-match": 'W/"1"'}),  # conditional: the store answers 304
        ("Patient/1", {**ACCEPT, "cache-control": "no-cache"}),  # the caller wants the store
        ("Patient/1/$everything", ACCEPT),  # operations are not plain reads
        ("Subscription/1", ACCEPT),  # HAPI changes these itself
    ],
)
def test_what_is_never_cached(redis, path, headers):
    cache, store = cached(redis)
    read(cache, path, headers)
    read(cache, path, headers)
    assert len(store.calls) == 2


def test_error_answers_are_not_cached(redis):
    cache, store = cached(redis, FakeStore(status=404, body={"resourceType": "OperationOutcome"}))
    read(cache)
    read(cache)
    assert len(store.calls) == 2


def test_reads_and_read_only_posts_need_no_fence():
    assert not is_write("GET", "Patient/1") and not is_write("HEAD", "Patient/1")
    assert not is_write("POST", "Patient/_search") and not is_write("POST", "Patient/$validate")
    assert is_write("POST", "") and is_write("DELETE", "Patient") and is_write("PATCH", "Patient/1")
    assert is_write("POST", "Patient/1/$meta-add")


# --- through the real proxy and the real store ------------------------------------------------


def put_patient(stack, session, pid, family) -> requests.Response:
    body = {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}
    r = session.put(f"{stack.fhir}/Patient/{pid}", json=body, headers=FHIR_JSON)
    assert r.status_code in (200, 201), r.text
    return r


def family_at_proxy(stack, session, pid, **headers) -> str:
    r = session.get(f"{stack.fhir}/Patient/{pid}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["name"][0]["family"]


def behind_the_proxys_back(stack, pid, family) -> None:
    """A write straight to the store, which fhirplug cannot see (so must never be done in use)."""
    body = {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}
    r = requests.put(
        f"{stack.store_url}/Patient/{pid}", json=body, headers=FHIR_JSON, timeout=30, auth=store_auth()
    )
    assert r.status_code == 200, r.text


def unobserved(stack, attempt) -> bool:
    """Run ``attempt`` while no write happens through fhirplug (the forwarding worker of earlier
    tests may still be finishing); True when that held, so what ``attempt`` asserted counts."""
    redis = Redis.from_url(stack.redis_url)
    for _ in range(5):
        before = redis.get(GENERATION)
        attempt()
        if redis.get(GENERATION) == before:
            return True
    return False


def test_a_repeated_read_through_the_proxy_is_a_hit_until_a_write_through_fhirplug(stack, http):
    pid = f"rc-{uuid.uuid4().hex[:12]}"
    put_patient(stack, http, pid, "Before")
    seen: list[tuple[str, str, str]] = []

    def attempt():
        first = family_at_proxy(stack, http, pid)  # kept, if it was not already
        changed = uuid.uuid4().hex[:8]
        behind_the_proxys_back(stack, pid, changed)
        again = family_at_proxy(stack, http, pid)
        fresh = family_at_proxy(stack, http, pid, **{"Cache-Control": "no-cache"})
        seen.append((first, again, fresh, changed))

    assert unobserved(stack, attempt), "fhirplug kept writing meanwhile"
    first, again, fresh, changed = seen[-1]
    assert again == first != changed, "the second read was not answered from the cache"
    assert fresh == changed, "Cache-Control: no-cache was answered from the cache"
    # any write through fhirplug (here of another resource entirely) ends what was kept
    put_patient(stack, http, f"rc-{uuid.uuid4().hex[:12]}", "Unrelated")
    assert family_at_proxy(stack, http, pid) == changed


def test_every_acknowledged_write_is_what_the_next_read_sees_under_concurrent_reads(stack, http):
    pid = f"rc-{uuid.uuid4().hex[:12]}"
    put_patient(stack, http, pid, "v0")
    stop = threading.Event()
    errors: list[str] = []

    def reader():
        s = stack.session()
        while not stop.is_set():
            r = s.get(f"{stack.fhir}/Patient/{pid}")
            if r.status_code not in (200, 410):
                errors.append(r.text)
            s.get(f"{stack.fhir}/Patient", params={"_id": pid})

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in readers:
        t.start()
    try:
        for i in range(1, 16):
            put_patient(stack, http, pid, f"v{i}")
            assert family_at_proxy(stack, http, pid) == f"v{i}", f"stale after update {i}"
            found = http.get(f"{stack.fhir}/Patient", params={"_id": pid}).json()
            assert found["entry"][0]["resource"]["name"][0]["family"] == f"v{i}"
        # a transaction, a JSON Patch and a delete, each seen at once
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {"resourceType": "Patient", "id": pid, "name": [{"family": "tx"}]},
                    "request": {"method": "PUT", "url": f"Patient/{pid}"},
                }
            ],
        }
        assert http.post(stack.fhir, json=bundle, headers=FHIR_JSON).status_code == 200
        assert family_at_proxy(stack, http, pid) == "tx"
        patch = [{"op": "replace", "path": "/name/0/family", "value": "patched"}]
        r = http.patch(
            f"{stack.fhir}/Patient/{pid}", json=patch, headers={"Content-Type": "application/json-patch+json"}
        )
        assert r.status_code == 200, r.text
        assert family_at_proxy(stack, http, pid) == "patched"
        assert http.delete(f"{stack.fhir}/Patient/{pid}").status_code in (200, 204)
        assert http.get(f"{stack.fhir}/Patient/{pid}").status_code == 410
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not errors, errors[:3]
