"""EPS return and withdraw served by the proxy: which Task writes are taken, the body, the answer.
``eps.task_return`` rules are tested in tests/unit/eps; here the wiring is, plus one return
through the plugin onto the in-memory store."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from eps.lifecycle import Conflict
from eps.records import BusinessStatus, business_status
from plugins import eps_task as plugin_module
from plugins.eps_task import EpsTask
from proxy.config import DEFAULT_PLUGINS
from proxy.context import Client
from proxy.errors import FhirError
from proxy.response import ProxyResponse
from tests.support.eps_lifecycle import RETURN, MemoryStore, example, new_prescription, released
from tests.support.plugin_context import request_context

PHARMACY = Client("pharmacy-fa565", "FA565", "dispenser")
FHIR_JSON = "application/fhir+json"


@pytest.fixture
def handled(monkeypatch):
    """Replaces eps.task_return.handle in the plugin; records what it was given."""
    calls: list[tuple] = []

    def fake(task, sender, store, now):
        calls.append((task, sender, store, now))
        return {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational"}],
        }

    monkeypatch.setattr(plugin_module.task_return, "handle", fake)
    return calls


def call(
    body: bytes | dict | None = None, *, client: Client = PHARMACY, kind="create", method="POST", store=None
):
    ctx = request_context(kind, method, "Task", client=client)
    ctx.request = replace(ctx.request, content_type=FHIR_JSON)
    raw = (
        body
        if isinstance(body, bytes)
        else json.dumps(body if body is not None else example(RETURN)).encode()
    )
    ctx.body_source = lambda: raw
    if store is not None:
        ctx.store = store
    return EpsTask().fhirplug_request(ctx=ctx)


def test_a_dispensers_task_is_served_here_with_epss_answer(handled):
    answer = call()
    assert isinstance(answer, ProxyResponse) and answer.status == 200
    assert answer.resource["issue"][0]["code"] == "informational"
    ((task, sender, _, now),) = handled
    assert task == example(RETURN) and (sender.client_id, sender.role, sender.ods) == (
        "pharmacy-fa565",
        "dispenser",
        "FA565",
    )
    assert now.tzinfo is not None


@pytest.mark.parametrize("role", ["spoke", "hub", "admin", "prescriber", "reader"])
def test_other_roles_tasks_pass_on_to_the_hub_and_spoke_plugins(handled, role):
    assert call(client=Client("x", "FA565", role)) is None and handled == []


@pytest.mark.parametrize(
    ("kind", "method"), [("update", "PUT"), ("patch", "PATCH"), ("read", "GET"), ("search-type", "GET")]
)
def test_only_task_creation_is_taken(handled, kind, method):
    assert call(kind=kind, method=method) is None and handled == []


def test_malformed_json_is_a_400_at_the_task(handled):
    with pytest.raises(FhirError) as err:
        call(b'{"resourceType": "Task",')
    assert err.value.status == 400 and err.value.expression == ["Task"] and handled == []


def test_an_empty_body_is_a_400(handled):
    with pytest.raises(FhirError) as err:
        call(b" ")
    assert err.value.status == 400


def test_a_race_is_a_409_the_caller_may_retry(monkeypatch):
    def racing(task, sender, store, now):
        raise Conflict("X")

    monkeypatch.setattr(plugin_module.task_return, "handle", racing)
    with pytest.raises(Conflict) as err:
        call()
    assert err.value.status == 409 and err.value.headers == {"Retry-After": "1"}


def test_a_return_through_the_plugin_makes_the_prescription_releasable_again():
    store = MemoryStore()
    short_id, message_id, _ = new_prescription(store)
    released(store, short_id)
    task = example(RETURN)
    task["groupIdentifier"]["value"] = short_id
    task["focus"]["identifier"]["value"] = message_id
    task["for"]["identifier"]["value"] = "9449305552"
    answer = call(task, store=store)
    assert answer.status == 200
    assert business_status(store.task(short_id)) is BusinessStatus.TO_BE_DISPENSED


def bundle_of(*entries: tuple[str, str]) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": m, "url": u}, "resource": {"resourceType": "Task"}} for m, u in entries
        ],
    }


@pytest.mark.parametrize(
    ("method", "url"), [("POST", "Task"), ("PUT", "Task/1"), ("POST", "/Task?x=1"), ("DELETE", "Task/2")]
)
def test_a_dispensers_task_write_inside_a_bundle_is_refused(method, url):
    ctx = request_context("transaction", "POST", client=PHARMACY)
    with pytest.raises(FhirError) as err:
        EpsTask().fhirplug_before_bundle(ctx=ctx, bundle=bundle_of(("GET", "Task/9"), (method, url)))
    assert err.value.status == 403 and err.value.expression == ["Bundle.entry[1].request"]


def test_a_dispensers_reads_in_a_batch_and_others_bundles_pass():
    reads = bundle_of(("GET", "Task/9"), ("GET", "Task?status=requested"))
    assert (
        EpsTask().fhirplug_before_bundle(ctx=request_context("batch", "POST", client=PHARMACY), bundle=reads)
        is None
    )
    spoke = request_context("transaction", "POST", client=Client("s", "FA001", "spoke"))
    assert EpsTask().fhirplug_before_bundle(ctx=spoke, bundle=bundle_of(("POST", "Task"))) is None


def test_the_default_plugin_list_puts_it_before_tenancy():
    assert DEFAULT_PLUGINS.index("eps_task") < DEFAULT_PLUGINS.index("tenancy")
