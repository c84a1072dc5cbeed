"""Dispense return: the hub's dispenses are linked to the spoke's own MedicationRequests."""

import json
from pathlib import Path

import pytest

from hubspoke.identifiers import TENANT_SYSTEM
from plugins.dispense_return import DispenseReturn
from proxy.context import Client, Message
from proxy.errors import FhirError
from tests.support.plugin_context import ScriptedStore, request_context, searchset

EXAMPLES = Path(__file__).resolve().parents[3] / "ig" / "examples"
HUB = Client("hub-system", "FA565", "hub")
TABLETS = {"value": 60, "unit": "tablet", "system": "http://snomed.info/sct", "code": "428673006"}
MR = {
    "resourceType": "MedicationRequest",
    "id": "mr-7",
    "status": "active",
    "dispenseRequest": {"quantity": TABLETS},
}


def message(name: str = "valid-hub-to-spoke") -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def dispenses(bundle: dict) -> list[dict]:
    return [
        e["resource"]
        for e in bundle["entry"]
        if e.get("resource", {}).get("resourceType") == "MedicationDispense"
    ]


def added_patches(bundle: dict) -> list[dict]:
    return [e["request"] for e in bundle["entry"] if e["request"]["url"].startswith("MedicationRequest/")]


def context(store: ScriptedStore, kind: str = "hub-to-spoke"):
    ctx = request_context("transaction", "POST", client=HUB, store=store)
    ctx.message = Message(kind, "digest", "FA565", "hub-system")
    return ctx


def found(*resources: dict) -> ScriptedStore:
    return ScriptedStore({("GET", "MedicationRequest"): searchset(*resources)})


def test_a_dispense_is_linked_to_the_spokes_medication_request():
    bundle = message()
    DispenseReturn().fhirplug_before_bundle(ctx=context(found(MR)), bundle=bundle)
    assert dispenses(bundle)[0]["authorizingPrescription"][0]["reference"] == "MedicationRequest/mr-7"


def test_a_completed_dispense_completes_its_medication_request_in_the_same_transaction():
    bundle = message()
    DispenseReturn().fhirplug_before_bundle(ctx=context(found(MR)), bundle=bundle)
    assert added_patches(bundle) == [{"method": "PATCH", "url": "MedicationRequest/mr-7"}]
    patch = bundle["entry"][-1]["resource"]
    assert patch["resourceType"] == "Parameters"
    assert {"name": "value", "valueCode": "completed"} in patch["parameter"][0]["part"]


def test_a_dispense_not_completed_leaves_its_medication_request_open():
    bundle = message()
    dispenses(bundle)[0]["status"] = "in-progress"
    DispenseReturn().fhirplug_before_bundle(ctx=context(found(MR)), bundle=bundle)
    assert added_patches(bundle) == []


def test_a_dispense_naming_no_known_medication_request_is_refused():
    with pytest.raises(FhirError) as raised:
        DispenseReturn().fhirplug_before_bundle(ctx=context(found()), bundle=message())
    assert raised.value.status == 422
    assert raised.value.expression == ["Bundle.entry[1].resource.authorizingPrescription[0]"]


def test_an_identifier_that_matches_several_requests_is_refused():
    with pytest.raises(FhirError) as raised:
        DispenseReturn().fhirplug_before_bundle(
            ctx=context(found(MR, {**MR, "id": "mr-8"})), bundle=message()
        )
    assert raised.value.status == 422


def test_a_tenants_look_up_searches_its_own_requests_only():
    store = found(MR)
    DispenseReturn().fhirplug_before_bundle(ctx=context(store), bundle=message())
    assert ("_security", f"{TENANT_SYSTEM}|FA565") in store.calls[0]["query"]


def test_a_medication_request_is_completed_once_for_two_dispenses():
    bundle = message()
    second = json.loads(json.dumps(bundle["entry"][1]))
    bundle["entry"].insert(2, second)
    DispenseReturn().fhirplug_before_bundle(ctx=context(found(MR)), bundle=bundle)
    assert len(added_patches(bundle)) == 1


def test_a_literal_reference_needs_no_look_up_by_identifier():
    bundle = message()
    dispenses(bundle)[0]["authorizingPrescription"] = [{"reference": "MedicationRequest/mr-9"}]
    store = ScriptedStore({("GET", "MedicationRequest/mr-9"): {**MR, "id": "mr-9"}})
    DispenseReturn().fhirplug_before_bundle(ctx=context(store), bundle=bundle)
    assert [c for c in store.calls if c["path"] == "MedicationRequest"] == []
    assert added_patches(bundle) == [{"method": "PATCH", "url": "MedicationRequest/mr-9"}]


def test_a_dispense_short_of_the_quantity_asked_leaves_the_request_open():
    bundle = message()
    dispenses(bundle)[0]["quantity"]["value"] = 20
    DispenseReturn().fhirplug_before_bundle(ctx=context(found(MR)), bundle=bundle)
    assert added_patches(bundle) == []


def test_dispenses_stored_before_count_towards_the_quantity():
    bundle = message()
    dispenses(bundle)[0]["quantity"]["value"] = 20
    earlier = {
        "resourceType": "MedicationDispense",
        "status": "completed",
        "quantity": {**TABLETS, "value": 40},
    }
    store = ScriptedStore(
        {("GET", "MedicationRequest"): searchset(MR), ("GET", "MedicationDispense"): searchset(earlier)}
    )
    DispenseReturn().fhirplug_before_bundle(ctx=context(store), bundle=bundle)
    assert added_patches(bundle) == [{"method": "PATCH", "url": "MedicationRequest/mr-7"}]


def test_a_spoke_to_hub_message_is_left_alone():
    bundle = message("valid-spoke-to-hub")
    before = json.loads(json.dumps(bundle))
    DispenseReturn().fhirplug_before_bundle(ctx=context(found(), "spoke-to-hub"), bundle=bundle)
    assert bundle == before
