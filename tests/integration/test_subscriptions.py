"""Event notifications end to end (issue 15 item 2): the real proxy, HAPI, Redis and an RQ worker
(``python -m worker``), and loopback subscribers (a small threaded HTTP server per test).

Tenants subscribe to the seed's topics (R4 Backport IG); the proxy checks and stores each
Subscription, the worker shakes hands and delivers; a subscriber hears of what it may read and
nothing else, every event once, numbered without gaps, in order, through an outage too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from redis import Redis

from ops import stack as stackmod
from ops.processes import read_pid
from tests.support.polling import eventually

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
TOPIC = "https://fhirplug.org/fhir/SubscriptionTopic/"
MR_ACTIVE = TOPIC + "medication-request-active"
DISPENSED = TOPIC + "medication-dispense-completed"
TASK_STATUS = TOPIC + "task-status-changed"
A, B, PHARMACY = "FSA01", "FSB01", "FSP01"  # two prescribers and a pharmacy, tenants here


class Subscriber:
    """A loopback notification endpoint: keeps what it accepted, answers ``status`` (503: down)."""

    def __init__(self, secret: str):
        self.secret = secret
        self.status = 200
        self.holding = False  # True: a notification is kept waiting until ``release`` is set
        self.release = threading.Event()
        self.held: list[dict] = []
        self.accepted: list[dict] = []
        self.refused = 0
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, content type
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append(("POST", self.path, self.headers.get("Content-Type")))
                if self.headers.get("Authorization") != f"Bearer {owner.secret}":
                    self.send_response(401)
                elif owner.status >= 300:
                    owner.refused += 1
                    self.send_response(owner.status)
                else:
                    if owner.holding:
                        owner.held.append(json.loads(body))
                        owner.release.wait(120)
                    owner.accepted.append(json.loads(body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_PUT(self):  # noqa: N802 - HAPI's own rest-hook would PUT the resource
                owner.requests.append(("PUT", self.path, self.headers.get("Content-Type")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_type(self, kind: str) -> list[dict]:
        return [b for b in self.accepted if status_param(b, "type") == kind]

    def numbers(self) -> list[int]:
        return [
            int(part["valueString"])
            for b in self.of_type("event-notification")
            for p in status_of(b)["parameter"]
            if p["name"] == "notification-event"
            for part in p["part"]
            if part["name"] == "event-number"
        ]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def status_of(bundle: dict) -> dict:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history", bundle
    first = bundle["entry"][0]["resource"]
    assert first["resourceType"] == "Parameters", first
    return first


def status_param(bundle: dict, name: str):
    for p in status_of(bundle)["parameter"]:
        if p["name"] == name:
            return next(v for k, v in p.items() if k.startswith("value"))
    return None


def subscription(
    topic: str, endpoint: str, secret: str, filters=(), content="id-only", heartbeat=None
) -> dict:
    channel: dict = {
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": IG + "backport-payload-content", "valueCode": content}]},
        "header": [f"Authorization: Bearer {secret}"],
    }
    if heartbeat is not None:
        channel["extension"] = [{"url": IG + "backport-heartbeat-period", "valueUnsignedInt": heartbeat}]
    sub = {
        "resourceType": "Subscription",
        "meta": {"profile": [IG + "backport-subscription"]},
        "status": "requested",
        "reason": "test",
        "criteria": topic,
        "channel": channel,
    }
    if filters:
        sub["_criteria"] = {
            "extension": [{"url": IG + "backport-filter-criteria", "valueString": f} for f in filters]
        }
    return sub


@pytest.fixture(scope="module")
def worker(stack):
    """The stack's RQ worker (``python -m worker``), started here unless it already runs."""
    pidfile = stack.cfg.path("run", "worker.pid")
    ours = read_pid(pidfile) is None
    stackmod.start_worker(stack.cfg)
    yield
    if ours:
        stackmod.stop(stack.cfg, "worker")


@pytest.fixture(scope="module")
def tenants(stack):
    return {
        ods: stack.session(client=stack.client(f"subs-{ods.lower()}", "spoke", ods))
        for ods in (A, B, PHARMACY)
    }


@pytest.fixture
def subscriber():
    made: list[Subscriber] = []

    def make() -> Subscriber:
        s = Subscriber(uuid.uuid4().hex)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def subscribe(stack, session, sub_endpoint: Subscriber, topic: str, **kw) -> str:
    r = session.post(
        f"{stack.fhir}/Subscription",
        json=subscription(topic, sub_endpoint.url, sub_endpoint.secret, **kw),
        headers=FHIR_JSON,
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert eventually(
        lambda: session.get(f"{stack.fhir}/Subscription/{sid}").json()["status"] == "active", 30
    )
    return sid


def created(r) -> str:
    assert r.status_code == 201, r.text
    return r.headers["Location"].split("/_history")[0].rsplit("/", 1)[-1]


def patient(stack, s) -> str:
    return created(s.post(f"{stack.fhir}/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON))


def medication_request(stack, s, pid: str, status="active", performer: str | None = None) -> str:
    mr: dict = {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"text": "paracetamol 500mg tablets"},
        "subject": {"reference": f"Patient/{pid}"},
    }
    if performer:
        mr["dispenseRequest"] = {"performer": {"identifier": {"system": ODS, "value": performer}}}
    return created(s.post(f"{stack.fhir}/MedicationRequest", json=mr, headers=FHIR_JSON))


# ---------------------------------------------------------------- handshake and heartbeat


def test_a_subscription_shakes_hands_and_becomes_active(stack, worker, tenants, subscriber):
    sub = subscriber()
    r = tenants[A].post(
        f"{stack.fhir}/Subscription", json=subscription(MR_ACTIVE, sub.url, sub.secret), headers=FHIR_JSON
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "requested"
    sid = r.json()["id"]
    assert eventually(lambda: sub.of_type("handshake"), 30)
    handshake = sub.of_type("handshake")[0]
    assert status_param(handshake, "subscription")["reference"] == f"{stack.fhir}/Subscription/{sid}"
    assert status_param(handshake, "topic") == MR_ACTIVE
    assert eventually(
        lambda: tenants[A].get(f"{stack.fhir}/Subscription/{sid}").json()["status"] == "active", 30
    )
    stored = stack.session().get(f"{stack.fhir}/Subscription/{sid}").json()
    assert {"system": "https://fhirplug.org/fhir/CodeSystem/tenant", "code": A} in stored["meta"]["security"]


def test_an_endpoint_that_refuses_the_handshake_leaves_the_subscription_in_error(
    stack, worker, tenants, subscriber
):
    sub = subscriber()
    sub.status = 400
    r = tenants[A].post(
        f"{stack.fhir}/Subscription", json=subscription(MR_ACTIVE, sub.url, sub.secret), headers=FHIR_JSON
    )
    sid = r.json()["id"]
    assert eventually(
        lambda: tenants[A].get(f"{stack.fhir}/Subscription/{sid}").json()["status"] == "error", 30
    )
    assert not sub.accepted


def test_an_idle_subscriber_gets_heartbeats(stack, worker, tenants, subscriber):
    sub = subscriber()
    subscribe(stack, tenants[A], sub, TASK_STATUS, heartbeat=1)
    assert eventually(lambda: len(sub.of_type("heartbeat")) >= 2, 20)
    assert not sub.of_type("event-notification")


# ---------------------------------------------------------------- events


def test_each_matching_write_is_one_notification_numbered_without_gaps(stack, worker, tenants, subscriber):
    sub = subscriber()
    pid = patient(stack, tenants[A])
    other = patient(stack, tenants[A])
    sid = subscribe(stack, tenants[A], sub, MR_ACTIVE, filters=[f"MedicationRequest?subject=Patient/{pid}"])
    made = [medication_request(stack, tenants[A], pid) for _ in range(3)]
    medication_request(stack, tenants[A], other)  # filtered out
    draft = medication_request(stack, tenants[A], pid, status="draft")  # not (yet) active
    assert eventually(lambda: len(sub.numbers()) >= 3, 30)
    # the draft becomes active: one more event; an update that leaves it active: none
    mr = tenants[A].get(f"{stack.fhir}/MedicationRequest/{draft}").json()
    mr["status"] = "active"
    assert (
        tenants[A].put(f"{stack.fhir}/MedicationRequest/{draft}", json=mr, headers=FHIR_JSON).status_code
        == 200
    )
    mr = tenants[A].get(f"{stack.fhir}/MedicationRequest/{draft}").json()
    mr["note"] = [{"text": "still active"}]
    assert (
        tenants[A].put(f"{stack.fhir}/MedicationRequest/{draft}", json=mr, headers=FHIR_JSON).status_code
        == 200
    )
    assert eventually(lambda: len(sub.numbers()) >= 4, 30)
    time.sleep(2)  # anything more would be a duplicate or a wrong match
    assert sub.numbers() == [1, 2, 3, 4]
    focus = [
        part["valueReference"]["reference"]
        for b in sub.of_type("event-notification")
        for p in status_of(b)["parameter"]
        if p["name"] == "notification-event"
        for part in p["part"]
        if part["name"] == "focus"
    ]
    assert focus == [f"{stack.fhir}/MedicationRequest/{i}" for i in [*made, draft]]
    first = sub.of_type("event-notification")[0]
    assert status_param(first, "events-since-subscription-start") in ("1", "2", "3")
    assert "resource" not in first["entry"][1]  # id-only: the subscriber reads it itself
    assert first["entry"][1]["fullUrl"] == f"{stack.fhir}/MedicationRequest/{made[0]}"
    # only fhirplug's notifications ever reached the endpoint: the store keeps the Subscription
    # (active) but runs no subscriptions itself (its rest-hook would PUT to /notify/MedicationRequest/id)
    assert set(sub.requests) == {("POST", "/notify", "application/fhir+json")}
    assert sid


def test_full_resource_notifications_carry_the_resource(stack, worker, tenants, subscriber):
    sub = subscriber()
    pid = patient(stack, tenants[A])
    subscribe(stack, tenants[A], sub, MR_ACTIVE, filters=[f"subject=Patient/{pid}"], content="full-resource")
    mr = medication_request(stack, tenants[A], pid)
    assert eventually(lambda: sub.of_type("event-notification"), 30)
    entry = sub.of_type("event-notification")[0]["entry"][1]
    assert entry["resource"]["resourceType"] == "MedicationRequest" and entry["resource"]["id"] == mr


def test_a_subscriber_down_for_a_while_gets_every_event_once_and_in_order(stack, worker, tenants, subscriber):
    sub = subscriber()
    pid = patient(stack, tenants[A])
    subscribe(stack, tenants[A], sub, MR_ACTIVE, filters=[f"subject=Patient/{pid}"])
    medication_request(stack, tenants[A], pid)
    assert eventually(lambda: sub.numbers() == [1], 30)
    sub.status = 503
    for _ in range(4):
        medication_request(stack, tenants[A], pid)
    assert eventually(lambda: sub.refused >= 2, 30)  # tried, and tried again
    sub.status = 200
    assert eventually(lambda: len(sub.numbers()) >= 5, 60)
    time.sleep(2)
    assert sub.numbers() == [1, 2, 3, 4, 5]


def kill_worker(stack) -> None:
    """SIGKILL the stack's worker and its work horses (RQ forks each job into a session of its own,
    which a signal to the worker's group does not reach)."""
    pid = int(stack.cfg.path("run", "worker.pid").read_text())
    horses = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == pid]
    os.killpg(pid, signal.SIGKILL)
    for horse in horses:
        with contextlib.suppress(ProcessLookupError):
            os.kill(horse, signal.SIGKILL)


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_a_worker_killed_before_its_acknowledgement_sends_the_same_number_again(
    stack, worker, tenants, subscriber
):
    """The subscriber took event 1, but the worker died before recording that: event 1 comes again
    (the subscriber dedupes by number), and the next event is 2."""
    sub = subscriber()
    pid = patient(stack, tenants[A])
    subscribe(stack, tenants[A], sub, MR_ACTIVE, filters=[f"subject=Patient/{pid}"])
    sub.holding = True
    medication_request(stack, tenants[A], pid)
    assert eventually(lambda: sub.held, 30)
    kill_worker(stack)
    stackmod.stop(stack.cfg, "worker")  # reap it and drop its pid file
    sub.holding = False
    sub.release.set()
    assert eventually(lambda: sub.numbers() == [1], 10)  # taken, never acknowledged
    stackmod.start_worker(stack.cfg)
    # the abandoned job is retried once its heartbeat lapses (about a minute)
    assert eventually(lambda: sub.numbers() == [1, 1], 180)
    medication_request(stack, tenants[A], pid)
    assert eventually(lambda: sub.numbers() == [1, 1, 2], 60)


def test_a_subscriber_hears_only_of_what_it_may_read(stack, worker, tenants, subscriber):
    """B subscribes to every active request and hears of its own, never of A's; the pharmacy A
    names as performer reads that request (a care relationship) and hears of it."""
    to_b, to_pharmacy = subscriber(), subscriber()
    subscribe(stack, tenants[B], to_b, MR_ACTIVE)
    subscribe(stack, tenants[PHARMACY], to_pharmacy, MR_ACTIVE)
    a_patient = patient(stack, tenants[A])
    mine = medication_request(stack, tenants[A], a_patient)
    for_pharmacy = medication_request(stack, tenants[A], a_patient, performer=PHARMACY)
    theirs = medication_request(stack, tenants[B], patient(stack, tenants[B]))
    assert eventually(lambda: to_b.numbers() and to_pharmacy.numbers(), 30)
    time.sleep(2)

    def focus(sub):
        return [
            e["fullUrl"].rsplit("/", 1)[-1] for b in sub.of_type("event-notification") for e in b["entry"][1:]
        ]

    assert focus(to_b) == [theirs]
    assert focus(to_pharmacy) == [for_pharmacy]
    assert mine not in focus(to_b) + focus(to_pharmacy)


def test_a_completed_dispense_and_a_task_status_change_are_events(stack, worker, tenants, subscriber):
    dispensed, tasks = subscriber(), subscriber()
    pid = patient(stack, tenants[A])
    subscribe(stack, tenants[A], dispensed, DISPENSED, filters=[f"subject=Patient/{pid}"])
    subscribe(stack, tenants[A], tasks, TASK_STATUS, filters=["code=subs-test"])
    mr = medication_request(stack, tenants[A], pid)
    md = {
        "resourceType": "MedicationDispense",
        "status": "completed",
        "medicationCodeableConcept": {"text": "paracetamol 500mg tablets"},
        "subject": {"reference": f"Patient/{pid}"},
        "authorizingPrescription": [{"reference": f"MedicationRequest/{mr}"}],
    }
    created(tenants[A].post(f"{stack.fhir}/MedicationDispense", json=md, headers=FHIR_JSON))
    assert eventually(lambda: dispensed.numbers() == [1], 30)
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": "https://fhirplug.test", "code": "subs-test"}]},
        "for": {"reference": f"Patient/{pid}"},
        "requester": {"identifier": {"system": ODS, "value": A}},
    }
    r = tenants[A].post(f"{stack.fhir}/Task", json=task, headers=FHIR_JSON)
    tid = created(r)
    assert eventually(lambda: tasks.numbers() == [1], 30)
    current = tenants[A].get(f"{stack.fhir}/Task/{tid}").json()
    current["status"] = "cancelled"
    assert tenants[A].put(f"{stack.fhir}/Task/{tid}", json=current, headers=FHIR_JSON).status_code == 200, (
        r.text
    )
    assert eventually(lambda: tasks.numbers() == [1, 2], 30)


# ---------------------------------------------------------------- $status and $events


def test_status_and_events_answer_for_the_owner_only(stack, worker, tenants, subscriber):
    sub = subscriber()
    pid = patient(stack, tenants[A])
    sid = subscribe(stack, tenants[A], sub, MR_ACTIVE, filters=[f"subject=Patient/{pid}"])
    made = [medication_request(stack, tenants[A], pid) for _ in range(3)]
    assert eventually(lambda: len(sub.numbers()) == 3, 30)

    r = tenants[A].get(f"{stack.fhir}/Subscription/{sid}/$status")
    assert r.status_code == 200, r.text
    status = r.json()["entry"][0]["resource"]
    params = {p["name"]: p for p in status["parameter"]}
    assert params["type"]["valueCode"] == "query-status"
    assert params["status"]["valueCode"] == "active"
    assert params["events-since-subscription-start"]["valueString"] == "3"

    r = tenants[A].get(
        f"{stack.fhir}/Subscription/{sid}/$events", params={"eventsSinceNumber": 2, "eventsUntilNumber": 3}
    )
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert status_param(bundle, "type") == "query-event"
    numbers = [
        part["valueString"]
        for p in status_of(bundle)["parameter"]
        if p["name"] == "notification-event"
        for part in p["part"]
        if part["name"] == "event-number"
    ]
    assert numbers == ["2", "3"]
    assert [e["fullUrl"].rsplit("/", 1)[-1] for e in bundle["entry"][1:]] == made[1:]

    for path in ("$status", "$events"):  # to another tenant, the subscription does not exist
        r = tenants[B].get(f"{stack.fhir}/Subscription/{sid}/{path}")
        assert r.status_code == 404, r.text
        missing = tenants[B].get(f"{stack.fhir}/Subscription/{uuid.uuid4()}/{path}")
        assert missing.status_code == 404
    assert tenants[B].get(f"{stack.fhir}/Subscription/{sid}").status_code == 404
    r = tenants[A].get(f"{stack.fhir}/Subscription/{sid}/$events", params={"eventsSinceNumber": "x"})
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["eventsSinceNumber"]


def test_another_tenant_cannot_change_or_delete_a_subscription(stack, worker, tenants, subscriber):
    sub = subscriber()
    sid = subscribe(stack, tenants[A], sub, MR_ACTIVE)
    body = tenants[A].get(f"{stack.fhir}/Subscription/{sid}").json()
    body["channel"]["endpoint"] = "https://attacker.example/hook"
    assert tenants[B].put(f"{stack.fhir}/Subscription/{sid}", json=body, headers=FHIR_JSON).status_code == 404
    assert tenants[B].delete(f"{stack.fhir}/Subscription/{sid}").status_code == 404
    assert tenants[A].delete(f"{stack.fhir}/Subscription/{sid}").status_code == 200
    assert not Redis.from_url(stack.redis_url).hexists("fhirplug:subs", sid)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("change", "status", "expression"),
    [
        (lambda s: s.update(criteria="MedicationRequest?status=active"), 422, "Subscription.criteria"),
        (lambda s: s["channel"].update(type="websocket"), 422, "Subscription.channel.type"),
        (
            lambda s: s["channel"].update(endpoint="http://example.org/hook"),
            422,
            "Subscription.channel.endpoint",
        ),
        (lambda s: s["channel"].pop("header"), 422, "Subscription.channel.header"),
        (
            lambda s: s.update(
                _criteria={
                    "extension": [
                        {
                            "url": IG + "backport-filter-criteria",
                            "valueString": "MedicationRequest?colour=red",
                        }
                    ]
                }
            ),
            422,
            "Subscription.criteria.extension[0].value",
        ),
        (
            lambda s: s["channel"]["_payload"]["extension"][0].update(valueCode="everything"),
            422,
            "Subscription.channel.payload.extension[0].value",
        ),
    ],
)
def test_a_bad_subscription_is_refused_with_the_element_named(stack, tenants, change, status, expression):
    body = subscription(MR_ACTIVE, "http://127.0.0.1:9/hook", "s3cret")
    change(body)
    r = tenants[A].post(f"{stack.fhir}/Subscription", json=body, headers=FHIR_JSON)
    assert r.status_code == status, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [expression]


def test_a_subscription_in_a_transaction_is_refused(stack, tenants):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": subscription(MR_ACTIVE, "http://127.0.0.1:9/hook", "s3cret"),
                "request": {"method": "POST", "url": "Subscription"},
            }
        ],
    }
    r = tenants[A].post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0].request"]


def test_the_capability_statement_lists_the_topics(stack, http):
    cs = http.get(f"{stack.fhir}/metadata").json()
    sub = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Subscription")
    topics = {
        e["valueCanonical"]
        for e in sub.get("extension", [])
        if e["url"].endswith("subscriptiontopic-canonical")
    }
    assert topics == {MR_ACTIVE, DISPENSED, TASK_STATUS}
    assert {"status", "events"} <= {op["name"] for op in sub.get("operation", [])}
