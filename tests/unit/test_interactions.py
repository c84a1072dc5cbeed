import pytest

from proxy.errors import FhirError
from proxy.interactions import parse_interaction


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "kind", "rtype", "rid"),
    [
        ("GET", "metadata", False, {}, "capabilities", None, None),
        ("GET", "Patient/1", False, {}, "read", "Patient", "1"),
        ("GET", "Patient/1/_history/2", False, {}, "vread", "Patient", "1"),
        ("GET", "Patient", True, {}, "search-type", "Patient", None),
        ("POST", "Patient/_search", False, {}, "search-type", "Patient", None),
        ("POST", "Patient", False, {}, "create", "Patient", None),
        ("PUT", "Patient/1", False, {}, "update", "Patient", "1"),
        ("PUT", "Patient", True, {}, "update", "Patient", None),
        ("PATCH", "Task/t1", False, {}, "patch", "Task", "t1"),
        ("DELETE", "Patient/1", False, {}, "delete", "Patient", "1"),
        ("GET", "Patient/1/_history", False, {}, "history-instance", "Patient", "1"),
        ("GET", "Patient/_history", False, {}, "history-type", "Patient", None),
        ("GET", "_history", False, {}, "history-system", None, None),
        ("POST", "", False, {}, "transaction", None, None),
        ("GET", "", True, {}, "search-system", None, None),
        ("POST", "Task/$validate", False, {}, "operation", "Task", None),
        ("GET", "Patient/1/$everything", False, {}, "operation", "Patient", "1"),
        ("POST", "$process-message", False, {}, "operation", None, None),
        ("GET", "Patient/1/MedicationRequest", False, {}, "search-compartment", "MedicationRequest", "1"),
    ],
)
def test_urls_are_read_as_fhir_interactions(method, path, query, headers, kind, rtype, rid):
    i = parse_interaction(method, path, query, headers)
    assert (i.kind, i.resource_type, i.id) == (kind, rtype, rid)


def test_if_none_exist_marks_a_conditional_create():
    assert parse_interaction("POST", "Patient", False, {"if-none-exist": "identifier=x"}).conditional


@pytest.mark.parametrize("path", ["patient/1", "Patient/1/_history/2/x", "Patient/a b", "x/y/z/w/v"])
def test_paths_outside_the_fhir_grammar_are_404(path):
    with pytest.raises(FhirError) as e:
        parse_interaction("GET", path, False, {})
    assert e.value.status == 404


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "Patient/1"), ("DELETE", "metadata"), ("PUT", "Patient/1/_history/1")]
)
def test_wrong_method_for_a_route_is_405(method, path):
    with pytest.raises(FhirError) as e:
        parse_interaction(method, path, False, {})
    assert e.value.status == 405


def test_conditional_write_without_criteria_is_400():
    with pytest.raises(FhirError) as e:
        parse_interaction("PUT", "Patient", False, {})
    assert e.value.status == 400


def test_a_getpages_query_at_the_base_is_a_page():
    assert parse_interaction("GET", "", True, {}, paging=True).kind == "page"
