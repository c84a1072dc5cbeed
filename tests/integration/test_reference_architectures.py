"""The medicines reference architectures (NHS England's implementation guide for digital
medicines, ``medicines-reference-architectures.txt``), end to end, each step of the guide asserted
in turn and each ending with the MedicationRequest ``completed``.

Live deployments on loopback, each its own proxy, Redis database, client registry and partner
directory, and where it sends, its own ``python -m worker``:

- the prescribing deployment (A83008, ``FHIRPLUG_ROUTING_RULES=request-to-dispenser``) on the test
  run's store;
- two dispensing deployments on a second store (the two-deployment pair's): FCG71, which sends
  its completed dispenses back (``dispense-to-prescriber``), and FEW44, a FHIR server that sends
  nothing;
- a prescribing system's own FHIR server (A81002, no rules) on the test run's store, with a worker
  for its event notifications: its prescribing system and two pharmacies are its clients, the
  pharmacies subscribers (architecture 3);
- a message broker (X26, no rules) on the test run's store, with a worker for its event
  notifications: its prescribing (B82005, B85001) and dispensing (FH542, FL501, FL502) systems
  its clients, some of them subscribers (architectures 4 and 5).

Why two stores: the prescribing and dispensing deployments each hold a copy of the same request
under the same identifier, and on one store their copies would carry the same tenant labels (the
sender's), so neither deployment could tell its copy from the other's. The prescribing server and
the broker each hold the only copy, and need no second store.

Where the guide has an event notification (architectures 3 and 5) the subscribing system is a
loopback HTTP endpoint in this process (:class:`Subscriber`), subscribed by the Subscriptions
Backport IG (README, "Event notifications (Subscriptions)") to one of fhirplug's topics.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from redis import Redis

from forwarding.outbox import OUTBOX_SYSTEM
from hubspoke.identifiers import HANDOFF_SYSTEM, ODS_SYSTEM
from ops import stack as stackmod
from ops.processes import spawn, stop_process
from p2p.outgoing import transaction
from proxy.auth import partner_keys
from proxy.auth.registry import DEFAULT_SCOPES, ClientRecord, ClientRegistry
from proxy.partners import Partner, PartnerDirectory
from tests.support import oauth
from tests.support.polling import eventually

# the first test starts two stores (the run's and the pair's): minutes on a busy machine
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PRESCRIBER, DISPENSER_1, DISPENSER_2 = "A83008", "FCG71", "FEW44"
BROKER, BROKER_PRESCRIBER, BROKER_DISPENSER = "X26", "B82005", "FH542"
# architecture 3: the prescribing system's server, and two pharmacies that are its clients
RX_SERVER, RX_SERVER_PHARMACY, RX_SERVER_OTHER_PHARMACY = "A81002", "FA565", "FA566"
# architecture 5: the broker's subscribing systems (not architecture 4's: they hear of nothing of its)
EVENTS_PRESCRIBER, EVENTS_OTHER_PRESCRIBER = "B85001", "B85002"
EVENTS_DISPENSER, EVENTS_OTHER_DISPENSER = "FL501", "FL502"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
RX = "https://fhir.example-gp.nhs.uk/Id/prescription"  # the prescribing system's identifiers
DISPENSE_ID = "https://fhir.example-pharmacy.nhs.uk/Id/dispense"  # the dispensing system's
TABLETS = {"value": 28, "unit": "tablet", "system": "http://snomed.info/sct", "code": "428673006"}
FHIR_JSON = {"Content-Type": "application/fhir+json"}
SYSTEM_SCOPES = " ".join(
    f"system/{t}.cruds" for t in ("MedicationRequest", "MedicationDispense", "Patient", "AuditEvent")
)
# what one deployment may do at the other: create what it sends, read what it is sent back
PRESCRIBING_PEER = "system/MedicationRequest.cruds system/MedicationDispense.rs"
DISPENSING_PEER = "system/MedicationDispense.cruds system/MedicationRequest.rs"
# a subscribing system: the prescriber and dispenser roles' default scopes have no Subscription
# (EPS's systems read only); a deployment that notifies them grants it, as here
SUBSCRIBE = "system/Subscription.cruds"
PRESCRIBING_SUBSCRIBER = f"{SYSTEM_SCOPES} {SUBSCRIBE}"
DISPENSING_SUBSCRIBER = (
    f"system/MedicationDispense.cruds system/MedicationRequest.rs system/Patient.rs {SUBSCRIBE}"
)
# the Subscriptions Backport IG, and fhirplug's topics for the guide's two events
IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
TOPIC = "https://fhirplug.org/fhir/SubscriptionTopic/"
MR_ACTIVE = TOPIC + "medication-request-active"
DISPENSED = TOPIC + "medication-dispense-completed"


class Site:
    """One deployment: a proxy on a store, its own Redis database, and a worker when it sends."""

    def __init__(self, cfg, var: Path, name: str, ods: str, redis_db: int, rules: str = ""):
        self.cfg, self.var, self.name, self.ods = cfg, var, name, ods
        self.redis_url = cfg.effective_redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
        Redis.from_url(self.redis_url).flushdb()
        self.env = {
            "REDIS_URL": self.redis_url,
            "FHIRPLUG_ODS": ods,
            "FHIRPLUG_ROUTING_RULES": rules,
            "FHIRPLUG_WORKERS": "1",
            "FHIRPLUG_SWEEP_SECONDS": "3",
            "FHIRPLUG_JOB_MONITORING_INTERVAL": "2",
        }
        self.fhir = ""
        self.port = 0
        self._admin = None
        self.worker_pid = var / f"{name}-worker.pid"

    def start(self, worker: bool) -> None:
        from tests.conftest import free_port

        self.port = free_port()
        self.start_proxy()
        if worker:
            env = {**stackmod.proxy_env(self.cfg), **self.env}
            spawn(
                [sys.executable, "-m", "worker"],
                self.var / f"{self.name}-worker.log",
                self.worker_pid,
                env=env,
            )

    def start_proxy(self) -> None:
        """Its proxy, on its one port (its identity: the public base and token audience)."""
        url = stackmod.start_proxy(self.cfg, name=f"p2p-{self.name}", port=self.port, env=self.env)
        self.fhir = url + "/fhir"

    def stop_proxy(self) -> None:
        stackmod.stop(self.cfg, f"p2p-{self.name}")

    def stop(self) -> None:
        stop_process(f"{self.name} worker", self.worker_pid)
        self.stop_proxy()

    def system(self, client_id: str, role: str, ods: str, scopes: str = SYSTEM_SCOPES):
        """A session of a system (a client) of this deployment."""
        client = oauth.make_client(self.redis_url, self.var / "keys", client_id, role, ods, scopes)
        return oauth.session_for(self.fhir, client)

    def admin(self):
        """An administrator's session here (outbox records are the deployment's own)."""
        if self._admin is None:
            self._admin = self.system(f"{self.name}-admin", "admin", "", "system/*.cruds")
        return self._admin

    def admit(self, client_id: str, role: str, ods: str, jwks: dict, scopes: str) -> None:
        """Register another deployment as a client here."""
        ClientRegistry(Redis.from_url(self.redis_url)).put(
            ClientRecord(client_id, ods, role, scopes.split(), jwks=jwks)
        )

    def add_partner(self, other: Site, role: str, client_id: str, key_file: Path) -> None:
        token_url = other.fhir.removesuffix("/fhir") + "/oauth2/token"
        PartnerDirectory(Redis.from_url(self.redis_url)).put(
            Partner(other.ods, role, other.fhir, token_url, client_id, str(key_file))
        )


def link(sender: Site, receiver: Site, receiver_role: str, sender_role: str, scopes: str, var: Path):
    """``sender`` may deliver to ``receiver`` (a partner of role ``receiver_role`` there), with a
    key of its own that ``receiver`` admits as a client of role ``sender_role``. Returns the
    sender's session at the receiver: what its worker is, for a test that repeats a delivery."""
    client_id = f"{sender.name}-at-{receiver.name}"
    private, public = partner_keys.generate(
        client_id, var / "partner-keys" / client_id, "RS512", rsa_bits=2048
    )
    receiver.admit(client_id, sender_role, sender.ods, json.loads(public.read_text()), scopes)
    sender.add_partner(receiver, receiver_role, client_id, private)
    peer = oauth.TestClient(
        client_id, sender.ods, sender_role, json.loads(private.read_text()), {}, client_id
    )
    return oauth.session_for(receiver.fhir, peer)


@pytest.fixture(scope="module")
def sites(stack, pair, tmp_path_factory):
    var = tmp_path_factory.mktemp("reference-architectures")
    prescribing = Site(stack.cfg, var, "prescribing", PRESCRIBER, 11, "request-to-dispenser")
    dispensing = Site(pair.spoke.cfg, var, "dispensing", DISPENSER_1, 12, "dispense-to-prescriber")
    dispensing_server = Site(pair.spoke.cfg, var, "dispensing-server", DISPENSER_2, 13)
    # Redis database 14 is test_read_cache's too: each empties it before use, and files run one by one
    prescribing_server = Site(stack.cfg, var, "prescribing-server", RX_SERVER, 14)
    broker = Site(stack.cfg, var, "broker", BROKER, 15)
    started = []
    try:
        for site, worker in (
            (prescribing, True),
            (dispensing, True),
            (dispensing_server, False),
            (prescribing_server, True),  # its worker sends its event notifications
            (broker, True),
        ):
            site.start(worker)
            started.append(site)
        peers = {
            "prescribing@dispensing": link(
                prescribing, dispensing, "dispenser", "prescriber", PRESCRIBING_PEER, var
            ),
            "prescribing@dispensing-server": link(
                prescribing, dispensing_server, "dispenser", "prescriber", PRESCRIBING_PEER, var
            ),
            "dispensing@prescribing": link(
                dispensing, prescribing, "prescriber", "dispenser", DISPENSING_PEER, var
            ),
        }
        yield {
            "prescribing": prescribing,
            "dispensing": dispensing,
            "dispensing-server": dispensing_server,
            "prescribing-server": prescribing_server,
            "broker": broker,
            "peers": peers,
        }
    finally:
        for site in started:
            site.stop()


# ------------------------------------------------------------ the resources of the guide


def nhs_number() -> str:
    """A random NHS Number that passes Modulus 11."""
    while True:
        digits = [int(c) for c in f"{uuid.uuid4().int % 10**9:09d}"]
        check = 11 - sum(d * (10 - i) for i, d in enumerate(digits)) % 11
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def org(ods: str) -> dict:
    return {"identifier": {"system": ODS_SYSTEM, "value": ods}}


def medication_request(rx: str, subject: dict, requester: str, performer: str) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "identifier": [{"system": RX, "value": rx}],
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "39720311000001101",
                    "display": "Paracetamol 500mg tablets",
                }
            ]
        },
        "subject": subject,
        "requester": org(requester),
        "dispenseRequest": {"performer": org(performer), "quantity": TABLETS},
    }


def medication_dispense(
    md: str, prescription: dict, nhs: str, dispenser: str, status: str = "completed"
) -> dict:
    return {
        "resourceType": "MedicationDispense",
        "identifier": [{"system": DISPENSE_ID, "value": md}],
        "status": status,
        "medicationCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "39720311000001101"}]
        },
        "subject": {"identifier": {"system": NHS, "value": nhs}},
        "performer": [{"actor": org(dispenser)}],
        "authorizingPrescription": [prescription],
        "quantity": TABLETS,
    }


def one(session, base: str, rtype: str, system: str, value: str) -> dict | None:
    """The one resource of ``rtype`` with that identifier the session may read (None: none yet)."""
    found = session.get(f"{base}/{rtype}", params={"identifier": f"{system}|{value}"})
    assert found.status_code == 200, found.text
    entries = [e["resource"] for e in found.json().get("entry") or []]
    assert len(entries) <= 1, f"{len(entries)} copies of {rtype} {value} at {base}: one expected"
    return entries[0] if entries else None


def count(session, base: str, rtype: str, system: str, value: str) -> int:
    found = session.get(f"{base}/{rtype}", params={"identifier": f"{system}|{value}", "_summary": "count"})
    assert found.status_code == 200, found.text
    return found.json()["total"]


def outbox_of(site: Site, session, value: str) -> list[dict]:
    """The outbox records still pending at ``site`` for the resource with identifier ``value``."""
    found = session.get(f"{site.fhir}/Basic", params={"code": f"{OUTBOX_SYSTEM}|delivery", "_count": "200"})
    assert found.status_code == 200, found.text
    records = [e["resource"] for e in found.json().get("entry") or []]
    return [r for r in records if ((r.get("subject") or {}).get("identifier") or {}).get("value") == value]


def delivered(site: Site, session, value: str) -> int:
    """How many hand-offs of that identifier ``site`` recorded as delivered."""
    query = {"subtype": f"{HANDOFF_SYSTEM}|delivered", "entity-name": value}
    found = session.get(f"{site.fhir}/AuditEvent", params=query)
    return found.json().get("total", 0) if found.status_code == 200 else 0


def repeat(peer, site: Site, resource: dict, value: str, system: str):
    """The delivery once more, as the sending deployment's worker would after a lost answer and with
    the receiver's record of delivery ids gone: a fresh X-Delivery-ID, the same conditional create."""
    sent = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    body = transaction(sent, {"system": system, "value": value})
    return peer.post(site.fhir, json=body, headers={**FHIR_JSON, "X-Delivery-ID": uuid.uuid4().hex})


# ------------------------------------------------------------ a subscribing system's endpoint


class Subscriber:
    """A subscribing system's notification endpoint on loopback: keeps every notification it
    accepted (with our header secret; anything else is refused 401)."""

    def __init__(self):
        self.secret = uuid.uuid4().hex
        self.accepted: list[dict] = []
        self.refused = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Authorization") == f"Bearer {owner.secret}":
                    owner.accepted.append(json.loads(body))
                    self.send_response(200)
                else:
                    owner.refused += 1
                    self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_type(self, kind: str) -> list[dict]:
        return [b for b in self.accepted if status_param(b, "type") == kind]

    def events(self) -> list[tuple[int, str, dict]]:
        """Every event notified: (event number, its focus, its entry), in the order received."""
        found = []
        for bundle in self.of_type("event-notification"):
            entries = {e["fullUrl"]: e for e in bundle["entry"][1:]}
            for p in status_of(bundle)["parameter"]:
                if p["name"] != "notification-event":
                    continue
                parts = {part["name"]: part for part in p["part"]}
                focus = parts["focus"]["valueReference"]["reference"]
                found.append((int(parts["event-number"]["valueString"]), focus, entries[focus]))
        return found

    def numbers(self) -> list[int]:
        return [n for n, _, _ in self.events()]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def subscribers():
    made: list[Subscriber] = []

    def make() -> Subscriber:
        made.append(Subscriber())
        return made[-1]

    yield make
    for s in made:
        s.close()


def status_of(bundle: dict) -> dict:
    """The SubscriptionStatus (R4: Parameters) a notification Bundle opens with."""
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history", bundle
    first = bundle["entry"][0]["resource"]
    assert first["resourceType"] == "Parameters", first
    return first


def status_param(bundle: dict, name: str):
    for p in status_of(bundle)["parameter"]:
        if p["name"] == name:
            return next(v for k, v in p.items() if k.startswith("value"))
    return None


def subscription(url: str, secret: str, topic: str, content: str) -> dict:
    """A Backport IG Subscription of the endpoint at ``url`` to ``topic``, without filters (the
    subscriber hears of what it may read), authenticated by its header ``secret``."""
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [IG + "backport-subscription"]},
        "status": "requested",
        "reason": "the medicines reference architectures",
        "criteria": topic,
        "channel": {
            "type": "rest-hook",
            "endpoint": url,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": IG + "backport-payload-content", "valueCode": content}]},
            "header": [f"Authorization: Bearer {secret}"],
        },
    }


def subscribe(site: Site, session, endpoint: Subscriber, topic: str, content: str) -> str:
    """Subscribe ``endpoint`` to ``topic`` at ``site``; its id, once the handshake made it active."""
    body = subscription(endpoint.url, endpoint.secret, topic, content)
    made = session.post(f"{site.fhir}/Subscription", json=body, headers=FHIR_JSON)
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    active = eventually(
        lambda: session.get(f"{site.fhir}/Subscription/{sid}").json()["status"] == "active", 30, 0.1
    )
    assert active, f"Subscription/{sid} never became active; see {site.var}/{site.name}-worker.log"
    [handshake] = endpoint.of_type("handshake")
    assert status_param(handshake, "subscription")["reference"] == f"{site.fhir}/Subscription/{sid}"
    assert status_param(handshake, "topic") == topic
    return sid


def notified(endpoint: Subscriber, site: Site, sid: str, topic: str) -> tuple[int, str, dict]:
    """The one event ``endpoint`` was notified of (it waits for it), checked as the IG shapes it."""
    assert eventually(endpoint.events, 30, 0.1), (
        f"no notification to Subscription/{sid}; see {site.var}/{site.name}-worker.log"
    )
    [bundle] = endpoint.of_type("event-notification")
    assert status_param(bundle, "subscription")["reference"] == f"{site.fhir}/Subscription/{sid}"
    assert status_param(bundle, "topic") == topic
    assert status_param(bundle, "events-since-subscription-start") == "1"
    [event] = endpoint.events()
    return event


def settled(endpoint: Subscriber, session, site: Site, sid: str) -> list[int]:
    """The event numbers ``endpoint`` was notified of, once nothing more is on its way: every event
    the subscription recorded (its ``$status``) has arrived, and a short wait brought no repeat."""

    def recorded() -> int:
        r = session.get(f"{site.fhir}/Subscription/{sid}/$status")
        assert r.status_code == 200, r.text
        params = {p["name"]: p for p in r.json()["entry"][0]["resource"]["parameter"]}
        assert params["status"]["valueCode"] == "active"
        return int(params["events-since-subscription-start"]["valueString"])

    assert eventually(lambda: recorded() == len(endpoint.events()), 30, 0.1), (
        recorded(),
        endpoint.numbers(),
    )
    time.sleep(1)  # a repeat would follow its original within a second here
    return endpoint.numbers()


# ------------------------------------------------------------ 1. both systems are FHIR servers


def test_1_prescribing_and_dispensing_systems_as_fhir_servers(sites):
    p, d = sites["prescribing"], sites["dispensing"]
    gp = p.system("arch1-gp-system", "prescriber", PRESCRIBER)
    pharmacy = d.system("arch1-pharmacy-system", "dispenser", DISPENSER_1)
    nhs, rx, md_id = nhs_number(), f"RX-{uuid.uuid4().hex[:12]}", f"MD-{uuid.uuid4().hex[:12]}"

    patient = gp.post(
        f"{p.fhir}/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": NHS, "value": nhs}],
            "name": [{"family": "Dawkins"}],
        },
        headers=FHIR_JSON,
    )
    assert patient.status_code == 201, patient.text

    # (1) the prescribing system creates the MedicationRequest with an identifier, active: it is
    # POSTed to the dispensing system, which adds its own logical id on receipt
    request = medication_request(
        rx, {"reference": f"Patient/{patient.json()['id']}"}, PRESCRIBER, DISPENSER_1
    )
    created = gp.post(f"{p.fhir}/MedicationRequest", json=request, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    ours = created.json()
    copy = eventually(lambda: one(pharmacy, d.fhir, "MedicationRequest", RX, rx))
    assert copy is not None, (
        f"the request never reached the dispensing system; see {p.var}/prescribing-worker.log"
    )
    assert copy["identifier"] == [{"system": RX, "value": rx}] and copy["status"] == "active"
    assert copy["id"] and copy["meta"]["versionId"] == "1", "its own logical id, given on receipt"
    # the patient travels as its NHS Number: Patient/<id> means nothing at the dispensing system
    assert copy["subject"] == {"type": "Patient", "identifier": {"system": NHS, "value": nhs}}
    assert eventually(lambda: not outbox_of(p, p.admin(), rx)), "the delivery is done and its record gone"
    assert eventually(lambda: delivered(p, gp, rx) >= 1), "the hand-off is on record at the sender"
    # exactly once: the same delivery again (a lost answer, the receiver's delivery ids lost) finds the copy
    again = repeat(sites["peers"]["prescribing@dispensing"], d, copy, rx, RX)  # as it was sent
    assert again.status_code == 200, again.text
    assert count(pharmacy, d.fhir, "MedicationRequest", RX, rx) == 1

    # (2) the dispensing system creates the MedicationDispense, completed: it is POSTed to the
    # prescribing system, which adds its own logical id on receipt
    dispense = medication_dispense(md_id, {"reference": f"MedicationRequest/{copy['id']}"}, nhs, DISPENSER_1)
    made = pharmacy.post(f"{d.fhir}/MedicationDispense", json=dispense, headers=FHIR_JSON)
    assert made.status_code == 201, made.text
    received = eventually(lambda: one(gp, p.fhir, "MedicationDispense", DISPENSE_ID, md_id))
    assert received is not None, (
        f"the dispense never reached the prescribing system; see {d.var}/dispensing-worker.log"
    )
    assert received["status"] == "completed" and received["identifier"] == dispense["identifier"]
    # its prescription, named by the request's identifier on the way, is the prescriber's own request here
    [prescription] = received["authorizingPrescription"]
    assert prescription["reference"] == f"MedicationRequest/{ours['id']}"
    assert prescription["identifier"] == {"system": RX, "value": rx}

    # (3) on receipt, the prescribing system sets the MedicationRequest completed
    assert gp.get(f"{p.fhir}/MedicationRequest/{ours['id']}").json()["status"] == "completed"
    audit = gp.get(
        f"{p.fhir}/AuditEvent", params={"subtype": f"{HANDOFF_SYSTEM}|completed-by-dispense"}
    ).json()
    assert any(
        {"what": {"reference": f"MedicationRequest/{ours['id']}"}} in e["resource"]["entity"]
        for e in audit.get("entry") or []
    )
    # exactly once on the way back too
    again = repeat(
        sites["peers"]["dispensing@prescribing"],
        p,
        {**received, "authorizingPrescription": [{"identifier": prescription["identifier"]}]},
        md_id,
        DISPENSE_ID,
    )
    assert again.status_code == 200, again.text
    assert count(gp, p.fhir, "MedicationDispense", DISPENSE_ID, md_id) == 1
    assert eventually(lambda: not outbox_of(d, d.admin(), md_id))


def test_a_request_a_rule_would_send_without_an_identifier_is_refused_at_the_sender(sites):
    p = sites["prescribing"]
    gp = p.system("arch1-gp-system-2", "prescriber", PRESCRIBER)
    before = gp.get(f"{p.fhir}/MedicationRequest", params={"_summary": "count"}).json()["total"]
    request = medication_request(
        "x", {"identifier": {"system": NHS, "value": nhs_number()}}, PRESCRIBER, DISPENSER_1
    )
    del request["identifier"]
    refused = gp.post(f"{p.fhir}/MedicationRequest", json=request, headers=FHIR_JSON)
    assert refused.status_code == 422, refused.text
    assert refused.json()["issue"][0]["expression"] == ["MedicationRequest.identifier"]
    # nothing stored, so nothing was sent: the prescribing system can fix it and send it again
    assert gp.get(f"{p.fhir}/MedicationRequest", params={"_summary": "count"}).json()["total"] == before


def test_a_dispensing_system_away_gets_the_request_once_it_is_back(sites):
    p, d = sites["prescribing"], sites["dispensing"]
    gp = p.system("arch1-gp-system-3", "prescriber", PRESCRIBER)
    pharmacy = d.system("arch1-pharmacy-system-3", "dispenser", DISPENSER_1)
    rx = f"RX-{uuid.uuid4().hex[:12]}"
    request = medication_request(
        rx, {"identifier": {"system": NHS, "value": nhs_number()}}, PRESCRIBER, DISPENSER_1
    )
    d.stop_proxy()
    try:
        created = gp.post(f"{p.fhir}/MedicationRequest", json=request, headers=FHIR_JSON)
        assert created.status_code == 201, created.text  # the prescriber is not held up by the partner
        assert not eventually(lambda: delivered(p, gp, rx) > 0, timeout=6), "nothing can be delivered yet"
        assert len(outbox_of(p, p.admin(), rx)) == 1, "the intent to send is kept"
    finally:
        d.start_proxy()
    copy = eventually(lambda: one(pharmacy, d.fhir, "MedicationRequest", RX, rx), timeout=120)
    assert copy is not None, (
        f"never delivered after the partner came back; see {p.var}/prescribing-worker.log"
    )
    assert eventually(lambda: not outbox_of(p, p.admin(), rx))
    assert count(pharmacy, d.fhir, "MedicationRequest", RX, rx) == 1


# ------------------------------------------------------------ 2. the dispensing system is the FHIR server


def test_2_dispensing_system_as_the_fhir_server(sites):
    p, d = sites["prescribing"], sites["dispensing-server"]
    gp = p.system("arch2-gp-system", "prescriber", PRESCRIBER)
    pharmacy = d.system("arch2-pharmacy-system", "dispenser", DISPENSER_2)
    # the prescribing system's GETs at the dispensing system, with the identity it delivers with
    gp_at_pharmacy = sites["peers"]["prescribing@dispensing-server"]
    nhs, rx, md_id = nhs_number(), f"RX-{uuid.uuid4().hex[:12]}", f"MD-{uuid.uuid4().hex[:12]}"

    # (1) the prescribing system creates the active MedicationRequest and POSTs it to the
    # dispensing system, which adds the logical id on receipt
    request = medication_request(rx, {"identifier": {"system": NHS, "value": nhs}}, PRESCRIBER, DISPENSER_2)
    created = gp.post(f"{p.fhir}/MedicationRequest", json=request, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    ours = created.json()
    copy = eventually(lambda: one(pharmacy, d.fhir, "MedicationRequest", RX, rx))
    assert copy is not None, (
        f"the request never reached the dispensing system; see {p.var}/prescribing-worker.log"
    )
    assert copy["status"] == "active" and copy["meta"]["versionId"] == "1"
    assert eventually(lambda: not outbox_of(p, p.admin(), rx))

    def dispensing_record() -> dict | None:
        """(2) "get the dispensing record for this request": the request by its identifier, then
        the dispenses of it, at the dispensing system."""
        there = one(gp_at_pharmacy, d.fhir, "MedicationRequest", RX, rx)
        assert there is not None and there["id"] == copy["id"], (
            "the prescriber finds its request by identifier"
        )
        found = gp_at_pharmacy.get(
            f"{d.fhir}/MedicationDispense", params={"prescription": f"MedicationRequest/{there['id']}"}
        )
        assert found.status_code == 200, found.text
        entries = [e["resource"] for e in found.json().get("entry") or []]
        assert len(entries) <= 1
        return entries[0] if entries else None

    # (2) the prescribing system GETs at any time: nothing yet, then in progress
    assert dispensing_record() is None
    dispense = medication_dispense(
        md_id, {"reference": f"MedicationRequest/{copy['id']}"}, nhs, DISPENSER_2, status="in-progress"
    )
    made = pharmacy.post(f"{d.fhir}/MedicationDispense", json=dispense, headers=FHIR_JSON)
    assert made.status_code == 201, made.text
    record = dispensing_record()
    assert (
        record is not None
        and record["status"] == "in-progress"
        and record["identifier"] == dispense["identifier"]
    )
    assert record["id"] == made.json()["id"], "the dispensing system assigned the logical id"
    assert gp.get(f"{p.fhir}/MedicationRequest/{ours['id']}").json()["status"] == "active"

    # the dispensing system finishes: the same record, completed (nothing is pushed to the prescriber)
    finished = pharmacy.put(
        f"{d.fhir}/MedicationDispense/{record['id']}",
        json={**made.json(), "status": "completed"},
        headers=FHIR_JSON,
    )
    assert finished.status_code == 200, finished.text

    # (3) the GET returns completed: the prescribing system sets its MedicationRequest completed
    record = dispensing_record()
    assert record is not None and record["status"] == "completed"
    mine = gp.get(f"{p.fhir}/MedicationRequest/{ours['id']}").json()
    assert mine["status"] == "active", "nothing reached the prescribing system by itself"
    done = gp.put(
        f"{p.fhir}/MedicationRequest/{ours['id']}", json={**mine, "status": "completed"}, headers=FHIR_JSON
    )
    assert done.status_code == 200, done.text
    assert gp.get(f"{p.fhir}/MedicationRequest/{ours['id']}").json()["status"] == "completed"
    assert count(pharmacy, d.fhir, "MedicationRequest", RX, rx) == 1
    assert count(gp, p.fhir, "MedicationDispense", DISPENSE_ID, md_id) == 0


# ------------------------------------------------------------ 3. the prescribing system is the FHIR server


def completion_audited(session, base: str, request_id: str) -> bool:
    """The AuditEvent of ``MedicationRequest/<request_id>`` completed by a dispense is on record."""
    audit = session.get(f"{base}/AuditEvent", params={"subtype": f"{HANDOFF_SYSTEM}|completed-by-dispense"})
    assert audit.status_code == 200, audit.text
    return any(
        {"what": {"reference": f"MedicationRequest/{request_id}"}} in e["resource"]["entity"]
        for e in audit.json().get("entry") or []
    )


def test_3_prescribing_system_as_the_fhir_server(sites, subscribers):
    p = sites["prescribing-server"]
    gp = p.system("arch3-gp-system", "prescriber", RX_SERVER)
    pharmacy = p.system("arch3-pharmacy-system", "dispenser", RX_SERVER_PHARMACY, DISPENSING_SUBSCRIBER)
    other = p.system("arch3-other-pharmacy", "dispenser", RX_SERVER_OTHER_PHARMACY, DISPENSING_SUBSCRIBER)
    nhs, rx, md_id = nhs_number(), f"RX-{uuid.uuid4().hex[:12]}", f"MD-{uuid.uuid4().hex[:12]}"

    # a dispensing system with its role's default scopes (EPS's: read only) may not subscribe: the
    # deployment grants it system/Subscription.cruds
    eps_pharmacy = p.system(
        "arch3-eps-pharmacy", "dispenser", RX_SERVER_PHARMACY, DEFAULT_SCOPES["dispenser"]
    )
    refused = eps_pharmacy.post(
        f"{p.fhir}/Subscription",
        json=subscription("http://127.0.0.1:9/notify", "s3cret", MR_ACTIVE, "full-resource"),
        headers=FHIR_JSON,
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"

    # the pharmacies subscribe to "MedicationRequest became active", full-resource: a notification
    # carries the request, and so its identifier; no filter: each hears of what it may read
    to_pharmacy, to_other = subscribers(), subscribers()
    sid = subscribe(p, pharmacy, to_pharmacy, MR_ACTIVE, "full-resource")
    other_sid = subscribe(p, other, to_other, MR_ACTIVE, "full-resource")

    patient = gp.post(
        f"{p.fhir}/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs}]},
        headers=FHIR_JSON,
    )
    assert patient.status_code == 201, patient.text
    subject = {"reference": f"Patient/{patient.json()['id']}"}

    # (1) the prescribing system's new request, active, with its identifier: the server assigns the
    # logical id and notifies the pharmacy the request names, with the identifier
    created = gp.post(
        f"{p.fhir}/MedicationRequest",
        json=medication_request(rx, subject, RX_SERVER, RX_SERVER_PHARMACY),
        headers=FHIR_JSON,
    )
    assert created.status_code == 201, created.text
    ours = created.json()
    assert ours["id"] and ours["identifier"] == [{"system": RX, "value": rx}]
    # and one for the other pharmacy: each pharmacy hears of its own request only
    rx_other = f"RX-{uuid.uuid4().hex[:12]}"
    theirs = gp.post(
        f"{p.fhir}/MedicationRequest",
        json=medication_request(rx_other, subject, RX_SERVER, RX_SERVER_OTHER_PHARMACY),
        headers=FHIR_JSON,
    )
    assert theirs.status_code == 201, theirs.text

    number, focus, entry = notified(to_pharmacy, p, sid, MR_ACTIVE)
    assert number == 1 and focus == f"{p.fhir}/MedicationRequest/{ours['id']}"
    sent = entry["resource"]
    assert sent["id"] == ours["id"] and sent["status"] == "active"
    assert sent["identifier"] == [{"system": RX, "value": rx}], "the notification has the identifier"
    number, focus, entry = notified(to_other, p, other_sid, MR_ACTIVE)
    assert number == 1 and focus == f"{p.fhir}/MedicationRequest/{theirs.json()['id']}"
    assert entry["resource"]["identifier"] == [{"system": RX, "value": rx_other}]

    # (2) the pharmacy GETs the request by the identifier it was notified of: it reads it as the
    # nominated pharmacy, and its patient; the other pharmacy reads neither
    [notified_rx] = sent["identifier"]
    found = one(pharmacy, p.fhir, "MedicationRequest", notified_rx["system"], notified_rx["value"])
    assert found is not None and found["id"] == ours["id"] and found["status"] == "active"
    read = pharmacy.get(f"{p.fhir}/MedicationRequest/{ours['id']}")
    assert read.json() == sent, "the notification carried the request as the pharmacy reads it"
    assert pharmacy.get(f"{p.fhir}/{found['subject']['reference']}").status_code == 200
    assert one(other, p.fhir, "MedicationRequest", RX, rx) is None
    assert other.get(f"{p.fhir}/MedicationRequest/{ours['id']}").status_code == 404

    # (3) the pharmacy POSTs the completed MedicationDispense, with its identifier, to the
    # prescribing system's server, which adds the logical id
    dispense = medication_dispense(
        md_id, {"reference": f"MedicationRequest/{found['id']}"}, nhs, RX_SERVER_PHARMACY
    )
    made = pharmacy.post(f"{p.fhir}/MedicationDispense", json=dispense, headers=FHIR_JSON)
    assert made.status_code == 201, made.text
    assert made.json()["id"] and made.json()["identifier"] == dispense["identifier"]
    received = one(gp, p.fhir, "MedicationDispense", DISPENSE_ID, md_id)  # the prescriber reads it
    assert received is not None and received["id"] == made.json()["id"]
    assert received["authorizingPrescription"][0]["reference"] == f"MedicationRequest/{ours['id']}"

    # (4) on receipt the MedicationRequest is completed, in the dispense's own write, audited
    assert gp.get(f"{p.fhir}/MedicationRequest/{ours['id']}").json()["status"] == "completed"
    assert completion_audited(gp, p.fhir, ours["id"])
    # the pharmacy's GET "at any time" shows the end state too: completion kept its reader label
    assert pharmacy.get(f"{p.fhir}/MedicationRequest/{ours['id']}").json()["status"] == "completed"
    # one notification per event: the completion is no "became active", and nothing came twice
    assert settled(to_pharmacy, pharmacy, p, sid) == [1]
    assert settled(to_other, other, p, other_sid) == [1]
    assert to_pharmacy.refused == to_other.refused == 0


# ------------------------------------------------------------ 4. a message broker is the FHIR server


def test_4_message_broker_as_the_fhir_server(sites):
    b = sites["broker"]
    gp = b.system("arch4-gp-system", "prescriber", BROKER_PRESCRIBER)
    pharmacy = b.system("arch4-pharmacy-system", "dispenser", BROKER_DISPENSER)
    bystander = b.system("arch4-other-pharmacy", "dispenser", "FQ000")
    nhs, rx, md_id = nhs_number(), f"RX-{uuid.uuid4().hex[:12]}", f"MD-{uuid.uuid4().hex[:12]}"

    # (1) the prescribing system POSTs the active MedicationRequest to the broker, which adds the logical id
    request = medication_request(
        rx, {"identifier": {"system": NHS, "value": nhs}}, BROKER_PRESCRIBER, BROKER_DISPENSER
    )
    created = gp.post(f"{b.fhir}/MedicationRequest", json=request, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    at_broker = created.json()
    assert at_broker["id"] and at_broker["identifier"] == request["identifier"]

    # (2) the prescribing system notifies the dispensing system directly with the identifier: in
    # EPS this is the token the patient presents; here the test hands the identifier over
    notified_rx = {"system": RX, "value": rx}

    # (3) the dispensing system GETs the MedicationRequest from the broker by that identifier
    found = one(pharmacy, b.fhir, "MedicationRequest", notified_rx["system"], notified_rx["value"])
    assert found is not None and found["id"] == at_broker["id"] and found["status"] == "active"
    assert one(bystander, b.fhir, "MedicationRequest", RX, rx) is None, "a pharmacy not named sees nothing"

    # (4) the dispensing system POSTs the completed MedicationDispense to the broker, naming the
    # prescription by the identifier it was notified of; the broker adds the logical id
    dispense = medication_dispense(md_id, {"identifier": notified_rx}, nhs, BROKER_DISPENSER)
    made = pharmacy.post(f"{b.fhir}/MedicationDispense", json=dispense, headers=FHIR_JSON)
    assert made.status_code == 201, made.text
    assert made.json()["id"]

    # (5) the dispensing system notifies the prescribing system directly with the dispense's identifier
    notified_md = {"system": DISPENSE_ID, "value": md_id}

    # (6) the prescribing system GETs the MedicationDispense from the broker by that identifier
    received = one(gp, b.fhir, "MedicationDispense", notified_md["system"], notified_md["value"])
    assert received is not None and received["status"] == "completed" and received["id"] == made.json()["id"]
    assert received["authorizingPrescription"][0]["reference"] == f"MedicationRequest/{at_broker['id']}"
    assert one(bystander, b.fhir, "MedicationDispense", DISPENSE_ID, md_id) is None

    # (7) on receipt the MedicationRequest is completed: the broker holds the prescription and did
    # it in the dispense's own transaction, audited
    assert gp.get(f"{b.fhir}/MedicationRequest/{at_broker['id']}").json()["status"] == "completed"
    audit = gp.get(
        f"{b.fhir}/AuditEvent", params={"subtype": f"{HANDOFF_SYSTEM}|completed-by-dispense"}
    ).json()
    assert any(
        {"what": {"reference": f"MedicationRequest/{at_broker['id']}"}} in e["resource"]["entity"]
        for e in audit.get("entry") or []
    )


# ------------------------------------------------------- 5. a message broker is the FHIR and events server


def test_5_message_broker_as_the_fhir_and_events_server(sites, subscribers):
    b = sites["broker"]
    gp = b.system("arch5-gp-system", "prescriber", EVENTS_PRESCRIBER, PRESCRIBING_SUBSCRIBER)
    pharmacy = b.system("arch5-pharmacy-system", "dispenser", EVENTS_DISPENSER, DISPENSING_SUBSCRIBER)
    other_gp = b.system("arch5-other-gp", "prescriber", EVENTS_OTHER_PRESCRIBER, PRESCRIBING_SUBSCRIBER)
    other_pharmacy = b.system(
        "arch5-other-pharmacy", "dispenser", EVENTS_OTHER_DISPENSER, DISPENSING_SUBSCRIBER
    )
    nhs, rx, md_id = nhs_number(), f"RX-{uuid.uuid4().hex[:12]}", f"MD-{uuid.uuid4().hex[:12]}"

    # the subscribing systems, id-only (the IG's default: a notification names the resource by its
    # URL at the broker): the dispensing systems to "MedicationRequest became active", the
    # prescribing systems to "MedicationDispense completed"; no filter: each hears of what it may read
    to_pharmacy, to_other_pharmacy, to_gp, to_other_gp = (subscribers() for _ in range(4))
    pharmacy_sid = subscribe(b, pharmacy, to_pharmacy, MR_ACTIVE, "id-only")
    other_pharmacy_sid = subscribe(b, other_pharmacy, to_other_pharmacy, MR_ACTIVE, "id-only")
    gp_sid = subscribe(b, gp, to_gp, DISPENSED, "id-only")
    other_gp_sid = subscribe(b, other_gp, to_other_gp, DISPENSED, "id-only")

    # (1) the prescribing system POSTs the active MedicationRequest to the broker, which adds the logical id
    request = medication_request(
        rx, {"identifier": {"system": NHS, "value": nhs}}, EVENTS_PRESCRIBER, EVENTS_DISPENSER
    )
    created = gp.post(f"{b.fhir}/MedicationRequest", json=request, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    at_broker = created.json()
    assert at_broker["id"] and at_broker["identifier"] == request["identifier"]

    # (2) the broker notifies the subscribing dispensing system of the new MedicationRequest
    number, focus, entry = notified(to_pharmacy, b, pharmacy_sid, MR_ACTIVE)
    assert number == 1 and focus == f"{b.fhir}/MedicationRequest/{at_broker['id']}"
    assert "resource" not in entry, "id-only: the dispensing system reads it itself"

    # (3) the dispensing system GETs the MedicationRequest from the broker: at the URL it was
    # notified of, and by the identifier found there
    read = pharmacy.get(focus)
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "active"
    [identifier] = read.json()["identifier"]
    assert identifier == {"system": RX, "value": rx}
    found = one(pharmacy, b.fhir, "MedicationRequest", identifier["system"], identifier["value"])
    assert found is not None and found["id"] == at_broker["id"]
    assert other_pharmacy.get(focus).status_code == 404, "a pharmacy not named reads nothing"

    # (4) the dispensing system POSTs the completed MedicationDispense, naming the prescription by
    # its identifier; the broker adds the logical id
    dispense = medication_dispense(md_id, {"identifier": identifier}, nhs, EVENTS_DISPENSER)
    made = pharmacy.post(f"{b.fhir}/MedicationDispense", json=dispense, headers=FHIR_JSON)
    assert made.status_code == 201, made.text
    md_at_broker = made.json()["id"]
    assert md_at_broker

    # (5) the broker notifies the subscribing prescribing system of the new MedicationDispense
    number, focus, entry = notified(to_gp, b, gp_sid, DISPENSED)
    assert number == 1 and focus == f"{b.fhir}/MedicationDispense/{md_at_broker}"
    assert "resource" not in entry

    # (6) the prescribing system GETs the MedicationDispense from the broker: at the URL it was
    # notified of, and by the dispense's identifier
    received = gp.get(focus)
    assert received.status_code == 200, received.text
    assert received.json()["status"] == "completed"
    assert received.json()["identifier"] == [{"system": DISPENSE_ID, "value": md_id}]
    assert (
        received.json()["authorizingPrescription"][0]["reference"] == f"MedicationRequest/{at_broker['id']}"
    )
    again = one(gp, b.fhir, "MedicationDispense", DISPENSE_ID, md_id)
    assert again is not None and again["id"] == md_at_broker
    assert other_gp.get(focus).status_code == 404, "another prescriber reads nothing"

    # (7) on receipt the MedicationRequest is completed: the broker did it in the dispense's own
    # write, audited
    assert gp.get(f"{b.fhir}/MedicationRequest/{at_broker['id']}").json()["status"] == "completed"
    assert completion_audited(gp, b.fhir, at_broker["id"])
    assert pharmacy.get(f"{b.fhir}/MedicationRequest/{at_broker['id']}").json()["status"] == "completed"
    # one notification per event, to its subscriber only
    assert settled(to_pharmacy, pharmacy, b, pharmacy_sid) == [1]
    assert settled(to_gp, gp, b, gp_sid) == [1]
    assert settled(to_other_pharmacy, other_pharmacy, b, other_pharmacy_sid) == []
    assert settled(to_other_gp, other_gp, b, other_gp_sid) == []
    assert not any(s.refused for s in (to_pharmacy, to_other_pharmacy, to_gp, to_other_gp))
