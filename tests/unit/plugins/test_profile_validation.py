"""Profile validation: a message is checked with the store's $validate, answered once per content."""

import json
from pathlib import Path

import pytest

from plugins.profile_validation import PROFILES, ProfileValidation
from proxy.conformance import GENERATION_KEY
from proxy.context import Client, Message, StorageOutcome, WriteEntry
from proxy.errors import FhirError
from tests.support.fake_redis import FakeRedis
from tests.support.fake_store import FakeStore
from tests.support.plugin_context import request_context

EXAMPLES = Path(__file__).resolve().parents[3] / "ig" / "examples"
SPOKE = Client("spoke-system", "FS1A1", "spoke")
ERROR = {
    "severity": "error",
    "code": "invalid",
    "diagnostics": "NHS number is wrong",
    "expression": ["Patient"],
}
WARNING = {"severity": "warning", "code": "informational", "diagnostics": "just so you know"}


def message() -> dict:
    return json.loads((EXAMPLES / "valid-spoke-to-hub.json").read_text())


def validating(*issues: dict) -> FakeStore:
    return FakeStore(body={"resourceType": "OperationOutcome", "issue": list(issues)})


def context(store: FakeStore):
    ctx = request_context("transaction", "POST", client=SPOKE, store=store)
    ctx.message = Message("spoke-to-hub", "digest", "FS1A1", "spoke-system")
    return ctx


def test_an_invalid_message_is_refused_with_the_validators_errors():
    ctx = context(validating(ERROR, WARNING))
    with pytest.raises(FhirError) as raised:
        ProfileValidation(FakeRedis()).fhirplug_before_bundle(ctx=ctx, bundle=message())
    assert raised.value.status == 400
    issues = raised.value.to_resource()["issue"]
    assert [(i["diagnostics"], i["expression"]) for i in issues] == [("NHS number is wrong", ["Patient"])]


def test_the_message_is_validated_against_its_england_profile():
    store = validating()
    ProfileValidation(FakeRedis()).fhirplug_before_bundle(ctx=context(store), bundle=message())
    assert store.calls[0]["method"] == "POST" and store.calls[0]["path"] == "Bundle/$validate"
    assert store.calls[0]["query"] == [("profile", PROFILES["spoke-to-hub"])]


def test_warnings_alone_do_not_block():
    ctx = context(validating(WARNING))
    assert ProfileValidation(FakeRedis()).fhirplug_before_bundle(ctx=ctx, bundle=message()) is None


def test_the_same_content_is_answered_from_the_cache():
    store, plugin = validating(WARNING), ProfileValidation(FakeRedis())
    plugin.fhirplug_before_bundle(ctx=context(store), bundle=message())
    plugin.fhirplug_before_bundle(ctx=context(store), bundle=message())
    assert len(store.calls) == 1
    assert plugin.validate(store, message(), PROFILES["spoke-to-hub"])[1] is True


def test_a_cached_refusal_still_refuses():
    store, plugin = validating(ERROR), ProfileValidation(FakeRedis())
    for _ in range(2):
        with pytest.raises(FhirError):
            plugin.fhirplug_before_bundle(ctx=context(store), bundle=message())
    assert len(store.calls) == 1


def test_a_conformance_change_makes_cached_answers_stale():
    redis = FakeRedis()
    store, plugin = validating(), ProfileValidation(redis)
    plugin.fhirplug_before_bundle(ctx=context(store), bundle=message())
    entry = WriteEntry("PUT", "StructureDefinition/x", {"resourceType": "StructureDefinition"})
    plugin.fhirplug_after_storage(ctx=context(store), entry=entry, outcome=StorageOutcome(200))
    assert redis.get(GENERATION_KEY) == b"1"
    plugin.fhirplug_before_bundle(ctx=context(store), bundle=message())
    assert len(store.calls) == 2


def test_a_refused_conformance_write_leaves_the_cache_alone():
    redis = FakeRedis()
    entry = WriteEntry("PUT", "StructureDefinition/x", {"resourceType": "StructureDefinition"})
    ProfileValidation(redis).fhirplug_after_storage(
        ctx=context(validating()), entry=entry, outcome=StorageOutcome(400)
    )
    assert redis.get(GENERATION_KEY) is None


def test_a_bundle_that_is_no_message_is_not_validated():
    store = validating(ERROR)
    ctx = request_context("transaction", "POST", client=SPOKE, store=store)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    assert ProfileValidation(FakeRedis()).fhirplug_before_bundle(ctx=ctx, bundle=bundle) is None
    assert store.calls == []
