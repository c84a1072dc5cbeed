"""Writes that race inside HAPI: concurrent conditional creates of the same resource collide in
HAPI's unique index and one of them is rolled back with 409 (HAPI-0550); the proxy sends such a
write again, so every caller gets its answer and exactly one resource exists."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def bundle(code: str) -> dict:
    org = f"urn:uuid:{uuid.uuid4()}"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": org,
                "resource": {"resourceType": "Organization", "identifier": [{"system": ODS, "value": code}]},
                "request": {
                    "method": "POST",
                    "url": "Organization",
                    "ifNoneExist": f"identifier={ODS}|{code}",
                },
            },
            {
                "resource": {"resourceType": "Patient", "managingOrganization": {"reference": org}},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }


def test_concurrent_conditional_creates_of_one_organization_all_succeed_and_store_one(stack, http):
    code = f"R{uuid.uuid4().hex[:6].upper()}"
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: http.post(stack.fhir, json=bundle(code), headers=FHIR_JSON), range(8))
        )
    assert [a.status_code for a in answers] == [200] * 8, [
        a.text[:300] for a in answers if a.status_code != 200
    ]
    found = http.get(f"{stack.fhir}/Organization", params={"identifier": f"{ODS}|{code}"}).json()
    assert found["total"] == 1
    orgs = {a.json()["entry"][0]["response"]["location"].split("/_history")[0] for a in answers}
    assert len(orgs) == 1  # every Patient names the one Organization
