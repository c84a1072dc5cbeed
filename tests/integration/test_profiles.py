"""Profiles loaded into the real store, $validate through the proxy, the IG examples, uploads by
validators (single resources and whole packages), refusal of broken packages, and enforcement
of the hub-and-spoke profiles on writes with its validation cache."""

import base64
import io
import json
import re
import tarfile
import uuid
from pathlib import Path

import pytest
import requests

from ops import stack as stackmod
from proxy.store_caller import store_auth

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json"}
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "ig" / "examples"
ENGLAND = "https://fhir.nhs.uk/England/StructureDefinition/"
SPOKE_TO_HUB = ENGLAND + "England-Bundle-PharmacySpokeToHub"
HUB_TO_SPOKE = ENGLAND + "England-Bundle-PharmacyHubToSpoke"


def example_rows() -> list[tuple[str, str, str]]:
    """(file, $validate column, expected result column) from ig/examples/README.md."""
    rows = []
    for line in (EXAMPLES / "README.md").read_text().splitlines():
        m = re.match(r"^\| `([\w\-]+\.json)` \|[^|]*\| ([^|]*) \| ([^|]*) \|", line)
        if m:
            rows.append((m.group(1), m.group(2).strip(), m.group(3).strip()))
    return rows


ROWS = example_rows()


def profile_of(name: str) -> str:
    return HUB_TO_SPOKE if "hub-to-spoke" in name else SPOKE_TO_HUB


STORED_TYPES = ("Task", "MedicationRequest", "MedicationDispense", "Patient", "Organization")


def store_count(stack, rtype: str) -> int:
    """Straight from the store, past the proxy: what is really there."""
    return requests.get(f"{stack.store_url}/{rtype}", params={"_summary": "count"}, auth=store_auth()).json()[
        "total"
    ]


def fresh_nhs_number() -> str:
    from hubspoke.nhs_number import nhs_number_valid

    while not nhs_number_valid(n := f"9{uuid.uuid4().int % 10**9:09d}"):
        pass
    return n


def errors(outcome: dict) -> list[dict]:
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


@pytest.fixture(scope="module")
def validator(stack):
    return stack.session(client=stack.client("profiles-validator", "validator"))


def test_every_example_is_listed():
    assert {r[0] for r in ROWS} == {p.name for p in EXAMPLES.glob("*.json")}
    assert len(ROWS) >= 20


def test_the_england_profiles_are_loaded_at_start(stack, http):
    for url in (SPOKE_TO_HUB, HUB_TO_SPOKE):
        found = http.get(f"{stack.fhir}/StructureDefinition", params={"url": url}).json()
        assert found["total"] == 1


def test_loading_again_changes_nothing(stack, http):
    before = http.get(f"{stack.fhir}/StructureDefinition", params={"url": SPOKE_TO_HUB}).json()
    version = before["entry"][0]["resource"]["meta"]["versionId"]
    summary = stackmod.load_profiles(stack.cfg)
    assert summary.startswith("0 created, 0 updated")
    after = http.get(f"{stack.fhir}/StructureDefinition", params={"url": SPOKE_TO_HUB}).json()
    assert after["entry"][0]["resource"]["meta"]["versionId"] == version


@pytest.mark.parametrize("name,validate_says,_", ROWS, ids=[r[0] for r in ROWS])
def test_each_example_validates_as_its_readme_row_says(stack, validator, name, validate_says, _):
    bundle = json.loads((EXAMPLES / name).read_text())
    r = validator.post(
        f"{stack.fhir}/Bundle/$validate", params={"profile": profile_of(name)}, json=bundle, headers=FHIR_JSON
    )
    assert r.status_code == 200
    found = errors(r.json())
    if validate_says.startswith("0 errors"):
        assert found == [], found
    else:
        assert found, f"{name}: the profile should refuse it ({validate_says})"
    if name.startswith("valid-"):
        assert found == []


@pytest.mark.parametrize("name", [r[0] for r in ROWS if r[0].startswith("invalid-")])
def test_each_invalid_example_is_refused_on_write_and_stores_nothing(stack, http, name):
    bundle = json.loads((EXAMPLES / name).read_text())
    before = {t: store_count(stack, t) for t in STORED_TYPES}
    r = http.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 400, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0].get("expression")
    assert {t: store_count(stack, t) for t in STORED_TYPES} == before


def test_a_valid_example_is_accepted_and_stored(stack, http):
    # the hub-to-spoke examples need a Task further along its life: see test_hubspoke.py.
    # A Patient of its own: other modules' tenants keep copies of the example's NHS Number, and an
    # administrator's conditional create would match them all (HAPI-0958), whatever the order.
    text = (EXAMPLES / "valid-spoke-to-hub.json").read_text().replace("9449304130", fresh_nhs_number())
    bundle = json.loads(text)
    r = http.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    assert all(e["response"]["status"][:1] == "2" for e in r.json()["entry"])


def test_an_uploaded_profile_is_used_by_the_next_validate(stack, validator):
    url = f"https://fhirplug.test/StructureDefinition/upload-{uuid.uuid4().hex[:8]}"
    sd = {
        "resourceType": "StructureDefinition",
        "url": url,
        "version": "1",
        "name": "UploadTest",
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}]},
    }
    put = validator.put(f"{stack.fhir}/StructureDefinition", params={"url": url}, json=sd, headers=FHIR_JSON)
    assert put.status_code == 201, put.text
    patient = {"resourceType": "Patient", "gender": "male"}
    first = validator.post(
        f"{stack.fhir}/Patient/$validate", params={"profile": url}, json=patient, headers=FHIR_JSON
    )
    assert any("birthDate" in i["diagnostics"] for i in errors(first.json()))
    sd["differential"]["element"] = [{"id": "Patient.gender", "path": "Patient.gender", "max": "0"}]
    put = validator.put(f"{stack.fhir}/StructureDefinition", params={"url": url}, json=sd, headers=FHIR_JSON)
    assert put.status_code == 200
    second = validator.post(
        f"{stack.fhir}/Patient/$validate", params={"profile": url}, json=patient, headers=FHIR_JSON
    )
    found = [i["diagnostics"] for i in errors(second.json())]
    assert any("gender" in d for d in found) and not any("birthDate" in d for d in found)


def make_package(files: dict[str, bytes], gzip_it: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzip_it else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def package_sd(tag: str) -> dict:
    return {
        "resourceType": "StructureDefinition",
        "url": f"https://fhirplug.test/StructureDefinition/pkg-{tag}",
        "version": "1.0.0",
        "name": f"Pkg{tag}",
        "status": "active",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Patient.name", "path": "Patient.name", "min": 1}]},
    }


MANIFEST = json.dumps({"name": "fhirplug.test", "version": "0.0.1", "fhirVersions": ["4.0.1"]}).encode()


def install(session, stack, data: bytes, ctype: str = "application/gzip"):
    return session.post(
        f"{stack.fhir}/ImplementationGuide/$install", data=data, headers={"Content-Type": ctype}
    )


def test_a_package_upload_is_loaded_and_used_by_the_next_validate(stack, validator):
    tag = uuid.uuid4().hex[:8]
    sd = package_sd(tag)
    r = install(
        validator,
        stack,
        make_package({"package/package.json": MANIFEST, "package/sd.json": json.dumps(sd).encode()}),
    )
    assert r.status_code == 200, r.text
    v = validator.post(
        f"{stack.fhir}/Patient/$validate",
        params={"profile": sd["url"]},
        json={"resourceType": "Patient"},
        headers=FHIR_JSON,
    )
    assert any("Patient.name" in i["diagnostics"] for i in errors(v.json()))


def test_a_package_as_parameters_is_accepted(stack, validator):
    sd = package_sd(uuid.uuid4().hex[:8])
    data = make_package({"package/package.json": MANIFEST, "package/sd.json": json.dumps(sd).encode()})
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "npmContent", "valueBase64Binary": base64.b64encode(data).decode()}],
    }
    r = validator.post(f"{stack.fhir}/ImplementationGuide/$install", json=params, headers=FHIR_JSON)
    assert r.status_code == 200, r.text


def sd_count(stack) -> int:
    return store_count(stack, "StructureDefinition")


@pytest.mark.parametrize(
    "case,names",
    [
        ("not-gzip", "package"),
        ("no-manifest", "package/package.json"),
        ("unparsable-file", "package/broken.json"),
        ("wrong-fhir-version", "package/package.json"),
    ],
)
def test_a_broken_package_is_refused_naming_the_file_and_nothing_is_loaded(stack, validator, case, names):
    good = package_sd(uuid.uuid4().hex[:8])
    files = {"package/package.json": MANIFEST, "package/good.json": json.dumps(good).encode()}
    if case == "no-manifest":
        del files["package/package.json"]
    elif case == "unparsable-file":
        files["package/broken.json"] = b'{"resourceType": "StructureDefinition", '
    elif case == "wrong-fhir-version":
        files["package/package.json"] = json.dumps(
            {"name": "x", "version": "1", "fhirVersions": ["5.0.0"]}
        ).encode()
    data = make_package(files, gzip_it=case != "not-gzip")
    before = sd_count(stack)
    r = install(validator, stack, data)
    assert r.status_code == 400
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["diagnostics"].startswith(
        names
    )
    assert sd_count(stack) == before
    assert (
        requests.get(
            f"{stack.store_url}/StructureDefinition", params={"url": good["url"]}, auth=store_auth()
        ).json()["total"]
        == 0
    )


def test_a_package_with_a_resource_the_store_refuses_loads_nothing(stack, validator):
    good = package_sd(uuid.uuid4().hex[:8])
    bad = dict(good, title="the same canonical url and version again")  # the store refuses the pair
    files = {
        "package/package.json": MANIFEST,
        "package/a.json": json.dumps(good).encode(),
        "package/b.json": json.dumps(bad).encode(),
    }
    before = sd_count(stack)
    r = install(validator, stack, make_package(files))
    assert r.status_code >= 400
    assert sd_count(stack) == before


def test_only_validators_and_admins_install_packages(stack):
    spoke = stack.session(client=stack.client("profiles-spoke", "spoke", "FP001"))
    sd = package_sd(uuid.uuid4().hex[:8])
    r = install(
        spoke,
        stack,
        make_package({"package/package.json": MANIFEST, "package/sd.json": json.dumps(sd).encode()}),
    )
    assert r.status_code == 403


def validation_log(log: Path, request_id: str) -> list[dict]:
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("event") == "bundle_validated" and x.get("request_id") == request_id]


def test_the_same_bundle_is_validated_once_until_conformance_content_changes(stack, http, validator):
    bundle = json.loads((EXAMPLES / "invalid-spoke-to-hub-bundle-type-batch.json").read_text())
    bundle["identifier"]["value"] = str(uuid.uuid4())  # content no earlier test has sent
    log = stack.cfg.var_dir / "log" / "proxy.log"

    def post(rid):
        r = http.post(stack.fhir, json=bundle, headers={**FHIR_JSON, "X-Request-ID": rid})
        assert r.status_code == 400
        return r

    first, second = post(f"c1-{uuid.uuid4().hex}"), post(f"c2-{uuid.uuid4().hex}")
    assert first.json() == second.json()
    assert [x["cached"] for x in validation_log(log, first.headers["X-Request-ID"])] == [False]
    assert [x["cached"] for x in validation_log(log, second.headers["X-Request-ID"])] == [True]
    sd = package_sd(uuid.uuid4().hex[:8])  # any conformance upload makes cached results stale
    assert validator.put(
        f"{stack.fhir}/StructureDefinition", params={"url": sd["url"]}, json=sd, headers=FHIR_JSON
    ).ok
    third = post(f"c3-{uuid.uuid4().hex}")
    assert [x["cached"] for x in validation_log(log, third.headers["X-Request-ID"])] == [False]


def test_profiles_load_command_reports_created_then_unchanged(stack, tmp_path):
    import os
    import subprocess

    sd = package_sd(uuid.uuid4().hex[:8])
    (tmp_path / "sd.json").write_text(json.dumps(sd))
    env = {**os.environ, "REDIS_URL": stack.redis_url}
    cmd = [
        str(ROOT / ".venv" / "bin" / "fhirplug"),
        "profiles",
        "load",
        str(tmp_path),
        "--store",
        stack.store_url,
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "1 created, 0 updated, 0 unchanged" in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert "0 created, 0 updated, 1 unchanged" in second.stdout
    (tmp_path / "broken.json").write_text("{nope")
    third = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert third.returncode == 1 and "broken.json" in third.stderr


def test_the_built_ig_package_installs_through_the_proxy(stack, validator, tmp_path):
    from ops import ig_cli

    target = ig_cli.build(tmp_path)
    r = install(validator, stack, target.read_bytes())
    assert r.status_code == 200, r.text
    # the same profiles were loaded at start: the install changed none of them
    statuses = {e["response"]["status"] for e in r.json()["entry"]}
    assert statuses == {"200 OK"}
