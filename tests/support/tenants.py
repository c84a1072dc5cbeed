"""Two spoke tenants' hub-and-spoke messages, for the tenancy and security tests: the IG's valid
spoke-to-hub message with fresh identities, submitted through the proxy."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

FHIR_JSON = {"Content-Type": "application/fhir+json"}
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
TENANT = "https://fhirplug.org/fhir/CodeSystem/tenant"
TASK_ID_SYSTEM = "https://fhirplug.test/task-id"
# the codes the "spoke-a"/"spoke-b" test clients are registered with (once per run)
SPOKE_A, SPOKE_B, HUB = "FA001", "FB002", "FH003"

EXAMPLE = (Path(__file__).resolve().parents[2] / "ig" / "examples" / "valid-spoke-to-hub.json").read_text()


def spoke_bundle(ods: str, hub_ods: str = HUB, patient_ref: str | None = None) -> tuple[dict, str]:
    """The IG's valid spoke-to-hub message, sent by ``ods`` to ``hub_ods`` with fresh identities;
    returns it and its Task identifier value."""
    text = EXAMPLE
    for old in set(re.findall(r"urn:uuid:[0-9a-f-]{36}", text)):
        text = text.replace(old, f"urn:uuid:{uuid.uuid4()}")
    bundle = json.loads(text.replace("VNE51", ods))  # the seed's spoke ODS code
    bundle["identifier"]["value"] = str(uuid.uuid4())
    tid = uuid.uuid4().hex
    task = bundle["entry"][0]["resource"]
    task["identifier"] = [{"system": TASK_ID_SYSTEM, "value": tid}]
    task["owner"] = {"identifier": {"system": ODS, "value": hub_ods}}
    if patient_ref:
        task["for"] = {"reference": patient_ref}
    return bundle, tid


def submit(stack, session, ods, **kw) -> dict:
    bundle, tid = spoke_bundle(ods, **kw)
    r = session.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 201, r.text  # a hub-and-spoke message: received and persisted
    locs = [e["response"]["location"].split("/_history")[0] for e in r.json()["entry"]]
    ids = {loc.split("/")[-2]: loc.split("/")[-1] for loc in locs}
    ids["identifier"] = tid
    return ids


def task_naming(stack, ods: str, patient_id: str) -> str:
    """A Task of ``ods`` that names ``patient_id`` (another tenant's Patient). A tenant cannot
    write one (a reference to another tenant's resource is answered as one to a missing
    resource), so an administrator does; returns its id."""
    task = {
        "resourceType": "Task",
        "meta": {"security": [{"system": TENANT, "code": ods}]},
        "status": "requested",
        "intent": "order",
        "requester": {"identifier": {"system": ODS, "value": ods}},
        "for": {"reference": f"Patient/{patient_id}"},
    }
    r = stack.session().post(f"{stack.fhir}/Task", json=task, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    return r.headers["Location"].split("/_history")[0].split("/")[-1]
