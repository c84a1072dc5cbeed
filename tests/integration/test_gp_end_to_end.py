"""Digital Medicine end to end, two live deployments and a mesh-sandbox on loopback: a pharmacy
(its own proxy, ``python -m worker`` with ``FHIRPLUG_MESH_ROLE=pharmacy``, its own Redis database)
and a GP practice (its own proxy and ``python -m worker.mesh_inbox`` with ``FHIRPLUG_MESH_ROLE=gp``,
its own Redis database). What the pharmacy stores reaches the practice over MESH, is searchable
there by NHS Number, and the pharmacy's tracking Communication records the practice's InfAck and,
once the practice's user files the document, its BusAck — for each of the three notifications.

The two deployments share the test run's one HAPI (it is started once per run), each seeing only
its own organisation's data through its tenancy; the practice runs the inbox loop alone, without
an outbox sweep, so it never takes the pharmacy's outbox records.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from redis import Redis

from gpnotify import Sender, build_emergency_supply, build_immunisation, build_minor_illness_referral
from gpnotify.ack_intake import acks_recorded
from gpnotify.tracking import NOTIFICATION_SYSTEM
from ops import mesh_sandbox
from ops import stack as stackmod
from ops.processes import spawn, stop_process
from tests.support import gp_data, oauth
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

PHARMACY_ODS, PHARMACY_MAILBOX = "FA565", "FA565OT001"
PRACTICES = {"A83627": "A83627OT001", "C81007": "C81007OT001"}
NHS = "https://fhir.nhs.uk/Id/nhs-number"
TYPES = (
    "Immunization MedicationDispense Encounter Patient Organization Practitioner PractitionerRole Consent "
    "Composition Medication ServiceRequest Condition Observation Location Communication Basic"
)
PHARMACY_SCOPES = " ".join(f"system/{t}.cruds" for t in TYPES.split())
PRACTICE_SCOPES = "system/DocumentReference.rus system/Binary.r system/Immunization.rs system/Patient.rs"


class Deployment:
    """One deployment's processes on the shared store: a proxy, a worker process, a Redis database."""

    def __init__(self, stack, var: Path, name: str, redis_db: int, env: dict[str, str]):
        self.stack, self.var, self.name = stack, var, name
        self.redis_url = stack.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
        Redis.from_url(self.redis_url).flushdb()
        self.env = {"REDIS_URL": self.redis_url, **env}
        self.fhir = ""

    def start(self, worker_module: str) -> None:
        self.fhir, _ = self.stack.start_proxy(self.env)
        env = {**stackmod.proxy_env(self.stack.cfg), **self.env}
        spawn([sys.executable, "-m", worker_module], self.log, self.pidfile, env=env)

    @property
    def log(self) -> Path:
        return self.var / f"{self.name}-worker.log"

    @property
    def pidfile(self) -> Path:
        return self.var / f"{self.name}-worker.pid"

    def stop(self) -> None:
        stop_process(f"{self.name} worker", self.pidfile)

    def session(self, client_id: str, role: str, ods: str, scopes: str):
        client = oauth.make_client(self.redis_url, self.stack.keys_dir, client_id, role, ods, scopes)
        return oauth.session_for(self.fhir, client)


def mesh_env(url: str, ods: str, mailbox: str, role: str) -> dict[str, str]:
    return {
        "FHIRPLUG_ODS": ods,
        "FHIRPLUG_MESH_URL": url,
        "FHIRPLUG_MESH_MAILBOX": mailbox,
        "FHIRPLUG_MESH_PASSWORD": mesh_sandbox.LOCAL_PASSWORD,
        "FHIRPLUG_MESH_SHARED_KEY": mesh_sandbox.LOCAL_SHARED_KEY,
        "FHIRPLUG_MESH_ROLE": role,
        "FHIRPLUG_MESH_POLL_SECONDS": "1",
        "FHIRPLUG_MESH_TIMEOUT": "10",
        "FHIRPLUG_SWEEP_SECONDS": "3",
        "FHIRPLUG_JOB_MONITORING_INTERVAL": "2",
    }


@pytest.fixture(scope="module")
def sites(stack, tmp_path_factory):
    from tests.conftest import free_port

    var = tmp_path_factory.mktemp("gp-e2e")
    port = free_port()
    url = mesh_sandbox.url("127.0.0.1", port)
    sandbox = (var / "mesh-data", var / "mesh-sandbox.log", var / "mesh-sandbox.pid")
    mesh_sandbox.start("127.0.0.1", port, *sandbox, mesh_sandbox.LOCAL_SHARED_KEY)
    pharmacy = Deployment(
        stack, var, "pharmacy", 8, mesh_env(url, PHARMACY_ODS, PHARMACY_MAILBOX, "pharmacy")
    )
    practices = {
        ods: Deployment(stack, var, f"practice-{ods}", 9 + n, mesh_env(url, ods, mailbox, "gp"))
        for n, (ods, mailbox) in enumerate(PRACTICES.items())
    }
    try:
        pharmacy.start("worker")
        for practice in practices.values():
            practice.start("worker.mesh_inbox")
        yield pharmacy, practices
    finally:
        pharmacy.stop()
        for practice in practices.values():
            practice.stop()
        stop_process("mesh-sandbox", sandbox[2])


def store_at_the_pharmacy(pharmacy, http, fixture: str, practice: str) -> list[dict]:
    answer = http.post(
        pharmacy.fhir,
        json=gp_data.transaction(fixture, practice),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert answer.status_code == 200, answer.text
    return [http.get(f"{pharmacy.fhir}/{where}").json() for where in gp_data.locations(answer.json())]


def communication(pharmacy, http, message_id: str) -> dict | None:
    found = http.get(
        f"{pharmacy.fhir}/Communication", params={"identifier": f"{NOTIFICATION_SYSTEM}|{message_id}"}
    )
    entries = found.json().get("entry") or []
    assert len(entries) <= 1, "one tracking record per notification"
    return entries[0]["resource"] if entries else None


def acks(pharmacy, http, message_id: str) -> list[tuple[str, bool]]:
    record = communication(pharmacy, http, message_id) or {}
    return [(a.get("kind"), a.get("ok")) for a in acks_recorded(record)]


def documents(practice, http, nhs_number: str, message_id: str) -> list[dict]:
    found = http.get(
        f"{practice.fhir}/DocumentReference",
        params={"patient-identifier": f"{NHS}|{nhs_number}", "_count": "200"},
    )
    assert found.status_code == 200, found.text
    docs = [e["resource"] for e in found.json().get("entry") or []]
    return [d for d in docs if any(i.get("value") == message_id for i in d.get("identifier") or [])]


def nhs_number_of(resources: list[dict]) -> str:
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    return next(i["value"] for i in patient["identifier"] if i["system"] == NHS)


CASES = [
    ("immunisation-JackDawkins.r4.json", "A83627", lambda rs, s: build_immunisation(rs[0], rs[1:], s)),
    (
        "emergency-supply-WilliamSmith.r4.json",
        "C81007",
        lambda rs, s: build_emergency_supply(rs[:2], rs[2:], s),
    ),
    (
        "minor-illness-referral-JackSmith.r4.json",
        "C81007",
        lambda rs, s: build_minor_illness_referral(rs[0], rs[1:], s),
    ),
]


@pytest.mark.parametrize(
    ("fixture", "practice_ods", "build"), CASES, ids=["immunisation", "emergency", "minor"]
)
def test_a_notification_stored_at_the_pharmacy_is_filed_at_the_practice_and_both_acks_come_back(
    sites, fixture, practice_ods, build
):
    pharmacy, practices = sites
    practice = practices[practice_ods]
    case = fixture.split("-")[0]
    chemist = pharmacy.session(f"e2e-pharmacy-{case}", "dispenser", PHARMACY_ODS, PHARMACY_SCOPES)
    gp_user = practice.session(f"e2e-gp-{case}", "spoke", practice_ods, PRACTICE_SCOPES)

    resources = store_at_the_pharmacy(pharmacy, chemist, fixture, practice_ods)
    message_id = build(resources, Sender(PHARMACY_ODS, PHARMACY_MAILBOX)).message_id
    nhs_number = nhs_number_of(resources)

    # the practice has it, searchable by the patient's NHS Number, exactly once
    assert eventually(lambda: documents(practice, gp_user, nhs_number, message_id), timeout=90), (
        f"nothing arrived at {practice_ods}; see {practice.log} and {pharmacy.log}"
    )
    [doc] = documents(practice, gp_user, nhs_number, message_id)
    assert doc["docStatus"] == "preliminary"
    # and the pharmacy records the practice's InfAck on its tracking record
    assert eventually(lambda: ("InfAck", True) in acks(pharmacy, chemist, message_id), timeout=60), (
        f"no InfAck recorded; see {pharmacy.log}"
    )
    assert communication(pharmacy, chemist, message_id)["status"] == "in-progress"

    # the practice's user files it: the BusAck comes back and the notification is complete
    filed = gp_user.patch(
        f"{practice.fhir}/DocumentReference/{doc['id']}",
        json=[{"op": "replace", "path": "/docStatus", "value": "final"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert filed.status_code == 200, filed.text
    assert eventually(
        lambda: (communication(pharmacy, chemist, message_id) or {}).get("status") == "completed", timeout=90
    ), f"no BusAck recorded; see {practice.log} and {pharmacy.log}"
    assert sorted(acks(pharmacy, chemist, message_id)) == [("BusAck", True), ("InfAck", True)]  # once each
    assert len(documents(practice, gp_user, nhs_number, message_id)) == 1
