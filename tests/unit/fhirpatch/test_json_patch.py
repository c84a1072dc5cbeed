"""RFC 6902 JSON Patch on a Task: every operation, and a 422 naming the operation that fails."""

import copy

import pytest

from fhirpatch import apply_patch
from proxy.errors import FhirError
from tests.support.tasks import EQUIVALENT, JSON_PATCH, patched, refused, task, three_notes


@pytest.mark.parametrize("name,json_patch,fhirpath_patch,change", EQUIVALENT, ids=[c[0] for c in EQUIVALENT])
def test_each_change_as_a_json_patch(name, json_patch, fhirpath_patch, change):
    """The same changes as the FHIRPath Patch tests make (tests.support.tasks.EQUIVALENT)."""
    assert patched(task(), json_patch, JSON_PATCH) == task(**change)


def test_json_patch_content_type_parameters_are_ignored():
    new = patched(
        task(), [{"op": "replace", "path": "/status", "value": "accepted"}], JSON_PATCH + "; charset=utf-8"
    )
    assert new["status"] == "accepted"


def test_json_patch_move_and_copy():
    new = patched(
        three_notes(),
        [
            {"op": "move", "from": "/note/2", "path": "/note/0"},
            {"op": "copy", "from": "/statusReason", "path": "/businessStatus"},
        ],
        JSON_PATCH,
    )
    assert [n["text"] for n in new["note"]] == ["c", "a", "b"]
    assert new["businessStatus"] == new["statusReason"] == {"text": "first"}


def test_json_patch_test_op_that_passes():
    new = patched(
        task(),
        [
            {"op": "test", "path": "/status", "value": "requested"},
            {"op": "replace", "path": "/status", "value": "accepted"},
        ],
        JSON_PATCH,
    )
    assert new["status"] == "accepted"


def test_json_patch_failing_test_op_is_422_naming_the_op():
    err = refused(
        task(),
        [
            {"op": "add", "path": "/businessStatus", "value": {"text": "x"}},
            {"op": "test", "path": "/status", "value": "accepted"},
            {"op": "replace", "path": "/status", "value": "in-progress"},
        ],
        JSON_PATCH,
    )
    assert (err.status, err.code) == (422, "processing")
    assert "operation 1" in err.diagnostics and "test" in err.diagnostics


@pytest.mark.parametrize(
    "ops,index,fragment",
    [
        ([{"op": "replace", "path": "/businessStatus", "value": {"text": "x"}}], 0, "does not exist"),
        ([{"op": "remove", "path": "/note/5"}], 0, "out of range"),
        ([{"op": "add", "path": "/note/x", "value": {}}], 0, "not an array index"),
        ([{"op": "add", "path": "status", "value": "x"}], 0, "JSON Pointer"),
        ([{"op": "add", "path": "/a/b", "value": 1}], 0, "does not exist"),
        ([{"op": "test", "path": "/status", "value": "requested"}, {"op": "jump", "path": "/x"}], 1, "'op'"),
        ([{"op": "add", "path": "/status"}], 0, "needs a 'value'"),
        ([{"op": "move", "path": "/note/0/x", "from": "/note"}], 0, "own child"),
        ([{"op": "replace", "path": "/resourceType", "value": "Patient"}], None, "resourceType"),
        ([{"op": "remove", "path": ""}], 0, "whole document"),
    ],
)
def test_json_patch_refusals(ops, index, fragment):
    err = refused(task(), ops, JSON_PATCH)
    assert err.status == 422
    assert fragment in err.diagnostics
    if index is not None:
        assert f"JSON Patch operation {index} " in err.diagnostics


def test_json_patch_test_compares_json_values():
    with pytest.raises(FhirError):
        apply_patch(
            {"resourceType": "Task", "a": True}, [{"op": "test", "path": "/a", "value": 1}], JSON_PATCH
        )
    new = apply_patch(
        {"resourceType": "Task", "a/b": {"~": 1}},
        [{"op": "test", "path": "/a~1b/~0", "value": 1.0}],
        JSON_PATCH,
    )
    assert new == {"resourceType": "Task", "a/b": {"~": 1}}


def test_json_patch_must_be_a_list():
    err = refused(task(), {"op": "add"}, JSON_PATCH)
    assert err.status == 400


def test_json_patch_drops_emptied_elements():
    new = patched(
        task(), [{"op": "remove", "path": "/note/0"}, {"op": "add", "path": "/x", "value": {}}], JSON_PATCH
    )
    assert "note" not in new and "x" not in new


def test_the_result_does_not_share_objects_with_the_patch_or_the_input():
    old = task()
    value = {"text": "shared?"}
    new = apply_patch(old, [{"op": "add", "path": "/note/-", "value": value}], JSON_PATCH)
    new["note"][-1]["text"] = "changed"
    new["note"][0]["text"] = "changed"
    assert value == {"text": "shared?"} and old["note"] == [{"text": "please dispense"}]


def test_a_failed_patch_leaves_the_input_alone_even_after_earlier_ops_succeeded():
    old = task()
    before = copy.deepcopy(old)
    with pytest.raises(FhirError):
        apply_patch(
            old,
            [{"op": "remove", "path": "/note/0"}, {"op": "test", "path": "/status", "value": "x"}],
            JSON_PATCH,
        )
    assert old == before
