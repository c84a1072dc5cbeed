"""Task rules: the hub-and-spoke state machine, who may change what, and both PATCH formats."""

import copy
import itertools

import pytest

from plugins.task_rules import (
    ALLOWED_CHANGES,
    FINAL_STATUSES,
    STATUSES,
    TRANSITIONS,
    apply_patch,
    changed_elements,
    check_changes,
    check_task_update,
    check_transition,
)
from proxy.errors import FhirError

JSON_PATCH = "application/json-patch+json"
FHIR_JSON = "application/fhir+json"

# ---------------------------------------------------------------- the state machine, spelled out

# Written out by hand (not derived from TRANSITIONS) so the table test checks the module against
# the design: spoke creates `requested`, hub receives/accepts/rejects, works, holds, ends; the
# spoke may cancel until work starts.
OWNER_MOVES = {
    ("requested", "received"),
    ("requested", "accepted"),
    ("requested", "rejected"),
    ("received", "accepted"),
    ("received", "rejected"),
    ("accepted", "in-progress"),
    ("in-progress", "on-hold"),
    ("in-progress", "completed"),
    ("in-progress", "failed"),
    ("on-hold", "in-progress"),
}
REQUESTER_MOVES = {
    ("requested", "cancelled"),
    ("received", "cancelled"),
    ("accepted", "cancelled"),
}
LEGAL = {(a, b, "owner") for a, b in OWNER_MOVES} | {(a, b, "requester") for a, b in REQUESTER_MOVES}


def expected(old, new, actor):
    """None (passes), 403 or 409 for one (from, to, actor)."""
    if old == new:
        return None  # keeping the status is not a move
    if actor == "both":
        return None if (old, new) in OWNER_MOVES | REQUESTER_MOVES else 409
    if (old, new, actor) in LEGAL:
        return None
    if (old, new) in OWNER_MOVES | REQUESTER_MOVES:
        return 403
    return 409


def test_statuses_are_the_twelve_r4_codes():
    assert len(STATUSES) == len(set(STATUSES)) == 12
    assert {"draft", "ready", "entered-in-error", "on-hold"} <= set(STATUSES)


def test_transitions_table_is_the_design():
    assert {(a, b, who) for (a, b), who in TRANSITIONS.items()} == LEGAL


CASES = list(itertools.product(STATUSES, STATUSES, ["owner", "requester", "both"]))


@pytest.mark.parametrize("old,new,actor", CASES, ids=[f"{a}->{b}-{c}" for a, b, c in CASES])
def test_every_status_pair_for_every_actor(old, new, actor):
    want = expected(old, new, actor)
    if want is None:
        assert check_transition(old, new, actor) is None
        return
    with pytest.raises(FhirError) as caught:
        check_transition(old, new, actor)
    err = caught.value
    assert err.status == want
    assert err.expression == ["Task.status"]
    assert f"'{old}'" in err.diagnostics and f"'{new}'" in err.diagnostics
    if want == 409:
        assert err.code == "conflict"
        assert err.diagnostics.startswith(f"Task cannot move from '{old}' to '{new}'")
    else:
        assert err.code == "forbidden"
        other = "requester" if actor == "owner" else "owner"
        assert err.diagnostics.startswith(f"only the {other} may move a Task from '{old}' to '{new}'")


def test_exactly_the_legal_triples_pass():
    passed = set()
    for old, new, actor in itertools.product(STATUSES, STATUSES, ["owner", "requester"]):
        if old == new:
            continue
        try:
            check_transition(old, new, actor)
        except FhirError:
            continue
        passed.add((old, new, actor))
    assert passed == LEGAL


@pytest.mark.parametrize("old,new", sorted(TRANSITIONS))
def test_every_reverse_of_a_legal_move_fails(old, new):
    if (new, old) in TRANSITIONS:  # the one round trip the workflow has: hold and resume
        assert {old, new} == {"in-progress", "on-hold"}
        return
    for actor in ("owner", "requester", "both"):
        with pytest.raises(FhirError) as caught:
            check_transition(new, old, actor)
        assert caught.value.status == 409
        assert f"from '{new}' to '{old}'" in caught.value.diagnostics


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
def test_nothing_leaves_a_final_status(final):
    assert not [to for (frm, to) in TRANSITIONS if frm == final]
    with pytest.raises(FhirError) as caught:
        check_transition(final, "in-progress", "both")
    assert "final status" in caught.value.diagnostics


@pytest.mark.parametrize("status", ["draft", "ready", "entered-in-error"])
def test_unused_codes_are_neither_start_nor_end_of_a_move(status):
    assert all(status not in pair for pair in TRANSITIONS)


@pytest.mark.parametrize(
    "old,new,which",
    [("requested", "done", "updated"), ("bogus", "accepted", "stored"), ("requested", None, "")],
)
def test_a_status_that_is_not_a_task_status_is_422(old, new, which):
    with pytest.raises(FhirError) as caught:
        check_transition(old, new, "owner")
    assert caught.value.status == 422
    assert caught.value.expression == ["Task.status"]
    assert which in caught.value.diagnostics


def test_an_unknown_actor_is_a_programming_error():
    with pytest.raises(ValueError):
        check_transition("requested", "accepted", "hub")


# ---------------------------------------------------------------- changed elements and who may change them


def task(**over):
    base = {
        "resourceType": "Task",
        "id": "t1",
        "meta": {"versionId": "1", "lastUpdated": "2024-05-01T10:00:00Z"},
        "identifier": [{"system": "https://example.org/task", "value": "abc"}],
        "status": "requested",
        "intent": "order",
        "for": {"reference": "Patient/p1"},
        "requester": {"reference": "Organization/spoke"},
        "owner": {"reference": "Organization/hub"},
        "authoredOn": "2024-05-01T10:00:00Z",
        "statusReason": {"text": "first"},
        "note": [{"text": "please dispense"}],
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def test_changed_elements_ignores_meta_text_and_id():
    old = task()
    new = task(meta={"versionId": "2"}, text={"status": "generated", "div": "<div/>"}, id="other")
    assert changed_elements(old, new) == set()


@pytest.mark.parametrize(
    "over,changed",
    [
        ({"status": "accepted"}, {"status"}),
        ({"businessStatus": {"text": "picking"}}, {"businessStatus"}),  # added
        ({"statusReason": None}, {"statusReason"}),  # removed
        ({"note": [{"text": "please dispense"}, {"text": "more"}]}, {"note"}),
        ({"for": {"reference": "Patient/p2"}, "status": "accepted"}, {"for", "status"}),
        ({"_status": {"extension": [{"url": "x", "valueString": "y"}]}}, {"status"}),
        ({"note": [{"text": "please dispense"}]}, set()),  # equal, though a new object
    ],
)
def test_changed_elements(over, changed):
    assert changed_elements(task(), task(**over)) == changed


def test_changed_elements_compares_json_values_not_python_ones():
    assert changed_elements({"a": True}, {"a": 1}) == {"a"}
    assert changed_elements({"a": 1}, {"a": 1.0}) == set()


def test_allowed_changes_are_the_agreed_ones():
    assert ALLOWED_CHANGES["owner"] == {
        "status",
        "businessStatus",
        "statusReason",
        "output",
        "note",
        "executionPeriod",
        "lastModified",
    }
    assert ALLOWED_CHANGES["requester"] == {"status", "note", "lastModified"}


@pytest.mark.parametrize(
    "actor,over,forbidden",
    [
        ("owner", {"for": {"reference": "Patient/other"}}, ["Task.for"]),
        (
            "owner",
            {"owner": {"reference": "Organization/x"}, "priority": "urgent"},
            ["Task.owner", "Task.priority"],
        ),
        ("requester", {"businessStatus": {"text": "picking"}}, ["Task.businessStatus"]),
        ("requester", {"output": [{"type": {"text": "x"}, "valueString": "y"}]}, ["Task.output"]),
        ("requester", {"statusReason": {"text": "changed"}}, ["Task.statusReason"]),
        ("both", {"for": {"reference": "Patient/other"}, "note": []}, ["Task.for"]),
    ],
)
def test_check_changes_refuses_what_the_actor_may_not_change(actor, over, forbidden):
    with pytest.raises(FhirError) as caught:
        check_changes(task(), task(**over), actor)
    err = caught.value
    assert (err.status, err.code) == (403, "forbidden")
    assert err.expression == forbidden
    for name in forbidden:
        assert name in err.diagnostics
    assert "Task.note" not in err.diagnostics.split("(")[0]


@pytest.mark.parametrize(
    "actor,over",
    [
        ("owner", {"status": "accepted", "businessStatus": {"text": "queued"}, "lastModified": "2024-05-02"}),
        (
            "owner",
            {"output": [{"type": {"text": "x"}, "valueString": "y"}], "executionPeriod": {"start": "2024"}},
        ),
        ("requester", {"note": [{"text": "please dispense"}, {"text": "call first"}]}),
        ("requester", {"status": "cancelled", "lastModified": "2024-05-02"}),
        ("both", {"businessStatus": {"text": "x"}, "note": [{"text": "y"}]}),
    ],
)
def test_check_changes_lets_the_allowed_through(actor, over):
    assert check_changes(task(), task(**over), actor) is None


@pytest.mark.parametrize(
    "old_status,new_status,actor,over,want",
    [
        ("accepted", "cancelled", "requester", {}, None),
        ("requested", "cancelled", "requester", {"note": [{"text": "no longer needed"}]}, None),
        ("in-progress", "cancelled", "requester", {}, 409),
        ("on-hold", "cancelled", "requester", {}, 409),
        ("accepted", "cancelled", "owner", {}, 403),
        ("requested", "accepted", "owner", {"businessStatus": {"text": "queued"}}, None),
        ("requested", "accepted", "requester", {}, 403),
        ("in-progress", "in-progress", "owner", {"businessStatus": {"text": "labelled"}}, None),
        ("in-progress", "in-progress", "requester", {"note": [{"text": "any news?"}]}, None),
        ("in-progress", "in-progress", "requester", {"businessStatus": {"text": "x"}}, 403),
        ("in-progress", "completed", "owner", {"for": {"reference": "Patient/x"}}, 403),  # changes first
        ("completed", "in-progress", "owner", {}, 409),
        ("completed", "completed", "owner", {"note": [{"text": "late note"}]}, 409),  # final: no change
        ("completed", "completed", "owner", {}, None),  # an exact replay is harmless
        ("cancelled", "cancelled", "requester", {"lastModified": "2024-06-01"}, 409),
    ],
)
def test_check_task_update(old_status, new_status, actor, over, want):
    old = task(status=old_status)
    new = task(status=new_status, **over)
    if want is None:
        assert check_task_update(old, new, actor) is None
        return
    with pytest.raises(FhirError) as caught:
        check_task_update(old, new, actor)
    assert caught.value.status == want


def test_check_task_update_names_both_states_when_the_spoke_cancels_too_late():
    with pytest.raises(FhirError) as caught:
        check_task_update(task(status="in-progress"), task(status="cancelled"), "requester")
    assert "'in-progress'" in caught.value.diagnostics and "'cancelled'" in caught.value.diagnostics
    assert caught.value.expression == ["Task.status"]


def test_check_task_update_refuses_a_task_without_status():
    with pytest.raises(FhirError) as caught:
        check_task_update(task(status="accepted"), task(status=None), "owner")
    assert caught.value.status == 422


# ---------------------------------------------------------------- patches

# FHIRPath Patch building blocks


def op(kind, path, **parts):
    part = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name == "name":
            part.append({"name": "name", "valueString": value})
        elif name in ("index", "source", "destination"):
            part.append({"name": name, "valueInteger": value})
        else:  # value=("valueCode", "accepted") or value=[nested parts]
            if isinstance(value, list):
                part.append({"name": "value", "part": value})
            else:
                part.append({"name": "value", value[0]: value[1]})
    return {"name": "operation", "part": part}


def params(*ops):
    return {"resourceType": "Parameters", "parameter": list(ops)}


def patched(resource, patch, content_type):
    """apply_patch, asserting the input resource and the patch are left as they were."""
    before, patch_before = copy.deepcopy(resource), copy.deepcopy(patch)
    result = apply_patch(resource, patch, content_type)
    assert resource == before
    assert patch == patch_before
    assert result is not resource
    return result


def refused(resource, patch, content_type):
    before = copy.deepcopy(resource)
    with pytest.raises(FhirError) as caught:
        apply_patch(resource, patch, content_type)
    assert resource == before
    return caught.value


DISPENSE_REF = {"reference": "MedicationDispense/md1"}
DISPENSED = {"coding": [{"system": "https://example.org/output", "code": "dispensed"}], "text": "dispensed"}

# Each case: (name, JSON Patch, FHIRPath Patch, what changes in the Task)
EQUIVALENT = [
    (
        "replace status",
        [{"op": "replace", "path": "/status", "value": "accepted"}],
        params(op("replace", "Task.status", value=("valueCode", "accepted"))),
        {"status": "accepted"},
    ),
    (
        "add businessStatus",
        [{"op": "add", "path": "/businessStatus", "value": {"text": "picking"}}],
        params(op("add", "Task", name="businessStatus", value=("valueCodeableConcept", {"text": "picking"}))),
        {"businessStatus": {"text": "picking"}},
    ),
    (
        "add an output (type + value)",
        [{"op": "add", "path": "/output", "value": [{"type": DISPENSED, "valueReference": DISPENSE_REF}]}],
        params(
            op(
                "add",
                "Task",
                name="output",
                value=[
                    {"name": "type", "valueCodeableConcept": DISPENSED},
                    {"name": "value", "valueReference": DISPENSE_REF},
                ],
            )
        ),
        {"output": [{"type": DISPENSED, "valueReference": DISPENSE_REF}]},
    ),
    (
        "add a note",
        [{"op": "add", "path": "/note/-", "value": {"text": "labelled", "time": "2024-05-01T12:00:00Z"}}],
        params(
            op(
                "add",
                "Task",
                name="note",
                value=("valueAnnotation", {"text": "labelled", "time": "2024-05-01T12:00:00Z"}),
            )
        ),
        {"note": [{"text": "please dispense"}, {"text": "labelled", "time": "2024-05-01T12:00:00Z"}]},
    ),
    (
        "delete statusReason",
        [{"op": "remove", "path": "/statusReason"}],
        params(op("delete", "Task.statusReason")),
        {"statusReason": None},
    ),
    (
        "insert a note first",
        [{"op": "add", "path": "/note/0", "value": {"text": "urgent"}}],
        params(op("insert", "Task.note", index=0, value=("valueAnnotation", {"text": "urgent"}))),
        {"note": [{"text": "urgent"}, {"text": "please dispense"}]},
    ),
    (
        "replace a nested element",
        [{"op": "replace", "path": "/statusReason/text", "value": "second"}],
        params(op("replace", "Task.statusReason.text", value=("valueString", "second"))),
        {"statusReason": {"text": "second"}},
    ),
]


@pytest.mark.parametrize("name,json_patch,fhirpath_patch,change", EQUIVALENT, ids=[c[0] for c in EQUIVALENT])
@pytest.mark.parametrize("kind", ["json", "fhirpath"])
def test_both_patch_formats(kind, name, json_patch, fhirpath_patch, change):
    old = task()
    patch, content_type = {"json": (json_patch, JSON_PATCH), "fhirpath": (fhirpath_patch, FHIR_JSON)}[kind]
    new = patched(old, patch, content_type)
    assert new == task(**change)


def test_json_patch_content_type_parameters_are_ignored():
    new = patched(
        task(), [{"op": "replace", "path": "/status", "value": "accepted"}], JSON_PATCH + "; charset=utf-8"
    )
    assert new["status"] == "accepted"


def three_notes():
    return task(note=[{"text": "a"}, {"text": "b"}, {"text": "c"}])


def test_fhirpath_move():
    new = patched(three_notes(), params(op("move", "Task.note", source=2, destination=0)), FHIR_JSON)
    assert [n["text"] for n in new["note"]] == ["c", "a", "b"]


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


def test_fhirpath_replace_by_index_and_nested():
    new = patched(
        three_notes(),
        params(
            op("replace", "Task.note[1].text", value=("valueString", "B")),
            op("replace", "Task.note[2]", value=("valueAnnotation", {"text": "C"})),
        ),
        FHIR_JSON,
    )
    assert [n["text"] for n in new["note"]] == ["a", "B", "C"]


def test_fhirpath_add_to_a_repeating_element_that_is_absent_makes_a_list():
    old = task(note=None)
    new = patched(
        old, params(op("add", "Task", name="note", value=("valueAnnotation", {"text": "n"}))), FHIR_JSON
    )
    assert new["note"] == [{"text": "n"}]


def test_fhirpath_add_output_then_its_value_by_index():
    old = task(output=[{"type": DISPENSED, "valueReference": DISPENSE_REF}])
    new = patched(
        old,
        params(
            op(
                "add",
                "Task",
                name="output",
                value=[{"name": "type", "valueCodeableConcept": {"text": "tracking"}}],
            ),
            op("add", "Task.output[1]", name="value", value=("valueString", "RM123")),
        ),
        FHIR_JSON,
    )
    assert new["output"] == [
        {"type": DISPENSED, "valueReference": DISPENSE_REF},
        {"type": {"text": "tracking"}, "valueString": "RM123"},
    ]


def test_fhirpath_replace_a_choice_value_may_change_its_type():
    old = task(output=[{"type": DISPENSED, "valueReference": DISPENSE_REF}])
    new = patched(
        old, params(op("replace", "Task.output[0].value", value=("valueString", "gone"))), FHIR_JSON
    )
    assert new["output"] == [{"type": DISPENSED, "valueString": "gone"}]


def test_fhirpath_part_valued_value_builds_nested_elements():
    # statusReason (CodeableConcept) from parts, its coding (repeating) from nested parts
    patch = params(
        op(
            "replace",
            "Task.statusReason",
            value=[
                {
                    "name": "coding",
                    "part": [{"name": "system", "valueUri": "s"}, {"name": "code", "valueCode": "c"}],
                },
                {"name": "text", "valueString": "t"},
            ],
        )
    )
    new = patched(task(), patch, FHIR_JSON)
    assert new["statusReason"] == {"coding": [{"system": "s", "code": "c"}], "text": "t"}


def test_fhirpath_part_valued_identifier_value_is_not_a_choice():
    patch = params(
        op(
            "add",
            "Task",
            name="identifier",
            value=[{"name": "system", "valueUri": "https://x"}, {"name": "value", "valueString": "42"}],
        )
    )
    new = patched(task(), patch, FHIR_JSON)
    assert new["identifier"][-1] == {"system": "https://x", "value": "42"}


def test_fhirpath_delete_of_a_missing_path_is_a_no_op():
    new = patched(
        task(), params(op("delete", "Task.businessStatus"), op("delete", "Task.note[7]")), FHIR_JSON
    )
    assert new == task()


def test_fhirpath_delete_the_last_item_drops_the_element():
    new = patched(task(), params(op("delete", "Task.note[0]")), FHIR_JSON)
    assert "note" not in new


def test_fhirpath_operations_apply_in_order():
    new = patched(
        task(),
        params(
            op("replace", "Task.status", value=("valueCode", "accepted")),
            op("add", "Task", name="businessStatus", value=("valueCodeableConcept", {"text": "queued"})),
            op("replace", "Task.businessStatus.text", value=("valueString", "picking")),
        ),
        FHIR_JSON,
    )
    assert new["status"] == "accepted" and new["businessStatus"] == {"text": "picking"}


@pytest.mark.parametrize(
    "operations,index,fragment",
    [
        ([op("delete", "Task.output.where(type.text='x')")], 0, "where()"),
        ([op("replace", "Patient.status", value=("valueCode", "accepted"))], 0, "resource type"),
        ([op("replace", "status", value=("valueCode", "accepted"))], 0, "resource type"),
        (
            [op("delete", "Task.note[0]"), op("replace", "Task.note.first()", value=("valueString", "x"))],
            1,
            "not supported",
        ),
        ([op("replace", "Task.output[0] | Task.note", value=("valueString", "x"))], 0, "unsupported"),
        ([op("replace", "Task.businessStatus", value=("valueString", "x"))], 0, "does not exist"),
        ([op("add", "Task", name="statusReason", value=("valueString", "x"))], 0, "already has a value"),
        ([op("add", "Task", value=("valueString", "x"))], 0, "'name'"),
        ([op("replace", "Task.status")], 0, "'value'"),
        ([op("munge", "Task.status")], 0, "'type'"),
        ([op("insert", "Task.note", index=5, value=("valueString", "x"))], 0, "out of range"),
        ([op("insert", "Task.status", index=0, value=("valueString", "x"))], 0, "not a repeating"),
        ([op("move", "Task.note", source=0, destination=3)], 0, "out of range"),
        (
            [op("add", "Task.output[0]", name="value", value=[{"name": "reference", "valueString": "x"}])],
            0,
            "choice element",
        ),
        ([{"name": "op", "part": []}], 0, "'operation'"),
        ([op("replace", "Task.id", value=("valueId", "other"))], None, "Task.id"),
    ],
)
def test_fhirpath_refusals(operations, index, fragment):
    old = task(output=[{"type": DISPENSED}])
    err = refused(old, params(*operations), FHIR_JSON)
    assert (err.status, err.code) == (422, "processing")
    if index is not None:
        assert err.expression == [f"Parameters.parameter[{index}]"]
        assert f"FHIRPath Patch operation {index}" in err.diagnostics
    if fragment:
        assert fragment in err.diagnostics


def test_fhirpath_delete_of_a_repeating_element_with_one_item_deletes_it():
    assert "note" not in patched(task(), params(op("delete", "Task.note")), FHIR_JSON)


def test_fhirpath_path_matching_several_elements_is_refused():
    err = refused(
        three_notes(), params(op("replace", "Task.note.text", value=("valueString", "x"))), FHIR_JSON
    )
    assert err.status == 422 and "matches 3 elements" in err.diagnostics
    err = refused(three_notes(), params(op("delete", "Task.note")), FHIR_JSON)
    assert err.status == 422 and "matches 3 elements" in err.diagnostics


def test_a_non_parameters_body_is_not_a_fhirpath_patch():
    err = refused(task(), {"resourceType": "Task", "status": "accepted"}, FHIR_JSON)
    assert err.status == 400


def test_a_failed_patch_leaves_the_input_alone_even_after_earlier_ops_succeeded():
    old = task()
    before = copy.deepcopy(old)
    with pytest.raises(FhirError):
        apply_patch(
            old,
            params(op("delete", "Task.note[0]"), op("replace", "Task.nothing", value=("valueString", "x"))),
            FHIR_JSON,
        )
    with pytest.raises(FhirError):
        apply_patch(
            old,
            [{"op": "remove", "path": "/note/0"}, {"op": "test", "path": "/status", "value": "x"}],
            JSON_PATCH,
        )
    assert old == before


def test_the_result_does_not_share_objects_with_the_patch_or_the_input():
    old = task()
    value = {"text": "shared?"}
    new = apply_patch(old, [{"op": "add", "path": "/note/-", "value": value}], JSON_PATCH)
    new["note"][-1]["text"] = "changed"
    new["note"][0]["text"] = "changed"
    assert value == {"text": "shared?"} and old["note"] == [{"text": "please dispense"}]


def test_patch_then_check_a_hub_acceptance_end_to_end():
    old = task()
    new = apply_patch(
        old,
        params(
            op("replace", "Task.status", value=("valueCode", "accepted")),
            op("add", "Task", name="businessStatus", value=("valueCodeableConcept", {"text": "queued"})),
        ),
        FHIR_JSON,
    )
    assert check_task_update(old, new, "owner") is None
    with pytest.raises(FhirError) as caught:
        check_task_update(old, new, "requester")
    assert caught.value.status == 403 and caught.value.expression == ["Task.businessStatus"]
