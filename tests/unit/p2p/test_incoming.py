"""A received dispense's prescription, given by identifier, linked to the one request readable here."""

import pytest

from p2p.incoming import AmbiguousPrescription, link_prescriptions

RX = "https://example.org/prescriptions"


def by_identifier(found):
    asked = []

    def find(system, value):
        asked.append((system, value))
        return found

    return find, asked


def dispense(*refs):
    return {"resourceType": "MedicationDispense", "authorizingPrescription": list(refs)}


def test_a_prescription_by_identifier_gets_its_local_reference():
    find, asked = by_identifier([{"resourceType": "MedicationRequest", "id": "41"}])
    md = dispense({"identifier": {"system": RX, "value": "RX-1"}})
    assert link_prescriptions(md, find) == ["MedicationRequest/41"]
    assert md["authorizingPrescription"][0] == {
        "identifier": {"system": RX, "value": "RX-1"},
        "reference": "MedicationRequest/41",
    }
    assert asked == [(RX, "RX-1")]


def test_no_readable_match_leaves_the_reference_logical():
    find, _ = by_identifier([])
    md = dispense({"identifier": {"system": RX, "value": "RX-1"}})
    assert link_prescriptions(md, find) == []
    assert "reference" not in md["authorizingPrescription"][0]


def test_two_matches_are_refused_not_guessed():
    find, _ = by_identifier([{"id": "1"}, {"id": "2"}])
    md = dispense({"reference": "MedicationRequest/5"}, {"identifier": {"system": RX, "value": "RX-1"}})
    with pytest.raises(AmbiguousPrescription) as caught:
        link_prescriptions(md, find)
    assert caught.value.expression == "MedicationDispense.authorizingPrescription[1].identifier"


@pytest.mark.parametrize(
    "ref",
    [
        {"reference": "MedicationRequest/5", "identifier": {"system": RX, "value": "RX-1"}},
        {"identifier": {"value": "RX-1"}},
        {"identifier": {"system": RX}},
        {"type": "Task", "identifier": {"system": RX, "value": "RX-1"}},
        {"display": "a prescription"},
    ],
    ids=["literal-already", "no-system", "no-value", "another-type", "display-only"],
)
def test_what_is_not_a_request_by_identifier_is_not_looked_up(ref):
    find, asked = by_identifier([{"id": "1"}])
    assert link_prescriptions(dispense(ref), find) == [] and asked == []
