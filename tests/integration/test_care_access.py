"""Access by care relationship over HTTP, through the real proxy and HAPI (issue 15, item 1).

A prescriber (P) writes a Patient and MedicationRequests; the pharmacy named as performer (D)
reads them, never writes them; another pharmacy (X) and another prescriber (Q) see nothing.
Each rule is proved through the proxy, through a proxy with its own checks off (the store's line
alone), and against the store directly with a signed caller, and so is the closed oracle: a
write naming another tenant's resource, a missing one or a deleted one answers alike.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import requests

from proxy.store_caller import HEADER, CallerSigner, secret_from_env

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
TENANT = "https://fhirplug.org/fhir/CodeSystem/tenant"
READER = "https://fhirplug.org/fhir/CodeSystem/reader"
P, D, X, Q = "FCP01", "FCD01", "FCX01", "FCQ01"
TABLETS = {"value": 60, "unit": "tablet", "system": "http://snomed.info/sct", "code": "428673006"}
CASES = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "careaccess" / "cases.json").read_text()
)


class _AsCaller(requests.auth.AuthBase):
    """What a proxy sends the store for a relayed request: a fresh signed caller assertion."""

    def __init__(self, role: str, ods: str):
        self.signer, self.role, self.ods = CallerSigner(secret_from_env()), role, ods

    def __call__(self, r):
        r.headers[HEADER] = self.signer.header(self.role, self.ods)
        return r


def direct(role: str, ods: str) -> requests.Session:
    s = requests.Session()
    s.auth = _AsCaller(role, ods)
    s.headers["Accept"] = "application/fhir+json"
    return s


@pytest.fixture(scope="module")
def tenants(stack):
    return {
        ods: stack.session(client=stack.client(f"care-{ods.lower()}", "spoke", ods)) for ods in (P, D, X, Q)
    }


@pytest.fixture(scope="module")
def unchecked(stack, tenants) -> dict[str, requests.Session]:
    """Sessions on a proxy whose own tenancy checks are off: only the store's line holds."""
    base, _ = stack.start_proxy({"FHIRPLUG_TENANCY_PROXY_CHECKS": "off"})
    return {
        "base": base,
        **{
            ods: stack.session(base, client=stack.client(f"care-{ods.lower()}", "spoke", ods))
            for ods in (D, X)
        },
    }  # type: ignore[dict-item]


def created(r: requests.Response) -> str:
    assert r.status_code == 201, r.text
    return r.headers["Location"].split("/_history")[0].rsplit("/", 1)[-1]


def patient(stack, s) -> str:
    return created(
        s.post(
            f"{stack.fhir}/Patient",
            json={"resourceType": "Patient", "name": [{"family": "Care"}]},
            headers=FHIR_JSON,
        )
    )


def request(
    stack, s, patient_id: str, performer: dict | None = None, quantity: dict | None = TABLETS, **extra
) -> str:
    mr: dict = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "paracetamol 500mg tablets"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "dispenseRequest": {},
        **extra,
    }
    if performer is not None:
        mr["dispenseRequest"]["performer"] = performer
    if quantity is not None:
        mr["dispenseRequest"]["quantity"] = quantity
    return created(s.post(f"{stack.fhir}/MedicationRequest", json=mr, headers=FHIR_JSON))


def dispense(request_id: str, patient_id: str, value: float, status: str = "completed") -> dict:
    return {
        "resourceType": "MedicationDispense",
        "status": status,
        "medicationCodeableConcept": {"text": "paracetamol 500mg tablets"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "authorizingPrescription": [{"reference": f"MedicationRequest/{request_id}"}],
        "quantity": {**TABLETS, "value": value},
    }


@pytest.fixture(scope="module")
def shared(stack, tenants):
    """P's Patient and a request naming D as its performer by ODS identifier."""
    pid = patient(stack, tenants[P])
    mr = request(stack, tenants[P], pid, {"identifier": {"system": ODS, "value": D}})
    return {"Patient": pid, "MedicationRequest": mr}


def status_of(stack, request_id: str) -> str:
    return stack.session().get(f"{stack.fhir}/MedicationRequest/{request_id}").json()["status"]


# ---------------------------------------------------------------- the pharmacy reads what names it


def test_the_named_pharmacy_reads_the_request_and_its_patient(stack, tenants, shared):
    for rtype in ("MedicationRequest", "Patient"):
        r = tenants[D].get(f"{stack.fhir}/{rtype}/{shared[rtype]}")
        assert r.status_code == 200, (rtype, r.text)
    labels = (
        stack.session()
        .get(f"{stack.fhir}/MedicationRequest/{shared['MedicationRequest']}")
        .json()["meta"]["security"]
    )
    assert {"system": READER, "code": D} in labels and {"system": TENANT, "code": P} in labels


@pytest.mark.parametrize("who", [X, Q])
def test_a_pharmacy_or_prescriber_not_named_reads_nothing(stack, tenants, shared, who):
    for rtype in ("MedicationRequest", "Patient"):
        r = tenants[who].get(f"{stack.fhir}/{rtype}/{shared[rtype]}")
        missing = tenants[who].get(f"{stack.fhir}/{rtype}/{uuid.uuid4().hex[:16]}")
        assert r.status_code == missing.status_code == 404


def test_the_named_pharmacy_finds_them_by_search_include_history_xml_and_batch(stack, tenants, shared):
    mr, pid = shared["MedicationRequest"], shared["Patient"]
    found = (
        tenants[D]
        .get(f"{stack.fhir}/MedicationRequest", params={"_id": mr, "_include": "MedicationRequest:subject"})
        .json()
    )
    assert sorted(e["resource"]["resourceType"] for e in found["entry"]) == ["MedicationRequest", "Patient"]
    assert tenants[D].get(f"{stack.fhir}/MedicationRequest/{mr}/_history").json()["entry"]
    xml = tenants[D].get(f"{stack.fhir}/MedicationRequest/{mr}", params={"_format": "xml"})
    assert xml.status_code == 200 and "<MedicationRequest" in xml.text
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Patient/{pid}"}}],
    }
    answer = tenants[D].post(stack.fhir, json=batch, headers=FHIR_JSON).json()
    assert answer["entry"][0]["response"]["status"].startswith("200")


def test_a_pharmacy_not_named_finds_nothing_by_search_include_history_xml_or_batch(stack, tenants, shared):
    mr, pid = shared["MedicationRequest"], shared["Patient"]
    found = (
        tenants[X]
        .get(f"{stack.fhir}/MedicationRequest", params={"_id": mr, "_include": "MedicationRequest:subject"})
        .json()
    )
    assert not found.get("entry")
    assert tenants[X].get(f"{stack.fhir}/MedicationRequest/{mr}/_history").status_code == 404
    assert (
        tenants[X].get(f"{stack.fhir}/MedicationRequest/{mr}", params={"_format": "xml"}).status_code == 404
    )
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"Patient/{pid}"}}],
    }
    answer = tenants[X].post(stack.fhir, json=batch, headers=FHIR_JSON).json()
    assert answer["entry"][0]["response"]["status"].startswith("404")


def test_the_named_pharmacy_cannot_write_what_it_reads(stack, tenants, shared):
    mr = shared["MedicationRequest"]
    current = tenants[D].get(f"{stack.fhir}/MedicationRequest/{mr}").json()
    put = tenants[D].put(
        f"{stack.fhir}/MedicationRequest/{mr}", json={**current, "status": "stopped"}, headers=FHIR_JSON
    )
    patch = tenants[D].patch(
        f"{stack.fhir}/MedicationRequest/{mr}",
        json=[{"op": "replace", "path": "/status", "value": "stopped"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    delete = tenants[D].delete(f"{stack.fhir}/MedicationRequest/{mr}")
    unknown = tenants[D].delete(f"{stack.fhir}/MedicationRequest/{int(mr) + 10**6}")
    assert put.status_code >= 400 and patch.status_code >= 400
    assert delete.status_code == unknown.status_code  # HAPI's answer for an id it never held
    assert status_of(stack, mr) == "active"


def test_a_performer_named_by_reference_to_its_organization_reads_the_request(stack, tenants):
    org = created(
        tenants[P].post(
            f"{stack.fhir}/Organization",
            json={"resourceType": "Organization", "identifier": [{"system": ODS, "value": D}], "name": "D"},
            headers=FHIR_JSON,
        )
    )
    mr = request(stack, tenants[P], patient(stack, tenants[P]), {"reference": f"Organization/{org}"})
    assert tenants[D].get(f"{stack.fhir}/MedicationRequest/{mr}").status_code == 200
    assert tenants[X].get(f"{stack.fhir}/MedicationRequest/{mr}").status_code == 404


def test_the_owner_of_a_task_focused_on_a_request_reads_it_and_its_patient(stack, tenants):
    pid = patient(stack, tenants[P])
    mr = request(stack, tenants[P], pid)
    assert tenants[D].get(f"{stack.fhir}/MedicationRequest/{mr}").status_code == 404
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "focus": {"reference": f"MedicationRequest/{mr}"},
        "for": {"reference": f"Patient/{pid}"},
        "requester": {"identifier": {"system": ODS, "value": P}},
        "owner": {"identifier": {"system": ODS, "value": D}},
    }
    created(tenants[P].post(f"{stack.fhir}/Task", json=task, headers=FHIR_JSON))
    assert tenants[D].get(f"{stack.fhir}/MedicationRequest/{mr}").status_code == 200
    assert tenants[D].get(f"{stack.fhir}/Patient/{pid}").status_code == 200
    assert tenants[X].get(f"{stack.fhir}/MedicationRequest/{mr}").status_code == 404


def test_reader_labels_a_caller_sends_are_dropped(stack, tenants):
    pid = patient(stack, tenants[P])
    mr = request(stack, tenants[P], pid, meta={"security": [{"system": READER, "code": X}]})
    assert tenants[X].get(f"{stack.fhir}/MedicationRequest/{mr}").status_code == 404
    assert tenants[X].get(f"{stack.fhir}/Patient/{pid}").status_code == 404


# ---------------------------------------------------------------- the prescriber reads the dispenses


def test_the_prescriber_reads_the_dispenses_of_its_request_and_no_one_elses(stack, tenants):
    pid = patient(stack, tenants[P])
    mr = request(stack, tenants[P], pid, {"identifier": {"system": ODS, "value": D}})
    md = created(
        tenants[D].post(f"{stack.fhir}/MedicationDispense", json=dispense(mr, pid, 10), headers=FHIR_JSON)
    )
    assert tenants[P].get(f"{stack.fhir}/MedicationDispense/{md}").status_code == 200
    assert tenants[Q].get(f"{stack.fhir}/MedicationDispense/{md}").status_code == 404
    assert tenants[X].get(f"{stack.fhir}/MedicationDispense/{md}").status_code == 404
    rev = (
        tenants[P]
        .get(
            f"{stack.fhir}/MedicationRequest",
            params={"_id": mr, "_revinclude": "MedicationDispense:prescription"},
        )
        .json()
    )
    assert sorted(e["resource"]["resourceType"] for e in rev["entry"]) == [
        "MedicationDispense",
        "MedicationRequest",
    ]
    assert (
        not tenants[Q]
        .get(f"{stack.fhir}/MedicationDispense", params={"prescription": f"MedicationRequest/{mr}"})
        .json()
        .get("entry")
    )
    # the prescriber reads it, but cannot change the pharmacy's record
    current = tenants[P].get(f"{stack.fhir}/MedicationDispense/{md}").json()
    put = tenants[P].put(
        f"{stack.fhir}/MedicationDispense/{md}", json={**current, "status": "stopped"}, headers=FHIR_JSON
    )
    assert put.status_code >= 400


# ---------------------------------------------------------------- the store's line alone


@pytest.mark.parametrize("route", ["proxy-checks-off", "store"])
def test_the_store_line_alone_admits_the_reader_and_no_one_else(stack, unchecked, shared, route):
    mr = shared["MedicationRequest"]
    if route == "store":
        base, d, x = stack.store_url, direct("spoke", D), direct("spoke", X)
    else:
        base, d, x = unchecked["base"], unchecked[D], unchecked[X]
    assert d.get(f"{base}/MedicationRequest/{mr}").status_code == 200
    assert d.get(f"{base}/Patient/{shared['Patient']}").status_code == 200
    assert x.get(f"{base}/MedicationRequest/{mr}").status_code == 404
    assert x.get(f"{base}/MedicationRequest", params={"_id": mr}).json().get("total", 0) == 0
    assert d.get(f"{base}/MedicationRequest", params={"_id": mr}).json()["entry"]
    current = d.get(f"{base}/MedicationRequest/{mr}").json()
    stopped = {**current, "status": "stopped"}
    if route == "store":
        stopped["meta"]["security"] = current["meta"]["security"] + [{"system": TENANT, "code": D}]
    assert d.put(f"{base}/MedicationRequest/{mr}", json=stopped, headers=FHIR_JSON).status_code >= 400
    assert status_of(stack, mr) == "active"


def test_the_store_refuses_a_completion_without_the_proxys_grant(stack, shared):
    mr = shared["MedicationRequest"]
    d = direct("spoke", D)
    current = d.get(f"{stack.store_url}/MedicationRequest/{mr}").json()
    r = d.put(
        f"{stack.store_url}/MedicationRequest/{mr}",
        json={**current, "status": "completed"},
        headers=FHIR_JSON,
    )
    assert r.status_code == 403
    forged = {**FHIR_JSON, "X-Fhirplug-Grant": f"v1;complete;MedicationRequest/{mr};1;AAAA"}
    r = d.put(
        f"{stack.store_url}/MedicationRequest/{mr}", json={**current, "status": "completed"}, headers=forged
    )
    assert r.status_code == 403
    assert status_of(stack, mr) == "active"


def test_the_store_line_alone_agrees_with_the_shared_cases(stack):
    admin = direct("admin", "")
    for case in CASES["cases"]:
        security = [{"system": TENANT, "code": t} for t in case["tenants"]] + [
            {"system": READER, "code": r} for r in case["readers"]
        ]
        body: dict = {"resourceType": case["type"], "meta": {"security": security}}
        if case["type"] == "MedicationRequest":
            body |= {
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {"text": "x"},
                "subject": {"display": "x"},
            }
        if case["type"] == "MedicationDispense":
            body |= {"status": "in-progress", "medicationCodeableConcept": {"text": "x"}}
        rid = created(admin.post(f"{stack.store_url}/{case['type']}", json=body, headers=FHIR_JSON))
        caller = direct("spoke", case["ods"])
        read = caller.get(f"{stack.store_url}/{case['type']}/{rid}")
        assert (read.status_code == 200) is case["read"], (case["name"], read.status_code)
        write = caller.put(
            f"{stack.store_url}/{case['type']}/{rid}", json={**body, "id": rid}, headers=FHIR_JSON
        )
        assert (write.status_code < 300) is case["write"], (case["name"], write.status_code, write.text[:200])


# ---------------------------------------------------------------- the existence oracle, closed


def _blank(text: str, rid: str) -> str:
    # HAPI names one of several search parameter paths of a reference, at random
    return re.sub(r"specified in path: [^\"]*", "", text.replace(rid, "ID"))


@pytest.mark.parametrize("route", ["proxy", "proxy-checks-off", "store"])
def test_a_write_naming_another_tenants_a_missing_or_a_deleted_resource_answers_alike(
    stack, tenants, unchecked, route
):
    theirs = patient(stack, tenants[P])  # P's, never shared with X
    gone = patient(stack, tenants[X])
    assert tenants[X].delete(f"{stack.fhir}/Patient/{gone}").status_code < 300
    missing = str(int(theirs) + 10**6)
    if route == "proxy":
        base, x = stack.fhir, tenants[X]
    elif route == "proxy-checks-off":
        base, x = unchecked["base"], unchecked[X]
    else:
        base, x = stack.store_url, direct("spoke", X)

    def write(pid: str) -> requests.Response:
        task = {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "for": {"reference": f"Patient/{pid}"},
            "requester": {"identifier": {"system": ODS, "value": X}},
        }
        if route == "store":
            task["meta"] = {"security": [{"system": TENANT, "code": X}]}
        return x.post(f"{base}/Task", json=task, headers=FHIR_JSON)

    answers = {pid: write(pid) for pid in (theirs, missing, gone)}
    statuses = {r.status_code for r in answers.values()}
    assert len(statuses) == 1 and statuses.pop() >= 400, {
        k: (v.status_code, v.text[:200]) for k, v in answers.items()
    }
    texts = {_blank(r.text, pid) for pid, r in answers.items()}
    assert len(texts) == 1, texts


# ---------------------------------------------------------------- completion (issue 15, item 4)


@pytest.fixture()
def prescription(stack, tenants):
    pid = patient(stack, tenants[P])
    return pid, request(stack, tenants[P], pid, {"identifier": {"system": ODS, "value": D}})


def test_a_full_dispense_completes_the_request_in_the_same_step(stack, tenants, prescription):
    pid, mr = prescription
    r = tenants[D].post(f"{stack.fhir}/MedicationDispense", json=dispense(mr, pid, 60), headers=FHIR_JSON)
    md = created(r)
    assert r.json()["resourceType"] == "MedicationDispense" and r.json()["id"] == md
    assert status_of(stack, mr) == "completed"
    audit = tenants[P].get(f"{stack.fhir}/AuditEvent", params={"entity": f"MedicationRequest/{mr}"}).json()
    events = [e["resource"] for e in audit.get("entry", [])]
    assert len(events) == 1 and events[0]["agent"][0]["altId"] == "care-fcd01"
    assert {"reference": f"MedicationDispense/{md}"} in [e["what"] for e in events[0]["entity"]]


def test_a_partial_dispense_leaves_the_request_active(stack, tenants, prescription):
    pid, mr = prescription
    created(
        tenants[D].post(f"{stack.fhir}/MedicationDispense", json=dispense(mr, pid, 20), headers=FHIR_JSON)
    )
    assert status_of(stack, mr) == "active"


def test_partial_dispenses_adding_up_complete_the_request(stack, tenants, prescription):
    pid, mr = prescription
    for value, expected in ((20, "active"), (30, "active"), (10, "completed")):
        created(
            tenants[D].post(
                f"{stack.fhir}/MedicationDispense", json=dispense(mr, pid, value), headers=FHIR_JSON
            )
        )
        assert status_of(stack, mr) == expected


def test_a_dispense_in_a_transaction_completes_the_request(stack, tenants, prescription):
    pid, mr = prescription
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": dispense(mr, pid, 25),
                "request": {"method": "POST", "url": "MedicationDispense"},
            },
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": dispense(mr, pid, 35),
                "request": {"method": "POST", "url": "MedicationDispense"},
            },
        ],
    }
    r = tenants[D].post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert len(r.json()["entry"]) == 2  # the request's update is the proxy's, not an answer to the caller
    assert status_of(stack, mr) == "completed"


def test_a_dispense_not_completed_leaves_the_request_active(stack, tenants, prescription):
    pid, mr = prescription
    created(
        tenants[D].post(
            f"{stack.fhir}/MedicationDispense",
            json=dispense(mr, pid, 60, status="in-progress"),
            headers=FHIR_JSON,
        )
    )
    assert status_of(stack, mr) == "active"


def test_completion_switched_off_leaves_the_request_active(stack, tenants, prescription):
    base, _ = stack.start_proxy({"FHIRPLUG_COMPLETE_ON_DISPENSE": "off"})
    pid, mr = prescription
    d = stack.session(base, client=stack.client(f"care-{D.lower()}", "spoke", D))
    created(d.post(f"{base}/MedicationDispense", json=dispense(mr, pid, 60), headers=FHIR_JSON))
    assert status_of(stack, mr) == "active"
