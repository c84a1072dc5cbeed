"""Which of the store's findings about a profile refuse it."""

from validation.profile_checks import refusing_issues


def outcome(*issues):
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def test_an_out_of_order_differential_refuses_naming_the_element():
    found = refusing_issues(
        outcome(
            {
                "severity": "error",
                "code": "processing",
                "diagnostics": "No match found for Patient.birthDate in the generated snapshot",
                "expression": ["StructureDefinition.differential.element[0]"],
            }
        )
    )
    assert found == [
        (
            "No match found for Patient.birthDate in the generated snapshot",
            ["StructureDefinition.differential.element[0]"],
        )
    ]


def test_warnings_and_hapis_own_package_lookup_failure_do_not_refuse():
    assert (
        refusing_issues(
            outcome(
                {"severity": "warning", "code": "processing", "diagnostics": "best practice"},
                {
                    "severity": "error",
                    "code": "processing",
                    "diagnostics": "Error generating Snapshot: Unable to resolve package id "
                    "hl7.fhir.r4.core#null",
                },
            )
        )
        == []
    )
