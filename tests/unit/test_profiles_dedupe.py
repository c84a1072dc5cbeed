"""What `fhirplug profiles dedupe` reports: each canonical, the copy kept, the copies removed."""

from canonicals.duplicates import Duplicates
from canonicals.identity import Canonical
from ops.profiles_dedupe import report

FOUND = [Duplicates("ValueSet", Canonical("https://x/vs", "1"), "b", ["a", "c"])]


def test_a_dry_run_says_what_would_be_deleted():
    assert report(FOUND, dry_run=True) == [
        "ValueSet https://x/vs|1: kept ValueSet/b, would delete ValueSet/a, ValueSet/c",
        "1 canonicals stored more than once; would delete 2 copies",
    ]


def test_a_run_says_what_was_deleted():
    assert report(FOUND, dry_run=False)[0].endswith("deleted ValueSet/a, ValueSet/c")
    assert report([], dry_run=False) == ["0 canonicals stored more than once; deleted 0 copies"]
