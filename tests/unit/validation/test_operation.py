"""What $validate is sent: a Parameters resource wrapped as the resource to validate, the
operation's own Parameters and every other resource as sent."""

import json

from validation.operation import is_operation_parameters, mode_problem, wrap

PATIENT = {"resourceType": "Patient", "gender": "male"}


def test_the_operations_own_parameters_are_recognised():
    own = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": PATIENT}]}
    with_mode = {**own, "parameter": [*own["parameter"], {"name": "mode", "valueCode": "create"}]}
    assert is_operation_parameters(own) and is_operation_parameters(with_mode)


def test_a_parameters_with_other_names_or_no_resource_is_a_resource_to_validate():
    assert not is_operation_parameters({"resourceType": "Parameters", "parameter": [{"name": "x"}]})
    assert not is_operation_parameters(
        {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "create"}]}
    )
    assert not is_operation_parameters({"resourceType": "Parameters"})


def test_a_parameters_resource_is_wrapped_with_mode_and_profile_from_the_query():
    body = {"resourceType": "Parameters", "parameter": [{"name": "x", "valueString": "y"}]}
    raw = json.dumps(body, indent=2).encode()
    out = wrap(raw, [("mode", "create"), ("profile", "http://p|1"), ("_format", "json")])
    assert out is not None
    sent = json.loads(out.body)
    assert sent["parameter"] == [
        {"name": "mode", "valueCode": "create"},
        {"name": "profile", "valueCanonical": "http://p|1"},
        {"name": "resource", "resource": body},
    ]
    assert out.withheld == {"mode", "profile"}


def test_the_wrapper_adds_no_line_break_so_line_numbers_hold():
    raw = json.dumps({"resourceType": "Parameters", "parameter": [{"name": "x"}]}, indent=2).encode()
    out = wrap(raw, [])
    assert out is not None and out.body.count(b"\n") == raw.count(b"\n")


def test_other_resources_and_unparsable_bodies_go_as_sent():
    assert wrap(json.dumps(PATIENT).encode(), []) is None
    own = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": PATIENT}]}
    assert wrap(json.dumps(own).encode(), []) is None
    assert wrap(b"{not json", []) is None


def test_only_the_three_fhir_modes_are_accepted():
    assert mode_problem([("mode", "delete")]) is None and mode_problem([]) is None
    assert "explode" in (mode_problem([("mode", "explode")]) or "")
