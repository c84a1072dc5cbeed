"""Delivery dedup: a partner's repeated delivery is answered with the first answer, not redone."""

import json
import threading
import time

import pytest

from plugins.delivery_dedup import DeliveryDedup
from proxy.context import Client
from proxy.errors import FhirError
from proxy.response import ProxyResponse
from tests.support.fake_redis import FakeRedis
from tests.support.plugin_context import request_context

PARTNER = Client("hub-worker", "FA565", "hub")
KEY = "fhirplug:delivery-seen:hub-worker:d-1"
STORED = {"resourceType": "Task", "id": "1"}


def delivery(delivery_id: str = "d-1", client: Client = PARTNER, kind: str = "update", method: str = "PUT"):
    return request_context(kind, method, "Task", "1", client=client, headers={"X-Delivery-ID": delivery_id})


def answered(status: int = 200) -> ProxyResponse:
    return ProxyResponse.from_resource(status, STORED, {"ETag": 'W/"2"', "X-Other": "dropped"})


def test_the_first_delivery_claims_its_id_and_is_processed():
    redis = FakeRedis()
    assert DeliveryDedup(redis).fhirplug_request(ctx=delivery()) is None
    assert json.loads(redis.get(KEY)) == {"state": "pending"}


def test_a_successful_answer_is_kept():
    redis = FakeRedis()
    dedup = DeliveryDedup(redis)
    ctx = delivery()
    dedup.fhirplug_request(ctx=ctx)
    dedup.fhirplug_response(ctx=ctx, response=answered())
    record = json.loads(redis.get(KEY))
    assert (record["state"], record["status"]) == ("done", 200)
    assert record["headers"] == {"Content-Type": "application/fhir+json", "ETag": 'W/"2"'}


def test_a_repeated_delivery_gets_the_first_answer():
    dedup = DeliveryDedup(FakeRedis())
    first = delivery()
    dedup.fhirplug_request(ctx=first)
    dedup.fhirplug_response(ctx=first, response=answered())
    again = dedup.fhirplug_request(ctx=delivery())
    assert isinstance(again, ProxyResponse)
    assert (again.status, again.headers["ETag"], again.resource) == (200, 'W/"2"', STORED)


def test_a_repeat_during_the_first_waits_for_its_answer():
    dedup = DeliveryDedup(FakeRedis())
    first = delivery()
    dedup.fhirplug_request(ctx=first)
    answers: list = []
    waiting = threading.Thread(target=lambda: answers.append(dedup.fhirplug_request(ctx=delivery())))
    waiting.start()
    time.sleep(0.2)  # the repeat finds the claim pending
    assert answers == []
    dedup.fhirplug_response(ctx=first, response=answered())
    waiting.join(timeout=5)
    assert answers[0].status == 200 and answers[0].resource == STORED


def test_a_refused_delivery_is_judged_afresh_when_repeated():
    redis = FakeRedis()
    dedup = DeliveryDedup(redis)
    first = delivery()
    dedup.fhirplug_request(ctx=first)
    dedup.fhirplug_response(ctx=first, response=answered(422))
    assert redis.get(KEY) is None
    assert dedup.fhirplug_request(ctx=delivery()) is None


def test_the_same_id_from_another_client_is_another_delivery():
    dedup = DeliveryDedup(FakeRedis())
    first = delivery()
    dedup.fhirplug_request(ctx=first)
    dedup.fhirplug_response(ctx=first, response=answered())
    other = Client("spoke-worker", "FS1A1", "spoke")
    assert dedup.fhirplug_request(ctx=delivery(client=other)) is None


def test_an_unsafe_delivery_id_is_refused():
    with pytest.raises(FhirError) as raised:
        DeliveryDedup(FakeRedis()).fhirplug_request(ctx=delivery("bad id"))
    assert raised.value.status == 400


def test_a_read_is_not_deduplicated():
    redis = FakeRedis()
    assert DeliveryDedup(redis).fhirplug_request(ctx=delivery(kind="read", method="GET")) is None
    assert redis.get(KEY) is None


def test_an_anonymous_caller_is_not_deduplicated():
    redis = FakeRedis()
    DeliveryDedup(redis).fhirplug_request(ctx=delivery(client=Client()))
    assert redis.values == {}
