"""The hook contract in a real proxy process: probe plugins loaded by name from configuration."""

import json
import time
import uuid

import pytest
import requests

from proxy.store_caller import store_auth

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json"}
PROBE = "tests.support.probe_plugins"


@pytest.fixture(scope="module")
def probe_proxy(stack):
    plugins = f"request_id,{PROBE}:probe_b,{PROBE}:probe_a,access_log"
    return stack.start_proxy({"FHIRPLUG_PLUGINS": plugins})


@pytest.fixture(scope="module")
def ph(stack, probe_proxy):
    """An administrator's session on the probe proxy."""
    return stack.session(probe_proxy[0])


def family() -> str:
    return f"Hook{uuid.uuid4().hex[:12]}"


def count(stack, fam: str) -> int:
    return requests.get(f"{stack.store_url}/Patient", params={"family": fam}, auth=store_auth()).json()[
        "total"
    ]


def test_response_hooks_run_in_configured_order(probe_proxy, ph):
    r = ph.get(f"{probe_proxy[0]}/metadata")
    assert r.headers["X-Probe-Order"] == "probe_b,probe_a"


def test_resolved_order_is_logged_at_start(probe_proxy):
    lines = [json.loads(x) for x in probe_proxy[1].read_text().splitlines() if x.startswith("{")]
    resolved = next(x for x in lines if x.get("event") == "plugins_resolved")
    # the built-ins (the bearer check, the XML intake, the CapabilityStatement) always run first,
    # then the configured ones in their order
    assert resolved["order"] == [
        "auth",
        "xml",
        "capabilities",
        "request_id",
        f"{PROBE}:probe_b",
        f"{PROBE}:probe_a",
        "access_log",
    ]


def test_a_request_hook_answer_short_circuits_the_store(stack, probe_proxy, ph):
    fam = family()
    r = ph.post(
        f"{probe_proxy[0]}/Patient",
        json={"resourceType": "Patient", "name": [{"family": fam}]},
        headers={**FHIR_JSON, "X-Probe-Deny": "probe_b"},
    )
    assert r.status_code == 403 and r.json()["issue"][0]["diagnostics"] == "denied by probe_b"
    assert count(stack, fam) == 0


def test_before_storage_amends_each_entry_of_a_transaction_in_order(stack, probe_proxy, ph):
    fam = family()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "name": [{"family": fam}]},
                "request": {"method": "POST", "url": "Patient"},
            }
            for _ in range(3)
        ],
    }
    r = ph.post(probe_proxy[0], json=bundle, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    stored = requests.get(f"{stack.store_url}/Patient", params={"family": fam}, auth=store_auth()).json()
    assert stored["total"] == 3
    for e in stored["entry"]:
        codes = [t["code"] for t in e["resource"]["meta"]["tag"]]
        assert codes == ["probe_b>probe_a"]


def test_before_storage_refusal_of_one_entry_stores_nothing(stack, probe_proxy, ph):
    fam = family()
    entries = [
        {
            "resource": {"resourceType": "Patient", "name": [{"family": fam}]},
            "request": {"method": "POST", "url": "Patient"},
        }
        for _ in range(3)
    ]
    entries[2]["resource"]["meta"] = {"tag": [{"code": "refuse"}]}
    r = ph.post(
        probe_proxy[0],
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        headers=FHIR_JSON,
    )
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[2].resource.meta.tag"]
    assert count(stack, fam) == 0


@pytest.mark.parametrize("hook", ["fhirplug_request", "fhirplug_before_storage"])
def test_a_raising_plugin_fails_closed_and_stores_nothing(stack, probe_proxy, hook, ph):
    fam = family()
    r = ph.post(
        f"{probe_proxy[0]}/Patient",
        json={"resourceType": "Patient", "name": [{"family": fam}]},
        headers={**FHIR_JSON, "X-Probe-Raise": hook},
    )
    assert r.status_code == 500
    assert r.json()["resourceType"] == "OperationOutcome" and "Traceback" not in r.text
    assert count(stack, fam) == 0


def test_a_raising_response_hook_never_lets_the_response_out(probe_proxy, ph):
    r = ph.get(f"{probe_proxy[0]}/metadata", headers={"X-Probe-Raise": "fhirplug_response"})
    assert r.status_code == 500
    assert r.json()["resourceType"] == "OperationOutcome"


def test_one_json_access_log_line_per_request(probe_proxy, ph):
    rid = f"log-{uuid.uuid4().hex}"
    ph.get(f"{probe_proxy[0]}/metadata", headers={"X-Request-ID": rid})
    ph.get(f"{probe_proxy[0]}/Patient/nope", headers={"X-Request-ID": rid})

    def mine():
        lines = [json.loads(x) for x in probe_proxy[1].read_text().splitlines() if x.startswith("{")]
        return [x for x in lines if x.get("event") == "access" and x.get("request_id") == rid]

    # the line is written once the response has gone out, so it may trail the answer a little
    deadline = time.monotonic() + 5
    while len(mine()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    mine = mine()
    assert [(x["path"], x["status"]) for x in mine] == [("/fhir/metadata", 200), ("/fhir/Patient/nope", 404)]
    assert all(x["duration_ms"] >= 0 and x["method"] == "GET" for x in mine)
