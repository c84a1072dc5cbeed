"""prescription-order: the checks before storing, in order, and the one transaction acting as the
prescriber. Messages are the shared example re-signed with the TEST ONLY prescriber key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eps import order, records
from eps.certificates import load_trust_anchors
from eps.events import EventResult, Sender
from proxy.errors import FhirError
from tests.support import eps_messages

NOW = datetime.now(UTC)
GP = Sender("gp-system", "prescriber", eps_messages.PRESCRIBER_ODS)
ANCHORS = load_trust_anchors(eps_messages.TRUST_DIR)


class Store:
    """The EpsStore a handler sees: records who it acted as and what it sent."""

    def __init__(self, found=(), status=200):
        self.acting: tuple[str, str | None] | None = None
        self.sent: list[dict] = []
        self.found, self.status = list(found), status

    def as_caller(self, role, ods):
        self.acting = (role, ods)
        return self

    def search(self, resource_type, query, count=200):
        return self.found

    def transaction(self, bundle):
        self.sent.append(bundle)
        return self.status, {"resourceType": "Bundle", "type": "transaction-response"}


@pytest.fixture(autouse=True)
def trusted():
    order.configure(ANCHORS)
    yield
    order.configure(None)


def refusal(message, sender=GP, store=None) -> FhirError:
    with pytest.raises(FhirError) as raised:
        order.handle(message, sender, store or Store(), NOW)
    return raised.value


def medication_requests(bundle):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]


def test_a_signed_prescription_is_stored_in_one_transaction_acting_as_the_prescriber():
    bundle, store = eps_messages.fresh(), Store()
    assert order.handle(bundle, GP, store, NOW) == EventResult()
    assert store.acting == ("prescriber", eps_messages.PRESCRIBER_ODS)
    [sent] = store.sent
    types = [e["resource"]["resourceType"] for e in sent["entry"]]
    assert types.count("MedicationRequest") == 4 and types.count("Task") == 1
    task = next(e["resource"] for e in sent["entry"] if e["resource"]["resourceType"] == "Task")
    assert records.identifier_of(task, records.MESSAGE_KEY_SYSTEM) == f"A83008/{bundle['id']}"
    assert records.identifier_of(task, records.MESSAGE_DIGEST_SYSTEM)
    assert task["owner"]["identifier"]["value"] == eps_messages.NOMINATED_ODS
    assert {s["code"] for s in task["meta"]["security"]} == {"A83008", "FA565"}


def test_the_received_audit_event_names_the_client_and_the_tracking_task():
    store = Store()
    order.handle(eps_messages.fresh(), GP, store, NOW)
    entries = store.sent[0]["entry"]
    task_url = next(e["fullUrl"] for e in entries if e["resource"]["resourceType"] == "Task")
    event = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "AuditEvent")
    assert event["subtype"][0]["code"] == "received"
    assert event["agent"][0]["altId"] == "gp-system"
    assert event["entity"][0]["what"] == {"reference": task_url}


def test_without_trust_anchors_nothing_is_accepted():
    order.configure(None)
    store = Store()
    assert refusal(eps_messages.fresh(), store=store).status == 503
    assert store.sent == []


def test_a_bad_check_character_is_spines_invalid_checksum():
    error = refusal(eps_messages.example(eps_messages.INVALID_CHECKSUM), Sender("t", "prescriber", "RBA"))
    outcome = error.to_resource()
    assert error.status == 400 and outcome["issue"][0]["code"] == "processing"
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "FAILURE_TO_PROCESS_MESSAGE"


def test_a_bad_signature_names_the_signature_data():
    bundle = eps_messages.fresh()
    medication_requests(bundle)[0]["dispenseRequest"]["quantity"]["value"] = 21  # changed after signing
    error = refusal(bundle)
    assert error.status == 400 and error.expression == ["Provenance.signature.data"]


def test_an_untrusted_certificate_is_refused():
    from tests.unit.eps.xmldsig_signer import cert, key

    bundle = eps_messages.fresh()
    order.configure([cert("test-only-untrusted-ca-cert.pem")])
    assert refusal(bundle).expression == ["Provenance.signature.data"]
    assert key  # the untrusted signer's files exist for the same test in eps/verify


@pytest.mark.parametrize(
    ("field", "value", "expression"),
    [
        ("status", "draft", "Bundle.entry.resource.ofType(MedicationRequest).status"),
        ("intent", "plan", "Bundle.entry.resource.ofType(MedicationRequest).intent"),
    ],
)
def test_every_item_must_be_an_active_order(field, value, expression):
    bundle = eps_messages.example()
    for request in medication_requests(bundle):
        request[field] = value
    bundle = eps_messages.signed(bundle)
    bundle["id"] = "m-1"
    assert refusal(bundle).expression == [expression]


def test_a_bad_nhs_number_is_refused():
    bundle = eps_messages.fresh(sign=False)
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["identifier"][0]["value"] = "5839945243"
    assert refusal(bundle).expression == ["Patient.identifier"]


def test_five_line_items_are_too_many():
    bundle = eps_messages.fresh(sign=False)
    extra = dict(bundle["entry"][1])
    bundle["entry"].insert(1, extra)
    assert "at most 4" in refusal(bundle).diagnostics


def test_another_organisations_prescription_is_forbidden():
    error = refusal(eps_messages.fresh(), Sender("other", "prescriber", "B81001"))
    assert (error.status, error.expression) == (403, ["PractitionerRole.organization"])


def test_a_message_header_naming_another_sender_is_forbidden():
    bundle = eps_messages.fresh()
    bundle["entry"][0]["resource"]["sender"]["identifier"]["value"] = "B81001"
    assert refusal(bundle).expression == ["MessageHeader.sender.identifier.value"]


def test_a_trust_may_send_for_its_unit_named_by_part_of():
    bundle = eps_messages.fresh()
    bundle["entry"][0]["resource"]["sender"]["identifier"]["value"] = "84H"  # the parent sends
    checked = order.check(bundle, Sender("x", "prescriber", "84H"), NOW, ANCHORS)
    assert checked.short_id == eps_messages.short_id_of(bundle)


def test_a_short_form_id_used_before_is_a_duplicate():
    store = Store(found=[{"resourceType": "Task", "id": "1"}])
    error = refusal(eps_messages.fresh(), store=store)
    assert error.status == 400 and error.to_resource()["issue"][0]["code"] == "duplicate"
    assert store.sent == []


def test_a_resend_the_store_knows_is_replayed_without_storing():
    bundle = eps_messages.fresh()
    stored = order.transaction(bundle, GP, order.check(bundle, GP, NOW, ANCHORS), NOW)
    task = next(e["resource"] for e in stored["entry"] if e["resource"]["resourceType"] == "Task")
    store = Store(found=[task])
    assert order.handle(bundle, GP, store, NOW) == EventResult(replayed=True)
    assert store.sent == []


def test_other_content_under_a_stored_message_id_is_a_conflict():
    bundle = eps_messages.fresh()
    stored = order.transaction(bundle, GP, order.check(bundle, GP, NOW, ANCHORS), NOW)
    task = next(e["resource"] for e in stored["entry"] if e["resource"]["resourceType"] == "Task")
    changed = eps_messages.fresh()
    changed["id"] = bundle["id"]
    store = Store(found=[task])
    error = refusal(changed, store=store)
    assert (error.status, error.expression) == (409, ["Bundle.id"]) and store.sent == []


def test_a_store_refusal_is_a_fatal_error_and_a_store_failure_may_be_resent():
    assert refusal(eps_messages.fresh(), store=Store(status=422)).status == 400
    assert refusal(eps_messages.fresh(), store=Store(status=500)).status == 503
