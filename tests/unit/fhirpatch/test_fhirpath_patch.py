"""FHIRPath Patch on a Task: the supported subset, and a 422 naming the operation that fails."""

import copy

import pytest

from fhirpatch import apply_patch
from proxy.errors import FhirError
from tests.support.tasks import (
    DISPENSE_REF,
    DISPENSED,
    EQUIVALENT,
    FHIR_JSON,
    op,
    params,
    patched,
    refused,
    task,
    three_notes,
)


@pytest.mark.parametrize("name,json_patch,fhirpath_patch,change", EQUIVALENT, ids=[c[0] for c in EQUIVALENT])
def test_each_change_as_a_fhirpath_patch(name, json_patch, fhirpath_patch, change):
    """The same changes as the JSON Patch tests make (tests.support.tasks.EQUIVALENT)."""
    assert patched(task(), fhirpath_patch, FHIR_JSON) == task(**change)


def test_fhirpath_move():
    new = patched(three_notes(), params(op("move", "Task.note", source=2, destination=0)), FHIR_JSON)
    assert [n["text"] for n in new["note"]] == ["c", "a", "b"]


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
    assert old == before
