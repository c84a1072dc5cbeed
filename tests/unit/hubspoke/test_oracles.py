"""No oracles: refused search parameters, filtered answers, stand-in ids and judged conditional reads."""

import pytest

from hubspoke.identifiers import TENANT_SYSTEM
from hubspoke.oracles import (
    conditional_read,
    entry_expression,
    filter_bundle,
    filter_parameters,
    not_known,
    refuse_oracle_params,
    swap_back,
    unknown_id,
)
from proxy.context import WriteEntry
from proxy.errors import FhirError
from proxy.response import ProxyResponse


def mine(rid, ods="A1"):
    return {"resourceType": "Task", "id": rid, "meta": {"security": [{"system": TENANT_SYSTEM, "code": ods}]}}


@pytest.mark.parametrize("name", ["_has:Task:patient:status", "patient.family", "_filter", "_list", "_query"])
def test_oracle_params_are_refused(name):
    with pytest.raises(FhirError) as caught:
        refuse_oracle_params([(name, "x")], "Bundle.entry[0].request.url")
    assert caught.value.status == 400 and caught.value.expression == ["Bundle.entry[0].request.url"]


def test_plain_params_pass():
    assert (
        refuse_oracle_params([("status", "requested"), ("_security", "x"), ("identifier:of-type", "y")])
        is None
    )


def test_filter_bundle_drops_what_the_tenant_may_not_see():
    bundle = {"type": "searchset", "entry": [{"resource": mine("1")}, {"resource": mine("2", "B2")}]}
    assert filter_bundle(bundle, "A1") is True
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["1"]
    assert filter_bundle(bundle, "A1") is False


def test_filter_bundle_keeps_places_in_a_batch_answer_as_not_known():
    requests = [
        {"request": {"method": "GET", "url": "Task/1"}},
        {"request": {"method": "GET", "url": "Task/2"}},
    ]
    bundle = {"type": "batch-response", "entry": [{"resource": mine("1")}, {"resource": mine("2", "B2")}]}
    assert filter_bundle(bundle, "A1", requests) is True
    assert bundle["entry"][0]["resource"]["id"] == "1"
    assert bundle["entry"][1]["response"]["status"] == "404 Not Found"
    assert "Task/2 is not known" in bundle["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]


def message(rid, ods="A1"):
    """A stored EPS message Bundle: labelled itself, its inner resources as the prescriber sent them."""
    return {
        "resourceType": "Bundle",
        "id": rid,
        "type": "message",
        "meta": {"security": [{"system": TENANT_SYSTEM, "code": ods}]},
        "entry": [{"resource": {"resourceType": "MedicationRequest"}}],
    }


def test_a_stored_message_bundle_is_judged_by_its_own_label_and_kept_whole():
    bundle = {"type": "searchset", "entry": [{"resource": message("1")}, {"resource": message("2", "B2")}]}
    assert filter_bundle(bundle, "A1") is True
    (kept,) = bundle["entry"]
    assert kept["resource"]["id"] == "1" and kept["resource"]["entry"] == [
        {"resource": {"resourceType": "MedicationRequest"}}
    ]


def test_a_search_inside_a_batch_is_still_judged_entry_by_entry():
    inner = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": mine("1")}, {"resource": mine("2", "B2")}],
    }
    bundle = {"type": "batch-response", "entry": [{"resource": inner}]}
    assert filter_bundle(bundle, "A1", [{"request": {"method": "GET", "url": "Task?status=x"}}]) is True
    assert [e["resource"]["id"] for e in inner["entry"]] == ["1"]


def test_an_operations_parameters_answer_is_judged_part_by_part():
    passed = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": message("1")}, {"resource": message("2", "B2")}],
    }
    answer = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "passedPrescriptions", "resource": passed},
            {"name": "other", "resource": mine("3", "B2")},
            {
                "name": "nested",
                "part": [{"name": "x", "resource": mine("4", "B2")}, {"name": "y", "valueString": "s"}],
            },
        ],
    }
    assert filter_parameters(answer, "A1") is True
    assert [e["resource"]["id"] for e in passed["entry"]] == ["1"]
    assert [p["name"] for p in answer["parameter"]] == ["passedPrescriptions", "nested"]
    assert answer["parameter"][1]["part"] == [{"name": "y", "valueString": "s"}]


def test_history_loses_its_total_when_filtered():
    bundle = {"type": "history", "total": 2, "entry": [{"resource": mine("1", "B2")}, {"request": {}}]}
    filter_bundle(bundle, "A1")
    assert bundle["entry"] == [] and "total" not in bundle


def test_not_known_is_the_answer_for_an_unknown_id():
    response = ProxyResponse.from_resource(200, mine("1", "B2"), {"ETag": 'W/"1"', "Location": "x"})
    not_known(response, "Task", "1")
    assert response.status == 404 and "ETag" not in response.headers and "Location" not in response.headers
    assert response.resource["issue"][0]["diagnostics"] == "Task/1 is not known"


def test_unknown_ids_look_like_the_id_they_stand_for():
    assert unknown_id("123").isdigit() and unknown_id("123") != unknown_id("123")
    assert unknown_id("abc").startswith("unknown-")


def test_swap_back_restores_the_callers_ids():
    response = ProxyResponse.from_resource(
        404,
        {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "Task/9876 is not known"}]},
        {"Location": "Task/9876/_history/1"},
    )
    swap_back(response, {"9876": "42"})
    assert response.headers["Location"] == "Task/42/_history/1"
    assert response.resource["issue"][0]["diagnostics"] == "Task/42 is not known"


@pytest.mark.parametrize(
    "asked,hit",
    [
        ({"if-none-match": 'W/"3"'}, True),
        ({"if-none-match": '"2", "3"'}, True),
        ({"if-none-match": "*"}, True),
        ({"if-none-match": 'W/"2"'}, False),
        ({"if-modified-since": "Mon, 01 Jan 2024 10:00:00 GMT"}, True),
        ({"if-modified-since": "Mon, 01 Jan 2024 09:00:00 GMT"}, False),
        ({"if-modified-since": "not a date"}, False),
    ],
)
def test_conditional_read_is_judged_on_what_the_caller_may_read(asked, hit):
    headers = {"ETag": 'W/"3"', "Last-Modified": "Mon, 01 Jan 2024 10:00:00 GMT"}
    response = ProxyResponse.from_resource(200, mine("1"), headers)
    conditional_read(response, asked)
    assert response.status == (304 if hit else 200)


def test_entry_expression():
    assert (
        entry_expression(WriteEntry("POST", "Task", {}, index=3), "request.url")
        == "Bundle.entry[3].request.url"
    )
    assert entry_expression(WriteEntry("POST", "Task", {}), "request.url") == "request.url"
