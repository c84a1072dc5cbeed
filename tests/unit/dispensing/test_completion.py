"""When a MedicationRequest is complete: the quantity rule and the last-expected mark."""

from dispensing.completion import DISPENSE_TYPE_SYSTEM, completes

TABLETS = {"value": 60, "unit": "tablet", "system": "http://snomed.info/sct", "code": "428673006"}


def request(quantity: dict | None = TABLETS, status: str = "active") -> dict:
    mr: dict = {"resourceType": "MedicationRequest", "status": status}
    if quantity is not None:
        mr["dispenseRequest"] = {"quantity": quantity}
    return mr


def dispense(value: float | None, status: str = "completed", last: bool = False, **unit) -> dict:
    md: dict = {"resourceType": "MedicationDispense", "status": status}
    if value is not None:
        md["quantity"] = {**TABLETS, **unit, "value": value}
    if last:
        md["type"] = {"coding": [{"system": DISPENSE_TYPE_SYSTEM, "code": "0001"}]}
    return md


def test_a_full_dispense_completes():
    assert completes(request(), [dispense(60)])


def test_a_partial_dispense_does_not():
    assert not completes(request(), [dispense(20)])


def test_partial_dispenses_adding_up_complete():
    assert completes(request(), [dispense(20), dispense(30), dispense(10)])


def test_more_than_asked_completes():
    assert completes(request(), [dispense(70)])


def test_dispenses_not_completed_do_not_count():
    assert not completes(request(), [dispense(40), dispense(20, status="in-progress")])
    assert not completes(request(), [dispense(60, status="entered-in-error")])


def test_a_dispense_in_another_unit_is_not_counted():
    assert not completes(request(), [dispense(60, code="732937005", unit="capsule")])


def test_without_a_quantity_only_the_last_expected_mark_completes():
    assert not completes(request(quantity=None), [dispense(60)])
    assert completes(request(quantity=None), [dispense(None, last=True)])


def test_the_last_expected_mark_completes_a_partial_quantity():
    assert completes(request(), [dispense(20, last=True)])


def test_a_request_not_active_is_left_alone():
    assert not completes(request(status="cancelled"), [dispense(60)])
    assert not completes(request(status="completed"), [dispense(60)])


def test_a_quantity_that_is_not_a_number_counts_as_none():
    assert not completes(request(), [dispense(None) | {"quantity": {**TABLETS, "value": "lots"}}])


def test_a_quantity_of_nan_or_infinity_counts_as_none():
    assert not completes(request(), [dispense(float("nan"))])
    assert not completes(request(), [dispense(float("inf"))])
