"""Spoke B attacks spoke A's data, by every route the issue found open, through each line alone.

Each attack runs against:

- ``proxy``: the proxy as deployed (its own checks, then the store's);
- ``proxy-checks-off``: a proxy with ``FHIRPLUG_TENANCY_PROXY_CHECKS=off`` (it still labels what
  tenants write, but narrows, filters and refuses nothing), so only the store's line holds;
- ``store``: the store itself, sent exactly what a proxy with no tenancy checks at all would send
  for spoke B (B's signed caller assertion, B's labels on what B writes), so the store-side line
  is proved to stop every attack on its own.

and, where a representation matters, in JSON, XML (by ``_format`` and by ``Accept``), Turtle and
``_summary=text``. A leak is any of A's data in an answer: A's ODS code (in A's labels and
Organization) or the identifier of A's Task, neither of which B's own requests ever carry.
"""

from __future__ import annotations

import uuid

import pytest
import requests

from proxy.store_caller import HEADER, CallerSigner, secret_from_env
from tests.support.tenants import SPOKE_A, SPOKE_B, submit

pytestmark = [pytest.mark.integration, pytest.mark.security]
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
TENANT = "https://fhirplug.org/fhir/CodeSystem/tenant"
FORMATS = {
    "json": ({"_format": "json"}, {}),
    "xml": ({"_format": "xml"}, {}),
    "xml-accept": ({}, {"Accept": "application/fhir+xml"}),
    "ttl": ({"_format": "ttl"}, {}),
    "summary-text": ({"_summary": "text"}, {}),
}
# entry URLs the store reads as A's resource, however the proxy might read them
ENTRY_FORMS = ["{t}/{id}", "/{t}/{id}", "{t}/{id}?", "/{t}/{id}?", "./{t}/{id}", "{t}/{id}/"]


class _AsCaller(requests.auth.AuthBase):
    """What a proxy sends the store for a relayed request: a fresh signed caller assertion."""

    def __init__(self, role: str, ods: str):
        self.signer, self.role, self.ods = CallerSigner(secret_from_env()), role, ods

    def __call__(self, r):
        r.headers[HEADER] = self.signer.header(self.role, self.ods)
        return r


class Route:
    def __init__(self, name: str, base: str, session: requests.Session, labels: bool):
        self.name, self.base, self.http = name, base, session
        self.labels = labels  # True: B's writes must carry B's label, as the proxy would set it

    def label(self, resource: dict) -> dict:
        if self.labels:
            resource.setdefault("meta", {})["security"] = [{"system": TENANT, "code": SPOKE_B}]
        return resource


@pytest.fixture(scope="module")
def a(stack):
    return stack.session(client=stack.client("spoke-a", "spoke", SPOKE_A))


@pytest.fixture(scope="module")
def a_data(stack, a):
    """A's message as stored, and A's Task as A reads it."""
    ids = submit(stack, a, SPOKE_A)
    submit(stack, a, SPOKE_A)  # a second Task: A's searches have a second page
    task = a.get(f"{stack.fhir}/Task/{ids['Task']}").json()
    return ids, task


@pytest.fixture(scope="module")
def unchecked_proxy(stack) -> str:
    """A proxy on the same store with its own tenancy checks off: only the store's line holds."""
    fhir, _ = stack.start_proxy({"FHIRPLUG_TENANCY_PROXY_CHECKS": "off"})
    return fhir


@pytest.fixture(scope="module", params=["proxy", "proxy-checks-off", "store"])
def route(request, stack):
    if request.param == "proxy":
        s = stack.session(client=stack.client("spoke-b", "spoke", SPOKE_B))
        yield Route("proxy", stack.fhir, s, labels=False)
    elif request.param == "proxy-checks-off":
        base = request.getfixturevalue("unchecked_proxy")
        s = stack.session(base, client=stack.client("spoke-b", "spoke", SPOKE_B))
        yield Route("proxy-checks-off", base, s, labels=False)
    else:
        s = requests.Session()
        s.auth = _AsCaller("spoke", SPOKE_B)
        s.headers["Accept"] = "application/fhir+json"
        yield Route("store", stack.store_url, s, labels=True)
    s.close()


def leaks(r: requests.Response, tid: str) -> bool:
    return SPOKE_A in r.text or tid in r.text


def unknown_id() -> str:
    return uuid.uuid4().hex[:20]


def alike(known: requests.Response, unknown: requests.Response, known_id: str, other_id: str) -> bool:
    """The two answers say the same, but for the id each was asked about."""
    return known.status_code == unknown.status_code and known.text.replace(known_id, "ID") == (
        unknown.text.replace(other_id, "ID")
    )


# ---------------------------------------------------------------- reads in any representation


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_of_another_tenants_task_answers_as_an_unknown_id(route, a_data, fmt):
    (ids, _task), (params, headers) = a_data, FORMATS[fmt]
    tid = ids["identifier"]
    r = route.http.get(f"{route.base}/Task/{ids['Task']}", params=params, headers=headers)
    assert not leaks(r, tid) and r.status_code in (404, 406), (route.name, fmt, r.status_code, r.text[:300])
    other = unknown_id()
    u = route.http.get(f"{route.base}/Task/{other}", params=params, headers=headers)
    assert alike(r, u, ids["Task"], other)


@pytest.mark.parametrize("fmt", FORMATS)
def test_vread_and_instance_history_of_another_tenants_task_reveal_nothing(route, a_data, fmt):
    (ids, _task), (params, headers) = a_data, FORMATS[fmt]
    for path in (f"Task/{ids['Task']}/_history/1", f"Task/{ids['Task']}/_history"):
        r = route.http.get(f"{route.base}/{path}", params=params, headers=headers)
        assert not leaks(r, ids["identifier"]), (route.name, fmt, path, r.text[:300])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "path,query",
    [
        ("Task", {"_id": "{Task}"}),
        ("Task/_history", {}),
        ("_history", {}),
        ("Patient", {"_id": "{Patient}", "_revinclude": "Task:patient"}),
        ("MedicationRequest", {"_include": "MedicationRequest:subject"}),
        ("Task", {"_include": "*", "_revinclude": "*"}),
        ("", {"_type": "Task,Patient"}),
    ],
)
def test_searches_and_histories_never_carry_another_tenants_resources(route, a_data, fmt, path, query):
    (ids, _task), (params, headers) = a_data, FORMATS[fmt]
    q = {k: v.format(**ids) for k, v in query.items()} | params
    url = f"{route.base}/{path}" if path else route.base  # "": a search across types
    r = route.http.get(url, params=q, headers=headers)
    assert r.status_code < 500 and not leaks(r, ids["identifier"]), (route.name, fmt, path, r.text[:300])


def test_another_tenants_page_link_shows_nothing_of_theirs(route, stack, a, a_data):
    ids, _ = a_data
    page = a.get(f"{stack.fhir}/Task", params={"_count": "1"}).json()
    nxt = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
    assert nxt, "A has more than one Task: a second page exists"
    query = nxt[0].split("?", 1)[1]
    for fmt in ("json", "xml"):
        r = route.http.get(f"{route.base}?{query}", params={"_format": fmt})
        assert not leaks(r, ids["identifier"]), (route.name, fmt, r.text[:300])


@pytest.mark.parametrize("form", ENTRY_FORMS)
def test_a_batch_read_of_another_tenants_task_answers_in_place_as_unknown(route, a_data, form):
    ids, _ = a_data
    url = form.format(t="Task", id=ids["Task"])
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": url}}]}
    r = route.http.post(route.base, json=batch, headers=FHIR_JSON)
    assert not leaks(r, ids["identifier"]), (route.name, form, r.text[:300])
    if r.status_code == 200:
        assert r.json()["entry"][0]["response"]["status"].startswith("404")
    else:
        assert r.status_code in (400, 403) and r.json()["resourceType"] == "OperationOutcome"


# ---------------------------------------------------------------- writes by any entry URL form


def still_there(stack, a, rtype: str, rid: str, version: str | None = None) -> None:
    r = a.get(f"{stack.fhir}/{rtype}/{rid}")
    assert r.status_code == 200, f"A's {rtype}/{rid} is gone: {r.status_code} {r.text[:200]}"
    if version is not None:
        assert r.json()["meta"]["versionId"] == version, f"A's {rtype}/{rid} was changed"


@pytest.mark.parametrize("btype", ["batch", "transaction"])
@pytest.mark.parametrize("form", ENTRY_FORMS)
def test_another_tenants_patient_cannot_be_deleted_by_any_entry_url_form(
    route, stack, a, a_data, btype, form
):
    ids, _ = a_data
    url = form.format(t="Patient", id=ids["Patient"])
    bundle = {
        "resourceType": "Bundle",
        "type": btype,
        "entry": [{"request": {"method": "DELETE", "url": url}}],
    }
    r = route.http.post(route.base, json=bundle, headers=FHIR_JSON)
    assert r.status_code < 500, r.text[:300]
    still_there(stack, a, "Patient", ids["Patient"])


@pytest.mark.parametrize("btype", ["batch", "transaction"])
@pytest.mark.parametrize("form", ENTRY_FORMS)
def test_another_tenants_task_cannot_be_taken_over_by_any_entry_url_form(
    route, stack, a, a_data, btype, form
):
    ids, task = a_data
    url = form.format(t="Task", id=ids["Task"])
    mine = route.label(
        {
            "resourceType": "Task",
            "id": ids["Task"],
            "status": "cancelled",
            "intent": "order",
            "requester": {
                "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": SPOKE_B}
            },
        }
    )
    bundle = {
        "resourceType": "Bundle",
        "type": btype,
        "entry": [{"resource": mine, "request": {"method": "PUT", "url": url}}],
    }
    r = route.http.post(route.base, json=bundle, headers=FHIR_JSON)
    assert r.status_code < 500 and not leaks(r, ids["identifier"]), r.text[:300]
    still_there(stack, a, "Task", ids["Task"], task["meta"]["versionId"])


def test_another_tenants_task_cannot_be_patched_or_deleted_directly(route, stack, a, a_data):
    ids, task = a_data
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    as_patch = {"Content-Type": "application/json-patch+json"}
    r = route.http.patch(f"{route.base}/Task/{ids['Task']}", json=patch, headers=as_patch)
    other = unknown_id()
    u = route.http.patch(f"{route.base}/Task/{other}", json=patch, headers=as_patch)
    assert r.status_code >= 400 and not leaks(r, ids["identifier"]), (r.status_code, r.text[:200])
    d = route.http.delete(f"{route.base}/Task/{ids['Task']}")
    du = route.http.delete(f"{route.base}/Task/{other}")
    assert not leaks(d, ids["identifier"])
    still_there(stack, a, "Task", ids["Task"], task["meta"]["versionId"])
    if route.name != "proxy-checks-off":
        # each line answers for another's id what it answers for a missing one; with the proxy's
        # checks off, its own hub-and-spoke rules (which read as the proxy) still answer first
        assert alike(r, u, ids["Task"], other), (r.status_code, r.text[:200], u.text[:200])
    if route.name == "proxy":
        # the store alone answers another's id 404 where a missing id's delete "succeeds" (200):
        # the proxy asks the store about an id it never held, so the two read the same
        assert d.status_code == du.status_code, (d.status_code, d.text[:200], du.text[:200])


# ---------------------------------------------------------------- oracles


def test_a_chained_search_through_own_resources_cannot_probe_another_tenants_data(route, a_data):
    ids, _ = a_data
    family = "Mouser"  # the example patient's family name: a right guess about A's Patient
    right = route.http.get(f"{route.base}/Task", params={"patient.family": family})
    wrong = route.http.get(f"{route.base}/Task", params={"patient.family": "Zz" + uuid.uuid4().hex[:8]})
    assert right.status_code == wrong.status_code and right.status_code < 500
    if right.status_code == 200:
        assert right.json().get("total") == wrong.json().get("total") == 0
    else:
        assert right.json()["resourceType"] == "OperationOutcome"


def test_has_cannot_probe_another_tenants_data(route, a_data):
    ids, _ = a_data
    right = route.http.get(f"{route.base}/Patient", params={"_has:Task:patient:_id": ids["Task"]})
    wrong = route.http.get(f"{route.base}/Patient", params={"_has:Task:patient:_id": unknown_id()})
    assert right.status_code == wrong.status_code and right.status_code < 500
    assert not leaks(right, ids["identifier"])
    if right.status_code == 200:
        assert right.json().get("total") == wrong.json().get("total") == 0


@pytest.mark.parametrize(
    "header", [{"If-None-Match": 'W/"{v}"'}, {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}]
)
def test_a_conditional_read_of_another_tenants_task_answers_as_an_unknown_id(route, a_data, header):
    ids, task = a_data
    h = {k: v.format(v=task["meta"]["versionId"]) for k, v in header.items()}
    r = route.http.get(f"{route.base}/Task/{ids['Task']}", headers=h)
    other = unknown_id()
    u = route.http.get(f"{route.base}/Task/{other}", headers=h)
    assert r.status_code == 404 and alike(r, u, ids["Task"], other), (r.status_code, r.text[:200])


# ---------------------------------------------------------------- the assertion itself


def test_the_store_answers_nothing_without_the_proxys_assertion(stack, a_data):
    ids, _ = a_data
    assert requests.get(f"{stack.store_url}/metadata", params={"_summary": "true"}).status_code == 200
    bare = requests.get(f"{stack.store_url}/Task/{ids['Task']}")
    assert bare.status_code == 401 and ids["identifier"] not in bare.text


@pytest.mark.parametrize(
    "forged",
    [
        "v1;admin;;{now};AAAA",
        "v1;spoke;" + SPOKE_A + ";{now};",
        "garbage",
        "v1;admin;;{old};{sig_old}",
        "v1;admin;;{now};{sig_other_key}",
    ],
)
def test_a_forged_or_stale_assertion_is_refused(stack, a_data, forged):
    import time

    ids, _ = a_data
    now, old = int(time.time()), int(time.time()) - 3600
    signer = CallerSigner(secret_from_env())
    value = forged.format(
        now=now,
        old=old,
        sig_old=signer.header("admin", "", now=old).rsplit(";", 1)[1],
        sig_other_key=CallerSigner("x" * 40).header("admin", "", now=now).rsplit(";", 1)[1],
    )
    r = requests.get(f"{stack.store_url}/Task/{ids['Task']}", headers={HEADER: value})
    assert r.status_code == 401 and ids["identifier"] not in r.text


def test_a_caller_cannot_assert_an_identity_through_the_proxy(stack, a_data):
    ids, _ = a_data
    b = stack.session(client=stack.client("spoke-b", "spoke", SPOKE_B))
    forged = CallerSigner(secret_from_env()).header("admin")  # even a correctly signed one
    r = b.get(f"{stack.fhir}/Task/{ids['Task']}", headers={HEADER: forged})
    assert r.status_code == 404 and not leaks(r, ids["identifier"])
