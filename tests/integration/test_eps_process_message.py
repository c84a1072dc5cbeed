"""EPS $process-message (prescription-order) through the real proxy, store, Redis and worker.

The shared primary-care example is sent re-signed with the TEST ONLY prescriber key (its own
signature is a placeholder): the answer is a response message, the prescription is stored and
searchable by its prescriber and nominated pharmacy only; a resend changes nothing; the wrong
role, a bad signature and the shared invalid-checksum example are refused as documented; the
asynchronous pattern delivers the response message once to a loopback receiver, after its outage
too, and never to an address the request made up."""

from __future__ import annotations

import copy
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from redis import Redis

from eps.records import MESSAGE_KEY_SYSTEM, PRESCRIPTION_ID_SYSTEM
from ops import stack as stackmod
from proxy.auth import partner_keys
from proxy.partners import Partner, PartnerDirectory
from tests.conftest import free_port
from tests.support import eps_messages
from tests.support.http_stub import QuietHandler
from tests.support.polling import eventually

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json"}
OTHER_PRESCRIBER, OTHER_PHARMACY = "B81001", "FH542"


@pytest.fixture(scope="module")
def sessions(stack):
    made = {
        "prescriber": stack.client("msg-prescriber", "prescriber", eps_messages.PRESCRIBER_ODS),
        "other-prescriber": stack.client("msg-prescriber-b", "prescriber", OTHER_PRESCRIBER),
        "trust-prescriber": stack.client("msg-prescriber-rba", "prescriber", "RBA"),
        "nominated": stack.client("msg-pharmacy-nominated", "dispenser", eps_messages.NOMINATED_ODS),
        "other-pharmacy": stack.client("msg-pharmacy-other", "dispenser", OTHER_PHARMACY),
    }
    out = {name: stack.session(client=client) for name, client in made.items()}
    yield out
    for s in out.values():
        s.close()


def send(stack, session, bundle: dict, query: str = "", headers: dict | None = None) -> requests.Response:
    url = f"{stack.fhir}/$process-message{query}"
    data = json.dumps(bundle, default=str).encode()
    return session.post(url, data=data, headers={**FHIR_JSON, **(headers or {})}, timeout=60)


def header_of(response_message: dict) -> dict:
    return response_message["entry"][0]["resource"]


def outcome_in(response_message: dict) -> dict:
    return next(
        e["resource"]
        for e in response_message["entry"]
        if e["resource"]["resourceType"] == "OperationOutcome"
    )


def tasks(stack, session, short_id: str) -> list[dict]:
    r = session.get(f"{stack.fhir}/Task", params={"identifier": f"{PRESCRIPTION_ID_SYSTEM}|{short_id}"})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry") or []]


def test_a_signed_prescription_order_answers_a_response_message_and_is_stored(stack, sessions, http):
    bundle = eps_messages.fresh()
    r = send(stack, sessions["prescriber"], bundle)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["resourceType"] == "Bundle" and answer["type"] == "message"
    header = header_of(answer)
    assert header["resourceType"] == "MessageHeader"
    assert header["response"] == {"identifier": bundle["id"], "code": "ok"}
    assert header["eventCoding"]["code"] == "prescription-order"
    short_id = eps_messages.short_id_of(bundle)
    [task] = tasks(stack, sessions["prescriber"], short_id)
    assert task["businessStatus"]["coding"][0]["code"] == "0001"
    assert task["owner"]["identifier"]["value"] == eps_messages.NOMINATED_ODS
    assert len(task["input"]) == 4  # the four line items, stored as MedicationRequests
    request_id = task["input"][0]["valueReference"]["reference"]
    assert sessions["prescriber"].get(f"{stack.fhir}/{request_id}").status_code == 200
    message = sessions["prescriber"].get(f"{stack.fhir}/{task['focus']['reference']}").json()
    assert message["type"] == "message" and message["identifier"] == bundle["identifier"]
    # "received", naming the client that sent it
    events = http.get(
        f"{stack.fhir}/AuditEvent", params={"entity": f"Task/{task['id']}", "subtype": "received"}
    ).json()
    [event] = [e["resource"] for e in events.get("entry") or []]
    assert event["agent"][0]["altId"] == "msg-prescriber"
    assert event["agent"][0]["who"]["identifier"]["value"] == eps_messages.PRESCRIBER_ODS


def test_the_prescription_is_seen_by_its_prescriber_and_nominated_pharmacy_only(stack, sessions):
    bundle = eps_messages.fresh()
    assert send(stack, sessions["prescriber"], bundle).status_code == 200
    short_id = eps_messages.short_id_of(bundle)
    assert len(tasks(stack, sessions["prescriber"], short_id)) == 1
    assert len(tasks(stack, sessions["nominated"], short_id)) == 1
    assert tasks(stack, sessions["other-prescriber"], short_id) == []
    assert tasks(stack, sessions["other-pharmacy"], short_id) == []
    [task] = tasks(stack, sessions["prescriber"], short_id)
    assert sessions["other-pharmacy"].get(f"{stack.fhir}/Task/{task['id']}").status_code == 404
    assert sessions["other-prescriber"].get(f"{stack.fhir}/{task['focus']['reference']}").status_code == 404


def test_a_resubmission_gets_the_original_response_and_stores_nothing_new(stack, sessions, http):
    bundle = eps_messages.fresh()
    first = send(stack, sessions["prescriber"], bundle)
    again = send(stack, sessions["prescriber"], bundle)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    key = f"{eps_messages.PRESCRIBER_ODS}/{bundle['id']}"
    found = http.get(f"{stack.fhir}/Task", params={"identifier": f"{MESSAGE_KEY_SYSTEM}|{key}"}).json()
    assert found["total"] == 1 if "total" in found else len(found["entry"]) == 1


def test_a_resubmission_after_redis_forgot_is_answered_from_the_store(stack, sessions):
    bundle = eps_messages.fresh()
    first = send(stack, sessions["prescriber"], bundle)
    assert first.status_code == 200
    Redis.from_url(stack.redis_url).delete(
        f"fhirplug:eps-message:{eps_messages.PRESCRIBER_ODS}/{bundle['id']}"
    )
    again = send(stack, sessions["prescriber"], bundle)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]  # the same response message
    assert header_of(again.json())["response"] == header_of(first.json())["response"]
    assert len(tasks(stack, sessions["prescriber"], eps_messages.short_id_of(bundle))) == 1
    # other content under that id, still after Redis forgot: refused
    Redis.from_url(stack.redis_url).delete(
        f"fhirplug:eps-message:{eps_messages.PRESCRIBER_ODS}/{bundle['id']}"
    )
    changed = eps_messages.fresh()
    changed["id"] = bundle["id"]
    r = send(stack, sessions["prescriber"], changed)
    assert r.status_code == 409, r.text
    assert tasks(stack, sessions["prescriber"], eps_messages.short_id_of(changed)) == []


def test_the_same_message_id_with_other_content_is_a_conflict(stack, sessions):
    bundle = eps_messages.fresh()
    assert send(stack, sessions["prescriber"], bundle).status_code == 200
    changed = eps_messages.fresh()
    changed["id"] = bundle["id"]
    r = send(stack, sessions["prescriber"], changed)
    assert r.status_code == 409
    assert r.json()["issue"][0]["expression"] == ["Bundle.id"]
    assert tasks(stack, sessions["prescriber"], eps_messages.short_id_of(changed)) == []


def test_concurrent_copies_store_once_and_all_get_the_same_answer(stack, sessions):
    bundle = eps_messages.fresh()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: send(stack, sessions["prescriber"], bundle), range(8)))
    assert {a.status_code for a in answers} == {200}
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert len(tasks(stack, sessions["prescriber"], eps_messages.short_id_of(bundle))) == 1


def test_a_pharmacy_may_not_send_a_prescription_order(stack, sessions):
    bundle = eps_messages.fresh()
    r = send(stack, sessions["nominated"], bundle)
    assert r.status_code == 403
    assert r.json()["issue"][0]["code"] == "forbidden"


def test_an_unknown_event_is_unsupported(stack, sessions):
    bundle = eps_messages.fresh()
    bundle["entry"][0]["resource"]["eventCoding"]["code"] = "prescription-teleport"
    r = send(stack, sessions["prescriber"], bundle)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["MessageHeader.eventCoding.code"]


def test_a_prescription_from_another_organisation_is_refused(stack, sessions):
    r = send(stack, sessions["other-prescriber"], eps_messages.fresh())
    assert r.status_code == 403
    assert outcome_in(r.json())["issue"][0]["expression"] == ["PractitionerRole.organization"]


def test_a_bad_signature_is_a_fatal_error_naming_the_signature(stack, sessions):
    bundle = eps_messages.fresh()
    provenance = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance")
    provenance["signature"][0]["data"] = "bm90IGEgc2lnbmF0dXJl"  # "not a signature"
    r = send(stack, sessions["prescriber"], bundle)
    assert r.status_code == 400, r.text
    assert header_of(r.json())["response"] == {
        "identifier": bundle["id"],
        "code": "fatal-error",
        "details": header_of(r.json())["response"]["details"],
    }
    assert outcome_in(r.json())["issue"][0]["expression"] == ["Provenance.signature.data"]
    # changed after signing: the digest no longer matches
    tampered = eps_messages.fresh()
    mr = next(
        e["resource"] for e in tampered["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
    )
    mr["dispenseRequest"]["quantity"]["value"] = 200
    r = send(stack, sessions["prescriber"], tampered)
    assert r.status_code == 400
    assert outcome_in(r.json())["issue"][0]["expression"] == ["Provenance.signature.data"]
    assert tasks(stack, sessions["prescriber"], eps_messages.short_id_of(tampered)) == []


def test_the_shared_invalid_checksum_example_gives_its_documented_error(stack, sessions):
    bundle = eps_messages.example(eps_messages.INVALID_CHECKSUM)
    r = send(stack, sessions["trust-prescriber"], bundle, headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 400, r.text
    [issue] = r.json()["issue"]
    assert r.json()["resourceType"] == "OperationOutcome"
    assert (issue["severity"], issue["code"]) == ("error", "processing")
    [coding] = issue["details"]["coding"]
    assert coding["system"] == "https://fhir.nhs.uk/CodeSystem/Spine-ErrorOrWarningCode"
    assert coding["code"] == "FAILURE_TO_PROCESS_MESSAGE"
    assert coding["display"].endswith("prescriptionID has invalid checksum")
    # without Prefer: the same, inside a fatal-error response message
    r = send(stack, sessions["trust-prescriber"], bundle)
    assert r.status_code == 400
    assert header_of(r.json())["response"]["code"] == "fatal-error"
    assert outcome_in(r.json())["issue"][0]["details"]["coding"][0]["code"] == "FAILURE_TO_PROCESS_MESSAGE"


# ------------------------------------------------------------------ asynchronous


class Receiver:
    """A prescribing system's loopback endpoint: a token endpoint that checks our signed JWT,
    and a $process-message that records each response message (or answers 503 while down)."""

    def __init__(self, jwks: dict, client_id: str):
        self.jwks, self.client_id = jwks, client_id
        self.down = True
        self.received: list[dict] = []
        self.refused = 0
        self.tokens: set[str] = set()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/oauth2/token":
                    form = parse_qs(body.decode())
                    token = jwt.decode(
                        form["client_assertion"][0], KeySet.import_key_set(receiver.jwks), ["RS512"]
                    )
                    if token.claims["iss"] != receiver.client_id:
                        return self.reply(401, b'{"error":"invalid_client"}', "application/json")
                    token = f"token-{len(receiver.tokens)}"
                    receiver.tokens.add(token)
                    doc = {"access_token": token, "token_type": "bearer", "expires_in": 300}
                    return self.reply(200, json.dumps(doc).encode(), "application/json")
                if self.headers.get("Authorization", "").removeprefix("Bearer ") not in receiver.tokens:
                    return self.reply(401, b"{}")
                if receiver.down:
                    receiver.refused += 1
                    return self.reply(503, b'{"resourceType":"OperationOutcome","issue":[]}')
                receiver.received.append({"path": self.path, "body": json.loads(body)})
                return self.reply(200, b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}/fhir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def receiver(stack, tmp_path_factory):
    keys = tmp_path_factory.mktemp("eps-async-keys")
    key_file, jwks_file = partner_keys.generate("fhirplug-at-gp", keys, "RS512", rsa_bits=2048)
    rx = Receiver(json.loads(jwks_file.read_text()), "fhirplug-at-gp")
    directory = PartnerDirectory(Redis.from_url(stack.redis_url))
    directory.put(
        Partner(
            eps_messages.PRESCRIBER_ODS,
            "prescriber",
            rx.base,
            rx.base.removesuffix("/fhir") + "/oauth2/token",
            "fhirplug-at-gp",
            str(key_file),
        )
    )
    worker_was_running = stackmod.read_pid(stack.cfg.path("run", "worker.pid")) is not None
    stackmod.start_worker(stack.cfg)
    yield rx
    directory.remove(eps_messages.PRESCRIBER_ODS)
    if not worker_was_running:
        stackmod.stop(stack.cfg, "worker")
    rx.close()


def test_async_response_arrives_once_after_a_receiver_outage(stack, sessions, receiver):
    bundle = eps_messages.fresh()
    receiver.down = True
    url = f"?async=true&response-url={receiver.base}/$process-message"
    r = send(stack, sessions["prescriber"], bundle, url)
    assert r.status_code == 202, r.text
    assert r.json()["issue"][0]["severity"] == "information"
    # custody taken: the prescription is stored before the answer
    assert len(tasks(stack, sessions["prescriber"], eps_messages.short_id_of(bundle))) == 1
    assert eventually(lambda: receiver.refused >= 2, timeout=30)
    receiver.down = False
    assert eventually(lambda: receiver.received, timeout=60)
    time.sleep(5)  # a duplicate would come within the retries' first intervals
    [got] = receiver.received
    assert got["path"] == "/fhir/$process-message?async=true"
    header = header_of(got["body"])
    assert header["response"] == {"identifier": bundle["id"], "code": "ok"}

    # resubmitted: the original acknowledgement, nothing stored or sent again
    again = send(stack, sessions["prescriber"], bundle, url)
    assert again.status_code == 202 and again.json() == r.json()
    time.sleep(4)
    assert len(receiver.received) == 1
    assert len(tasks(stack, sessions["prescriber"], eps_messages.short_id_of(bundle))) == 1


def test_async_responses_go_only_to_the_senders_registered_endpoint(stack, sessions, receiver):
    for target in (
        "http://169.254.169.254/latest/meta-data",
        receiver.base.replace("/fhir", "/admin"),
        receiver.base + "/../admin",
        receiver.base.replace("127.0.0.1", "localhost"),
    ):
        bundle = eps_messages.fresh()
        r = send(
            stack, sessions["prescriber"], bundle, "?async=true&response-url=" + requests.utils.quote(target)
        )
        assert r.status_code == 400, (target, r.text)
        assert r.json()["issue"][0]["expression"] == ["response-url"]
        assert tasks(stack, sessions["prescriber"], eps_messages.short_id_of(bundle)) == []
    # the example's own source endpoint (Spine's directory) is no registered endpoint either
    r = send(stack, sessions["prescriber"], eps_messages.fresh(), "?async=true")
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["MessageHeader.source.endpoint"]
    # a sender without a registered endpoint cannot ask for asynchronous answers at all
    other = copy.deepcopy(eps_messages.fresh())
    r = send(stack, sessions["other-prescriber"], other, f"?async=true&response-url={receiver.base}")
    assert r.status_code == 400
