import pytest

from proxy import query_checks
from proxy.context import WriteEntry
from proxy.errors import FhirError


@pytest.mark.parametrize("name", ["_count", "_offset", "_getpagesoffset"])
@pytest.mark.parametrize("value", ["-1", "x", "1.5", "", "1e3", "9999999999", "١"])
def test_paging_parameters_must_be_whole_numbers(name, value):
    with pytest.raises(FhirError) as e:
        query_checks.check([(name, value)])
    assert e.value.status == 400 and e.value.expression == [name]


def test_whole_numbers_pass():
    query_checks.check([("_count", "0"), ("_offset", "10"), ("name", "-1")])


@pytest.mark.parametrize("name", ["_filter", "_filter:x"])
def test_filter_is_refused_whatever_it_holds(name):
    with pytest.raises(FhirError) as e:
        query_checks.check([(name, "name eq x")])
    assert e.value.status == 400 and e.value.code == "not-supported"


def test_a_form_body_is_checked_like_the_query():
    with pytest.raises(FhirError):
        query_checks.check([], "application/x-www-form-urlencoded; charset=utf-8", b"_offset=-5")
    query_checks.check([], "application/fhir+json", b"_offset=-5")  # not a form: not parameters


@pytest.mark.parametrize("body", [b"name=%zz", b"name=%", b"a=%4"])
def test_a_form_body_with_a_broken_escape_is_refused(body):
    with pytest.raises(FhirError) as e:
        query_checks.check([], "application/x-www-form-urlencoded", body)
    assert e.value.status == 400


def test_an_entry_url_points_at_the_entry():
    with pytest.raises(FhirError) as e:
        query_checks.check_url("Patient?_count=x", "Bundle.entry[3].request.url")
    assert e.value.expression == ["Bundle.entry[3].request.url"]


class Store:
    def __init__(self, problem=None):
        self.problem, self.asked = problem, []

    def criteria_problem(self, resource_type, query):
        self.asked.append((resource_type, query))
        return self.problem


def test_a_conditional_update_is_refused_when_the_store_cannot_parse_its_criteria():
    store = Store("HAPI-1941: Invalid prefix")
    with pytest.raises(FhirError) as e:
        query_checks.check_conditional_updates(
            store, [WriteEntry("PUT", "Task?_lastUpdated=xx1", {}, index=2)]
        )
    assert e.value.status == 400 and "Invalid prefix" in e.value.diagnostics
    assert e.value.expression == ["Bundle.entry[2].request.url"]
    assert store.asked == [("Task", "_lastUpdated=xx1")]


def test_only_conditional_updates_are_asked():
    store = Store("never")
    entries = [
        WriteEntry("PUT", "Task/1", {}),
        WriteEntry("POST", "Task", {}),
        WriteEntry("DELETE", "Task?x=1", None),
    ]
    query_checks.check_conditional_updates(store, entries)
    assert store.asked == []
