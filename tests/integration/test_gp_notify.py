"""GP notifications from the pharmacy's side, end to end over HTTP: a pharmacy stores its data at a
real proxy (real HAPI, Redis, RQ worker), and the notification arrives in the GP practice's inbox on
a real mesh-sandbox, read there with ``MeshTransport`` as the practice's mailbox.

This module runs its own proxy, worker and mesh-sandbox (on the session's store), in a Redis
database of their own, so that it can take MESH and the worker down and up without touching other
tests: the proxy and worker are given this sandbox's ``FHIRPLUG_MESH_*``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job

from forwarding import metrics
from gpnotify import (
    Sender,
    build_emergency_supply,
    build_immunisation,
    build_minor_illness_referral,
    mailboxes,
)
from gpnotify.itk import message_id_for
from gpnotify.mesh import MeshTransport
from gpnotify.serialise import from_xml
from gpnotify.tracking import MESH_MESSAGE_SYSTEM, NOTIFICATION_SYSTEM
from ops import mesh_sandbox
from ops import stack as stackmod
from ops.processes import spawn, stop_process
from proxy.config import MeshSettings
from tests.support import gp_data, oauth
from tests.support.polling import eventually
from tests.unit.gpnotify.examples import differences, normalise

pytestmark = pytest.mark.integration

PHARMACY_ODS, PHARMACY_MAILBOX = "FA565", "FA565OT001"
PRACTICE_MAILBOX = {"A83627": "A83627OT001", "C81007": "C81007OT001"}
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
TYPES = "Immunization MedicationDispense Encounter Patient Organization Practitioner PractitionerRole Consent"
SCOPES = " ".join(f"system/{t}.cruds" for t in (TYPES + " Composition Medication ServiceRequest Condition "
                  "Observation Location Communication Basic").split())  # fmt: skip


class GpSide:
    """The module's pharmacy deployment: its proxy, worker, sandbox and Redis database."""

    def __init__(self, stack, var: Path, free_port):
        self.stack, self.var = stack, var
        self.mesh_port = free_port()
        self.mesh_url = mesh_sandbox.url("127.0.0.1", self.mesh_port)
        self.redis_url = stack.redis_url.rsplit("/", 1)[0] + "/3"
        self.redis = Redis.from_url(self.redis_url)
        self.redis.flushdb()
        self.seen: dict = {}  # MESH message id -> what the practice received
        self.env = {
            "REDIS_URL": self.redis_url,
            "FHIRPLUG_ODS": PHARMACY_ODS,
            "FHIRPLUG_MESH_URL": self.mesh_url,
            "FHIRPLUG_MESH_MAILBOX": PHARMACY_MAILBOX,
            "FHIRPLUG_MESH_PASSWORD": mesh_sandbox.LOCAL_PASSWORD,
            "FHIRPLUG_MESH_SHARED_KEY": mesh_sandbox.LOCAL_SHARED_KEY,
            "FHIRPLUG_MESH_TIMEOUT": "5",
            "FHIRPLUG_SWEEP_SECONDS": "3",
            "FHIRPLUG_JOB_MONITORING_INTERVAL": "2",
            "FHIRPLUG_WORKER_MAINTENANCE_SECONDS": "5",
        }

    def start_mesh(self) -> None:
        mesh_sandbox.start(
            "127.0.0.1",
            self.mesh_port,
            self.var / "mesh-data",
            self.var / "mesh-sandbox.log",
            self.var / "mesh-sandbox.pid",
            mesh_sandbox.LOCAL_SHARED_KEY,
        )

    def stop_mesh(self) -> None:
        stop_process("mesh-sandbox", self.var / "mesh-sandbox.pid")

    def start_worker(self) -> None:
        env = {**stackmod.proxy_env(self.stack.cfg), **self.env}
        spawn([sys.executable, "-m", "worker"], self.var / "worker.log", self.var / "worker.pid", env=env)

    def stop_worker(self) -> None:
        stop_process("worker", self.var / "worker.pid")

    def signal(self, name: str, sig) -> None:
        os.killpg(int((self.var / f"{name}.pid").read_text()), sig)

    def settings(self, mailbox: str) -> MeshSettings:
        return MeshSettings(
            url=self.mesh_url,
            mailbox=mailbox,
            password=mesh_sandbox.LOCAL_PASSWORD,
            shared_key=mesh_sandbox.LOCAL_SHARED_KEY,
            timeout_s=10,
        )

    def inbox(self, practice: str, local_id: str) -> list:
        """Every message that reached the practice's inbox with ``local_id``, by MESH message id. The
        sandbox lists a message once it has been downloaded no more, so what was seen is kept."""
        with MeshTransport(self.settings(PRACTICE_MAILBOX[practice])) as gp:
            for message_id in gp.inbox():
                if message_id not in self.seen:
                    self.seen[message_id] = gp.receive(message_id)
        return [m for m in self.seen.values() if m.local_id == local_id]


@pytest.fixture(scope="module")
def gp(stack, tmp_path_factory):
    from tests.conftest import free_port

    side = GpSide(stack, tmp_path_factory.mktemp("gp-send"), free_port)
    side.start_mesh()
    side.fhir, _ = stack.start_proxy(side.env)
    side.start_worker()
    client = oauth.make_client(
        side.redis_url, stack.keys_dir, "pharmacy-fa565", "dispenser", PHARMACY_ODS, SCOPES
    )
    side.http = oauth.session_for(side.fhir, client)
    side.other = oauth.session_for(
        side.fhir,
        oauth.make_client(side.redis_url, stack.keys_dir, "pharmacy-fx999", "dispenser", "FX999", SCOPES),
    )
    yield side
    side.stop_worker()
    side.stop_mesh()


# ---------------------------------------------------------------- data


def stored(gp, name: str, practice: str, session=None) -> list[dict]:
    """A fixture stored by the pharmacy in one transaction (``tests.support.gp_data``), with the
    patient's practice at ``practice``. Returns the resources as stored, in the fixture's order
    (with the versions the message id is made from)."""
    bundle = gp_data.transaction(name, practice)
    resp = (session or gp.http).post(gp.fhir, json=bundle, headers={"Content-Type": "application/fhir+json"})
    assert resp.status_code == 200, resp.text
    out = []
    for location in gp_data.locations(resp.json()):
        read = gp.http.get(f"{gp.fhir}/{location}")
        assert read.status_code == 200, read.text
        out.append(read.json())
    return out


def communications(gp, message_id: str) -> list[dict]:
    resp = gp.http.get(
        f"{gp.fhir}/Communication", params={"identifier": f"{NOTIFICATION_SYSTEM}|{message_id}"}
    )
    assert resp.status_code == 200, resp.text
    return [e["resource"] for e in resp.json().get("entry") or []]


def status_of(gp, message_id: str) -> str | None:
    found = communications(gp, message_id)
    return found[0]["status"] if found else None


def notify(gp, rtype: str, rid: str, session=None):
    return (session or gp.http).post(f"{gp.fhir}/{rtype}/{rid}/$notify-gp")


def immunisation_id(resources) -> str:
    """The message id of the stored immunisation (made from its id and version), as the proxy makes it."""
    return message_id_for(PHARMACY_ODS, resources[0])


# ---------------------------------------------------------------- the trigger


def test_a_stored_immunisation_reaches_the_practice_once_and_is_tracked(gp):
    focus, *related = stored(gp, "immunisation-JackDawkins.r4.json", "A83627")
    built = build_immunisation(focus, related, Sender(PHARMACY_ODS, PHARMACY_MAILBOX))

    [comm] = communications(gp, built.message_id)  # recorded before the write was answered
    assert comm["status"] in ("preparation", "in-progress")
    assert comm["about"] == [{"reference": f"Immunization/{focus['id']}"}]
    assert comm["recipient"] == [{"identifier": {"system": ODS, "value": "A83627"}}]

    assert eventually(lambda: status_of(gp, built.message_id) == "in-progress", timeout=60)
    [received] = eventually(lambda: gp.inbox("A83627", built.message_id), timeout=30)
    assert (received.sender, received.workflow_id) == (PHARMACY_MAILBOX, "DIGMED_FLU_VAC")
    assert normalise(from_xml(received.body)) == normalise(from_xml(built.xml()))
    [comm] = communications(gp, built.message_id)
    assert {"system": MESH_MESSAGE_SYSTEM, "value": received.message_id} in comm["identifier"]

    # "notifications to practice A83627 not yet acknowledged", by standard search
    search = gp.http.get(
        f"{gp.fhir}/Communication",
        params={
            "recipient-identifier": f"{ODS}|A83627",
            "status": "preparation,in-progress",
            "_count": "200",
        },
    )
    assert built.message_id in {
        i["value"] for e in search.json().get("entry") or [] for i in e["resource"]["identifier"]
    }
    # another pharmacy sees none of it
    assert gp.other.get(f"{gp.fhir}/Communication/{comm['id']}").status_code == 404

    # an explicit re-send sends nothing twice
    again = notify(gp, "Immunization", focus["id"])
    assert again.status_code == 200, again.text
    outcome = {p["name"]: p for p in again.json()["parameter"]}["outcome"]["valueCode"]
    assert outcome == "already-sent"
    time.sleep(2)
    assert len(gp.inbox("A83627", built.message_id)) == 1


def test_an_emergency_supply_is_one_notification_for_the_consultation(gp):
    resources = stored(gp, "emergency-supply-WilliamSmith.r4.json", "C81007")
    built = build_emergency_supply(resources[:2], resources[2:], Sender(PHARMACY_ODS, PHARMACY_MAILBOX))
    assert eventually(lambda: status_of(gp, built.message_id) == "in-progress", timeout=60)
    [received] = gp.inbox("C81007", built.message_id)
    assert received.workflow_id == "DIGMED_EMG_MED"
    assert differences(normalise(from_xml(received.body)), normalise(from_xml(built.xml()))) == []
    [comm] = communications(gp, built.message_id)
    assert sorted(a["reference"] for a in comm["about"]) == sorted(
        f"MedicationDispense/{d['id']}" for d in resources[:2]
    )


def test_a_minor_illness_referral_consultation_reaches_the_practice(gp):
    focus, *related = stored(gp, "minor-illness-referral-JackSmith.r4.json", "C81007")
    built = build_minor_illness_referral(focus, related, Sender(PHARMACY_ODS, PHARMACY_MAILBOX))
    assert eventually(lambda: status_of(gp, built.message_id) == "in-progress", timeout=60)
    [received] = gp.inbox("C81007", built.message_id)
    assert received.workflow_id == "DIGMED_MINOR_ILLNESS_PEM"
    assert normalise(from_xml(received.body)) == normalise(from_xml(built.xml()))


# ---------------------------------------------------------------- $notify-gp refusals


def outbox_records(gp) -> int:
    resp = gp.http.get(f"{gp.fhir}/Basic", params={"_summary": "count"})
    return resp.json().get("total", 0) if resp.status_code == 200 else -1


def test_notify_gp_for_a_patient_without_a_practice_is_a_clear_422_and_nothing_is_queued(gp):
    resources = stored(gp, "immunisation-JackDawkins.r4.json", "")
    resp = notify(gp, "Immunization", resources[0]["id"])
    assert resp.status_code == 422, resp.text
    [issue] = resp.json()["issue"]
    assert issue["expression"] == ["Patient.generalPractitioner"]
    assert communications(gp, immunisation_id(resources)) == []


def test_notify_gp_for_a_practice_without_a_mailbox_is_a_clear_422_and_nothing_is_sent(gp):
    resources = stored(gp, "immunisation-JackDawkins.r4.json", "Y99999")
    resp = notify(gp, "Immunization", resources[0]["id"])
    assert resp.status_code == 422, resp.text
    [issue] = resp.json()["issue"]
    assert "Y99999" in issue["diagnostics"] and "DIGMED_FLU_VAC" in issue["diagnostics"]
    assert issue["expression"] == ["Patient.generalPractitioner"]
    message_id = immunisation_id(resources)
    assert communications(gp, message_id) == []
    assert Job.exists(uuid.UUID(message_id).hex, connection=gp.redis) is False


def test_notify_gp_on_another_pharmacy_s_resource_is_404(gp):
    resources = stored(gp, "immunisation-JackDawkins.r4.json", "A83627")
    resp = notify(gp, "Immunization", resources[0]["id"], session=gp.other)
    assert resp.status_code == 404, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"


# ---------------------------------------------------------------- faults


def retried(gp, practice: str) -> int:
    raw = gp.redis.hget(metrics.counters_key(practice), "retried")
    return int(raw or 0)


def test_mesh_down_for_a_while_then_back_delivers_exactly_once(gp):
    retries_before = retried(gp, "A83627")
    gp.stop_mesh()
    try:
        resources = stored(gp, "immunisation-JackDawkins.r4.json", "A83627")  # answered, MESH away
        message_id = immunisation_id(resources)
        assert status_of(gp, message_id) == "preparation"
        assert eventually(lambda: retried(gp, "A83627") >= retries_before + 2, timeout=30)
        assert status_of(gp, message_id) == "preparation"
    finally:
        gp.start_mesh()
    assert eventually(lambda: status_of(gp, message_id) == "in-progress", timeout=90)
    time.sleep(3)  # any second copy would have arrived by now
    assert len(gp.inbox("A83627", message_id)) == 1
    job = Job.fetch(uuid.UUID(message_id).hex, connection=gp.redis)
    assert job.meta.get("attempts", 0) >= 2


def test_a_worker_killed_mid_send_delivers_exactly_once(gp):
    gp.stop_worker()
    resources = stored(gp, "immunisation-JackDawkins.r4.json", "A83627")
    message_id = immunisation_id(resources)
    gp.signal("mesh-sandbox", signal.SIGSTOP)  # MESH takes the request and answers nothing
    try:
        gp.start_worker()
        job_id = uuid.UUID(message_id).hex
        assert eventually(
            lambda: Job.fetch(job_id, connection=gp.redis).get_status() == "started", timeout=30
        )
        time.sleep(1)  # inside the MESH exchange
        gp.signal("worker", signal.SIGKILL)
        gp.stop_worker()  # reap it and drop its pid file
    finally:
        gp.signal("mesh-sandbox", signal.SIGCONT)
    gp.start_worker()
    # the abandoned job is retried once its heartbeat lapses; MESH's tracking by localID says
    # whether the first attempt's send went through, so it is never sent twice
    assert eventually(lambda: status_of(gp, message_id) == "in-progress", timeout=180)
    time.sleep(3)
    assert len(gp.inbox("A83627", message_id)) == 1


def test_a_send_whose_answer_was_lost_is_found_by_tracking_and_not_sent_again(gp):
    gp.stop_worker()
    try:
        focus, *related = stored(gp, "immunisation-JackDawkins.r4.json", "A83627")
        built = build_immunisation(focus, related, Sender(PHARMACY_ODS, PHARMACY_MAILBOX))
        # an earlier attempt reached MESH, and its answer never came back
        with MeshTransport(gp.settings(PHARMACY_MAILBOX)) as pharmacy:
            first = pharmacy.send(
                "A83627OT001", built.xml(), workflow_id=built.workflow_id, local_id=built.message_id
            )
    finally:
        gp.start_worker()
    assert eventually(lambda: status_of(gp, built.message_id) == "in-progress", timeout=60)
    [comm] = communications(gp, built.message_id)
    assert {"system": MESH_MESSAGE_SYSTEM, "value": first.message_id} in comm["identifier"]
    assert len(gp.inbox("A83627", built.message_id)) == 1


def test_a_write_whose_trigger_was_lost_is_notified_by_the_repair_sweep(gp, stack):
    """The proxy died between storing the pharmacy's write and recording the intent: here, the
    immunisation reaches the store past the proxy, labelled for the pharmacy as its write would be."""
    from hubspoke.identifiers import TENANT_SYSTEM
    from proxy.direct_store import DirectStore

    focus, *related = stored(gp, "immunisation-JackDawkins.r4.json", "A83627")
    lost = {**focus, "status": "not-done"}  # stored first as not notifiable (nothing is sent) ...
    with DirectStore(stack.store_url, gp.redis) as store:
        assert store.put(f"Immunization/{focus['id']}", lost).status_code == 200
        again = {**focus, "meta": {"security": [{"system": TENANT_SYSTEM, "code": PHARMACY_ODS}]}}
        resp = store.put(f"Immunization/{focus['id']}", again)  # ... then completed, the trigger lost
        assert resp.status_code == 200, resp.text
        latest = resp.json()
    built = build_immunisation(latest, related, Sender(PHARMACY_ODS, PHARMACY_MAILBOX))
    assert communications(gp, built.message_id) == []
    # the sweep waits out the grace a request still recording may need (30 s)
    assert eventually(lambda: status_of(gp, built.message_id) == "in-progress", timeout=120)
    assert len(gp.inbox("A83627", built.message_id)) == 1


def test_a_refusal_by_mesh_is_a_dead_letter_with_its_reason_and_notify_gp_sends_it_again(gp):
    from ops.queue_cli import reason_of, what_of

    # a stale cached mailbox that MESH does not know: its refusal is final
    gp.redis.set(mailboxes.key("C81007", "DIGMED_FLU_VAC"), b"NOSUCH01", ex=600)
    focus, *related = stored(gp, "immunisation-JackDawkins.r4.json", "C81007")
    message_id = immunisation_id([focus])
    assert eventually(lambda: status_of(gp, message_id) == "stopped", timeout=60)
    [comm] = communications(gp, message_id)
    assert "Unregistered" in comm["statusReason"]["text"]
    job = Job.fetch(uuid.UUID(message_id).hex, connection=gp.redis)
    assert job.get_status() == "failed"
    assert "Unregistered" in reason_of(job) and what_of(job) == "GP notification"
    text = metrics.prometheus_text(gp.redis)
    assert 'partner="C81007"' in text

    # the practice's mailbox is looked up afresh (the refused one was forgotten): a re-send goes
    resp = notify(gp, "Immunization", focus["id"])
    assert resp.status_code == 200, resp.text
    assert {p["name"]: p for p in resp.json()["parameter"]}["outcome"]["valueCode"] == "queued"
    assert eventually(lambda: status_of(gp, message_id) == "in-progress", timeout=60)
    assert len(gp.inbox("C81007", message_id)) == 1
