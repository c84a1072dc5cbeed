"""proxy/merge_patch.py against RFC 7386's own examples (Appendix A): applying the JSON Patch made
from a merge patch gives what the merge patch gives."""

from __future__ import annotations

import pytest

from fhirpatch.json_patch import apply_json_patch
from proxy.merge_patch import to_json_patch


def merge(target, patch):
    """RFC 7386 section 2, as written there: the reference the translation is held to."""
    if not isinstance(patch, dict):
        return patch
    target = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = merge(target.get(name), value)
    return target


# RFC 7386 Appendix A, the cases whose document and patch are objects (a resource is one)
APPENDIX_A = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({"a": "foo"}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


def fhir(value):
    """As a FHIR resource holds it: no nulls, no empty objects or arrays (the store's JSON Patch
    engine leaves none either)."""
    if isinstance(value, dict):
        kept = {k: fhir(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [fhir(v) for v in value]
    return value


@pytest.mark.parametrize(("original", "patch", "result"), APPENDIX_A)
def test_rfc_7386_appendix_a(original, patch, result):
    assert merge(original, patch) == result  # the reference agrees with the RFC
    doc = {"resourceType": "Basic", **original}
    patched = apply_json_patch(doc, to_json_patch(patch, doc))
    assert patched == fhir({"resourceType": "Basic", **result})


def test_a_fhir_status_change_is_one_add():
    task = {"resourceType": "Task", "id": "1", "status": "requested", "intent": "order"}
    assert to_json_patch({"status": "accepted"}, task) == [
        {"op": "add", "path": "/status", "value": "accepted"}
    ]


def test_removing_what_is_not_there_is_nothing_and_names_are_escaped():
    assert to_json_patch({"note": None}, {"resourceType": "Task"}) == []
    assert to_json_patch({"a/b~c": 1}, None) == [{"op": "add", "path": "/a~1b~0c", "value": 1}]
