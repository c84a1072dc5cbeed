"""The recordTarget fragment equals EPS's own translation of the shared examples."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from eps._fhir import Message
from eps._v3 import canonical
from eps.conformance import expected_fragments
from eps.v3_patient import record_target

EXAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "examples" / "eps"
STEMS = [
    "primary-care__acute__nominated-pharmacy__medical-prescriber__1",
    "secondary-care__community__repeat-dispensing__nominated-pharmacy__clinical-practitioner__"
    "multiple-medication-requests__prescriber-endorsed__1",
]
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared examples not present")


def patient(stem: str) -> dict:
    bundle = json.loads((EXAMPLES / f"{stem}-Prepare-Request-200_OK.json").read_bytes(), parse_float=Decimal)
    return Message(bundle).one_of_type("Patient")


@pytest.mark.parametrize("stem", STEMS)
def test_record_target_equals_eps_translation(stem):
    eps = expected_fragments((EXAMPLES / f"{stem}-Convert-Response-Send-200_OK.xml").read_bytes())
    assert canonical(record_target(patient(stem))) == eps["recordTarget"][0]


def test_no_registered_gp_is_eps_unknown_practice_code():
    source = patient(STEMS[0])
    source.pop("generalPractitioner", None)
    assert b'<id extension="V81999" root="1.2.826.0.1285.0.1.10"></id>' in canonical(record_target(source))


def test_text_name_is_used_only_without_structured_parts():
    source = patient(STEMS[0])
    source["name"] = [{"use": "nickname", "text": "Jo & <Co>"}]
    assert b'<name use="PREFERRED">Jo &amp; &lt;Co&gt;</name>' in canonical(record_target(source))
