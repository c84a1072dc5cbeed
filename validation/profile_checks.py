"""Which of the store's findings about a StructureDefinition refuse it before it is stored.

HAPI's validator, asked to validate a profile itself, generates its snapshot and checks the
differential against it: an element out of order or on an unknown path ("No match found for
... in the generated snapshot", "... don't have a matching element in the snapshot"), an
unknown base, broken slicing, a type it cannot resolve. Stored anyway, such a profile silently
loses the rule (issue 16). Errors and fatals refuse; warnings and information never do.

One finding is HAPI's, not the profile's: validating an Extension definition by itself, HAPI
8.8 cannot find the package of the core Extension ("Unable to resolve package id
hl7.fhir.r4.core#null") and reports its snapshot as failed, for every UK Core extension, while
validation against the stored extension works. It is not held against the profile.
"""

from __future__ import annotations

BLOCKING = ("error", "fatal")
# HAPI's own failures, not the profile's (see the module's docstring)
NOT_THE_PROFILES = ("Unable to resolve package id hl7.fhir.r4.core#null",)


def refusing_issues(outcome: dict) -> list[tuple[str, list[str]]]:
    """(diagnostics, expressions) of each issue that refuses the profile."""
    out = []
    for issue in outcome.get("issue") or []:
        if not isinstance(issue, dict) or issue.get("severity") not in BLOCKING:
            continue
        text = str(issue.get("diagnostics") or issue.get("code") or "invalid")
        if any(known in text for known in NOT_THE_PROFILES):
            continue
        out.append((text, [str(e) for e in issue.get("expression") or []]))
    return out
