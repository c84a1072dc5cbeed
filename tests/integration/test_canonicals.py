"""One stored copy per canonical through the real proxy and store: a profile uploaded again by
any method updates the copy of its url and version; another version is kept beside it and
``$validate ?profile=url|version`` picks it."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from proxy.store_caller import store_auth

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json"}
SD = "StructureDefinition"


@pytest.fixture(scope="module")
def validator(stack):
    return stack.session(client=stack.client("canonicals-validator", "validator"))


def profile(url: str, version: str | None, required: str) -> dict:
    sd = {
        "resourceType": SD,
        "url": url,
        "name": "CanonicalTest",
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [{"id": f"Patient.{required}", "path": f"Patient.{required}", "min": 1}]},
    }
    if version:
        sd["version"] = version
    return sd


def new_url() -> str:
    return f"https://fhirplug.test/StructureDefinition/canon-{uuid.uuid4().hex[:8]}"


def stored(stack, url: str) -> list[dict]:
    """Straight from the store, past the proxy: every copy of ``url``."""
    found = requests.get(f"{stack.store_url}/{SD}", params={"url": url}, auth=store_auth()).json()
    return [e["resource"] for e in found.get("entry") or []]


def validate(session, stack, profile_ref: str) -> list[str]:
    r = session.post(
        f"{stack.fhir}/Patient/$validate",
        params={"profile": profile_ref},
        json={"resourceType": "Patient", "gender": "male"},
        headers=FHIR_JSON,
    )
    assert r.status_code == 200, r.text
    return [i["diagnostics"] for i in r.json()["issue"] if i["severity"] in ("error", "fatal")]


def test_a_second_post_updates_the_first_copy(stack, validator):
    url = new_url()
    first = validator.post(f"{stack.fhir}/{SD}", json=profile(url, "1.0.0", "birthDate"), headers=FHIR_JSON)
    assert first.status_code == 201, first.text
    second = validator.post(f"{stack.fhir}/{SD}", json=profile(url, "1.0.0", "name"), headers=FHIR_JSON)
    assert second.status_code == 200, second.text
    copies = stored(stack, url)
    assert len(copies) == 1 and copies[0]["differential"]["element"][0]["path"] == "Patient.name"
    assert any("Patient.name" in d for d in validate(validator, stack, url))


def test_a_put_to_another_id_updates_the_stored_copy(stack, validator):
    url = new_url()
    first = validator.post(f"{stack.fhir}/{SD}", json=profile(url, "1", "birthDate"), headers=FHIR_JSON)
    assert first.status_code == 201, first.text
    other = {**profile(url, "1", "name"), "id": f"other-{uuid.uuid4().hex[:8]}"}
    put = validator.put(f"{stack.fhir}/{SD}/{other['id']}", json=other, headers=FHIR_JSON)
    assert put.status_code == 200, put.text
    copies = stored(stack, url)
    assert [c["id"] for c in copies] == [first.json()["id"]]


def test_a_transaction_entry_updates_the_stored_copy(stack, validator):
    url = new_url()
    assert validator.post(f"{stack.fhir}/{SD}", json=profile(url, "1", "birthDate"), headers=FHIR_JSON).ok
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": profile(url, "1", "name"), "request": {"method": "POST", "url": SD}}],
    }
    r = validator.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert len(stored(stack, url)) == 1


def test_another_version_is_kept_beside_and_a_pinned_validate_picks_it(stack, validator):
    url = new_url()
    assert validator.post(f"{stack.fhir}/{SD}", json=profile(url, "1.0", "birthDate"), headers=FHIR_JSON).ok
    assert validator.post(f"{stack.fhir}/{SD}", json=profile(url, "2.0", "name"), headers=FHIR_JSON).ok
    assert sorted(c["version"] for c in stored(stack, url)) == ["1.0", "2.0"]
    pinned_1 = validate(validator, stack, f"{url}|1.0")
    pinned_2 = validate(validator, stack, f"{url}|2.0")
    assert any("birthDate" in d for d in pinned_1) and not any("Patient.name" in d for d in pinned_1)
    assert any("Patient.name" in d for d in pinned_2) and not any("birthDate" in d for d in pinned_2)
    latest = validate(validator, stack, url)
    assert any("Patient.name" in d for d in latest), latest


def test_simultaneous_first_uploads_store_one_copy(stack, validator):
    """The store decides between simultaneous first uploads: one creates; a twin that lost the
    race inside the store is told 409 (HAPI-0550, "at the same time"), and its retry updates."""
    for _ in range(5):  # a race: several rounds, so that the losers' path is taken
        url = new_url()

        def post(_, url=url):
            return validator.post(f"{stack.fhir}/{SD}", json=profile(url, "1", "name"), headers=FHIR_JSON)

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(post, range(6)))
        assert len(stored(stack, url)) == 1
        assert sum(a.status_code == 201 for a in answers) == 1, [a.status_code for a in answers]
        for lost in (a for a in answers if a.status_code == 409):
            assert "at the same time" in lost.json()["issue"][0]["diagnostics"]
        assert all(a.status_code in (200, 201, 409) for a in answers), [a.text[:300] for a in answers]
        assert post(None).status_code == 200  # the retry a 409 invites
        assert len(stored(stack, url)) == 1


def run_dedupe(stack, *extra: str):
    import os
    import subprocess
    from pathlib import Path

    fhirplug = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "fhirplug"
    env = {**os.environ, "REDIS_URL": stack.redis_url}
    cmd = [str(fhirplug), "profiles", "dedupe", "--store", stack.store_url, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_dedupe_keeps_the_newest_copy_of_duplicates_stored_before_the_rule(stack):
    from ops.profiles_dedupe import startup_warning

    url = new_url()
    ids = []
    for required in ("birthDate", "name"):  # past the proxy: how copies got there before the rule
        r = requests.post(
            f"{stack.store_url}/{SD}", json=profile(url, "1", required), headers=FHIR_JSON, auth=store_auth()
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    warning = startup_warning(stack.store_url)
    assert warning and url in warning

    dry = run_dedupe(stack, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"kept {SD}/{ids[1]}, would delete {SD}/{ids[0]}" in dry.stdout
    assert len(stored(stack, url)) == 2

    done = run_dedupe(stack)
    assert done.returncode == 0, done.stderr
    assert f"kept {SD}/{ids[1]}, deleted {SD}/{ids[0]}" in done.stdout
    assert [c["id"] for c in stored(stack, url)] == [ids[1]]
    assert startup_warning(stack.store_url) is None


def test_a_package_install_updates_the_copy_a_post_stored(stack, validator):
    import io
    import json
    import tarfile

    url = new_url()
    first = validator.post(f"{stack.fhir}/{SD}", json=profile(url, "1.0.0", "birthDate"), headers=FHIR_JSON)
    assert first.status_code == 201, first.text
    files = {
        "package/package.json": json.dumps(
            {"name": "fhirplug.canon", "version": "0.0.1", "fhirVersions": ["4.0.1"]}
        ).encode(),
        "package/StructureDefinition-p.json": json.dumps(
            {**profile(url, "1.0.0", "name"), "id": "from-package", "fhirVersion": "4.0.1"}
        ).encode(),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    r = validator.post(
        f"{stack.fhir}/ImplementationGuide/$install",
        data=buf.getvalue(),
        headers={"Content-Type": "application/gzip"},
    )
    assert r.status_code == 200, r.text
    copies = stored(stack, url)
    assert [c["id"] for c in copies] == [first.json()["id"]]
    assert copies[0]["differential"]["element"][0]["path"] == "Patient.name"
