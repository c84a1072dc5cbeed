"""The subscriptions plugin: who may write Subscriptions, what it refuses, the write path's
matching (one Redis read per write of a topic's type, none for other types) and discovery."""

from __future__ import annotations

import pytest

from plugins import subscriptions as plugin
from proxy.context import Client, StorageOutcome, WriteEntry
from proxy.errors import FhirError
from proxy.response import ProxyResponse
from subscriptions import registry
from subscriptions.resource import Spec
from tests.support.fake_redis import FakeRedis
from tests.support.plugin_context import request_context

TOPIC = "https://fhirplug.org/fhir/SubscriptionTopic/medication-request-active"
TENANT = "https://fhirplug.org/fhir/CodeSystem/tenant"


class CountingRedis(FakeRedis):
    def __init__(self):
        super().__init__()
        self.gets = 0

    def get(self, key):
        self.gets += 1
        return super().get(key)

    def pipeline(self):
        return self

    def execute(self):
        return []


@pytest.fixture
def redis():
    return CountingRedis()


@pytest.fixture
def subs(redis):
    return plugin.Subscriptions(redis, "https://fhir.example/fhir")


def active(redis, sid, owner="FA001"):
    registry.save(redis, Spec(id=sid, topic=TOPIC, endpoint="https://x/hook", owner=owner, status="active"))


def test_a_reader_may_not_write_a_subscription(subs):
    ctx = request_context("create", "POST", "Subscription", client=Client("r", None, "reader"))
    with pytest.raises(FhirError) as err:
        subs.fhirplug_request(ctx=ctx)
    assert err.value.status == 403


def test_a_patch_is_refused_for_a_put(subs):
    ctx = request_context("patch", "PATCH", "Subscription", "s1", client=Client("a", "FA001", "spoke"))
    with pytest.raises(FhirError) as err:
        subs.fhirplug_request(ctx=ctx)
    assert err.value.status == 405


def test_reads_go_through_to_tenancy(subs):
    ctx = request_context("read", "GET", "Subscription", "s1", client=Client("a", "FA001", "spoke"))
    assert subs.fhirplug_request(ctx=ctx) is None


def test_another_tenants_status_is_not_found(subs, redis):
    active(redis, "s1", owner="FA001")
    ctx = request_context("operation", "GET", "Subscription", "s1", client=Client("b", "FB002", "spoke"))
    ctx.interaction = type(ctx.interaction)("operation", "GET", "Subscription", "s1", operation="$status")
    with pytest.raises(FhirError) as err:
        subs.fhirplug_request(ctx=ctx)
    assert err.value.status == 404


def test_a_subscription_in_a_transaction_is_refused(subs):
    bundle = {
        "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "DELETE", "url": "Subscription/s1"}},
        ]
    }
    err = subs.fhirplug_before_bundle(ctx=request_context("transaction", "POST"), bundle=bundle)
    assert err is not None and err.expression == ["Bundle.entry[1].request"]


def _write(subs, resource, status=201):
    ctx = request_context("create", "POST", resource["resourceType"], client=Client("a", "FA001", "spoke"))
    entry = WriteEntry("POST", resource["resourceType"], resource)
    outcome = StorageOutcome(
        status, f"{resource['resourceType']}/{resource['id']}/_history/1", resource=resource
    )
    subs.fhirplug_after_storage(ctx=ctx, entry=entry, outcome=outcome)


def test_a_matching_write_records_one_event_per_subscription(subs, redis, monkeypatch):
    recorded = []
    monkeypatch.setattr(plugin.queue, "record_and_wake", lambda r, sid, event: recorded.append(sid) or 1)
    active(redis, "mine")
    active(redis, "theirs", owner="FB002")
    mr = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "meta": {"versionId": "1", "security": [{"system": TENANT, "code": "FA001"}]},
    }
    _write(subs, mr)
    assert recorded == ["mine"]


def test_other_types_cost_no_redis_read_and_a_topic_type_one(subs, redis, monkeypatch):
    monkeypatch.setattr(plugin.queue, "record_and_wake", lambda *a: 1)
    before = redis.gets
    _write(subs, {"resourceType": "Patient", "id": "p1"})
    assert redis.gets == before
    active(redis, "mine")
    mr = {"resourceType": "MedicationRequest", "id": "m1", "status": "draft", "meta": {"versionId": "1"}}
    _write(subs, mr)  # fills the cache
    before = redis.gets
    _write(subs, mr)
    assert redis.gets == before + 1  # the generation only: the subscriptions come from memory


def test_the_capability_statement_lists_topics_and_operations(subs):
    cs = {"resourceType": "CapabilityStatement", "rest": [{"resource": [{"type": "Subscription"}]}]}
    response = ProxyResponse.from_resource(200, cs)
    subs.fhirplug_response(ctx=request_context("capabilities"), response=response)
    sub = response.resource["rest"][0]["resource"][0]
    assert {e["valueCanonical"] for e in sub["extension"]} >= {TOPIC}
    assert {o["name"] for o in sub["operation"]} == {"status", "events"}
