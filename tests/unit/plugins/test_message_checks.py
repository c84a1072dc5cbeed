"""The message checks hook: classifies a Bundle once (ctx.message), refuses with every problem."""

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from hubspoke.message_rules import check
from hubspoke.messages import digest
from plugins.message_checks import MessageChecks, message_checks
from proxy.context import Client, Message
from proxy.errors import FhirError

EXAMPLES = Path(__file__).resolve().parents[3] / "ig" / "examples"


def example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def fake_ctx():
    return SimpleNamespace(state={}, message=None, client=Client("spoke-system", "FS1A1", "spoke"))


def test_the_hook_ignores_other_transactions():
    patient = example("valid-spoke-to-hub")["entry"][2]
    other = copy.deepcopy(patient)
    other["fullUrl"] = "urn:uuid:00000000-0000-4000-8000-000000000001"
    other["resource"]["identifier"][0]["value"] = "9449304131"  # would fail, were it checked
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [patient, other]}
    ctx = fake_ctx()
    assert message_checks.fhirplug_before_bundle(ctx, bundle) is None
    assert ctx.message is None


def test_the_hook_passes_a_valid_message_and_says_which_it_is():
    ctx = fake_ctx()
    bundle = example("valid-hub-to-spoke")
    as_sent = digest(bundle)
    assert MessageChecks().fhirplug_before_bundle(ctx, bundle) is None
    assert ctx.message == Message("hub-to-spoke", as_sent, "FS1A1", "spoke-system")
    assert ctx.state == {}


def test_the_hook_refuses_with_one_issue_per_problem():
    bundle = example("invalid-spoke-to-hub-bad-nhs-number")
    bundle["entry"][0]["resource"]["status"] = "draft"
    problems = check(bundle)
    assert len(problems) == 3
    ctx = fake_ctx()
    with pytest.raises(FhirError) as raised:
        message_checks.fhirplug_before_bundle(ctx, bundle)
    assert ctx.message.kind == "spoke-to-hub"
    assert raised.value.status == 400
    outcome = raised.value.to_resource()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [(i["diagnostics"], i["expression"]) for i in outcome["issue"]] == problems
    assert {(i["severity"], i["code"]) for i in outcome["issue"]} == {("error", "invalid")}


def test_it_provides_the_message():
    assert MessageChecks.provides == ("message",)
