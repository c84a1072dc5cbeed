"""The hook contract, in-process against a fake store."""

import logging

import pytest

from proxy import hookspecs
from proxy.app import create_app
from proxy.config import Settings
from proxy.hookspecs import hookimpl
from proxy.plugin_manager import PluginLoadError, build_plugin_manager, plugin_order
from tests.support.fake_store import PUBLIC_BASE, FakeStore
from tests.support.probe_plugins import Probe

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def make(plugins=("request_id",), extra=(), store=None):
    store = store or FakeStore()
    app = create_app(
        Settings(public_base_url=PUBLIC_BASE, plugins=list(plugins), auth=False),
        extra_plugins=list(extra),
        store=store,
    )
    return app.test_client(), store


def test_hooks_run_in_the_configured_order():
    a, b = Probe("probe_a"), Probe("probe_b")
    client, _ = make(extra=[b, a])  # listed b first
    r = client.get("/fhir/Patient/1")
    assert r.headers["X-Probe-Order"] == "probe_b,probe_a"


def test_order_comes_from_configuration_by_name():
    pm = build_plugin_manager(["access_log", "request_id"])
    assert plugin_order(pm, "fhirplug_response") == ["request_id"]
    assert plugin_order(pm, "fhirplug_request_finished") == ["access_log"]
    pm = build_plugin_manager(["tests.support.probe_plugins:probe_b", "tests.support.probe_plugins:probe_a"])
    assert plugin_order(pm, "fhirplug_request") == [
        "tests.support.probe_plugins:probe_b",
        "tests.support.probe_plugins:probe_a",
    ]


def test_resolved_order_is_logged_at_start(caplog):
    logging.getLogger("fhirplug").propagate = True
    try:
        with caplog.at_level(logging.INFO, logger="fhirplug.plugins"):
            build_plugin_manager(["request_id", "access_log"])
    finally:
        logging.getLogger("fhirplug").propagate = False
    rec = next(r for r in caplog.records if r.getMessage() == "plugins resolved")
    assert rec.fields["order"] == ["request_id", "access_log"]


def test_unknown_plugin_name_fails_at_start():
    with pytest.raises(PluginLoadError):
        build_plugin_manager(["no_such_plugin"])


def test_misspelt_hook_fails_at_start():
    class Typo:
        @hookimpl
        def fhirplug_befor_storage(self, ctx, entry):
            pass

    with pytest.raises(Exception, match="unknown hook"):
        build_plugin_manager([], extra=[Typo()])


def test_request_hook_short_circuits_before_the_store_and_later_plugins():
    a, b = Probe("probe_a"), Probe("probe_b")
    client, store = make(extra=[a, b])
    r = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={"X-Probe-Deny": "probe_a"})
    assert r.status_code == 403
    assert r.json["issue"][0]["diagnostics"] == "denied by probe_a"
    assert store.calls == []
    assert a.before_storage_calls == [] and b.before_storage_calls == []


def test_before_storage_sees_each_write_entry_of_a_transaction_and_may_amend():
    a = Probe("probe_a")
    client, store = make(
        extra=[a],
        store=FakeStore(body={"resourceType": "Bundle", "type": "transaction-response", "entry": []}),
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:1",
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": "Patient?name=x"}},
            {
                "resource": {"resourceType": "Organization"},
                "request": {"method": "PUT", "url": "Organization/o"},
            },
        ],
    }
    client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert a.before_storage_calls == [(0, "POST"), (2, "PUT")]
    sent = store.calls[0]["body"]["entry"]
    assert sent[0]["resource"]["meta"]["tag"][0]["code"] == "probe_a"


def test_refusal_of_one_entry_refuses_the_transaction_and_points_at_the_entry():
    a = Probe("probe_a")
    client, store = make(extra=[a])
    refused = {"resourceType": "Patient", "meta": {"tag": [{"code": "refuse"}]}}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": refused, "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 422
    assert r.json["issue"][0]["expression"] == ["Bundle.entry[1].resource.meta.tag"]
    assert store.calls == []


@pytest.mark.parametrize("hook", ["fhirplug_request", "fhirplug_before_storage", "fhirplug_response"])
def test_a_raising_plugin_fails_the_request_closed(hook):
    a = Probe("probe_a")
    client, store = make(extra=[a])
    r = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={"X-Probe-Raise": hook})
    assert r.status_code == 500
    assert r.json["resourceType"] == "OperationOutcome"
    assert hook in r.json["issue"][0]["diagnostics"]
    assert "Traceback" not in r.get_data(as_text=True)
    if hook != "fhirplug_response":
        assert store.calls == []


def test_a_raising_after_storage_hook_does_not_make_a_stored_write_look_failed():
    a = Probe("probe_a")
    client, store = make(extra=[a], store=FakeStore(status=201))
    r = client.post(
        "/fhir/Patient", json={"resourceType": "Patient"}, headers={"X-Probe-Raise": "fhirplug_after_storage"}
    )
    assert r.status_code == 201
    assert len(store.calls) == 1


def test_after_storage_sees_the_store_answer():
    a = Probe("probe_a")
    client, _ = make(extra=[a], store=FakeStore(status=201, headers={"Location": "x"}))
    client.post("/fhir/Patient", json={"resourceType": "Patient"})
    assert a.after_storage_calls == [(None, 201)]


def test_every_hook_in_the_spec_has_the_project_prefix():
    names = [n for n in dir(hookspecs) if n.startswith("fhirplug_")]
    assert set(names) == {
        "fhirplug_configure",
        "fhirplug_request",
        "fhirplug_before_bundle",
        "fhirplug_before_storage",
        "fhirplug_after_storage",
        "fhirplug_response",
        "fhirplug_request_finished",
        "fhirplug_metrics",
    }
