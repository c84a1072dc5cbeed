"""The care-relationship rule table: what writing each kind of resource grants, and to whom."""

from careaccess.labels import READER_SYSTEM, readers_of, with_readers
from careaccess.rules import READABLE_TYPES, RULES, grants
from hubspoke.identifiers import ODS_SYSTEM, TENANT_SYSTEM

PHARMACY, PRESCRIBER = "FD001", "FP001"
MR5, MR6 = "MedicationRequest/5", "MedicationRequest/6"


def ods_ref(ods: str) -> dict:
    return {"identifier": {"system": ODS_SYSTEM, "value": ods}}


def org_ods(ref: dict) -> str | None:
    ident = ref.get("identifier") or {}
    if ident.get("system") == ODS_SYSTEM:
        return ident.get("value")
    return {"Organization/7": PHARMACY}.get(ref.get("reference", ""))


STORED_REQUEST = {
    "resourceType": "MedicationRequest",
    "id": "5",
    "subject": {"reference": "Patient/9"},
    "meta": {"security": [{"system": TENANT_SYSTEM, "code": PRESCRIBER}]},
}


def resolve(ref: dict, rtype: str) -> dict | None:
    return STORED_REQUEST if ref.get("reference") == f"{rtype}/5" else None


def request(performer: dict | None) -> dict:
    mr = {"resourceType": "MedicationRequest", "subject": {"reference": "Patient/9"}}
    if performer is not None:
        mr["dispenseRequest"] = {"performer": performer}
    return mr


def test_the_table_names_four_rules_and_three_readable_types():
    assert [r.name for r in RULES] == ["nominated-pharmacy", "task-owner", "request-patient", "prescriber"]
    assert {"MedicationRequest", "Patient", "MedicationDispense"} == READABLE_TYPES


def test_the_performer_by_ods_identifier_reads_the_request_and_its_patient():
    g = grants(request(ods_ref(PHARMACY)), org_ods, resolve)
    assert g.own == {PHARMACY}
    assert g.others == {"Patient/9": {PHARMACY}}


def test_the_performer_by_reference_to_its_organization_reads_the_request():
    assert grants(request({"reference": "Organization/7"}), org_ods, resolve).own == {PHARMACY}


def test_a_request_without_a_performer_grants_nothing():
    g = grants(request(None), org_ods, resolve)
    assert g.own == set() and g.others == {}


def test_reader_labels_a_caller_sent_grant_nothing():
    mr = request(None)
    mr["meta"] = {"security": [{"system": READER_SYSTEM, "code": "FX999"}]}
    assert grants(mr, org_ods, resolve).others == {}


def test_a_task_owner_reads_the_request_it_is_focused_on_and_its_patient():
    task = {"resourceType": "Task", "owner": ods_ref(PHARMACY), "focus": {"reference": "MedicationRequest/5"}}
    assert grants(task, org_ods, resolve).others == {
        "MedicationRequest/5": {PHARMACY},
        "Patient/9": {PHARMACY},
    }


def test_a_task_focused_on_a_request_the_writer_cannot_see_grants_nothing():
    task = {"resourceType": "Task", "owner": ods_ref(PHARMACY), "focus": {"reference": "MedicationRequest/6"}}
    assert grants(task, org_ods, resolve).others == {}


def test_the_prescriber_reads_the_dispense_of_its_request():
    md = {
        "resourceType": "MedicationDispense",
        "authorizingPrescription": [{"reference": "MedicationRequest/5"}],
    }
    assert grants(md, org_ods, resolve).own == {PRESCRIBER}


def test_a_dispense_of_a_request_not_found_grants_nothing():
    md = {
        "resourceType": "MedicationDispense",
        "authorizingPrescription": [{"reference": "MedicationRequest/6"}],
    }
    assert grants(md, org_ods, resolve).own == set()


def test_with_readers_replaces_what_the_caller_sent_and_skips_owners():
    res = {
        "meta": {
            "security": [
                {"system": TENANT_SYSTEM, "code": PRESCRIBER},
                {"system": READER_SYSTEM, "code": "FX999"},
            ]
        }
    }
    with_readers(res, {PHARMACY, PRESCRIBER})
    assert readers_of(res) == {PHARMACY}
