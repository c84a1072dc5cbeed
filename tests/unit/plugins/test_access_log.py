"""The access log: one structured line per finished request, with its status and timing."""

import logging

from plugins import access_log
from proxy.context import Client
from tests.support.plugin_context import request_context


def test_one_line_is_logged_per_finished_request(caplog):
    ctx = request_context("read", "GET", "Patient", "1")
    with caplog.at_level(logging.INFO, logger="fhirplug.access"):
        access_log.fhirplug_request_finished(ctx=ctx, status=200)
    assert len([r for r in caplog.records if r.name == "fhirplug.access"]) == 1


def test_the_line_carries_the_status_timing_and_request():
    ctx = request_context("read", "GET", "Patient", "1", client=Client("spoke-system", "FS1A1", "spoke"))
    ctx.request_id = "r1"
    fields = access_log.access_record(ctx, 404)
    assert fields["status"] == 404
    assert isinstance(fields["duration_ms"], float) and fields["duration_ms"] >= 0
    assert fields | {"duration_ms": 0} == {
        "event": "access",
        "request_id": "r1",
        "method": "GET",
        "path": "/fhir/Patient/1",
        "interaction": "read",
        "resource_type": "Patient",
        "status": 404,
        "duration_ms": 0,
        "client_id": "spoke-system",
        "remote_addr": "10.0.0.1",
    }


def test_the_logged_line_holds_the_record(caplog):
    ctx = request_context("search-type", "GET", "Task")
    with caplog.at_level(logging.INFO, logger="fhirplug.access"):
        access_log.fhirplug_request_finished(ctx=ctx, status=200)
    record = next(r for r in caplog.records if r.name == "fhirplug.access")
    assert record.fields["interaction"] == "search-type" and record.fields["status"] == 200
