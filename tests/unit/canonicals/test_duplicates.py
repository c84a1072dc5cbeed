"""Copies of one canonical stored before the rule: the newest is kept, the others removed."""

from canonicals.duplicates import find_duplicates
from canonicals.identity import Canonical

URL = "https://example.org/ValueSet/v"


def vs(id_: str, updated: str, version: str | None = "1") -> dict:
    r = {"resourceType": "ValueSet", "id": id_, "url": URL, "meta": {"lastUpdated": updated}}
    if version:
        r["version"] = version
    return r


def test_the_newest_copy_is_kept_and_the_others_removed():
    found = find_duplicates(
        [
            vs("old", "2026-01-01T00:00:00.000+00:00"),
            vs("new", "2026-03-01T00:00:00.000+00:00"),
            vs("mid", "2026-02-01T00:00:00.000+00:00"),
        ]
    )
    assert len(found) == 1
    assert (found[0].canonical, found[0].keep, found[0].remove) == (
        Canonical(URL, "1"),
        "new",
        ["mid", "old"],
    )


def test_different_versions_are_not_duplicates():
    assert find_duplicates([vs("a", "2026-01-01T00:00:00Z", "1"), vs("b", "2026-01-02T00:00:00Z", "2")]) == []


def test_the_same_url_in_two_resource_types_is_not_a_duplicate():
    cs = {**vs("c", "2026-01-01T00:00:00Z"), "resourceType": "CodeSystem"}
    assert find_duplicates([vs("a", "2026-01-01T00:00:00Z"), cs]) == []


def test_equal_instants_keep_the_same_copy_every_run():
    same = "2026-01-01T00:00:00Z"
    assert find_duplicates([vs("a", same), vs("b", same)])[0].keep == "b"
    assert find_duplicates([vs("b", same), vs("a", same)])[0].keep == "b"
