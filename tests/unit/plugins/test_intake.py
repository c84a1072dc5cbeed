"""Message intake: the first copy claims the message, a resend gets the first answer."""

import json
import threading
import time
from pathlib import Path

import pytest

from hubspoke.identifiers import MESSAGE_ID_SYSTEM, ODS_SYSTEM, PARTNER_TASK_SYSTEM
from plugins.intake import Intake, message_key
from proxy.context import Client, Message
from proxy.errors import FhirError
from proxy.response import ProxyResponse
from tests.support.fake_redis import FakeRedis
from tests.support.plugin_context import ScriptedStore, request_context, searchset

EXAMPLES = Path(__file__).resolve().parents[3] / "ig" / "examples"
SPOKE = Client("spoke-system", "FS1A1", "spoke")
ANSWER = {
    "resourceType": "Bundle",
    "type": "transaction-response",
    "entry": [{"response": {"status": "201"}}],
}


def message() -> dict:
    return json.loads((EXAMPLES / "valid-spoke-to-hub.json").read_text())


def context(digest: str = "d1", store: ScriptedStore | None = None):
    ctx = request_context("transaction", "POST", client=SPOKE, store=store)
    ctx.message = Message("spoke-to-hub", digest, "FS1A1", "spoke-system")
    return ctx


def key_of(bundle: dict) -> str:
    return message_key("spoke-system", bundle["identifier"])


def test_the_first_copy_claims_the_message():
    redis, bundle = FakeRedis(), message()
    assert (
        Intake(redis, own_ods="FA565", role="hub").fhirplug_before_bundle(ctx=context(), bundle=bundle)
        is None
    )
    assert json.loads(redis.get(key_of(bundle))) == {"state": "pending", "digest": "d1"}


def test_the_first_copys_success_is_answered_201_and_remembered():
    redis = FakeRedis()
    intake = Intake(redis, own_ods="FA565", role="hub")
    ctx, bundle = context(), message()
    intake.fhirplug_before_bundle(ctx=ctx, bundle=bundle)
    response = ProxyResponse.from_resource(200, ANSWER)
    intake.fhirplug_response(ctx=ctx, response=response)
    assert response.status == 201
    assert json.loads(redis.get(key_of(bundle)))["state"] == "done"


def test_a_later_resend_is_answered_with_the_first_answer():
    intake = Intake(FakeRedis(), own_ods="FA565", role="hub")
    first = context()
    intake.fhirplug_before_bundle(ctx=first, bundle=message())
    intake.fhirplug_response(ctx=first, response=ProxyResponse.from_resource(200, ANSWER))
    again = intake.fhirplug_before_bundle(ctx=context(), bundle=message())
    assert isinstance(again, ProxyResponse)
    assert (again.status, again.resource) == (201, ANSWER)


def test_a_resend_during_the_first_waits_for_its_answer():
    intake = Intake(FakeRedis(), own_ods="FA565", role="hub")
    first = context()
    intake.fhirplug_before_bundle(ctx=first, bundle=message())
    answers: list = []
    waiting = threading.Thread(
        target=lambda: answers.append(intake.fhirplug_before_bundle(ctx=context(), bundle=message()))
    )
    waiting.start()
    time.sleep(0.2)  # the resend finds the claim pending
    assert answers == []
    intake.fhirplug_response(ctx=first, response=ProxyResponse.from_resource(200, ANSWER))
    waiting.join(timeout=5)
    assert (answers[0].status, answers[0].resource) == (201, ANSWER)


def test_the_same_identifier_with_other_content_is_a_conflict():
    intake = Intake(FakeRedis(), own_ods="FA565", role="hub")
    intake.fhirplug_before_bundle(ctx=context("d1"), bundle=message())
    with pytest.raises(FhirError) as raised:
        intake.fhirplug_before_bundle(ctx=context("d2"), bundle=message())
    assert raised.value.status == 409


def test_a_failed_first_copy_lets_a_resend_be_processed_afresh():
    redis = FakeRedis()
    intake = Intake(redis, own_ods="FA565", role="hub")
    first = context()
    intake.fhirplug_before_bundle(ctx=first, bundle=message())
    intake.fhirplug_response(ctx=first, response=ProxyResponse(400))
    assert redis.get(key_of(message())) is None
    assert intake.fhirplug_before_bundle(ctx=context(), bundle=message()) is None


def test_a_message_without_an_identifier_is_refused():
    bundle = message()
    del bundle["identifier"]
    with pytest.raises(FhirError) as raised:
        Intake(FakeRedis(), own_ods="FA565", role="hub").fhirplug_before_bundle(ctx=context(), bundle=bundle)
    assert raised.value.status == 400


def test_a_resend_redis_forgot_is_answered_from_the_stored_task():
    task = {"resourceType": "Task", "id": "42", "meta": {"versionId": "3"}}
    store = ScriptedStore({("GET", "Task"): searchset(task)})
    answer = Intake(FakeRedis(), own_ods="FA565", role="hub").fhirplug_before_bundle(
        ctx=context(store=store), bundle=message()
    )
    assert answer.status == 201
    assert answer.resource["entry"][0]["response"]["location"] == "Task/42/_history/3"


def test_the_task_is_marked_with_the_message_and_the_spokes_own_id():
    bundle = message()
    bundle["entry"][0]["resource"]["id"] = "spoke-task-1"
    Intake(FakeRedis(), own_ods="FA565", role="hub").fhirplug_before_bundle(ctx=context(), bundle=bundle)
    ids = bundle["entry"][0]["resource"]["identifier"]
    value = f"FS1A1/{bundle['identifier']['value']}"
    assert {"system": MESSAGE_ID_SYSTEM, "value": value} in ids
    assert {"system": PARTNER_TASK_SYSTEM, "value": "FS1A1/spoke-task-1"} in ids


def test_a_task_without_an_owner_is_made_ours():
    bundle = message()
    del bundle["entry"][0]["resource"]["owner"]
    Intake(FakeRedis(), own_ods="FA565", role="hub").fhirplug_before_bundle(ctx=context(), bundle=bundle)
    assert bundle["entry"][0]["resource"]["owner"] == {"identifier": {"system": ODS_SYSTEM, "value": "FA565"}}


def test_a_hub_refuses_a_task_owned_by_another_hub():
    with pytest.raises(FhirError) as raised:
        Intake(FakeRedis(), own_ods="FB999", role="hub").fhirplug_before_bundle(
            ctx=context(), bundle=message()
        )
    assert raised.value.status == 422


def test_a_bundle_that_is_no_message_is_left_alone():
    ctx = request_context("transaction", "POST", client=SPOKE)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    assert (
        Intake(FakeRedis(), own_ods="FA565", role="hub").fhirplug_before_bundle(ctx=ctx, bundle=bundle)
        is None
    )


def test_a_hub_refuses_an_owner_given_as_a_reference_to_another_organisation():
    # the owner named by reference, to an Organization in the store, not by identifier
    other = {
        "resourceType": "Organization",
        "id": "o9",
        "identifier": [{"system": ODS_SYSTEM, "value": "FB999"}],
    }
    bundle = message()
    bundle["entry"][0]["resource"]["owner"] = {"reference": "Organization/o9"}
    store = ScriptedStore({("GET", "Organization/o9"): other})
    with pytest.raises(FhirError) as raised:
        Intake(FakeRedis(), own_ods="FA565", role="hub").fhirplug_before_bundle(
            ctx=context(store=store), bundle=bundle
        )
    assert (raised.value.status, raised.value.expression) == (422, ["Task.owner"])
    assert "FB999" in raised.value.diagnostics


def test_a_hub_accepts_an_owner_given_as_a_reference_to_itself():
    own = {
        "resourceType": "Organization",
        "id": "o1",
        "identifier": [{"system": ODS_SYSTEM, "value": "FA565"}],
    }
    bundle = message()
    bundle["entry"][0]["resource"]["owner"] = {"reference": "Organization/o1"}
    store = ScriptedStore({("GET", "Organization/o1"): own})
    Intake(FakeRedis(), own_ods="FA565", role="hub").fhirplug_before_bundle(
        ctx=context(store=store), bundle=bundle
    )
    assert bundle["entry"][0]["resource"]["owner"] == {"reference": "Organization/o1"}


def test_a_hub_refuses_an_owner_it_cannot_identify():
    bundle = message()
    bundle["entry"][0]["resource"]["owner"] = {"reference": "https://elsewhere.example/Organization/x"}
    with pytest.raises(FhirError) as raised:
        Intake(FakeRedis(), own_ods="FA565", role="hub").fhirplug_before_bundle(ctx=context(), bundle=bundle)
    assert (raised.value.status, raised.value.expression) == (422, ["Task.owner"])


def test_a_resend_held_by_a_stale_claim_is_answered_from_the_store_at_once():
    """After a crash the claim may stay pending; the store shows the first copy was stored."""
    redis, bundle = FakeRedis(), message()
    redis.set(key_of(bundle), json.dumps({"state": "pending", "digest": "d1"}))
    task = {"resourceType": "Task", "id": "42", "meta": {"versionId": "1"}}
    store = ScriptedStore({("GET", "Task"): searchset(task)})
    t0 = time.monotonic()
    answer = Intake(redis, own_ods="FA565", role="hub").fhirplug_before_bundle(
        ctx=context(store=store), bundle=bundle
    )
    assert time.monotonic() - t0 < 1
    assert answer.status == 201 and json.loads(redis.get(key_of(bundle)))["state"] == "done"


def test_a_resend_while_the_first_is_unsettled_is_a_503_with_retry_after(monkeypatch):
    monkeypatch.setattr("plugins.intake.WAIT_S", 0.1)
    redis, bundle = FakeRedis(), message()
    redis.set(key_of(bundle), json.dumps({"state": "pending", "digest": "d1"}))
    with pytest.raises(FhirError) as raised:
        Intake(redis, own_ods="FA565", role="hub").fhirplug_before_bundle(ctx=context(), bundle=bundle)
    assert raised.value.status == 503 and raised.value.headers["Retry-After"]


# ---- the Patient and Organization of a message: conditional on NHS Number and ODS code ---------


def test_the_seeds_plain_creates_of_patient_and_organization_become_conditional():
    bundle = message()
    for e in bundle["entry"]:
        e["request"].pop("ifNoneExist", None)  # as the seed builds them
    Intake(FakeRedis(), own_ods="FA565", role="hub").fhirplug_before_bundle(ctx=context(), bundle=bundle)
    criteria = {e["resource"]["resourceType"]: e["request"].get("ifNoneExist") for e in bundle["entry"]}
    assert criteria["Patient"] == "identifier=https://fhir.nhs.uk/Id/nhs-number|9449304130"
    assert criteria["Organization"] == f"identifier={ODS_SYSTEM}|VNE51"
    assert criteria["Task"] is None and criteria["MedicationRequest"] is None


def test_several_matching_records_are_a_412_naming_the_entry_and_identifier():
    redis = FakeRedis()
    intake = Intake(redis, own_ods="FA565", role="hub")
    ctx, bundle = context(), message()
    for e in bundle["entry"]:
        e["request"].pop("ifNoneExist", None)
    intake.fhirplug_before_bundle(ctx=ctx, bundle=bundle)
    store_said = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "processing",
                "diagnostics": "HAPI-0958: Failed to CREATE "
                'resource with match URL "Patient?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number'
                '%7C9449304130" because this search matched 2 resources',
            }
        ],
    }
    response = ProxyResponse.from_resource(412, store_said)
    intake.fhirplug_response(ctx=ctx, response=response)
    assert response.status == 412
    [issue] = response.resource["issue"]
    assert issue["code"] == "duplicate"
    assert "9449304130" in issue["diagnostics"] and "nothing was stored" in issue["diagnostics"]
    patient_index = next(
        i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Patient"
    )
    assert issue["expression"] == [f"Bundle.entry[{patient_index}].resource.identifier"]
    assert redis.get(key_of(bundle)) is None  # released: a corrected resend is processed afresh
