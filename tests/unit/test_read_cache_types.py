"""Which types a write touches and which one a read depends on (proxy/read_cache.py): whatever
cannot be known beforehand must come out as None, "everything"."""

import json

import pytest

from proxy.read_cache import read_type, written_types


@pytest.mark.parametrize(
    "method,path,query,types",
    [
        ("PUT", "Patient/1", [], {"Patient"}),
        ("POST", "Task", [], {"Task"}),
        ("PATCH", "Task/1", [], {"Task"}),
        ("DELETE", "Task", [("identifier", "x")], {"Task"}),  # conditional delete: that type only
        ("DELETE", "Patient/1", [("_cascade", "delete")], None),  # deletes what refers to it, any type
        ("POST", "Patient/1/$meta-add", [], None),  # an operation: its effects are its own
        ("POST", "ImplementationGuide/$install", [], None),
    ],
)
def test_the_types_a_plain_write_touches(method, path, query, types):
    assert written_types(method, path, query, b"{}") == (None if types is None else frozenset(types))


def bundle(*entries) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}).encode()


def test_a_transaction_touches_the_types_its_entries_name_and_carry():
    body = bundle(
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {
            "request": {"method": "PATCH", "url": "Task?identifier=x"},
            "resource": {"resourceType": "Parameters"},
        },
        {"request": {"method": "GET", "url": "Organization?name=x"}},  # a read changes nothing
    )
    assert written_types("POST", "", [], body) == frozenset({"Patient", "Task", "Parameters"})
    assert written_types("POST", "", [], json.loads(body)) == frozenset({"Patient", "Task", "Parameters"})


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"resourceType": "Patient"}).encode(),
        bundle({"request": {"method": "POST", "url": "Patient/1/$meta-add"}}),
        bundle({"request": {"method": "DELETE", "url": "Patient/1?_cascade=delete"}}),
        bundle({"resource": {"resourceType": "Patient"}}),  # no request: cannot say
        None,  # a streamed body
    ],
)
def test_a_bundle_that_does_not_say_touches_everything(body):
    assert written_types("POST", "", [], body) is None


@pytest.mark.parametrize(
    "path,query,depends_on",
    [
        ("Patient/1", [], "Patient"),
        ("Patient/1/_history/2", [], "Patient"),
        ("Patient/1/_history", [], "Patient"),
        ("Task", [("owner:identifier", "x"), ("_count", "10"), ("_sort", "-_lastUpdated")], "Task"),
        ("Task", [("subject:Patient", "1")], "Task"),  # a type modifier is no chain
        ("Task", [("_include", "Task:focus")], None),
        ("Task", [("_revinclude:iterate", "Provenance:target")], None),
        ("Task", [("subject.name", "x")], None),
        ("Task", [("subject:Patient.name", "x")], None),
        ("Patient", [("_has:Observation:patient:code", "x")], None),
        ("Patient/1/MedicationRequest", [], None),  # a compartment
        ("", [("_type", "Patient")], None),
        ("_history", [], None),
        ("metadata", [], None),
    ],
)
def test_the_type_a_read_depends_on(path, query, depends_on):
    assert read_type(path, query) == depends_on
