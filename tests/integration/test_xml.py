"""FHIR XML through the real proxy and store: every UK Core XML file (and every profile in
profiles/, as XML) uploaded as XML and read back as JSON and as XML with nothing lost; XML writes,
transactions, PATCH, ``$validate`` and ``$install``; malformed XML refused 400 with its line and
column; and the answers in the format asked for.

Fidelity is judged two ways: against HAPI's own reading of the same file (the store's converter,
asked directly) and leaf by leaf by Python's own XML and JSON parsers (``tests.support.fhir_leaves``),
which share no code with HAPI.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import requests
import simplejson

from proxy.store_caller import store_auth
from tests.support import fhir_leaves

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
UKCORE_XML = sorted((ROOT / "tests" / "fixtures" / "ukcore-xml").rglob("*.xml"))
PROFILE_JSON = sorted(
    p for p in (ROOT / "profiles").rglob("*.json") if p.name not in ("package.json", ".index.json")
)
FHIR = "{http://hl7.org/fhir}"
XML = {"Content-Type": "application/fhir+xml; charset=utf-8"}
FHIR_JSON = {"Content-Type": "application/fhir+json"}
AS_JSON = {"Accept": "application/fhir+json"}
# what the store sets on every copy it keeps (its id, version and time), nothing the caller sent
STORED = ("id", "meta")


def load(data: bytes) -> dict:
    return simplejson.loads(data, use_decimal=True)


def hapi_json(stack, xml: bytes) -> dict:
    """HAPI's own reading of an XML document: the store's converter, asked past the proxy."""
    r = requests.post(
        f"{stack.store_url}/$fhirplug-convert", data=xml, headers=XML, auth=store_auth(), timeout=60
    )
    assert r.status_code == 200, r.text
    return load(r.content)


def hapi_xml(stack, resource: dict) -> bytes:
    r = requests.post(
        f"{stack.store_url}/$fhirplug-convert",
        data=json.dumps(resource).encode(),
        headers=FHIR_JSON,
        auth=store_auth(),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.content


def without_stored(resource: dict) -> dict:
    out = {k: v for k, v in resource.items() if k not in STORED}
    meta = {
        k: v
        for k, v in (resource.get("meta") or {}).items()
        if k not in ("versionId", "lastUpdated", "source")
    }
    if meta:
        out["meta"] = meta
    return out


def xml_issues(data: bytes) -> list[dict]:
    """The issues of an OperationOutcome in XML: severity, code, diagnostics, expression, location."""
    root = ET.fromstring(data)
    assert root.tag == f"{FHIR}OperationOutcome", data[:300]
    out = []
    for issue in root.findall(f"{FHIR}issue"):
        out.append(
            {
                "severity": issue.find(f"{FHIR}severity").get("value"),
                "code": issue.find(f"{FHIR}code").get("value"),
                "diagnostics": " ".join(e.get("value", "") for e in issue.findall(f"{FHIR}diagnostics")),
                "expression": [e.get("value") for e in issue.findall(f"{FHIR}expression")],
                "location": [e.get("value") for e in issue.findall(f"{FHIR}location")],
            }
        )
    return out


@pytest.fixture(scope="module")
def admin(stack):
    s = stack.session()
    yield s
    s.close()


@pytest.fixture(scope="module")
def validator(stack):
    s = stack.session(client=stack.client("xml-validator", "validator"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def spoke(stack):
    from proxy.auth.registry import DEFAULT_SCOPES

    # a tenant that may also read the shared conformance resources: its XML is the proxy's rendering
    reads = " ".join(
        f"system/{t}.rs" for t in ("StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter")
    )
    s = stack.session(
        client=stack.client("xml-spoke", "spoke", "FXM01", f"{DEFAULT_SCOPES['spoke']} {reads}")
    )
    yield s
    s.close()


def round_trip(stack, admin, spoke, xml: bytes, original: dict | None = None) -> None:
    """Upload ``xml`` through the proxy as XML; read it back as JSON and as XML (the store's XML,
    and the proxy's rendering for a tenant) and find the same document every time."""
    rtype = ET.fromstring(xml).tag.removeprefix(FHIR)
    r = admin.post(f"{stack.fhir}/{rtype}", data=xml, headers={**XML, **AS_JSON})
    assert r.status_code in (200, 201), r.text[:1000]
    stored = r.json()
    rid = stored["id"]
    expected = without_stored(hapi_json(stack, xml))
    assert without_stored(stored) == expected
    if original is not None:  # a JSON file turned into XML comes back as that JSON
        assert without_stored(stored) == without_stored(original)
    # leaf by leaf, by Python's parsers: nothing HAPI might drop on both sides went missing
    assert fhir_leaves.from_xml(xml, STORED) == fhir_leaves.from_json(stored, STORED)

    as_json = admin.get(f"{stack.fhir}/{rtype}/{rid}", headers=AS_JSON)
    assert as_json.status_code == 200 and without_stored(load(as_json.content)) == expected
    for who, ask in ((admin, {"_format": "xml"}), (spoke, {"_format": "xml"})):
        as_xml = who.get(f"{stack.fhir}/{rtype}/{rid}", params=ask)
        assert as_xml.status_code == 200, as_xml.text[:500]
        assert as_xml.headers["Content-Type"].startswith("application/fhir+xml")
        assert without_stored(hapi_json(stack, as_xml.content)) == expected
        assert fhir_leaves.from_xml(as_xml.content, STORED) == fhir_leaves.from_xml(xml, STORED)


@pytest.mark.parametrize("path", UKCORE_XML, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_ukcore_xml_file_round_trips_through_the_proxy(stack, admin, spoke, path):
    round_trip(stack, admin, spoke, path.read_bytes())


@pytest.mark.parametrize("path", PROFILE_JSON, ids=lambda p: p.name)
def test_every_profile_as_xml_round_trips_to_its_own_json(stack, admin, spoke, path):
    original = load(path.read_bytes())
    round_trip(stack, admin, spoke, hapi_xml(stack, original), original)


def test_the_fixtures_hold_every_selected_ukcore_file():
    assert len(UKCORE_XML) >= 121 and PROFILE_JSON


def test_an_xml_create_is_answered_in_xml_unless_json_is_asked_for(stack, admin):
    doc = b'<Patient xmlns="http://hl7.org/fhir"><name><family value="Xml"/></name></Patient>'
    for accept in (None, "*/*", "application/fhir+xml"):  # nothing asked: the request's own format
        r = admin.post(f"{stack.fhir}/Patient", data=doc, headers={**XML, "Accept": accept})
        assert r.status_code == 201, r.text
        assert r.headers["Content-Type"].startswith("application/fhir+xml")
    assert ET.fromstring(r.content).find(f"{FHIR}name/{FHIR}family").get("value") == "Xml"
    r = admin.post(f"{stack.fhir}/Patient", data=doc, headers={**XML, **AS_JSON})
    assert r.status_code == 201 and r.json()["name"][0]["family"] == "Xml"
    r = admin.post(f"{stack.fhir}/Patient", data=doc, headers=XML, params={"_format": "json"})
    assert r.status_code == 201 and r.json()["name"][0]["family"] == "Xml"


def test_an_xml_update_with_latin1_charset_keeps_its_characters(stack, admin):
    pid = f"xml-{uuid.uuid4().hex[:12]}"
    doc = (
        f'<Patient xmlns="http://hl7.org/fhir"><id value="{pid}"/>'
        '<name><family value="Müller"/></name></Patient>'
    )
    r = admin.put(
        f"{stack.fhir}/Patient/{pid}",
        data=doc.encode("latin-1"),
        headers={"Content-Type": "application/xml; charset=ISO-8859-1", **AS_JSON},
    )
    assert r.status_code == 201, r.text
    assert admin.get(f"{stack.fhir}/Patient/{pid}").json()["name"][0]["family"] == "Müller"


def test_malformed_xml_is_400_with_its_line_and_column(stack, admin):
    doc = b'<Patient xmlns="http://hl7.org/fhir">\n  <name>\n    <family value="x">\n  </name>\n</Patient>'
    r = admin.post(f"{stack.fhir}/Patient", data=doc, headers={**XML, "Accept": None})
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("application/fhir+xml")  # the caller's format
    (issue,) = xml_issues(r.content)
    assert issue["severity"] == "error" and "well-formed" in issue["diagnostics"]
    # the unexpected </name> on line 4 (the column is where the parser stopped: after its name)
    assert issue["location"] == ["Line[4] Col[8]"] and issue["expression"] == ["Patient.name.family"]
    r = admin.post(f"{stack.fhir}/Patient", data=doc, headers={**XML, **AS_JSON})
    assert r.status_code == 400 and r.json()["issue"][0]["location"] == ["Line[4] Col[8]"]


@pytest.mark.parametrize(
    "doc,why",
    [
        (b"<Patient/>", "not in the FHIR namespace"),
        (
            b'<!DOCTYPE p [<!ENTITY e SYSTEM "file:///etc/passwd">]><Patient xmlns="http://hl7.org/fhir"/>',
            "DTD",
        ),
        (b"not xml at all", "well-formed"),
        (b'<Patient xmlns="http://hl7.org/fhir"><name><family value="\xff"/></name></Patient>', "UTF-8"),
    ],
)
def test_xml_that_is_not_fhir_xml_is_400_never_415_or_500(stack, admin, doc, why):
    r = admin.post(f"{stack.fhir}/Patient", data=doc, headers={**XML, **AS_JSON})
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and why in r.json()["issue"][0]["diagnostics"]


def test_content_fhir_cannot_hold_is_refused_naming_each_element(stack, admin):
    doc = (
        b'<Patient xmlns="http://hl7.org/fhir">\n'
        b'  <foo value="1"/>\n'
        b'  <birthDate value="1999-13-45"/>\n'
        b"</Patient>"
    )
    before = requests.get(
        f"{stack.store_url}/Patient", params={"_summary": "count"}, auth=store_auth()
    ).json()
    r = admin.post(f"{stack.fhir}/Patient", data=doc, headers={**XML, **AS_JSON})
    assert r.status_code == 400, r.text
    issues = r.json()["issue"]
    assert [(i["expression"], i["location"]) for i in issues] == [
        (["Patient.foo"], ["Line[2] Col[3]"]),
        (["Patient.birthDate"], ["Line[3] Col[3]"]),
    ]
    after = requests.get(f"{stack.store_url}/Patient", params={"_summary": "count"}, auth=store_auth()).json()
    assert after["total"] == before["total"]  # nothing stored


def test_an_xml_transaction_stores_every_entry_and_answers_in_xml(stack, admin):
    tag = uuid.uuid4().hex[:10]
    doc = f"""<Bundle xmlns="http://hl7.org/fhir">
  <type value="transaction"/>
  <entry>
    <fullUrl value="urn:uuid:{uuid.uuid4()}"/>
    <resource><Patient>
      <identifier><system value="urn:xml-test"/><value value="{tag}"/></identifier>
    </Patient></resource>
    <request><method value="POST"/><url value="Patient"/></request>
  </entry>
  <entry>
    <resource><Organization><name value="Org {tag}"/></Organization></resource>
    <request><method value="POST"/><url value="Organization"/></request>
  </entry>
</Bundle>""".encode()
    r = admin.post(stack.fhir, data=doc, headers={**XML, "Accept": None})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/fhir+xml")
    statuses = [e.get("value") for e in ET.fromstring(r.content).iter(f"{FHIR}status")]
    assert statuses and all(s.startswith("201") for s in statuses)
    found = admin.get(f"{stack.fhir}/Patient", params={"identifier": f"urn:xml-test|{tag}"}).json()
    assert found["total"] == 1


def test_an_xml_batch_is_read_like_a_json_one(stack, admin):
    doc = b"""<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/>
  <entry><request><method value="GET"/><url value="Patient?_count=1"/></request></entry>
</Bundle>"""
    r = admin.post(stack.fhir, data=doc, headers={**XML, **AS_JSON})
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "batch-response"


def test_an_xml_fhirpath_patch_is_applied(stack, admin):
    pid = admin.post(f"{stack.fhir}/Patient", json={"resourceType": "Patient", "active": False}).json()["id"]
    doc = b"""<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/>
  <part><name value="type"/><valueCode value="replace"/></part>
  <part><name value="path"/><valueString value="Patient.active"/></part>
  <part><name value="value"/><valueBoolean value="true"/></part>
</parameter></Parameters>"""
    r = admin.patch(f"{stack.fhir}/Patient/{pid}", data=doc, headers={**XML, **AS_JSON})
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True


def test_xml_validate_reports_lines_of_the_callers_own_document(stack, validator):
    doc = (
        b'<Patient xmlns="http://hl7.org/fhir">\n'
        b'  <name><family value="Smith"/></name>\n'
        b"  <communication>\n"
        b'    <preferred value="true"/>\n'
        b"  </communication>\n"
        b"</Patient>"
    )
    r = validator.post(f"{stack.fhir}/Patient/$validate", data=doc, headers={**XML, **AS_JSON})
    assert r.status_code == 200, r.text
    errors = [i for i in r.json()["issue"] if i["severity"] in ("error", "fatal")]
    assert errors, r.text  # communication.language is required
    assert any(loc.startswith("Line[3]") for i in errors for loc in i.get("location", [])), errors


def test_xml_validate_of_content_fhir_cannot_hold_is_reported_by_the_validator(stack, validator):
    doc = b'<Patient xmlns="http://hl7.org/fhir">\n  <foo value="1"/>\n</Patient>'
    r = validator.post(f"{stack.fhir}/Patient/$validate", data=doc, headers={**XML, "Accept": None})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/fhir+xml")
    found = xml_issues(r.content)
    assert any("foo" in i["diagnostics"] and i["severity"] == "error" for i in found), found


def test_xml_validate_of_a_parameters_resource_validates_the_resource(stack, validator):
    doc = (
        b'<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="greeting"/>'
        b'<valueString value="hello"/></parameter></Parameters>'
    )
    r = validator.post(f"{stack.fhir}/Parameters/$validate", data=doc, headers={**XML, **AS_JSON})
    assert r.status_code == 200, r.text
    assert "No resource supplied" not in r.text
    assert not [i for i in r.json()["issue"] if i["severity"] in ("error", "fatal")], r.text


def test_xml_validate_with_rules_reports_the_business_rules(stack, validator):
    r = validator.post(
        f"{stack.fhir}/Patient/$validate",
        params={"rules": "true"},
        data=b'<Patient xmlns="http://hl7.org/fhir"><name><family value="Smith"/></name></Patient>',
        headers={**XML, **AS_JSON},
    )
    assert r.status_code == 200, r.text  # was 415: the rules read JSON, which they now get


def test_an_xml_package_install_loads_the_package(stack, validator):
    tag = uuid.uuid4().hex[:8]
    sd = {
        "resourceType": "StructureDefinition",
        "url": f"https://example.org/fhir/StructureDefinition/xml-pkg-{tag}",
        "name": f"XmlPkg{tag}",
        "status": "draft",
        "fhirVersion": "4.0.1",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Patient.name", "path": "Patient.name", "min": 1}]},
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (
            (
                "package/package.json",
                json.dumps({"name": f"xml.{tag}", "version": "0.1.0", "fhirVersions": ["4.0.1"]}),
            ),
            ("package/sd.json", json.dumps(sd)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data.encode())
            tar.addfile(info, io.BytesIO(data.encode()))
    npm = base64.b64encode(buf.getvalue()).decode()
    doc = (
        '<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="npmContent"/>'
        f'<valueBase64Binary value="{npm}"/></parameter></Parameters>'
    ).encode()
    r = validator.post(f"{stack.fhir}/ImplementationGuide/$install", data=doc, headers={**XML, **AS_JSON})
    assert r.status_code == 200, r.text
    found = validator.get(f"{stack.fhir}/StructureDefinition", params={"url": sd["url"]}).json()
    assert found["total"] == 1


def test_the_store_converts_only_for_the_proxy(stack):
    doc = b'<Patient xmlns="http://hl7.org/fhir"/>'
    r = requests.post(f"{stack.store_url}/$fhirplug-convert", data=doc, headers=XML, timeout=10)
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"


def test_a_tenants_xml_write_is_judged_as_its_json(stack, spoke):
    # the tenancy rules read (and amend) the converted JSON: another tenant's label is replaced
    doc = b"""<Organization xmlns="http://hl7.org/fhir"><meta><security>
  <system value="https://fhirplug.org/fhir/CodeSystem/tenant"/><code value="SOMEONE-ELSE"/>
</security></meta><name value="x"/></Organization>"""
    r = spoke.post(f"{stack.fhir}/Organization", data=doc, headers={**XML, **AS_JSON})
    assert r.status_code == 201, r.text
    assert [s["code"] for s in r.json()["meta"]["security"]] == ["FXM01"]


def test_profiles_load_reads_xml_files_and_counts_them(stack, tmp_path):
    import os
    import subprocess

    tag = uuid.uuid4().hex[:8]
    vs = {
        "resourceType": "ValueSet",
        "url": f"https://example.org/fhir/ValueSet/xml-load-{tag}",
        "status": "draft",
        "compose": {"include": [{"system": "http://example.org/cs", "concept": [{"code": "a"}]}]},
    }
    (tmp_path / "vs.xml").write_bytes(hapi_xml(stack, vs))
    (tmp_path / "patient.xml").write_bytes(b'<Patient xmlns="http://hl7.org/fhir"/>')
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
    assert (
        "0 JSON and 2 XML files read: 1 conformance resources, 1 other files passed over (Patient"
        in first.stdout
    )
    assert "1 created, 0 updated, 0 unchanged" in first.stdout
    stored = requests.get(
        f"{stack.store_url}/ValueSet", params={"url": vs["url"]}, auth=store_auth(), timeout=10
    ).json()
    assert stored["total"] == 1

    (tmp_path / "broken.xml").write_bytes(
        b'<ValueSet xmlns="http://hl7.org/fhir">\n<status value="draft">\n</ValueSet>'
    )
    failed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert failed.returncode == 1 and "broken.xml" in failed.stderr and "Line[3]" in failed.stderr

    only_other = tmp_path / "other"
    only_other.mkdir()
    (only_other / "patient.xml").write_bytes(b'<Patient xmlns="http://hl7.org/fhir"/>')
    cmd[3] = str(only_other)
    nothing = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert nothing.returncode == 1 and "no conformance resource to load" in nothing.stderr
