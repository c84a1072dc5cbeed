"""A conformance resource is known by its url and version: each write keeps one stored copy."""

from canonicals.identity import Canonical, Upsert, needs_lookup, stored_copy, upsert

SD = "StructureDefinition"
URL = "https://example.org/StructureDefinition/p"
V1 = Canonical(URL, "1.0.0")
UNVERSIONED = Canonical(URL)


def test_a_conformance_resource_is_known_by_url_and_version():
    assert Canonical.of({"resourceType": SD, "url": URL, "version": "1.0.0"}) == V1
    assert Canonical.of({"resourceType": "ValueSet", "url": URL}) == UNVERSIONED


def test_other_resources_and_conformance_resources_without_a_url_have_none():
    assert Canonical.of({"resourceType": "Patient", "url": URL}) is None
    assert Canonical.of({"resourceType": SD, "url": ""}) is None
    assert Canonical.of({"resourceType": SD}) is None


def test_a_pinned_reference_names_its_version():
    assert Canonical.parse(f"{URL}|2.0") == Canonical(URL, "2.0")
    assert Canonical.parse(URL) == UNVERSIONED
    assert str(Canonical(URL, "2.0")) == f"{URL}|2.0"


def test_criteria_name_url_and_version():
    assert V1.criteria() == f"url={URL}&version=1.0.0"
    assert UNVERSIONED.criteria() == f"url={URL}"


def test_a_versioned_create_becomes_a_conditional_update_the_store_matches():
    assert upsert(SD, "POST", SD, V1, None) == Upsert("PUT", f"{SD}?url={URL}&version=1.0.0", None)
    assert not needs_lookup("POST", SD, V1)


def test_an_unversioned_create_updates_the_unversioned_copy_found():
    assert needs_lookup("POST", SD, UNVERSIONED)
    assert upsert(SD, "POST", SD, UNVERSIONED, "a") == Upsert("PUT", f"{SD}/a", "a")
    assert upsert(SD, "POST", SD, UNVERSIONED, None) is None


def test_an_update_of_another_id_updates_the_stored_copy():
    assert needs_lookup("PUT", f"{SD}/b", V1)
    assert upsert(SD, "PUT", f"{SD}/b", V1, "a") == Upsert("PUT", f"{SD}/a", "a")


def test_an_update_of_the_copy_itself_or_of_a_new_canonical_goes_as_sent():
    assert upsert(SD, "PUT", f"{SD}/a", V1, "a") is None
    assert upsert(SD, "PUT", f"{SD}/b", V1, None) is None


def test_a_conditional_write_keeps_the_callers_criteria():
    assert not needs_lookup("PUT", f"{SD}?url={URL}", V1)
    assert upsert(SD, "PUT", f"{SD}?url={URL}", V1, "a") is None


def test_the_stored_copy_is_the_one_with_the_same_version():
    found = [
        {"resourceType": SD, "id": "v2", "url": URL, "version": "2.0"},
        {"resourceType": SD, "id": "none", "url": URL},
        {"resourceType": SD, "id": "v1", "url": URL, "version": "1.0.0"},
    ]
    assert stored_copy(found, V1) == "v1"
    assert stored_copy(found, UNVERSIONED) == "none"
    assert stored_copy(found, Canonical(URL, "3")) is None
