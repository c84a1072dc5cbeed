"""The routing rule table: when each rule fires, where it sends, and what it leaves alone."""

import pytest

from hubspoke.identifiers import ODS_SYSTEM
from p2p.rules import BY_NAME, RULES, fires, select

TO_DISPENSER, TO_PRESCRIBER = BY_NAME["request-to-dispenser"], BY_NAME["dispense-to-prescriber"]


def org(ods: str) -> dict:
    return {"identifier": {"system": ODS_SYSTEM, "value": ods}}


def org_ods(ref):
    ident = (ref or {}).get("identifier") or {} if isinstance(ref, dict) else {}
    return ident.get("value") if ident.get("system") == ODS_SYSTEM else None


STORED = {
    "MedicationRequest/7": {"resourceType": "MedicationRequest", "id": "7", "requester": org("A83008")},
    "MedicationRequest/8": {
        "resourceType": "MedicationRequest",
        "id": "8",
        "requester": {"reference": "PractitionerRole/3"},
    },
    "MedicationRequest/9": {
        "resourceType": "MedicationRequest",
        "id": "9",
        "requester": {"reference": "Practitioner/4"},
    },
    "PractitionerRole/3": {"resourceType": "PractitionerRole", "id": "3", "organization": org("B82001")},
}


def read(ref, rtype):
    found = STORED.get(ref.get("reference", ""))
    return found if found is not None and found["resourceType"] == rtype else None


def request(status="active", performer=None) -> dict:
    out = {"resourceType": "MedicationRequest", "status": status}
    if performer is not None:
        out["dispenseRequest"] = {"performer": performer}
    return out


def dispense(status="completed", *refs: str) -> dict:
    return {
        "resourceType": "MedicationDispense",
        "status": status,
        "authorizingPrescription": [{"reference": r} for r in refs],
    }


# ------------------------------------------------------------ the table and its configuration


def test_the_table_names_each_rule_once_with_where_it_may_send():
    assert [r.name for r in RULES] == ["request-to-dispenser", "dispense-to-prescriber"]
    assert TO_DISPENSER.partner_roles == ("dispenser",)
    assert TO_PRESCRIBER.partner_roles == ("prescriber",)


def test_select_keeps_table_order_and_ignores_blanks():
    assert select(["dispense-to-prescriber", " ", "request-to-dispenser"]) == RULES
    assert select([]) == ()


def test_an_unknown_rule_is_a_configuration_error():
    with pytest.raises(ValueError, match="request-to-pharmacy"):
        select(["request-to-pharmacy"])


# ------------------------------------------------------------ request-to-dispenser


def test_a_request_created_active_fires():
    assert fires(TO_DISPENSER, request("active"), None)


def test_a_request_updated_into_active_fires():
    assert fires(TO_DISPENSER, request("active"), request("draft"))
    assert fires(TO_DISPENSER, request("active"), request("on-hold"))


@pytest.mark.parametrize("status", ["draft", "on-hold", "completed", "cancelled", "entered-in-error"])
def test_a_request_in_another_status_does_not_fire(status):
    assert not fires(TO_DISPENSER, request(status), None)


def test_an_active_request_written_again_does_not_fire():
    assert not fires(TO_DISPENSER, request("active"), request("active"))


def test_the_rule_is_for_its_own_type_only():
    assert not fires(TO_DISPENSER, dispense("completed"), None)
    assert not fires(TO_DISPENSER, {"resourceType": "Task", "status": "active"}, None)


def test_it_goes_to_the_performer_by_ods_identifier():
    assert TO_DISPENSER.find(request(performer=org("FA123")), org_ods, read) == "FA123"


def test_a_request_without_a_performer_goes_nowhere():
    assert TO_DISPENSER.find(request(), org_ods, read) is None
    assert TO_DISPENSER.find(request(performer={"display": "any pharmacy"}), org_ods, read) is None


# ------------------------------------------------------------ dispense-to-prescriber


def test_a_dispense_created_completed_fires():
    assert fires(TO_PRESCRIBER, dispense("completed"), None)
    assert fires(TO_PRESCRIBER, dispense("completed"), dispense("in-progress"))


@pytest.mark.parametrize("status", ["preparation", "in-progress", "on-hold", "declined", "entered-in-error"])
def test_a_dispense_not_completed_does_not_fire(status):
    assert not fires(TO_PRESCRIBER, dispense(status), None)


def test_a_completed_dispense_written_again_does_not_fire():
    assert not fires(TO_PRESCRIBER, dispense("completed"), dispense("completed"))


def test_it_goes_to_the_requesting_organisation():
    assert TO_PRESCRIBER.find(dispense("completed", "MedicationRequest/7"), org_ods, read) == "A83008"


def test_a_practitioner_role_requester_names_its_organisation():
    assert TO_PRESCRIBER.find(dispense("completed", "MedicationRequest/8"), org_ods, read) == "B82001"


def test_a_practitioner_alone_names_no_organisation():
    assert TO_PRESCRIBER.find(dispense("completed", "MedicationRequest/9"), org_ods, read) is None


def test_the_first_prescription_that_names_a_requester_decides():
    md = dispense("completed", "MedicationRequest/9", "MedicationRequest/missing", "MedicationRequest/7")
    assert TO_PRESCRIBER.find(md, org_ods, read) == "A83008"


def test_a_dispense_of_no_prescription_held_here_goes_nowhere():
    assert TO_PRESCRIBER.find(dispense("completed"), org_ods, read) is None
    assert TO_PRESCRIBER.find(dispense("completed", "MedicationRequest/404"), org_ods, read) is None
    assert TO_PRESCRIBER.find(dispense("completed", "PractitionerRole/3"), org_ods, read) is None
