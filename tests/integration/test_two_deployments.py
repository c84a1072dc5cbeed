"""Two live deployments on one machine, each with its own store, proxy, worker and authorization
server, each registered as the other's partner: the test stack is the hub (FA565), a second
stack started here is the spoke (VNE51). Every call between them carries a signed-JWT token
from the other's token endpoint, sent by the RQ delivery worker."""

from __future__ import annotations

import json
import time

import pytest
from redis import Redis

from ops import stack as stackmod
from proxy.auth import partner_keys
from proxy.auth.registry import ClientRecord, ClientRegistry
from proxy.partners import Partner, PartnerDirectory
from tests.conftest import free_port
from tests.support import oauth
from tests.support.messages import FHIR_JSON, Case, move

pytestmark = pytest.mark.integration
HUB, SPOKE = "FA565", "VNE51"
SPOKE_SCOPES = "system/Task.cruds system/MedicationRequest.cruds system/MedicationDispense.cruds " + (
    "system/Patient.cruds system/Organization.cruds system/AuditEvent.cruds"
)


class Deployment:
    def __init__(self, cfg: stackmod.StackConfig):
        self.cfg = cfg
        self.fhir = cfg.proxy_url + "/fhir"
        self.redis_url = cfg.effective_redis_url

    def register_partner(self, ods, role, other: Deployment, our_client_id, key_file):
        PartnerDirectory(Redis.from_url(self.redis_url)).put(
            Partner(
                ods, role, other.fhir, other.cfg.proxy_url + "/oauth2/token", our_client_id, str(key_file)
            )
        )

    def register_client(self, client_id, role, ods, jwks, scopes=SPOKE_SCOPES):
        record = ClientRecord(client_id, ods, role, scopes.split(), jwks=jwks)
        ClientRegistry(Redis.from_url(self.redis_url)).put(record)


@pytest.fixture(scope="module")
def pair(stack, tmp_path_factory):
    hub = Deployment(stack.cfg)
    var = tmp_path_factory.mktemp("spoke-deployment")
    spoke_cfg = stackmod.StackConfig(
        var_dir=var,
        proxy_port=free_port(),
        store_port=free_port(),
        redis_url=stack.cfg.effective_redis_url.rsplit("/", 1)[0] + "/1",  # its own Redis database
        h2_url="jdbc:h2:mem:fhirplug-spoke;DB_CLOSE_DELAY=-1",
        proxy_env={
            "FHIRPLUG_WORKERS": "1",
            "FHIRPLUG_THREADS": "8",
            "FHIRPLUG_ODS": SPOKE,
            "FHIRPLUG_ROLE": "spoke",
        },
    )
    spoke = Deployment(spoke_cfg)
    keys = tmp_path_factory.mktemp("partner-keys")
    try:
        stackmod.start_store(spoke_cfg)
        stackmod.load_profiles(spoke_cfg)
        stackmod.start_proxy(spoke_cfg)
        stackmod.start_worker(spoke_cfg)
        stackmod.start_worker(stack.cfg)  # the hub's worker
        # each side's key for calling the other, and each side registered at the other
        hub_key, hub_jwks = partner_keys.generate("hub-at-spoke", keys, "RS512", rsa_bits=2048)
        spoke_key, spoke_jwks = partner_keys.generate("spoke-at-hub", keys, "RS512", rsa_bits=2048)
        hub.register_client("spoke-vne51", "spoke", SPOKE, json.loads(spoke_jwks.read_text()))
        spoke.register_client("hub-fa565", "hub", HUB, json.loads(hub_jwks.read_text()))
        hub.register_partner(SPOKE, "spoke", spoke, "hub-fa565", hub_key)
        spoke.register_partner(HUB, "hub", hub, "spoke-vne51", spoke_key)
        # the pharmacy systems that use each deployment
        spoke_system = oauth.make_client(spoke.redis_url, keys, "spoke-system", "spoke", SPOKE)
        hub_system = oauth.make_client(hub.redis_url, keys, "hub-system", "hub", HUB)
    except Exception:
        stackmod.stop_all(spoke_cfg)
        stackmod.stop(stack.cfg, "worker")
        raise
    yield (
        hub,
        spoke,
        oauth.session_for(hub.fhir, hub_system),
        oauth.session_for(spoke.fhir, spoke_system),
    )
    stackmod.stop_all(spoke_cfg)
    stackmod.stop(stack.cfg, "worker")
    PartnerDirectory(Redis.from_url(hub.redis_url)).remove(SPOKE)  # the hub's other tests see local spokes


def eventually(check, timeout: float = 60.0, every: float = 0.25):
    """Poll until ``check()`` is truthy (deliveries are asynchronous); its last value otherwise."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(every)
        value = check()
    return value


def task_at(deployment, session, case) -> dict | None:
    found = session.get(f"{deployment.fhir}/Task", params=case.task_query).json()
    return found["entry"][0]["resource"] if found.get("total") == 1 else None


def status_at(deployment, session, case, status) -> bool:
    task = task_at(deployment, session, case)
    return task is not None and task["status"] == status


def test_the_whole_flow_between_two_deployments(pair):
    hub, spoke, hub_system, spoke_system = pair
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


def test_the_reject_path_reaches_the_spoke(pair):
    hub, spoke, hub_system, spoke_system = pair
    case = Case()
    case.submit(spoke.fhir, spoke_system)
    at_hub = eventually(lambda: task_at(hub, hub_system, case))
    assert at_hub is not None
    r = move(hub.fhir, hub_system, at_hub["id"], "rejected", statusReason={"text": "cannot supply"})
    assert r.status_code == 200
    assert eventually(lambda: status_at(spoke, spoke_system, case, "rejected"))
    assert task_at(spoke, spoke_system, case)["statusReason"]["text"] == "cannot supply"


def test_the_failed_path_reaches_the_spoke(pair):
    hub, spoke, hub_system, spoke_system = pair
    case = Case()
    case.submit(spoke.fhir, spoke_system)
    at_hub = eventually(lambda: task_at(hub, hub_system, case))
    assert at_hub is not None
    move(hub.fhir, hub_system, at_hub["id"], "accepted")
    move(hub.fhir, hub_system, at_hub["id"], "in-progress")
    r = hub_system.post(hub.fhir, json=case.load("valid-hub-to-spoke-failed.json"), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    assert eventually(lambda: status_at(spoke, spoke_system, case, "failed"))


def test_a_message_for_an_unknown_hub_is_refused_at_the_spoke(pair):
    _, spoke, _, spoke_system = pair
    case = Case()
    bundle = case.load("valid-spoke-to-hub.json")
    bundle["entry"][0]["resource"]["owner"]["identifier"]["value"] = "FZZ99"
    r = spoke_system.post(spoke.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 422 and "FZZ99" in r.json()["issue"][0]["diagnostics"]
    assert spoke_system.get(f"{spoke.fhir}/Task", params=case.task_query).json()["total"] == 0
