"""Request metrics (proxy/request_metrics.py): bounded labels, and what one request records,
read back through prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from proxy import request_metrics
from proxy.context import Interaction, RequestContext, make_request_view


def _ctx(interaction: Interaction) -> RequestContext:
    view = make_request_view("GET", "/fhir/x", "x", [], {}, None, None)
    return RequestContext(request=view, interaction=interaction)


def _value(name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(request_metrics.exposition()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_labels_are_the_interaction_a_known_resource_type_and_a_known_operation():
    assert request_metrics.labels_of(_ctx(Interaction("read", "GET", "Patient", "abc"))) == (
        "read",
        "Patient",
        "",
    )
    assert request_metrics.labels_of(
        _ctx(Interaction("operation", "POST", "Task", operation="$release"))
    ) == (
        "operation",
        "Task",
        "$release",
    )


def test_an_unknown_resource_type_or_operation_cannot_grow_the_series():
    ctx = _ctx(Interaction("operation", "POST", "Zzzzzz", operation="$anything-at-all"))
    assert request_metrics.labels_of(ctx) == ("operation", "other", "$other")


def test_a_request_is_counted_timed_and_a_5xx_is_an_error():
    before = _value("fhirplug_requests_total", interaction="search-type", resource_type="Task", status="503")
    errors = _value("fhirplug_request_errors_total", interaction="search-type", resource_type="Task")
    timed = _value("fhirplug_request_duration_seconds_count", interaction="search-type", resource_type="Task")
    request_metrics.observe_request(_ctx(Interaction("search-type", "GET", "Task")), 503)
    after = _value("fhirplug_requests_total", interaction="search-type", resource_type="Task", status="503")
    assert after == before + 1
    assert (
        _value("fhirplug_request_errors_total", interaction="search-type", resource_type="Task") == errors + 1
    )
    assert (
        _value("fhirplug_request_duration_seconds_count", interaction="search-type", resource_type="Task")
        == timed + 1
    )


def test_a_4xx_is_not_a_server_error():
    errors = _value("fhirplug_request_errors_total", interaction="read", resource_type="Patient")
    request_metrics.observe_request(_ctx(Interaction("read", "GET", "Patient", "x")), 404)
    assert _value("fhirplug_request_errors_total", interaction="read", resource_type="Patient") == errors


def test_store_time_is_observed_also_when_the_store_fails():
    count = _value("fhirplug_store_request_duration_seconds_count", method="DELETE")
    try:
        with request_metrics.store_timer("DELETE"):
            raise TimeoutError
    except TimeoutError:
        pass
    assert _value("fhirplug_store_request_duration_seconds_count", method="DELETE") == count + 1
