"""The stored shape of an EPS prescription: one transaction, one tracking Task, labels throughout."""

from __future__ import annotations

import json
from pathlib import Path

from eps.records import (
    MESSAGE_KEY_SYSTEM,
    PRESCRIPTION_ID_SYSTEM,
    TRACKING_TAG,
    BusinessStatus,
    business_status,
    owner_ods,
    prescription_transaction,
    short_form_id,
    with_status,
)
from hubspoke.identifiers import TENANT_SYSTEM

SEND = (
    Path(__file__).resolve().parents[3].parent
    / "shared/examples/eps"
    / "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Process-Request-Send-200_OK.json"
)


def transaction() -> tuple[dict, dict]:
    message = json.loads(SEND.read_text())
    tx = prescription_transaction(
        message,
        short_id="24F5DA-A83008-7EFE6Z",
        message_key_value="A83008/46183abc",
        nhs_number="9449305552",
        authored_on="2022-10-21T13:47:00+00:00",
        prescriber_ods="A83008",
        nominated_ods="FA565",
    )
    return message, tx


def tenants(resource: dict) -> set[str]:
    return {s["code"] for s in resource["meta"]["security"] if s["system"] == TENANT_SYSTEM}


def test_one_transaction_holds_the_message_its_parts_and_the_tracking_task():
    message, tx = transaction()
    types = [e["resource"]["resourceType"] for e in tx["entry"]]
    assert tx["type"] == "transaction" and types[0] == "Bundle" and types[-1] == "Task"
    assert types.count("MedicationRequest") == 4 and "Provenance" not in types[1:]
    assert all(tenants(e["resource"]) == {"A83008", "FA565"} for e in tx["entry"])


def test_the_stored_message_is_the_message_as_sent_but_for_labels_and_the_tag():
    message, tx = transaction()
    stored = tx["entry"][0]["resource"]
    assert {k: v for k, v in stored.items() if k not in ("id", "meta")} == {
        k: v for k, v in message.items() if k not in ("id", "meta")
    }
    assert TRACKING_TAG in stored["meta"]["tag"]


def test_the_parts_get_fullurls_of_their_own_and_point_at_each_other():
    message, tx = transaction()
    message_urls = {e["fullUrl"] for e in message["entry"]}
    parts = tx["entry"][1:-1]
    urls = {e["fullUrl"] for e in parts}
    assert not urls & message_urls  # HAPI would otherwise rewrite them inside the stored message
    for part in parts:
        refs = json.dumps(part["resource"])
        assert not any(u in refs for u in message_urls), part["resource"]["resourceType"]
    request = next(e["resource"] for e in parts if e["resource"]["resourceType"] == "MedicationRequest")
    assert request["requester"]["reference"] in urls and request["subject"]["reference"] in urls


def test_the_tracking_task_is_to_be_dispensed_by_the_nominated_pharmacy():
    _, tx = transaction()
    task = tx["entry"][-1]["resource"]
    assert business_status(task) is BusinessStatus.TO_BE_DISPENSED and task["status"] == "requested"
    assert short_form_id(task) == "24F5DA-A83008-7EFE6Z" and owner_ods(task) == "FA565"
    assert {"system": PRESCRIPTION_ID_SYSTEM, "value": "24F5DA-A83008-7EFE6Z"} in task["identifier"]
    assert {"system": MESSAGE_KEY_SYSTEM, "value": "A83008/46183abc"} in task["identifier"]
    assert task["focus"]["reference"] == tx["entry"][0]["fullUrl"]
    assert len(task["input"]) == 4


def test_release_moves_the_task_and_only_adds_the_dispensers_label():
    _, tx = transaction()
    task = tx["entry"][-1]["resource"]
    released = with_status(task, BusinessStatus.WITH_DISPENSER, owner="VNE51")
    assert business_status(released) is BusinessStatus.WITH_DISPENSER and released["status"] == "accepted"
    assert owner_ods(released) == "VNE51" and tenants(released) == {"A83008", "FA565", "VNE51"}
    assert business_status(task) is BusinessStatus.TO_BE_DISPENSED  # a copy: the original is untouched


def test_with_tenant_adds_one_label_to_a_copy():
    from eps.records import with_tenant

    _, tx = transaction()
    message = tx["entry"][0]["resource"]
    shared = with_tenant(message, "VNE51")
    assert tenants(shared) == {"A83008", "FA565", "VNE51"} and tenants(message) == {"A83008", "FA565"}
    assert TRACKING_TAG in shared["meta"]["tag"]


def test_the_release_queue_mark_follows_the_tasks_state():
    """A Task is in a pharmacy's queue (one identifier search finds it) exactly while it is to
    be dispensed and owned by that pharmacy."""
    from eps.records import RELEASE_QUEUE_SYSTEM, BusinessStatus, tracking_task, with_status

    def marks(task: dict) -> list[str]:
        return [i["value"] for i in task["identifier"] if i["system"] == RELEASE_QUEUE_SYSTEM]

    common = dict(
        short_id="A7B86F-A83008-42A4CH",
        message_key_value="A83008/m",
        message_ref="urn:uuid:1",
        nhs_number="9449304130",
        authored_on="2025-01-01T10:00:00Z",
        prescriber_ods="A83008",
        medication_request_refs=[],
        labels=[],
    )
    nominated = tracking_task(nominated_ods="FCG71", **common)
    assert marks(nominated) == ["FCG71"]
    assert marks(tracking_task(nominated_ods=None, **common)) == []
    released = with_status(nominated, BusinessStatus.WITH_DISPENSER, owner="FCG71")
    assert marks(released) == []
    assert marks(with_status(released, BusinessStatus.TO_BE_DISPENSED, owner="FA565")) == ["FA565"]
    assert marks(nominated) == ["FCG71"]  # the Task given is left as it was
