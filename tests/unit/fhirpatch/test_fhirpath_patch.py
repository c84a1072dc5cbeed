"""FHIRPath Patch: full FHIRPath paths on any type, and a 422 naming the operation that fails."""

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
        ([op("replace", "Patient.status", value=("valueCode", "accepted"))], 0, "resource type"),
        (
            [op("delete", "Task.note[0]"), op("replace", "Task.note.first()", value=("valueString", "x"))],
            1,
            "does not exist",
        ),
        ([op("replace", "Task.output[0] | Task.note", value=("valueString", "x"))], 0, "not an element"),
        ([op("replace", "Task.status.exists()", value=("valueString", "x"))], 0, "evaluates to a value"),
        ([op("replace", "Task.note[", value=("valueString", "x"))], 0, "cannot be evaluated"),
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


def test_fhirpath_where_selects_the_element_to_change():
    old = task(
        output=[{"type": {"text": "a"}, "valueString": "1"}, {"type": {"text": "b"}, "valueString": "2"}]
    )
    new = patched(
        old,
        params(op("replace", "Task.output.where(type.text='b').value", value=("valueString", "B"))),
        FHIR_JSON,
    )
    assert [o["valueString"] for o in new["output"]] == ["1", "B"]


def test_fhirpath_delete_where_nothing_matches_is_a_no_op():
    assert patched(task(), params(op("delete", "Task.output.where(type.text='x')")), FHIR_JSON) == task()


def test_fhirpath_first_and_a_path_relative_to_the_resource():
    new = patched(
        three_notes(),
        params(op("delete", "Task.note.first()"), op("replace", "status", value=("valueCode", "accepted"))),
        FHIR_JSON,
    )
    assert [n["text"] for n in new["note"]] == ["b", "c"] and new["status"] == "accepted"


def test_fhirpath_on_a_patient_uses_the_patients_own_cardinalities():
    patient = {"resourceType": "Patient", "id": "p", "name": [{"family": "A"}]}
    new = patched(
        patient,
        params(
            op("add", "Patient.name[0]", name="given", value=("valueString", "Ann")),
            op("add", "Patient", name="maritalStatus", value=("valueCodeableConcept", {"text": "M"})),
            op("add", "Patient", name="deceased", value=("valueBoolean", False)),
            op("insert", "Patient.telecom", index=0, value=("valueContactPoint", {"value": "1"})),
        ),
        FHIR_JSON,
    )
    assert new["name"] == [{"family": "A", "given": ["Ann"]}]
    assert new["maritalStatus"] == {"text": "M"} and new["deceasedBoolean"] is False
    assert new["telecom"] == [{"value": "1"}]


def test_fhirpath_a_path_for_another_type_is_refused():
    err = refused(task(), params(op("replace", "Patient.status", value=("valueCode", "x"))), FHIR_JSON)
    assert err.status == 422 and "resource type" in err.diagnostics


def test_fhirpath_gap_div_is_read_as_an_element_not_the_operator():
    """fhirpathpy's parser reads ``.div`` as the ``div`` operator; the engine quotes it."""
    patient = {"resourceType": "Patient", "id": "p", "text": {"status": "generated", "div": "<div>a</div>"}}
    new = patched(
        patient, params(op("replace", "Patient.text.div", value=("valueString", "<div>b</div>"))), FHIR_JSON
    )
    assert new["text"]["div"] == "<div>b</div>"


def test_fhirpath_delete_of_a_primitive_drops_its_extensions_too():
    patient = {
        "resourceType": "Patient",
        "id": "p",
        "birthDate": "2000",
        "_birthDate": {"extension": [{"url": "u"}]},
    }
    new = patched(patient, params(op("delete", "Patient.birthDate")), FHIR_JSON)
    assert "birthDate" not in new and "_birthDate" not in new
