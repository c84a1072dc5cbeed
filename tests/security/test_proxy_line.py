"""The proxy's own line of tenancy, probed as an attacker would: spoke B against spoke A's data,
over every URL form x representation x direct and inside batch/transaction (issue 10, the
attacks of its "Why" but the Host one).

The rule every probe asserts: what B learns about A's id is exactly what B learns about an id
that does not exist (same status, same body once the id itself is blanked), nothing of A's
leaves in any representation, and nothing of A's changes.
"""

from __future__ import annotations

import http.client
import json
import re
import uuid
import xml.etree.ElementTree as ET
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from proxy.store_caller import store_auth
from tests.support.tenants import spoke_bundle, task_naming

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json"}
TENANT = "https://fhirplug.org/fhir/CodeSystem/tenant"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SPOKE_A, SPOKE_B, HUB = "FS1A1", "FS2B2", "FH3C3"
MISSING = "876543219"  # an id no test creates
FHIR_NS = "{http://hl7.org/fhir}"

REPRESENTATIONS = {
    "json": ({}, {}),
    "xml": ({"_format": "xml"}, {}),
    "fhir+xml": ({"_format": "application/fhir+xml"}, {}),
    "accept-xml": ({}, {"Accept": "application/fhir+xml"}),
    "ttl": ({"_format": "ttl"}, {}),
    "accept-turtle": ({}, {"Accept": "application/fhir+turtle"}),
    "html": ({"_format": "html"}, {}),
    "summary-text": ({"_summary": "text"}, {}),
    "summary-true": ({"_summary": "true"}, {}),
    "elements": ({"_elements": "status"}, {}),
}
READ_FORMS = [
    "{t}/{id}",
    "{t}/{id}/",
    "{t}/{id}?",
    "{t}/{id}?&",
    "{t_encoded}/{id}",
    "{t}/{id}/_history/1",
    "{t}/{id}/_history",
    "{t}//{id}",
    "{t}/./{id}",
    "{t}%2F{id}",
]
ENTRY_FORMS = [
    "{t}/{id}",
    "/{t}/{id}",
    "//{t}/{id}",
    "{t}/{id}?",
    "/{t}/{id}?",
    "{t}/{id}?_pretty=true",
    "{t}/{id}/",
    "{base}/{t}/{id}",
    "{base}/{t}/{id}?",
    "{t_encoded}/{id}",
    "{t}//{id}",
    "{t}/./{id}",
    "{t}/../{t}/{id}",
    "{t}%2F{id}",
]
TYPES = ["Task", "Patient", "MedicationRequest"]


# ---------------------------------------------------------------- two tenants


@pytest.fixture(scope="module")
def a(stack):
    return stack.session(client=stack.client("sec-spoke-a", "spoke", SPOKE_A))


@pytest.fixture(scope="module")
def b(stack):
    return stack.session(client=stack.client("sec-spoke-b", "spoke", SPOKE_B))


def _submit(stack, session, ods) -> dict:
    bundle, tid = spoke_bundle(ods, HUB)
    r = session.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    locs = [e["response"]["location"].split("/_history")[0] for e in r.json()["entry"]]
    return {loc.split("/")[-2]: loc.split("/")[-1] for loc in locs}


@pytest.fixture(scope="module")
def a_data(stack, a):
    return _submit(stack, a, SPOKE_A)


@pytest.fixture(scope="module")
def versions(stack, a_data):
    """What A's resources are now, read by an administrator (straight at the store)."""
    return {t: _version(stack, t, a_data[t]) for t in TYPES}


def _version(stack, rtype, rid):
    r = requests.get(
        f"{stack.store_url}/{rtype}/{rid}", headers={"Accept": "application/fhir+json"}, auth=store_auth()
    )
    return r.status_code, r.json().get("meta", {}).get("versionId")


def _form(form: str, stack, rtype: str, rid: str) -> str:
    t_encoded = "".join(f"%{ord(c):02X}" if i == 0 else c for i, c in enumerate(rtype))
    return form.format(t=rtype, id=rid, t_encoded=t_encoded, base=stack.fhir)


def _raw(stack, session, method: str, target: str, headers=None, body: bytes | None = None):
    """Send a request line exactly as written (requests would tidy it)."""
    parts = urlsplit(stack.fhir)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    hdrs = {"Accept": "application/fhir+json", **(headers or {})}
    hdrs["Authorization"] = f"Bearer {session.auth.oauth.token()}"
    conn.request(method, f"{parts.path}/{target}", body=body, headers=hdrs)
    r = conn.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    conn.close()
    return out


def _same(theirs, missing, their_id: str) -> None:
    """B's answer about A's id is the answer about an id that does not exist."""
    status_t, headers_t, body_t = theirs
    status_m, headers_m, body_m = missing
    assert status_t == status_m, (body_t[:300], body_m[:300])
    assert _blank(body_t, their_id) == _blank(body_m, MISSING)
    for h in ("etag", "last-modified", "content-location", "location"):
        assert (h in headers_t) == (h in headers_m), h


def _blank(body: bytes, rid: str) -> bytes:
    data = body.replace(rid.encode(), b"X")
    # HAPI names either search parameter path of a missing reference, at random, for any id
    data = re.sub(rb"specified in path: [^\"<]*", b"specified in path: P", data)
    try:  # ids of the answer itself (a Bundle's id, its time) differ from one answer to the next
        doc = json.loads(data)
    except ValueError:
        try:
            root = ET.fromstring(data)
        except ET.ParseError:
            return data
        _strip_volatile_xml(root)
        return ET.tostring(root)
    return json.dumps(_strip_volatile(doc), sort_keys=True).encode()


VOLATILE = ("id", "lastUpdated", "meta", "link")


def _strip_volatile(node):
    if isinstance(node, dict):
        return {k: _strip_volatile(v) for k, v in node.items() if k not in VOLATILE}
    if isinstance(node, list):
        return [_strip_volatile(v) for v in node]
    return node


def _strip_volatile_xml(el) -> None:
    for child in list(el):
        if child.tag.split("}")[-1] in VOLATILE:
            el.remove(child)
        else:
            _strip_volatile_xml(child)


def _resources(body: bytes) -> list[tuple[str, str | None, str]]:
    """(type, id, text) of every resource in an answer, JSON or XML; other bodies whole."""
    out: list[tuple[str, str | None, str]] = []
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if doc is not None:

        def walk(node):
            if isinstance(node, dict):
                if isinstance(node.get("resourceType"), str):
                    out.append((node["resourceType"], node.get("id"), json.dumps(node)))
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(doc)
        return out
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return [("?", None, body.decode("utf-8", "replace"))]
    for el in root.iter():
        local = el.tag.split("}")[-1]
        if el.tag.startswith(FHIR_NS) and local[:1].isupper():
            rid = el.find(f"{FHIR_NS}id")
            out.append((local, rid.get("value") if rid is not None else None, ET.tostring(el).decode()))
    return out


def _leaks(body: bytes, a_data: dict) -> bool:
    """Does the answer hold any of A's resources, or anything labelled for A?"""
    for rtype, rid, text in _resources(body):
        if rtype in ("Bundle", "OperationOutcome"):
            continue
        if (rid is not None and a_data.get(rtype) == rid) or SPOKE_A in text:
            return True
    return False


# ---------------------------------------------------------------- reads, every form x representation


@pytest.mark.parametrize("rep", REPRESENTATIONS)
@pytest.mark.parametrize("form", READ_FORMS)
@pytest.mark.parametrize("rtype", TYPES)
def test_reading_another_tenants_id_is_reading_a_missing_one(stack, b, a_data, rtype, form, rep):
    params, headers = REPRESENTATIONS[rep]
    sep = "&" if "?" in form else "?"
    query = (sep + urlencode(params)) if params else ""
    theirs = _raw(stack, b, "GET", _form(form, stack, rtype, a_data[rtype]) + query, headers)
    missing = _raw(stack, b, "GET", _form(form, stack, rtype, MISSING) + query, headers)
    assert theirs[0] != 200 or not _leaks(theirs[2], a_data)
    assert theirs[0] >= 400, theirs[2][:300]
    _same(theirs, missing, a_data[rtype])


@pytest.mark.parametrize("header", ["If-None-Match", "If-Modified-Since"])
@pytest.mark.parametrize("rtype", TYPES)
def test_a_conditional_read_of_another_tenants_id_is_a_miss(stack, a, b, a_data, rtype, header):
    value = 'W/"1"' if header == "If-None-Match" else "Fri, 01 Jan 2100 00:00:00 GMT"
    theirs = _raw(stack, b, "GET", f"{rtype}/{a_data[rtype]}", {header: value})
    missing = _raw(stack, b, "GET", f"{rtype}/{MISSING}", {header: value})
    assert theirs[0] == 404
    _same(theirs, missing, a_data[rtype])
    # the owner's conditional read still answers 304
    assert _raw(stack, a, "GET", f"{rtype}/{a_data[rtype]}", {header: value})[0] == 304


@pytest.mark.parametrize("rep", ["json", "xml", "accept-xml", "summary-true", "elements"])
def test_search_include_and_revinclude_show_nothing_of_another_tenant(stack, a, b, a_data, rep):
    params, headers = REPRESENTATIONS[rep]
    mine = task_naming(stack, SPOKE_B, a_data["Patient"])
    for query in (
        {"_id": mine, "_include": "Task:patient"},
        {"_id": mine, "_include": ["Task:patient", "Task:focus", "Task:requester"]},
        {"_id": a_data["Task"]},
    ):
        r = b.get(f"{stack.fhir}/Task", params={**query, **params}, headers=headers)
        assert r.status_code == 200 and not _leaks(r.content, a_data), r.text[:300]
    r = b.get(
        f"{stack.fhir}/Patient",
        params={"_id": a_data["Patient"], "_revinclude": "Task:patient", **params},
        headers=headers,
    )
    assert r.status_code == 200 and not _leaks(r.content, a_data)


@pytest.mark.parametrize("rep", ["json", "xml", "accept-xml", "ttl", "summary-text"])
def test_another_tenants_page_links_show_nothing_of_theirs(stack, a, b, a_data, rep):
    _submit(stack, a, SPOKE_A)
    first = a.get(f"{stack.fhir}/Task", params={"_count": "1"}).json()
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    params, headers = REPRESENTATIONS[rep]
    r = b.get(nxt, params=params, headers=headers)
    assert not _leaks(r.content, a_data)
    assert SPOKE_A.encode() not in r.content and b"<total" not in r.content and b'"total"' not in r.content


@pytest.mark.parametrize("rep", ["json", "xml", "accept-xml"])
@pytest.mark.parametrize("form", ENTRY_FORMS + ["{t}/{id}/_history/1", "{t}/{id}/_history", "{t}?_id={id}"])
def test_batch_reads_of_another_tenants_id_are_reads_of_a_missing_one(stack, b, a_data, form, rep):
    params, headers = REPRESENTATIONS[rep]

    def attempt(rid):
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": _form(form, stack, "Task", rid)}}],
        }
        target = "?" + urlencode(params) if params else ""
        return _raw(stack, b, "POST", target, {**FHIR_JSON, **headers}, json.dumps(bundle).encode())

    theirs, missing = attempt(a_data["Task"]), attempt(MISSING)
    assert not _leaks(theirs[2], a_data)
    _same(theirs, missing, a_data["Task"])


@pytest.mark.parametrize(
    "entry", [{"request": {"method": "GET", "url": "Task/{id}", "ifNoneMatch": 'W/"1"'}}]
)
def test_a_conditional_batch_read_is_a_miss_too(stack, b, a_data, entry):
    def attempt(rid):
        e = json.loads(json.dumps(entry).replace("{id}", rid))
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": [e]}
        return _raw(stack, b, "POST", "", FHIR_JSON, json.dumps(bundle).encode())

    _same(attempt(a_data["Task"]), attempt(MISSING), a_data["Task"])


# ---------------------------------------------------------------- writes, every form, direct and in bundles


def _patch_for(rtype: str) -> dict:
    path = "Task.status" if rtype == "Task" else f"{rtype}.language"
    value = {"valueCode": "cancelled"} if rtype == "Task" else {"valueCode": "en"}
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace" if rtype == "Task" else "add"},
                    {"name": "path", "valueString": path if rtype == "Task" else rtype},
                    *([] if rtype == "Task" else [{"name": "name", "valueString": "language"}]),
                    {"name": "value", **value},
                ],
            }
        ],
    }


def _takeover(stack, rtype: str, rid: str) -> dict:
    """A's resource as B would write it back: B's own, with the id kept."""
    current = requests.get(
        f"{stack.store_url}/{rtype}/{rid if rid != MISSING else 'x'}",
        headers={"Accept": "application/fhir+json"},
        auth=store_auth(),
    )
    res = current.json() if current.status_code == 200 else {"resourceType": rtype}
    res = {k: v for k, v in res.items() if k != "meta"}
    res["id"] = rid
    if rtype == "Task":
        res["requester"] = {"identifier": {"system": ODS, "value": SPOKE_B}}
    return res


@pytest.mark.parametrize("btype", ["batch", "transaction"])
@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
@pytest.mark.parametrize("form", ENTRY_FORMS)
@pytest.mark.parametrize("rtype", ["Task", "Patient"])
def test_bundle_writes_to_another_tenants_id_are_writes_to_a_missing_one(
    stack, b, a_data, versions, rtype, form, method, btype
):
    def attempt(rid):
        entry = {"request": {"method": method, "url": _form(form, stack, rtype, rid)}}
        if method == "PUT":
            entry["resource"] = _takeover(stack, rtype, a_data[rtype])
            entry["resource"]["id"] = rid
        if method == "PATCH":
            entry["resource"] = _patch_for(rtype)
        bundle = {"resourceType": "Bundle", "type": btype, "entry": [entry]}
        return _raw(stack, b, "POST", "", FHIR_JSON, json.dumps(bundle).encode())

    theirs, missing = attempt(a_data[rtype]), attempt(MISSING)
    _same(theirs, missing, a_data[rtype])
    assert _version(stack, rtype, a_data[rtype]) == versions[rtype]


@pytest.mark.parametrize("rep", ["json", "xml", "accept-xml"])
@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
@pytest.mark.parametrize(
    "form",
    [
        "{t}/{id}",
        "{t}/{id}?",
        "{t}/{id}?_pretty=true",
        "{t}/{id}/",
        "{t_encoded}/{id}",
        "{t}//{id}",
        "{t}%2F{id}",
    ],
)
@pytest.mark.parametrize("rtype", ["Task", "Patient"])
def test_direct_writes_to_another_tenants_id_are_writes_to_a_missing_one(
    stack, b, a_data, versions, rtype, form, method, rep
):
    params, rep_headers = REPRESENTATIONS[rep]
    query = ("&" if "?" in form else "?") + urlencode(params) if params else ""

    def attempt(rid):
        body, headers = None, dict(rep_headers)
        if method == "PUT":
            res = _takeover(stack, rtype, a_data[rtype])
            res["id"] = rid
            body, headers = json.dumps(res).encode(), {**headers, **FHIR_JSON}
        if method == "PATCH":
            body, headers = json.dumps(_patch_for(rtype)).encode(), {**headers, **FHIR_JSON}
        return _raw(stack, b, method, _form(form, stack, rtype, rid) + query, headers, body)

    theirs, missing = attempt(a_data[rtype]), attempt(MISSING)
    _same(theirs, missing, a_data[rtype])
    assert _version(stack, rtype, a_data[rtype]) == versions[rtype]


@pytest.mark.parametrize("form", ["/Task/{id}", "Task/{id}?", "{base}/Task/{id}"])
def test_a_message_cannot_take_over_another_tenants_task(stack, b, a_data, versions, form):
    def attempt(rid):
        bundle, _ = spoke_bundle(SPOKE_B, HUB)
        task = _takeover(stack, "Task", a_data["Task"])
        task["id"] = rid
        bundle["entry"].append(
            {"resource": task, "request": {"method": "PUT", "url": _form(form, stack, "Task", rid)}}
        )
        return _raw(stack, b, "POST", "", FHIR_JSON, json.dumps(bundle).encode())

    theirs, missing = attempt(a_data["Task"]), attempt(MISSING)
    assert theirs[0] >= 400
    _same(theirs, missing, a_data["Task"])
    assert _version(stack, "Task", a_data["Task"]) == versions["Task"]


REFERENCE_FORMS = [
    "{t}/{id}",
    "{t}/{id}/_history/1",
    "{base}/{t}/{id}",
    "{store}/{t}/{id}",
    "{store_localhost}/{t}/{id}",
]


@pytest.mark.parametrize("form", REFERENCE_FORMS)
@pytest.mark.parametrize("where", ["direct", "transaction"])
@pytest.mark.parametrize("rtype", ["Patient", "MedicationRequest"])
def test_a_write_naming_another_tenants_resource_is_one_naming_a_missing_resource(
    stack, b, a_data, rtype, where, form
):
    field = "for" if rtype == "Patient" else "focus"
    store = stack.store_url
    bases = {"base": stack.fhir, "store": store, "store_localhost": store.replace("127.0.0.1", "localhost")}

    def ref(rid):
        return form.format(t=rtype, id=rid, **bases)

    def attempt(rid):
        task = {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "requester": {"identifier": {"system": ODS, "value": SPOKE_B}},
            field: {"reference": ref(rid)},
        }
        if where == "direct":
            return _raw(stack, b, "POST", "Task", FHIR_JSON, json.dumps(task).encode())
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": task, "request": {"method": "POST", "url": "Task"}}],
        }
        return _raw(stack, b, "POST", "", FHIR_JSON, json.dumps(bundle).encode())

    theirs, missing = attempt(a_data[rtype]), attempt(MISSING)
    assert theirs[0] == 400
    _same(theirs, missing, a_data[rtype])


def test_a_conditional_reference_matches_only_the_callers_own(stack, a, b):
    system = "https://fhirplug.test/patient-id"
    theirs_value, missing_value = uuid.uuid4().hex, uuid.uuid4().hex
    patient = {"resourceType": "Patient", "identifier": [{"system": system, "value": theirs_value}]}
    assert a.post(f"{stack.fhir}/Patient", json=patient, headers=FHIR_JSON).status_code == 201

    def attempt(value):
        task = {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "requester": {"identifier": {"system": ODS, "value": SPOKE_B}},
            "for": {"reference": f"Patient?identifier={system}|{value}"},
        }
        return _raw(stack, b, "POST", "Task", FHIR_JSON, json.dumps(task).encode())

    theirs, missing = attempt(theirs_value), attempt(missing_value)
    assert theirs[0] == missing[0] and theirs[0] >= 400
    assert theirs[2] == missing[2].replace(missing_value.encode(), theirs_value.encode())


# ---------------------------------------------------------------- search oracles


@pytest.mark.parametrize(
    "param",
    [
        ("patient.family", "Smith"),
        ("subject:Patient.name", "Smith"),
        ("patient:Patient.identifier", "x|y"),
        ("_has:Task:patient:status", "requested"),
        ("_filter", "status eq requested"),
        ("_list", "1"),
        ("_query", "x"),
    ],
)
@pytest.mark.parametrize("where", ["direct", "post-search", "batch"])
def test_chains_and_has_are_refused_to_tenants(stack, b, param, where):
    name, value = param
    rtype = "Patient" if name.startswith("_has") else "Task"
    if where == "direct":
        r = b.get(f"{stack.fhir}/{rtype}", params={name: value})
        expression = name
    elif where == "post-search":
        r = b.post(f"{stack.fhir}/{rtype}/_search", data={name: value})
        expression = name
    else:
        url = f"{rtype}?{urlencode({name: value})}"
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": url}}],
        }
        r = b.post(stack.fhir, json=bundle, headers=FHIR_JSON)
        expression = "Bundle.entry[0].request.url"
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == [expression]


def test_a_search_inside_a_bundle_is_a_get(stack, b):
    """A POST search entry would take its criteria from somewhere the narrowing does not reach."""
    entry = {"request": {"method": "POST", "url": "Task/_search"}, "resource": {"resourceType": "Parameters"}}
    r = b.post(
        stack.fhir, json={"resourceType": "Bundle", "type": "batch", "entry": [entry]}, headers=FHIR_JSON
    )
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Bundle.entry[0].request.url"]


@pytest.mark.parametrize("how", ["param", "header", "form"])
def test_method_overrides_are_refused(stack, b, a_data, versions, how):
    rid = a_data["Patient"]
    if how == "param":
        r = b.get(f"{stack.fhir}/Patient/{rid}", params={"_method": "DELETE"})
    elif how == "header":
        r = b.post(f"{stack.fhir}/Patient/_search", headers={"X-HTTP-Method-Override": "DELETE"})
    else:
        r = b.post(f"{stack.fhir}/Patient/_search", data={"_method": "DELETE"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert _version(stack, "Patient", rid) == versions["Patient"]


# ---------------------------------------------------------------- what the owner gets


@pytest.mark.parametrize("rtype", TYPES)
def test_the_owner_gets_the_xml_the_store_would_have_written(stack, a, a_data, rtype):
    ours = a.get(f"{stack.fhir}/{rtype}/{a_data[rtype]}", params={"_format": "xml"})
    assert ours.status_code == 200 and ours.headers["Content-Type"].startswith("application/fhir+xml")
    store = requests.get(
        f"{stack.store_url}/{rtype}/{a_data[rtype]}", params={"_format": "xml"}, auth=store_auth()
    )
    assert _tree(ours.content) == _tree(store.content.replace(stack.store_url.encode(), stack.fhir.encode()))


def _tree(data: bytes):
    def walk(el):
        return (el.tag, sorted(el.attrib.items()), (el.text or "").strip(), [walk(c) for c in el])

    return walk(ET.fromstring(data))


def test_the_owner_reads_and_searches_in_xml(stack, a, a_data):
    r = a.get(
        f"{stack.fhir}/Task",
        params={"_id": a_data["Task"], "_include": "Task:patient"},
        headers={"Accept": "application/fhir+xml"},
    )
    root = ET.fromstring(r.content)
    assert root.tag == f"{FHIR_NS}Bundle"
    types = {res[0].tag for res in root.iter(f"{FHIR_NS}resource")}
    assert types == {f"{FHIR_NS}Task", f"{FHIR_NS}Patient"}


# ---------------------------------------------------------------- the switch for the security tests


def test_with_the_proxy_checks_off_writes_are_still_labelled(stack):
    fhir, _ = stack.start_proxy({"FHIRPLUG_TENANCY_PROXY_CHECKS": "off"})
    session = stack.session(fhir_base=fhir, client=stack.client("sec-spoke-b", "spoke", SPOKE_B))
    r = session.post(f"{fhir}/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    pid = r.headers["Location"].split("/_history")[0].split("/")[-1]
    stored = requests.get(
        f"{stack.store_url}/Patient/{pid}", headers={"Accept": "application/fhir+json"}, auth=store_auth()
    ).json()
    assert {"system": TENANT, "code": SPOKE_B} in stored["meta"]["security"]
    # and the switch is read: the proxy line does not refuse what it refuses when on
    r = session.get(f"{fhir}/Task", params={"patient.family": f"x{uuid.uuid4().hex[:6]}"})
    assert r.status_code != 400 or "not open to tenant clients" not in r.text
