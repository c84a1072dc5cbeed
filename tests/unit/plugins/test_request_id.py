"""The request-id hooks: an incoming id kept or made, sent to the store and returned."""

from plugins import request_id
from proxy.response import ProxyResponse
from tests.support.plugin_context import request_context


def test_a_safe_incoming_id_is_kept_and_sent_to_the_store():
    ctx = request_context(headers={"X-Request-ID": "abc-123"})
    assert request_id.fhirplug_request(ctx=ctx) is None
    assert ctx.request_id == "abc-123"
    assert ctx.upstream_headers["X-Request-ID"] == "abc-123"


def test_a_missing_id_is_made():
    ctx = request_context()
    request_id.fhirplug_request(ctx=ctx)
    assert ctx.request_id is not None and len(ctx.request_id) == 32


def test_an_unsafe_incoming_id_is_replaced_by_a_made_one():
    ctx = request_context(headers={"X-Request-ID": "bad id\r\nX-Evil: 1"})
    request_id.fhirplug_request(ctx=ctx)
    assert ctx.request_id != "bad id\r\nX-Evil: 1" and len(ctx.request_id) == 32


def test_the_response_carries_the_id():
    ctx = request_context(headers={"X-Request-ID": "r1"})
    request_id.fhirplug_request(ctx=ctx)
    response = ProxyResponse(200)
    request_id.fhirplug_response(ctx=ctx, response=response)
    assert response.headers["X-Request-ID"] == "r1"


def test_a_response_answered_before_the_request_hook_still_gets_an_id():
    ctx = request_context()
    response = ProxyResponse(401)
    request_id.fhirplug_response(ctx=ctx, response=response)
    assert response.headers["X-Request-ID"] == ctx.request_id and len(ctx.request_id) == 32
