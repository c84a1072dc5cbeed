"""The pass-through's steps (plan, storage hooks, upstream request, relay), each with the fake store."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
import urllib3

from proxy.auth.scopes import ScopeSet
from proxy.context import Client, Interaction, RequestContext, make_request_view
from proxy.errors import FhirError
from proxy.fhir_routes import CHUNK, FhirPassthrough
from proxy.response import ProxyResponse
from proxy.store_caller import CALLER_KEY, caller_of
from proxy.store_reader import StoreReader
from tests.support.fake_store import BASE, PUBLIC_BASE, FakeStore

JSON = "application/fhir+json"


class Hooks:
    """A plugin manager's ``hook`` whose storage hooks run the functions a test gives."""

    def __init__(self, before_bundle=None, before_storage=None, after_storage=None):
        self.before_bundle_calls: list[dict] = []
        self._before_bundle, self._before_storage = before_bundle, before_storage
        self._after_storage = after_storage
        self.after_storage_calls: list[tuple] = []

    def fhirplug_before_bundle(self, ctx, bundle):
        self.before_bundle_calls.append(bundle)
        return self._before_bundle(ctx, bundle) if self._before_bundle else None

    def fhirplug_before_storage(self, ctx, entry):
        return self._before_storage(ctx, entry) if self._before_storage else None

    def fhirplug_after_storage(self, ctx, entry, outcome):
        self.after_storage_calls.append((entry, outcome))
        if self._after_storage:
            self._after_storage(ctx, entry, outcome)


def passthrough(store: FakeStore | None = None, **hooks) -> FhirPassthrough:
    pm = SimpleNamespace(hook=Hooks(**hooks))
    return FhirPassthrough(pm, store or FakeStore(), max_body_bytes=1_000_000)


def context(
    kind: str,
    method: str,
    path: str = "",
    *,
    headers: dict[str, str] | None = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str | None = JSON,
    store: FakeStore | None = None,
) -> RequestContext:
    resource_type, _, resource_id = path.partition("/")
    view = make_request_view(
        method, f"/fhir/{path}", path, query or [], headers or {}, content_type, "10.0.0.1"
    )
    ctx = RequestContext(view, Interaction(kind, method, resource_type or None, resource_id or None))
    ctx.client = Client("spoke-1", "A1", "spoke", ScopeSet.parse("system/*.*"))
    ctx.public_base = PUBLIC_BASE
    ctx.store = StoreReader(store or FakeStore())
    return ctx


def raw(doc) -> bytes:
    return json.dumps(doc).encode()


def transaction(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def put_patient(pid: str, family: str = "Smith") -> dict:
    return {
        "resource": {"resourceType": "Patient", "id": pid, "name": [{"family": family}]},
        "request": {"method": "PUT", "url": f"Patient/{pid}"},
    }


def answer(status=200, body: bytes = b"{}", headers: dict | None = None):
    return urllib3.HTTPResponse(
        body=io.BytesIO(body),
        status=status,
        preload_content=False,
        headers={"Content-Type": "application/fhir+json;charset=UTF-8", **(headers or {})},
    )


# ------------------------------------------------------------------ plan


def test_plan_reads_a_create_as_one_entry_with_the_callers_if_none_exist():
    ctx = context("create", "POST", "Patient", headers={"If-None-Exist": "identifier=x|1"})
    plan = passthrough()._plan(ctx, raw({"resourceType": "Patient"}), None)
    assert [(e.method, e.url, e.if_none_exist) for e in plan.entries] == [
        ("POST", "Patient", "identifier=x|1")
    ]
    assert plan.kind == "create" and ctx.body == {"resourceType": "Patient"}


def test_plan_refuses_a_create_without_a_body():
    with pytest.raises(FhirError) as refused:
        passthrough()._plan(context("create", "POST", "Patient"), b"  ", None)
    assert refused.value.status == 400


def test_plan_reads_a_transaction_once_its_bundle_hook_has_run():
    def add_entry(ctx, bundle):
        bundle["entry"].append(put_patient("2"))

    ctx = context("transaction", "POST")
    fhir = passthrough(before_bundle=add_entry)
    plan = fhir._plan(ctx, raw(transaction(put_patient("1"))), None)
    assert [(e.url, e.index) for e in plan.entries] == [("Patient/1", 0), ("Patient/2", 1)]
    assert plan.judged == [("PUT", "Patient/1"), ("PUT", "Patient/2")]
    assert ctx.interaction.kind == plan.kind == "transaction"


def test_plan_accepts_an_entry_url_under_the_public_base_in_canonical_form():
    entry = put_patient("1")
    entry["request"]["url"] = f"{PUBLIC_BASE}/Patient/1"
    plan = passthrough()._plan(context("transaction", "POST"), raw(transaction(entry)), None)
    assert plan.entries[0].url == "Patient/1"


def test_plan_is_answered_by_a_bundle_hook_without_the_store():
    earlier = ProxyResponse(200, {}, (b"{}",))
    store = FakeStore()
    fhir = passthrough(store, before_bundle=lambda ctx, bundle: earlier)
    assert fhir.handle(context("transaction", "POST"), raw(transaction(put_patient("1"))), None) is earlier
    assert store.calls == []


def test_plan_of_a_read_has_no_entries():
    plan = passthrough()._plan(context("read", "GET", "Patient/1", content_type=None), b"", None)
    assert plan.entries == [] and not plan.has_body


# ------------------------------------------------------------------ storage hooks


def test_a_storage_refusal_in_a_bundle_names_the_entry():
    def refuse(ctx, entry):
        raise FhirError(403, "not yours", ["Patient.name"])

    fhir = passthrough(before_storage=refuse)
    ctx = context("transaction", "POST")
    plan = fhir._plan(ctx, raw(transaction(put_patient("1"), put_patient("2"))), None)
    with pytest.raises(FhirError) as refused:
        fhir._run_storage_hooks(ctx, plan.entries)
    assert refused.value.status == 403
    assert "Bundle.entry[0].resource.name" in json.dumps(refused.value.to_resource())


def test_a_storage_hook_returning_something_odd_is_a_server_error():
    fhir = passthrough(before_storage=lambda ctx, entry: "no")
    ctx = context("create", "POST", "Patient")
    plan = fhir._plan(ctx, raw({"resourceType": "Patient"}), None)
    with pytest.raises(FhirError) as refused:
        fhir._run_storage_hooks(ctx, plan.entries)
    assert refused.value.status == 500


# ------------------------------------------------------------------ upstream request


def test_upstream_request_signs_the_caller_and_withholds_what_tenancy_withholds():
    ctx = context(
        "search-type",
        "GET",
        "Patient",
        headers={"Accept": JSON, "X-Fhirplug-Caller": "forged", "Prefer": "x"},
        query=[("name", "x"), ("_format", "xml")],
        content_type=None,
    )
    ctx.upstream_headers = {"Prefer": None, "X-Request-ID": "r1"}
    ctx.upstream_query_withheld = {"_format"}
    ctx.upstream_query = [("_security", f"{PUBLIC_BASE}/x")]
    fhir = passthrough()
    method, path, query, headers, data = fhir._upstream_request(ctx, fhir._plan(ctx, b"", None))
    assert (method, path, data) == ("GET", "Patient", None)
    assert query == [("name", "x"), ("_security", f"{BASE}/x")]
    assert headers[CALLER_KEY] == caller_of("spoke", "A1")
    assert "prefer" not in headers and headers["x-request-id"] == "r1"


def test_upstream_request_sends_the_stores_base_in_the_body():
    ctx = context("create", "POST", "Observation")
    doc = {"resourceType": "Observation", "subject": {"reference": f"{PUBLIC_BASE}/Patient/1"}}
    fhir = passthrough()
    *_, headers, data = fhir._upstream_request(ctx, fhir._plan(ctx, raw(doc), None))
    assert json.loads(data)["subject"]["reference"] == f"{BASE}/Patient/1"
    assert headers["content-type"] == "application/fhir+json; charset=utf-8"


def test_upstream_request_follows_a_hook_that_narrows_a_conditional_url():
    def narrow(ctx, entry):
        entry.url = "Patient?identifier=x|1&_security=t|A1"
        entry.if_match = 'W/"3"'

    fhir = passthrough(before_storage=narrow)
    ctx = context("update", "PUT", "Patient", query=[("identifier", "x|1")])
    plan = fhir._plan(ctx, raw({"resourceType": "Patient"}), None)
    fhir._run_storage_hooks(ctx, plan.entries)
    method, path, query, headers, _ = fhir._upstream_request(ctx, plan)
    assert (method, path, query) == ("PUT", "Patient", [("identifier", "x|1"), ("_security", "t|A1")])
    assert headers["if-match"] == 'W/"3"'


def test_upstream_request_sends_a_patch_a_hook_turned_into_a_put():
    task = {"resourceType": "Task", "id": "1", "status": "completed"}

    def to_put(ctx, entry):
        entry.method, entry.resource = "PUT", task

    fhir = passthrough(before_storage=to_put)
    ctx = context("patch", "PATCH", "Task/1", content_type="application/json-patch+json")
    plan = fhir._plan(ctx, raw([{"op": "replace", "path": "/status", "value": "completed"}]), None)
    fhir._run_storage_hooks(ctx, plan.entries)
    method, path, _, headers, data = fhir._upstream_request(ctx, plan)
    assert (method, path, json.loads(data)) == ("PUT", "Task/1", task)
    assert headers["content-type"] == "application/fhir+json; charset=utf-8"


def test_upstream_request_serialises_bundle_entries_as_the_hooks_left_them():
    def narrow(ctx, entry):
        entry.url, entry.if_match = "Patient/9", 'W/"2"'

    fhir = passthrough(before_storage=narrow)
    ctx = context("transaction", "POST")
    plan = fhir._plan(ctx, raw(transaction(put_patient("1"))), None)
    fhir._run_storage_hooks(ctx, plan.entries)
    method, path, query, _, data = fhir._upstream_request(ctx, plan)
    assert (method, path, query) == ("POST", "", [])
    assert json.loads(data)["entry"][0]["request"] == {
        "method": "PUT",
        "url": "Patient/9",
        "ifMatch": 'W/"2"',
    }
    assert ctx.body["entry"][0]["request"]["url"] == "Patient/1"  # the caller's body, as judged


def test_upstream_request_sends_a_search_form_as_it_came():
    ctx = context("search-type", "POST", "Patient/_search", content_type="application/x-www-form-urlencoded")
    fhir = passthrough()
    plan = fhir._plan(ctx, b"name=smith", None)
    method, path, _, headers, data = fhir._upstream_request(ctx, plan)
    assert (method, path, data) == ("POST", "Patient/_search", b"name=smith")
    assert "content-type" not in headers  # ours is set only for a JSON body; the caller's passes


def validate_context(body_type: str = JSON) -> RequestContext:
    ctx = context("operation", "POST", "Patient/$validate", content_type=body_type)
    ctx.interaction = Interaction("operation", "POST", "Patient", None, operation="$validate")
    return ctx


def test_upstream_request_sends_validate_the_callers_bytes_so_line_numbers_hold():
    ctx = validate_context()
    sent = b'{\n  "resourceType": "Patient",\n  "gender": "male"\n}\n'
    fhir = passthrough()
    *_, data = fhir._upstream_request(ctx, fhir._plan(ctx, sent, None))
    assert data == sent


def test_upstream_request_sends_validate_what_a_plugin_put_in_its_place():
    ctx = validate_context()
    ctx.upstream_body = (b'{"resourceType":"Parameters"}', "application/fhir+json")
    fhir = passthrough()
    *_, headers, data = fhir._upstream_request(ctx, fhir._plan(ctx, b'{"resourceType":"Patient"}', None))
    assert (data, headers["content-type"]) == (b'{"resourceType":"Parameters"}', "application/fhir+json")


# ------------------------------------------------------------------ relay


def test_relay_reports_a_stale_if_match_as_412():
    ctx = context("update", "PUT", "Patient/1", headers={"If-Match": 'W/"1"'})
    response = passthrough()._relay(ctx, [], answer(409), {})
    assert response.status == 412


def test_relay_reports_a_hooks_stale_if_match_as_412():
    response = passthrough()._relay(context("update", "PUT", "Patient/1"), [], answer(409), {"if-match": "x"})
    assert response.status == 412


def test_relay_keeps_a_409_without_if_match():
    assert passthrough()._relay(context("update", "PUT", "Patient/1"), [], answer(409), {}).status == 409


def test_relay_rewrites_the_stores_base_to_the_public_one():
    body = json.dumps({"fullUrl": f"{BASE}/Patient/1"}).encode()
    upstream = answer(201, body, {"Location": f"{BASE}/Patient/1/_history/1"})
    response = passthrough()._relay(context("read", "GET", "Patient/1"), [], upstream, {})
    assert response.headers["Location"] == f"{PUBLIC_BASE}/Patient/1/_history/1"
    assert b"".join(response.iter_body()) == body.replace(BASE.encode(), PUBLIC_BASE.encode())
    assert response.headers["Content-Length"] == str(len(b"".join(response.iter_body())))


def test_relay_streams_a_large_answer():
    body = b"x" * (CHUNK * 3)
    response = passthrough()._relay(context("search-type", "GET", "Patient"), [], answer(200, body), {})
    assert "Content-Length" not in response.headers
    assert b"".join(response.iter_body()) == body


def test_relay_tells_the_after_storage_hooks_and_survives_their_failure():
    def fail(ctx, entry, outcome):
        raise RuntimeError("boom")

    fhir = passthrough(after_storage=fail)
    ctx = context("create", "POST", "Patient")
    plan = fhir._plan(ctx, raw({"resourceType": "Patient"}), None)
    upstream = answer(201, b'{"resourceType":"Patient","id":"7"}', {"Location": f"{BASE}/Patient/7"})
    response = fhir._relay(ctx, plan.entries, upstream, {})
    assert response.status == 201
    [(_, outcome)] = fhir.pm.hook.after_storage_calls
    assert outcome.status == 201 and outcome.location == f"{PUBLIC_BASE}/Patient/7"


def test_handle_runs_the_steps_in_order_against_the_store():
    store = FakeStore(status=201)
    ctx = context("create", "POST", "Patient")
    response = passthrough(store).handle(ctx, raw({"resourceType": "Patient"}), None)
    assert response.status == 201
    [call] = store.calls
    assert (call["method"], call["path"], call["body"]) == ("POST", "Patient", {"resourceType": "Patient"})
    assert call["headers"][CALLER_KEY] == caller_of("spoke", "A1")
