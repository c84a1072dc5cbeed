import pytest

from proxy import json_shapes
from proxy.errors import FhirError

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
TASK = {
    "resourceType": "Task",
    "status": "requested",
    "intent": "order",
    "identifier": [{"system": "s", "value": "v"}],
    "meta": {"security": [{"system": "s", "code": "c"}], "profile": ["p"]},
    "requester": {"identifier": {"system": ODS, "value": "FA001"}},
    "owner": {"reference": "Organization/1"},
    "basedOn": [{"reference": "MedicationRequest/1"}],
}


def refused(body) -> FhirError:
    with pytest.raises(FhirError) as e:
        json_shapes.check(body)
    assert e.value.status == 400
    return e.value


def test_a_well_formed_task_passes():
    json_shapes.check(TASK)


@pytest.mark.parametrize(
    "change, where",
    [
        ({"meta": "x"}, "Task.meta"),
        ({"meta": [1]}, "Task.meta"),
        ({"meta": {"security": "x"}}, "Task.meta.security"),
        ({"meta": {"security": ["x"]}}, "Task.meta.security[0]"),
        ({"meta": {"security": [{"system": 5}]}}, "Task.meta.security[0].system"),
        ({"meta": {"profile": [5]}}, "Task.meta.profile[0]"),
        ({"requester": "x"}, "Task.requester"),
        ({"owner": [{"reference": "Organization/1"}]}, "Task.owner"),
        ({"owner": {"reference": 5}}, "Task.owner.reference"),
        ({"requester": {"identifier": "x"}}, "Task.requester.identifier"),
        ({"for": "x"}, "Task.for"),
        ({"basedOn": {"reference": "x"}}, "Task.basedOn"),
        ({"identifier": "x"}, "Task.identifier"),
        ({"identifier": ["x"]}, "Task.identifier[0]"),
        ({"identifier": [{"value": 5}]}, "Task.identifier[0].value"),
        ({"status": {"x": 1}}, "Task.status"),
        ({"id": 5}, "Task.id"),
    ],
)
def test_a_wrong_json_type_is_refused_at_the_element(change, where):
    err = refused({**TASK, **change})
    assert err.expression == [where] and where in err.diagnostics


def test_subject_as_a_string_is_refused_on_any_resource():
    assert refused({"resourceType": "Observation", "subject": "x"}).expression == ["Observation.subject"]


def test_a_reference_that_is_a_number_is_refused_anywhere():
    body = {"resourceType": "Observation", "performer": [{"reference": 5}]}
    assert refused(body).expression == ["Observation.performer[0].reference"]


def test_a_reference_element_named_reference_passes():
    # ImplementationGuide.definition.resource.reference is itself a Reference
    ig = {
        "resourceType": "ImplementationGuide",
        "definition": {"resource": [{"reference": {"reference": "x"}}]},
    }
    json_shapes.check(ig)


def test_bundle_identifier_is_one_identifier():
    json_shapes.check({"resourceType": "Bundle", "identifier": {"value": "x"}})
    assert refused({"resourceType": "Bundle", "identifier": [{"value": "x"}]}).expression == [
        "Bundle.identifier"
    ]


@pytest.mark.parametrize(
    "params, where",
    [
        ("x", "Parameters.parameter"),
        (["x"], "Parameters.parameter[0]"),
        ([{"name": 5}], "Parameters.parameter[0].name"),
        ([{"name": "operation", "part": "x"}], "Parameters.parameter[0].part"),
        ([{"name": "operation", "part": [1]}], "Parameters.parameter[0].part[0]"),
        (
            [{"name": "operation", "part": [{"name": "path", "valueString": 5}]}],
            "Parameters.parameter[0].part[0].valueString",
        ),
    ],
)
def test_parameters_of_a_wrong_shape_are_refused(params, where):
    assert refused({"resourceType": "Parameters", "parameter": params}).expression == [where]


@pytest.mark.parametrize(
    "entry, where",
    [
        ("x", "Bundle.entry[0]"),
        ({"resource": "x"}, "Bundle.entry[0].resource"),
        ({"request": "x"}, "Bundle.entry[0].request"),
        ({"request": {"method": ["GET"], "url": "Patient"}}, "Bundle.entry[0].request.method"),
        ({"request": {"method": "GET", "url": 5}}, "Bundle.entry[0].request.url"),
        (
            {"request": {"method": "POST", "url": "Patient", "ifNoneExist": 5}},
            "Bundle.entry[0].request.ifNoneExist",
        ),
        ({"fullUrl": 5}, "Bundle.entry[0].fullUrl"),
        (
            {"resource": {"resourceType": "Task", "meta": {"security": "x"}}},
            "Bundle.entry[0].resource.meta.security",
        ),
    ],
)
def test_bundle_entries_of_a_wrong_shape_are_refused(entry, where):
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [entry]}
    assert refused(bundle).expression == [where]


def test_a_search_inside_a_batch_is_held_to_the_query_rules():
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Patient?_offset=-1"}}],
    }
    assert refused(bundle).expression == ["Bundle.entry[0].request.url"]


@pytest.mark.parametrize(
    "key, value",
    [("valueInteger", "1"), ("valueInteger", True), ("valueBoolean", "true"), ("valueDecimal", "1.5")],
)
def test_primitive_values_of_the_wrong_type_are_refused(key, value):
    body = {"resourceType": "Patient", "extension": [{"url": "x", key: value}]}
    assert refused(body).expression == [f"Patient.extension[0].{key}"]


def refused_patch(body) -> FhirError:
    with pytest.raises(FhirError) as e:
        json_shapes.check(body, "application/json-patch+json")
    return e.value


def test_a_json_patch_needs_objects_with_string_op_and_path():
    json_shapes.check([{"op": "replace", "path": "/status", "value": 5}], "application/json-patch+json")
    assert refused_patch([1]).expression == ["$this[0]"]
    assert refused_patch([{"op": 5}]).expression == ["$this[0].op"]


def test_an_array_that_is_not_a_patch_is_left_to_the_resource_check():
    json_shapes.check([1, 2])


def test_a_body_that_is_not_an_object_is_left_to_the_resource_check():
    json_shapes.check("x")


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "ValueSet", "expansion": {"identifier": "urn:uuid:1", "timestamp": "2020"}},
        {"resourceType": "MessageHeader", "response": {"identifier": "abc", "code": "ok"}},
        {"resourceType": "OperationDefinition", "system": True},
        {"resourceType": "NamingSystem", "responsible": "NHS England"},
        {"resourceType": "ChargeItemDefinition", "partOf": ["http://x/cid"]},
        {"resourceType": "ExampleScenario", "process": [{"step": [{"operation": {"receiver": "x"}}]}]},
        {"resourceType": "Contract", "term": [{"action": [{"status": {"text": "x"}}]}]},
        {"resourceType": "SubstanceSpecification", "status": {"text": "x"}, "identifier": {"value": "x"}},
        {"resourceType": "Library", "author": [{"name": "x"}]},
        {"resourceType": "Parameters", "parameter": [{"name": "a", "part": [{"name": "b", "part": []}]}]},
        {"resourceType": "Basic", "code": {"coding": [{"system": "s", "code": "c"}]}, "part": "x"},
    ],
)
def test_elements_that_share_a_name_with_another_type_in_r4_pass(resource):
    json_shapes.check(resource)


def test_a_part_deep_in_parameters_is_checked():
    params = [{"name": "a", "part": [{"name": "b", "part": ["x"]}]}]
    err = refused({"resourceType": "Parameters", "parameter": params})
    assert err.expression == ["Parameters.parameter[0].part[0].part[0]"]
