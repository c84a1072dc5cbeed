"""fhirplug's stateless business rules as $validate issues."""

import json
from pathlib import Path

from validation.business_rules import business_issues, merge

EXAMPLES = Path(__file__).resolve().parents[3] / "ig" / "examples"


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def test_a_bad_nhs_number_is_a_business_rule_error_with_its_expression():
    found = business_issues(example("invalid-spoke-to-hub-bad-nhs-number.json"))
    assert found and all(i["severity"] == "error" and i["code"] == "business-rule" for i in found)
    assert any("NHS" in i["diagnostics"] and i["expression"] for i in found)


def test_a_valid_message_and_other_resources_break_no_rule():
    assert business_issues(example("valid-spoke-to-hub.json")) == []
    assert business_issues({"resourceType": "Patient"}) == []


def test_merged_issues_replace_the_no_issues_note():
    ok = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "diagnostics": "No issues detected during validation"}],
    }
    rule = {"severity": "error", "code": "business-rule", "diagnostics": "x", "expression": ["Bundle"]}
    assert merge(ok, [rule])["issue"] == [rule]
    assert merge(ok, []) == ok
