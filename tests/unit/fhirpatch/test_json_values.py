"""What both patch engines share: JSON equality, pruning to FHIR JSON, and the result's identity."""

import pytest

from fhirpatch.json_values import finish, json_equal, prune
from proxy.errors import FhirError


@pytest.mark.parametrize(
    "a,b,equal",
    [
        (1, 1.0, True),
        (True, 1, False),
        (False, 0, False),
        ({"a": [1, 2]}, {"a": [1, 2.0]}, True),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ([1, 2], [2, 1], False),
        ("1", 1, False),
    ],
)
def test_json_equal(a, b, equal):
    assert json_equal(a, b) is equal


def test_prune_drops_empty_objects_arrays_and_nulls_bottom_up():
    assert prune({"a": {"b": []}, "c": None, "d": [{}, 1], "e": 0, "f": ""}) == {"d": [1], "e": 0, "f": ""}


def test_finish_keeps_a_resource_that_kept_its_type_and_id():
    assert finish({"resourceType": "Task", "id": "1"}, {"resourceType": "Task", "id": "1", "x": {}}, "p") == {
        "resourceType": "Task",
        "id": "1",
    }


@pytest.mark.parametrize(
    "patched,fragment",
    [
        ([], "leaves no resource"),
        ({"resourceType": "Task", "id": "2"}, "Task.id"),
        ({"id": "1"}, "resourceType"),
    ],
)
def test_finish_refuses_a_result_that_is_no_longer_the_resource(patched, fragment):
    with pytest.raises(FhirError) as caught:
        finish({"resourceType": "Task", "id": "1"}, patched, "the patch")
    assert caught.value.status == 422 and fragment in caught.value.diagnostics
