"""Two live deployments on one machine, each with its own store, proxy, worker and authorization
server, each registered as the other's partner: the test stack is the hub (FA565), a second
stack started here is the spoke (VNE51). Every call between them carries a signed-JWT token
from the other's token endpoint, sent by the RQ delivery worker."""

from __future__ import annotations

import pytest

from tests.support.messages import FHIR_JSON, Case, move
from tests.support.polling import eventually, task_at

pytestmark = pytest.mark.integration
HUB = "FA565"


def status_at(deployment, session, case, status) -> bool:
    task = task_at(deployment, session, case)
    return task is not None and task["status"] == status


def test_the_whole_flow_between_two_deployments(linked):
    hub, spoke, hub_system, spoke_system = linked
    case = Case()
    case.submit(spoke.fhir, spoke_system)  # the spoke's own system, at the spoke's own fhirplug
    at_hub = eventually(lambda: task_at(hub, hub_system, case))
    assert at_hub is not None, "the spoke-to-hub message never reached the hub"
    assert at_hub["status"] == "requested" and at_hub["owner"]["identifier"]["value"] == HUB

    assert move(hub.fhir, hub_system, at_hub["id"], "accepted").status_code == 200
    assert eventually(lambda: status_at(spoke, spoke_system, case, "accepted"))
    progress = move(hub.fhir, hub_system, at_hub["id"], "in-progress", businessStatus={"text": "labelling"})
    assert progress.status_code == 200
    assert eventually(lambda: status_at(spoke, spoke_system, case, "in-progress"))
    assert task_at(spoke, spoke_system, case)["businessStatus"]["text"] == "labelling"

    r = hub_system.post(hub.fhir, json=case.load("valid-hub-to-spoke.json"), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    assert eventually(lambda: status_at(spoke, spoke_system, case, "completed"))
    mr = spoke_system.get(f"{spoke.fhir}/MedicationRequest/{case.ids['MedicationRequest']}").json()
    assert mr["status"] == "completed"
    dispensed = spoke_system.get(f"{spoke.fhir}/MedicationDispense", params={"prescription": mr["id"]}).json()
    assert dispensed["total"] == 1
    # exactly once: one Task at each side, however the deliveries went
    assert hub_system.get(f"{hub.fhir}/Task", params=case.task_query).json()["total"] == 1
    # the hand-off to the partner is on record at the sending side
    query = {"subtype": "delivered", "entity-name": case.task_identifier}
    delivered = eventually(lambda: spoke_system.get(f"{spoke.fhir}/AuditEvent", params=query).json()["total"])
    assert delivered >= 1


def test_the_reject_path_reaches_the_spoke(linked):
    hub, spoke, hub_system, spoke_system = linked
    case = Case()
    case.submit(spoke.fhir, spoke_system)
    at_hub = eventually(lambda: task_at(hub, hub_system, case))
    assert at_hub is not None
    r = move(hub.fhir, hub_system, at_hub["id"], "rejected", statusReason={"text": "cannot supply"})
    assert r.status_code == 200
    assert eventually(lambda: status_at(spoke, spoke_system, case, "rejected"))
    assert task_at(spoke, spoke_system, case)["statusReason"]["text"] == "cannot supply"


def test_the_failed_path_reaches_the_spoke(linked):
    hub, spoke, hub_system, spoke_system = linked
    case = Case()
    case.submit(spoke.fhir, spoke_system)
    at_hub = eventually(lambda: task_at(hub, hub_system, case))
    assert at_hub is not None
    move(hub.fhir, hub_system, at_hub["id"], "accepted")
    move(hub.fhir, hub_system, at_hub["id"], "in-progress")
    r = hub_system.post(hub.fhir, json=case.load("valid-hub-to-spoke-failed.json"), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    assert eventually(lambda: status_at(spoke, spoke_system, case, "failed"))


def test_a_message_for_an_unknown_hub_is_refused_at_the_spoke(linked):
    _, spoke, _, spoke_system = linked
    case = Case()
    bundle = case.load("valid-spoke-to-hub.json")
    bundle["entry"][0]["resource"]["owner"]["identifier"]["value"] = "FZZ99"
    r = spoke_system.post(spoke.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 422 and "FZZ99" in r.json()["issue"][0]["diagnostics"]
    assert spoke_system.get(f"{spoke.fhir}/Task", params=case.task_query).json()["total"] == 0
