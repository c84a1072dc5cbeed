import gzip

import pytest

from proxy import bodies
from proxy.context import Interaction
from proxy.errors import FhirError


def test_gzip_body_is_decoded():
    assert bodies.decode_body(gzip.compress(b"{}"), "gzip", 100) == b"{}"


def test_gzip_bomb_is_refused_with_413():
    bomb = gzip.compress(b"0" * 1_000_000)
    with pytest.raises(FhirError) as e:
        bodies.decode_body(bomb, "gzip", 10_000)
    assert e.value.status == 413


def test_unknown_content_encoding_is_415():
    with pytest.raises(FhirError) as e:
        bodies.decode_body(b"x", "br", 100)
    assert e.value.status == 415


def test_malformed_json_is_400_with_position():
    with pytest.raises(FhirError) as e:
        bodies.parse_json(b'{"resourceType": ')
    assert e.value.status == 400 and "line 1" in e.value.diagnostics


def test_decimals_keep_their_precision():
    from proxy.response import dumps

    assert dumps(bodies.parse_json(b'{"v":1.50}')) == b'{"v":1.50}'


def test_xml_that_reached_the_pass_through_unconverted_is_415():
    # the XML intake converts every XML body before this check (tests/unit/test_xml_intake.py)
    with pytest.raises(FhirError) as e:
        bodies.check_body_media_type(Interaction("create", "POST", "Patient"), "application/fhir+xml", True)
    assert e.value.status == 415


def test_json_patch_media_type_is_accepted_for_patch_only():
    patch = Interaction("patch", "PATCH", "Task", "1")
    assert bodies.check_body_media_type(patch, "application/json-patch+json", True) == bodies.JSON_PATCH
    with pytest.raises(FhirError):
        bodies.check_body_media_type(
            Interaction("create", "POST", "Task"), "application/json-patch+json", True
        )


def test_update_with_other_id_in_body_is_400_pointing_at_id():
    i = Interaction("update", "PUT", "Patient", "a")
    with pytest.raises(FhirError) as e:
        bodies.resource_entries(
            i, "Patient/a", "", {"resourceType": "Patient", "id": "b"}, "application/fhir+json"
        )
    assert e.value.status == 400 and e.value.expression == ["Patient.id"]


def test_bundle_entries_are_the_write_entries_in_order():
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/1"}},
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "DELETE", "url": "Patient/2"}},
        ],
    }
    btype, entries = bodies.bundle_entries(bundle)
    assert btype == "batch"
    assert [(e.index, e.method) for e in entries] == [(1, "POST"), (2, "DELETE")]


def test_collection_bundle_at_the_base_is_400_pointing_at_type():
    with pytest.raises(FhirError) as e:
        bodies.bundle_entries({"resourceType": "Bundle", "type": "collection"})
    assert e.value.expression == ["Bundle.type"]
