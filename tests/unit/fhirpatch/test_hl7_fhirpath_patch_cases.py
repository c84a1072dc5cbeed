"""HL7's FHIRPath Patch test cases (fhir-test-cases ``r4/patch/fhir-patch-tests.xml``), each applied
by fhirplug's engine: the output must equal HL7's expected output, or the case must be refused
where HL7 expects an error."""

import pytest

from fhirpatch import apply_patch
from fhirpatch.json_values import json_equal
from proxy.errors import FhirError
from tests.support.hl7_test_cases import fhirpath_patch_cases

CASES = fhirpath_patch_cases()


def test_the_suite_was_read():
    assert len(CASES) >= 30 and any(c.error for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hl7_fhirpath_patch_case(case):
    if case.error is not None:
        with pytest.raises(FhirError) as caught:
            apply_patch(case.input, case.patch, "application/fhir+json")
        assert caught.value.status == 422
        return
    assert json_equal(apply_patch(case.input, case.patch, "application/fhir+json"), case.output)
