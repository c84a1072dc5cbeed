"""Profiles are checked before they are stored (issue 16, item 3): an out-of-order differential
is refused 422 naming the element, alone, in a transaction or in a package, and nothing is
stored; a sound profile (and every UK Core one: tests/integration/test_xml.py) is accepted."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import uuid

import pytest
import requests

from proxy.store_caller import store_auth

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def profile(url: str, order=("Patient.name", "Patient.birthDate")) -> dict:
    return {
        "resourceType": "StructureDefinition",
        "url": url,
        "name": "OrderCheck",
        "status": "draft",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [{"id": p, "path": p, "min": 1} for p in order]},
    }


def stored(stack, url: str) -> int:
    r = requests.get(
        f"{stack.store_url}/StructureDefinition", params={"url": url}, auth=store_auth(), timeout=30
    )
    return r.json()["total"]


@pytest.fixture(scope="module")
def validator(stack):
    s = stack.session(client=stack.client("profile-checks-validator", "validator"))
    yield s
    s.close()


def url() -> str:
    return f"https://example.org/fhir/StructureDefinition/order-{uuid.uuid4().hex[:10]}"


def test_an_out_of_order_differential_is_refused_naming_the_element(stack, validator):
    u = url()
    r = validator.post(
        f"{stack.fhir}/StructureDefinition",
        json=profile(u, ("Patient.birthDate", "Patient.name")),
        headers=FHIR_JSON,
    )
    assert r.status_code == 422, r.text
    issues = r.json()["issue"]
    assert any("StructureDefinition.differential.element[0]" in i.get("expression", []) for i in issues), (
        issues
    )
    assert stored(stack, u) == 0


def test_a_sound_profile_is_stored(stack, validator):
    u = url()
    r = validator.post(f"{stack.fhir}/StructureDefinition", json=profile(u), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    assert stored(stack, u) == 1


def test_in_a_transaction_nothing_is_stored(stack, validator):
    good, bad = url(), url()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": profile(good), "request": {"method": "POST", "url": "StructureDefinition"}},
            {
                "resource": profile(bad, ("Patient.birthDate", "Patient.name")),
                "request": {"method": "POST", "url": "StructureDefinition"},
            },
        ],
    }
    r = validator.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 422, r.text
    expressions = [e for i in r.json()["issue"] for e in i.get("expression", [])]
    assert any(e.startswith("Bundle.entry[1].resource.differential.element[0]") for e in expressions), (
        expressions
    )
    assert stored(stack, good) == 0 and stored(stack, bad) == 0


def test_a_package_with_a_broken_profile_loads_nothing(stack, validator):
    good, bad = url(), url()
    buf = io.BytesIO()
    files = {
        "package/package.json": {"name": "order.check", "version": "0.1.0", "fhirVersions": ["4.0.1"]},
        "package/good.json": profile(good),
        "package/bad.json": profile(bad, ("Patient.birthDate", "Patient.name")),
    }
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, doc in files.items():
            data = json.dumps(doc).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "npmContent", "valueBase64Binary": base64.b64encode(buf.getvalue()).decode()}],
    }
    r = validator.post(f"{stack.fhir}/ImplementationGuide/$install", json=params, headers=FHIR_JSON)
    assert r.status_code == 422, r.text
    assert stored(stack, good) == 0 and stored(stack, bad) == 0
