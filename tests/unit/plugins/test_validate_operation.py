"""The $validate adapter: a Parameters resource reaches the store wrapped; a bad mode is refused."""

import json

import pytest

from plugins.validate_operation import ValidateOperation
from proxy.context import Interaction, RequestContext, make_request_view
from proxy.errors import FhirError


def validate_ctx(body: dict, query=None, content_type="application/fhir+json"):
    path = "Parameters/$validate"
    view = make_request_view("POST", f"/fhir/{path}", path, query or [], {}, content_type, "10.0.0.1")
    ctx = RequestContext(view, Interaction("operation", "POST", "Parameters", None, operation="$validate"))
    raw = json.dumps(body).encode()
    ctx.body_source = lambda: raw
    return ctx


def test_a_parameters_resource_is_sent_wrapped_without_the_query_mode():
    ctx = validate_ctx({"resourceType": "Parameters", "parameter": [{"name": "x"}]}, [("mode", "create")])
    assert ValidateOperation().fhirplug_request(ctx=ctx) is None
    assert ctx.upstream_body is not None
    assert json.loads(ctx.upstream_body[0])["parameter"][0] == {"name": "mode", "valueCode": "create"}
    assert "mode" in ctx.upstream_query_withheld


def test_a_plain_resource_is_left_as_sent():
    ctx = validate_ctx({"resourceType": "Patient"})
    ValidateOperation().fhirplug_request(ctx=ctx)
    assert ctx.upstream_body is None


def test_an_unknown_mode_is_refused_with_its_expression():
    ctx = validate_ctx({"resourceType": "Patient"}, [("mode", "explode")])
    with pytest.raises(FhirError) as refused:
        ValidateOperation().fhirplug_request(ctx=ctx)
    assert refused.value.status == 400 and refused.value.expression


def bad_nhs_number() -> dict:
    from pathlib import Path

    path = (
        Path(__file__).resolve().parents[3] / "ig" / "examples" / "invalid-spoke-to-hub-bad-nhs-number.json"
    )
    return json.loads(path.read_text())


def test_rules_true_adds_the_business_rules_to_the_stores_outcome_and_is_withheld():
    from proxy.response import ProxyResponse

    ctx = validate_ctx(bad_nhs_number(), [("rules", "true")])
    plugin = ValidateOperation()
    plugin.fhirplug_request(ctx=ctx)
    assert "rules" in ctx.upstream_query_withheld
    response = ProxyResponse.from_resource(200, {"resourceType": "OperationOutcome", "issue": []})
    plugin.fhirplug_response(ctx=ctx, response=response)
    assert any(i["code"] == "business-rule" for i in response.resource["issue"])


def test_without_rules_the_stores_outcome_is_left_alone():
    from proxy.response import ProxyResponse

    ctx = validate_ctx(bad_nhs_number())
    plugin = ValidateOperation()
    plugin.fhirplug_request(ctx=ctx)
    response = ProxyResponse.from_resource(200, {"resourceType": "OperationOutcome", "issue": []})
    plugin.fhirplug_response(ctx=ctx, response=response)
    assert response.resource["issue"] == []


def test_rules_with_a_value_other_than_true_or_false_is_refused():
    ctx = validate_ctx({"resourceType": "Patient"}, [("rules", "yes")])
    with pytest.raises(FhirError) as refused:
        ValidateOperation().fhirplug_request(ctx=ctx)
    assert refused.value.status == 400
