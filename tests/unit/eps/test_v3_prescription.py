"""The prescription id and time fragments, and the short-form id's MOD 37-2 check character."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from eps._fhir import Message
from eps._v3 import canonical
from eps.conformance import expected_fragments
from eps.v3_prescription import author_time, id_fragment, prescription_ids, short_form_id_valid, time_fragment

EXAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "examples" / "eps"
STEM = "primary-care__acute__nominated-pharmacy__medical-prescriber__1"


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared examples not present")
def test_id_fragment_equals_eps_translation():
    bundle = json.loads((EXAMPLES / f"{STEM}-Prepare-Request-200_OK.json").read_bytes(), parse_float=Decimal)
    long_form, _ = prescription_ids(Message(bundle).of_type("MedicationRequest")[0])
    eps = expected_fragments((EXAMPLES / f"{STEM}-Convert-Response-Send-200_OK.xml").read_bytes())
    assert canonical(id_fragment(long_form)) == eps["id"][0]


@pytest.mark.parametrize("value", ["24F5DA-A83008-7EFE6Z", "7D9625-Z72BF2-11E3AC", "DE1AF4-A99968-4C918K"])
def test_valid_short_form_ids(value):
    assert short_form_id_valid(value)


@pytest.mark.parametrize("value", ["24F5DA-A83008-7EFE6Y", "24F5DAA83008-7EFE6Z", "", "24F5DA-A83008-7EF!6Z"])
def test_invalid_short_form_ids(value):
    assert not short_form_id_valid(value)


def test_time_fragment_and_now():
    assert (
        canonical(time_fragment("20241209115004"))
        == b'<time xmlns="urn:hl7-org:v3" value="20241209115004"></time>'
    )
    now = datetime(2024, 12, 9, 11, 50, 4, 999, tzinfo=UTC)
    assert author_time(Message({"entry": []}), {"reference": "urn:uuid:x"}, now) == "20241209115004"
