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
