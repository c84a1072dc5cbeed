"""Reading a notification's inputs from the store: what is read for each notification builds the
same message as the builders given the fixtures directly, and the trigger's rule."""

from __future__ import annotations

import pytest

from gpnotify import (
    EMERGENCY_SUPPLY,
    IMMUNISATION,
    MINOR_ILLNESS,
    Sender,
    build_emergency_supply,
    build_immunisation,
    build_minor_illness_referral,
    gather,
)
from proxy.errors import FhirError
from proxy.store_reader import StoreReader
from tests.support.memory_store import MemoryStore
from tests.unit.gpnotify.examples import normalise, r4_inputs

SENDER = Sender("X26", "NOROT003")


def reader(resources: list[dict]) -> StoreReader:
    return StoreReader(MemoryStore(resources))


def stored(name: str) -> tuple[StoreReader, list[dict]]:
    """The fixture as the store keeps it (every resource version 1)."""
    resources = r4_inputs(name)
    store = MemoryStore(resources)
    return StoreReader(store), [store.resources[f"{r['resourceType']}/{r['id']}"] for r in resources]


def same(a, b) -> bool:
    return a.message_id == b.message_id and normalise(a.bundle) == normalise(b.bundle)


def test_an_immunisation_read_from_the_store_is_the_message_built_from_its_data():
    store, (focus, *related) = stored("immunisation-JackDawkins.r4.json")
    n = gather.build(store, focus, SENDER)
    assert same(n.message, build_immunisation(focus, related, SENDER))
    assert (n.about, n.patient, n.encounter) == (
        ["Immunization/imm-jack-1"],
        "Patient/pat-jack",
        "Encounter/enc-jack",
    )


def test_an_emergency_supply_gathers_every_supply_of_its_consultation():
    store, resources = stored("emergency-supply-WilliamSmith.r4.json")
    dispenses, related = resources[:2], resources[2:]
    n = gather.build(store, dispenses[1], SENDER)  # triggered by either dispense: the same message
    assert n.about == ["MedicationDispense/disp-humulin", "MedicationDispense/disp-needles"]
    assert same(n.message, build_emergency_supply(dispenses, related, SENDER))
    assert gather.build(store, dispenses[0], SENDER).message.message_id == n.message.message_id


def test_a_minor_illness_consultation_is_read_from_its_encounter():
    store, (focus, *related) = stored("minor-illness-referral-JackSmith.r4.json")
    n = gather.build(store, focus, SENDER)
    assert same(n.message, build_minor_illness_referral(focus, related, SENDER))
    assert n.encounter == "Encounter/enc-jacksmith"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("immunisation-JackDawkins.r4.json", IMMUNISATION),
        ("emergency-supply-WilliamSmith.r4.json", EMERGENCY_SUPPLY),
        ("minor-illness-referral-JackSmith.r4.json", MINOR_ILLNESS),
    ],
)
def test_the_rule_names_each_notification(name, kind):
    assert gather.kind_of(r4_inputs(name)[0]) is kind


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        ({"resourceType": "Immunization", "id": "1", "status": "not-done"}, "Immunization.status"),
        ({"resourceType": "MedicationDispense", "id": "1", "status": "completed"}, "MedicationDispense.type"),
        (
            {"resourceType": "MedicationDispense", "id": "1", "status": "in-progress"},
            "MedicationDispense.status",
        ),
        ({"resourceType": "Encounter", "id": "1", "status": "in-progress"}, "Encounter.status"),
        ({"resourceType": "Encounter", "id": "1", "status": "finished"}, "Encounter.basedOn"),
    ],
)
def test_what_the_rule_does_not_notify_is_refused_naming_the_element(resource, expression):
    assert gather.kind_of(resource) is None
    with pytest.raises(FhirError) as caught:
        gather.build(reader([]), resource, SENDER)
    assert caught.value.status == 422 and caught.value.expression == [expression]


def test_a_patient_without_a_practice_is_refused_at_general_practitioner():
    focus, *related = r4_inputs("immunisation-JackDawkins.r4.json")
    related = [{**r, "generalPractitioner": []} if r["resourceType"] == "Patient" else r for r in related]
    with pytest.raises(FhirError) as caught:
        gather.build(reader([focus, *related]), focus, SENDER)
    assert caught.value.status == 422 and caught.value.expression == ["Patient.generalPractitioner"]


def test_references_are_read_by_type_and_id_whatever_their_form():
    value = {"a": {"reference": "Patient/1"}, "b": [{"reference": "http://x/fhir/Organization/o/_history/2"}],
             "c": {"reference": "#contained"}, "d": {"reference": "urn:uuid:1"}}  # fmt: skip
    assert list(gather.references(value)) == ["Patient/1", "Organization/o"]
