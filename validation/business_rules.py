"""fhirplug's business rules as ``$validate`` issues, for a caller who asks for them
(``$validate?rules=true``): the rules a write would be refused by that need no stored state:
the hub-and-spoke message checks (one Task, every reference resolved, NHS Numbers with a valid
check digit, Task status for the direction). Rules that depend on what is stored (the Task state
machine against the stored Task, tenancy, EPS's prescription lifecycle) are judged only on a
real write.
"""

from __future__ import annotations

from hubspoke.message_rules import check
from hubspoke.messages import classify

# marks an issue as fhirplug's rather than the profile validator's
SOURCE = "fhirplug business rule"


def business_issues(resource: object) -> list[dict]:
    """OperationOutcome issues (severity error, code business-rule) for every rule ``resource`` breaks."""
    kind = classify(resource)
    if kind is None:
        return []
    return [
        {
            "severity": "error",
            "code": "business-rule",
            "details": {"text": f"{SOURCE} ({kind} message)"},
            "diagnostics": diagnostics,
            "expression": list(expressions),
        }
        for diagnostics, expressions in check(resource, kind)
    ]


def merge(outcome: dict, issues: list[dict]) -> dict:
    """The store's OperationOutcome with ``issues`` added; its "no issues" note goes once there are."""
    if not issues:
        return outcome
    kept = [
        i
        for i in outcome.get("issue") or []
        if not (i.get("severity") == "information" and "No issues detected" in str(i.get("diagnostics")))
    ]
    return {**outcome, "issue": kept + issues}
