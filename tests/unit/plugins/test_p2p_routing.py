"""The point-to-point routing plugin: an outbox record written with the write a rule sends on,
queued once stored; a received dispense linked to its prescription before the others look."""

import json
from dataclasses import asdict

import pytest

from forwarding import outbox
from forwarding.delivery import DeliveryKind
from hubspoke.identifiers import ODS_SYSTEM, TENANT_SYSTEM
from plugins import p2p_routing as module
from plugins.p2p_routing import P2PRouting
from proxy.context import Client, Message, StorageOutcome, WriteEntry
from proxy.errors import FhirError
from proxy.partners import KEY, Partner
from tests.support.fake_redis import FakeRedis
from tests.support.plugin_context import ScriptedStore, request_context, searchset

PRESCRIBER, PHARMACY, OWN = "A83008", "FA123", "A83008"
PRESCRIBING_SYSTEM = Client("gp-system", PRESCRIBER, "prescriber")
RX = "https://example.org/prescriptions"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
PATIENT = {"resourceType": "Patient", "id": "12", "identifier": [{"system": NHS, "value": "9000000009"}]}


def org(ods):
    return {"identifier": {"system": ODS_SYSTEM, "value": ods}}


def request(status="active", performer=PHARMACY, identifier=True) -> dict:
    out = {
        "resourceType": "MedicationRequest",
        "status": status,
        "subject": {"reference": "Patient/12"},
        "requester": org(PRESCRIBER),
        "dispenseRequest": {"performer": org(performer)},
    }
    if identifier:
        out["identifier"] = [{"system": RX, "value": "RX-1"}]
    return out


def directory(**partners: str) -> FakeRedis:
    redis = FakeRedis()
    for ods, role in partners.items():
        partner = Partner(ods, role, f"https://{ods}.example/fhir", "https://t", "us", "/k.json")
        redis.hset(KEY, ods, json.dumps(asdict(partner)))
    return redis


def store(**answers) -> ScriptedStore:
    return ScriptedStore({("GET", "Patient/12"): PATIENT, **{("GET", k): v for k, v in answers.items()}})


def before_storage(plugin, ctx, entry, refusal=None):
    """Run the wrapper around the other plugins' verdict (``refusal``)."""
    gen = plugin.fhirplug_before_storage(ctx=ctx, entry=entry)
    next(gen)
    with pytest.raises(StopIteration) as done:
        gen.send(refusal)
    return done.value.value


def write(resource, method="POST", url="MedicationRequest", client=PRESCRIBING_SYSTEM, st=None):
    ctx = request_context(
        "create" if method == "POST" else "update", method, client=client, store=st or store()
    )
    ctx.request_id = "r1"
    return ctx, WriteEntry(method, url, resource)


def plugin(rules=("request-to-dispenser",), **partners):
    return P2PRouting(directory(**(partners or {PHARMACY: "dispenser"})), rules=rules, own_ods=OWN)


@pytest.fixture
def queued(monkeypatch) -> list:
    sent: list = []
    monkeypatch.setattr(module, "enqueue", lambda delivery, redis: sent.append(delivery))
    return sent


def test_an_active_request_gets_an_outbox_record_with_its_write(queued):
    ctx, entry = write(request())
    assert before_storage(plugin(), ctx, entry) is None
    [companion] = ctx.companion_writes
    record = companion["resource"]
    delivery = outbox.delivery_of(record)
    assert companion["request"] == {"method": "PUT", "url": f"Basic/{delivery.id}"}
    assert record["meta"]["security"] == [{"system": TENANT_SYSTEM, "code": PRESCRIBER}]
    assert record["subject"] == {"type": "MedicationRequest", "identifier": {"system": RX, "value": "RX-1"}}
    assert (delivery.partner, delivery.method, delivery.path) == (PHARMACY, "POST", "")
    assert delivery.kind is DeliveryKind.ROUTED and delivery.task_key == f"{RX}|RX-1"
    [sent] = delivery.body["entry"]
    assert sent["request"]["ifNoneExist"] == f"identifier={RX}|RX-1"
    assert sent["resource"]["subject"] == {
        "type": "Patient",
        "identifier": {"system": NHS, "value": "9000000009"},
    }
    assert queued == []  # nothing is queued before the store has it


def test_it_is_queued_once_stored(queued):
    p = plugin()
    ctx, entry = write(request())
    before_storage(p, ctx, entry)
    p.fhirplug_after_storage(ctx=ctx, entry=entry, outcome=StorageOutcome(201))
    assert [d.partner for d in queued] == [PHARMACY]


def test_a_write_the_store_refused_is_not_queued(queued):
    p = plugin()
    ctx, entry = write(request())
    before_storage(p, ctx, entry)
    p.fhirplug_after_storage(ctx=ctx, entry=entry, outcome=StorageOutcome(412))
    assert queued == []


def test_a_write_another_plugin_refused_gets_no_record():
    ctx, entry = write(request())
    refusal = FhirError(403, "no")
    assert before_storage(plugin(), ctx, entry, refusal) is refusal
    assert ctx.companion_writes == []


def test_an_update_into_active_is_routed_and_one_already_active_is_not():
    ctx, entry = write(
        request(), "PUT", "MedicationRequest/5", st=store(**{"MedicationRequest/5": request("draft")})
    )
    before_storage(plugin(), ctx, entry)
    assert len(ctx.companion_writes) == 1
    ctx, entry = write(
        request(), "PUT", "MedicationRequest/5", st=store(**{"MedicationRequest/5": request()})
    )
    before_storage(plugin(), ctx, entry)
    assert ctx.companion_writes == []


def test_a_draft_is_not_routed():
    ctx, entry = write(request("draft"))
    before_storage(plugin(), ctx, entry)
    assert ctx.companion_writes == []


def test_without_the_rule_switched_on_nothing_is_routed():
    ctx, entry = write(request())
    before_storage(plugin(rules=()), ctx, entry)
    assert ctx.companion_writes == []


def test_a_performer_that_is_no_partner_is_a_tenant_here_and_nothing_is_sent():
    ctx, entry = write(request(performer="FZZ99"))
    before_storage(plugin(), ctx, entry)
    assert ctx.companion_writes == []


def test_a_partner_in_a_role_the_rule_may_not_send_to_gets_nothing():
    ctx, entry = write(request())
    before_storage(plugin(**{PHARMACY: "hub"}), ctx, entry)
    assert ctx.companion_writes == []


def test_nothing_goes_back_to_the_writer_or_to_ourselves():
    ctx, entry = write(request(performer=OWN))
    before_storage(plugin(**{OWN: "dispenser"}), ctx, entry)
    pharmacy_itself = Client("pharmacy", PHARMACY, "dispenser")
    ctx2, entry2 = write(request(), client=pharmacy_itself)
    before_storage(plugin(), ctx2, entry2)
    assert ctx.companion_writes == [] and ctx2.companion_writes == []


def test_a_hub_and_spoke_message_is_left_to_routing():
    ctx, entry = write(request())
    ctx.message = Message("spoke-to-hub", "d", PRESCRIBER, "gp-system")
    before_storage(plugin(), ctx, entry)
    assert ctx.companion_writes == []


def test_a_request_a_rule_sends_needs_an_identifier():
    ctx, entry = write(request(identifier=False))
    with pytest.raises(FhirError) as caught:
        before_storage(plugin(), ctx, entry)
    assert caught.value.status == 422 and caught.value.expression == ["MedicationRequest.identifier"]


def test_a_reference_the_partner_could_not_resolve_is_refused_at_the_sender():
    md = {**request(), "recorder": {"reference": "Practitioner/3"}}
    ctx, entry = write(md, st=store(**{"Practitioner/3": {"resourceType": "Practitioner", "id": "3"}}))
    with pytest.raises(FhirError) as caught:
        before_storage(plugin(), ctx, entry)
    assert caught.value.status == 422 and caught.value.expression == ["MedicationRequest.recorder"]


# ------------------------------------------------------------ dispense-to-prescriber

PHARMACY_SYSTEM = Client("pharmacy-system", PHARMACY, "dispenser")
HELD_REQUEST = {**request(), "id": "5"}


def completed_dispense(prescription: dict) -> dict:
    return {
        "resourceType": "MedicationDispense",
        "identifier": [{"system": "https://example.org/dispenses", "value": "MD-1"}],
        "status": "completed",
        "subject": {"identifier": {"system": NHS, "value": "9000000009"}},
        "authorizingPrescription": [prescription],
    }


def test_a_completed_dispense_goes_to_the_prescriber_naming_its_request_by_identifier(queued):
    p = P2PRouting(
        directory(**{PRESCRIBER: "prescriber"}), rules=["dispense-to-prescriber"], own_ods=PHARMACY
    )
    st = store(**{"MedicationRequest/5": HELD_REQUEST})
    ctx, entry = write(
        completed_dispense({"reference": "MedicationRequest/5"}),
        url="MedicationDispense",
        client=PHARMACY_SYSTEM,
        st=st,
    )
    before_storage(p, ctx, entry)
    delivery = outbox.delivery_of(ctx.companion_writes[0]["resource"])
    assert delivery.partner == PRESCRIBER
    sent = delivery.body["entry"][0]["resource"]
    assert sent["authorizingPrescription"] == [
        {"type": "MedicationRequest", "identifier": {"system": RX, "value": "RX-1"}}
    ]


def test_a_received_dispense_is_linked_to_the_request_its_writer_may_read():
    st = store(MedicationRequest=searchset(HELD_REQUEST))
    md = completed_dispense({"identifier": {"system": RX, "value": "RX-1"}})
    ctx, entry = write(md, url="MedicationDispense", client=PHARMACY_SYSTEM, st=st)
    before_storage(plugin(rules=()), ctx, entry)
    assert md["authorizingPrescription"][0]["reference"] == "MedicationRequest/5"
    [search] = [c for c in st.calls if c["path"] == "MedicationRequest"]
    assert ("identifier", f"{RX}|RX-1") in search["query"]
    assert f"dispenser;{PHARMACY}" in search["headers"]["x-fhirplug-caller"], "searched as the writer"


def test_an_ambiguous_prescription_is_refused():
    st = store(MedicationRequest=searchset(HELD_REQUEST, {**HELD_REQUEST, "id": "6"}))
    md = completed_dispense({"identifier": {"system": RX, "value": "RX-1"}})
    ctx, entry = write(md, url="MedicationDispense", client=PHARMACY_SYSTEM, st=st)
    with pytest.raises(FhirError) as caught:
        before_storage(plugin(rules=()), ctx, entry)
    assert caught.value.status == 422
    assert caught.value.expression == ["MedicationDispense.authorizingPrescription[0].identifier"]


def test_a_dispense_in_a_hub_and_spoke_message_is_not_linked():
    st = store(MedicationRequest=searchset(HELD_REQUEST))
    md = completed_dispense({"identifier": {"system": RX, "value": "RX-1"}})
    ctx, entry = write(md, url="MedicationDispense", client=PHARMACY_SYSTEM, st=st)
    ctx.message = Message("hub-to-spoke", "d", PHARMACY, "pharmacy-system")
    before_storage(plugin(rules=()), ctx, entry)
    assert "reference" not in md["authorizingPrescription"][0]


def test_an_unknown_rule_stops_the_proxy_at_start():
    from proxy.config import Settings

    with pytest.raises(ValueError, match="nope"):
        P2PRouting(FakeRedis()).fhirplug_configure(
            settings=Settings(routing_rules=("nope",)), redis=FakeRedis()
        )
