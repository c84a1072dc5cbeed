"""A Digital Medicine fixture (tests/fixtures/gpnotify) as a pharmacy system stores it: one
transaction of POSTs (the store assigns ids; tenants create with POST), references by ``urn:uuid``,
the patient's practice at the ODS code asked for. Shared by the integration tests and the bench."""

from __future__ import annotations

import json
import uuid

from tests.unit.gpnotify.examples import FIXTURES

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def transaction(name: str, practice: str) -> dict:
    """The fixture ``name`` as a transaction; ``practice`` an ODS code ("" for a patient with none)."""
    text = (FIXTURES / name).read_text()
    resources = [e["resource"] for e in json.loads(text)["entry"]]
    urns = {f"{r['resourceType']}/{r['id']}": f"urn:uuid:{uuid.uuid4()}" for r in resources}
    for old, new in sorted(urns.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(f'"{old}"', f'"{new}"')
    resources = [e["resource"] for e in json.loads(text)["entry"]]
    entries = []
    for r, urn in zip(resources, urns.values(), strict=True):
        r.pop("id", None)
        r.pop("meta", None)
        for ident in r.get("identifier") or []:
            if ident.get("system") == ODS and ident.get("value") in ("A83627", "GP123456"):
                ident["value"] = practice or ident["value"]
        if r["resourceType"] == "Patient" and not practice:
            r["generalPractitioner"] = []
        entries.append(
            {"fullUrl": urn, "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def locations(answer: dict) -> list[str]:
    """``Type/id`` of each entry of a transaction-response, in order."""
    return [
        "/".join(e["response"]["location"].split("/_history")[0].split("/")[-2:]) for e in answer["entry"]
    ]
