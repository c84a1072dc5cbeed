"""The one canonical reading of request lines and entry URLs: each form either reads as one
canonical URL (what is judged and what the store is sent) or is refused with 400."""

import pytest

from proxy import bodies, canonical
from proxy.app import create_app
from proxy.config import Settings
from proxy.context import WriteEntry
from proxy.errors import FhirError
from tests.support.fake_store import PUBLIC_BASE, FakeStore

PUBLIC = "https://fhirplug.example/fhir"
INTERNAL = "http://store.internal:8090/fhir"


@pytest.mark.parametrize(
    ("url", "canonical_url"),
    [
        ("Patient/1", "Patient/1"),
        ("/Patient/1", "Patient/1"),
        ("//Patient/1", "Patient/1"),
        ("Patient/1/", "Patient/1"),
        ("Patient/1?", "Patient/1"),
        ("/Patient/1?", "Patient/1"),
        ("Patient/1?&", "Patient/1"),
        ("Patient?", "Patient"),
        ("Task?identifier=a%7Cb", "Task?identifier=a%7Cb"),
        ("Task?identifier=a|b", "Task?identifier=a%7Cb"),
        ("Task?identifier=a+b", "Task?identifier=a+b"),
        ("Task?identifier=a%20b", "Task?identifier=a+b"),
        ("Task?a=1&&b=2&", "Task?a=1&b=2"),
        ("Task?_id=1&_id=2", "Task?_id=1&_id=2"),
        ("Task?code=%25", "Task?code=%25"),
        ("%50atient/1", "Patient/1"),
        ("Patient/%31", "Patient/1"),
        (f"{PUBLIC}/Patient/1", "Patient/1"),
        (f"{PUBLIC}/Patient/1?", "Patient/1"),
        (f"{INTERNAL}/Task?status=ready", "Task?status=ready"),
        ("Patient/1/_history/2", "Patient/1/_history/2"),
        ("Patient/$validate", "Patient/$validate"),
    ],
)
def test_entry_urls_read_as_one_canonical_url(url, canonical_url):
    assert canonical.parse_entry_url(url, 0, (PUBLIC, INTERNAL)).url == canonical_url


@pytest.mark.parametrize(
    "url",
    [
        "",
        " Patient/1",
        "Patient/1 ",
        "Patient//1",
        "Patient/./1",
        "Patient/../Task/1",
        "./Patient/1",
        "../Patient/1",
        "Patient/1/..",
        "Patient%2F1",
        "Patient%2f1",
        "Patient/1%3F_format=xml",
        "Patient/1%23x",
        "Patient/1%2500",
        "Patient/%252e%252e",
        "Patient/1%00",
        "Patient/1%0d%0aX: y",
        "Patient/1\r\nX: y",
        "Patient\\1",
        "Patient/1%5c",
        "Patient/1#frag",
        "Patient/%ZZ",
        "Patient/%E0%A4",
        "Patient/1?_method=DELETE",
        "Patient/1?%5Fmethod=DELETE",
        "Patient?=x",
        "Patient?na%00me=x",
        "Patient?name=a%00b",
        "Patient?name=a%0Db",
        "Patient?na me=x",
        "Patient?name=%",
        "http://evil.example/fhir/Patient/1",
        "https://fhirplug.example/fhirX/Patient/1",
        "https://fhirplug.example/Patient/1",
        "http://store.internal:8091/fhir/Patient/1",
        "urn:uuid:0b8e0a0c-0000-4000-8000-000000000000",
        "/",
        "?_id=1",
    ],
)
def test_entry_urls_that_cannot_be_read_canonically_are_refused(url):
    with pytest.raises(FhirError) as caught:
        canonical.parse_entry_url(url, 3, (PUBLIC, INTERNAL))
    assert caught.value.status == 400
    assert caught.value.expression == ["Bundle.entry[3].request.url"]


@pytest.mark.parametrize("url", [None, 7, ["Patient/1"]])
def test_an_entry_url_that_is_not_a_string_is_refused(url):
    with pytest.raises(FhirError) as caught:
        canonical.parse_entry_url(url, 0)
    assert caught.value.status == 400


def _bundle(*requests, btype="batch"):
    return {
        "resourceType": "Bundle",
        "type": btype,
        "entry": [
            {
                "request": r,
                **({"resource": {"resourceType": "Patient"}} if r["method"] in ("POST", "PUT") else {}),
            }
            for r in requests
        ],
    }


@pytest.mark.parametrize(
    ("method", "url", "stored"),
    [
        ("DELETE", "/Patient/1", "Patient/1"),
        ("DELETE", "Patient/1?", "Patient/1"),
        ("delete", "//Patient/1/", "Patient/1"),
        ("PUT", "/Patient/1?", "Patient/1"),
        ("GET", "/Patient/1?", "Patient/1"),
        ("GET", "Patient?name=a b", "Patient?name=a+b"),
        ("POST", f"{PUBLIC}/Patient", "Patient"),
    ],
)
def test_the_bundle_carries_the_canonical_url_to_the_store(method, url, stored):
    bundle = _bundle({"method": method, "url": url})
    _, entries = bodies.bundle_entries(bundle, (PUBLIC, INTERNAL))
    assert bundle["entry"][0]["request"]["url"] == stored
    assert bundle["entry"][0]["request"]["method"] == method.upper()
    assert [e.url for e in entries] == ([stored] if method.upper() != "GET" else [])


@pytest.mark.parametrize(
    ("request_", "expression"),
    [
        ({"method": "DELETE", "url": "Patient//1"}, "Bundle.entry[0].request.url"),
        ({"method": "DELETE", "url": "patient/1"}, "Bundle.entry[0].request.url"),
        ({"method": "DELETE", "url": "Patient/1/extra/bits/x"}, "Bundle.entry[0].request.url"),
        ({"method": "DELETE", "url": "Patient"}, "Bundle.entry[0].request.url"),
        ({"method": "FETCH", "url": "Patient/1"}, "Bundle.entry[0].request.method"),
        ({"method": ["GET"], "url": "Patient/1"}, "Bundle.entry[0].request.method"),
        ({"method": "PUT", "url": "Task/1"}, "Bundle.entry[0].resource.resourceType"),
    ],
)
def test_entries_the_rules_cannot_place_are_refused_with_their_expression(request_, expression):
    with pytest.raises(FhirError) as caught:
        bodies.bundle_entries(_bundle(request_), (PUBLIC,))
    assert caught.value.status == 400 and caught.value.expression == [expression]


def test_a_put_entry_whose_resource_names_another_id_is_refused():
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "request": {"method": "PUT", "url": "Patient/1"},
                "resource": {"resourceType": "Patient", "id": "2"},
            }
        ],
    }
    with pytest.raises(FhirError) as caught:
        bodies.bundle_entries(bundle)
    assert caught.value.expression == ["Bundle.entry[0].resource.id"]


def test_if_none_exist_is_canonical_too():
    bundle = _bundle({"method": "POST", "url": "Patient", "ifNoneExist": "Patient?identifier=a|b&"})
    _, entries = bodies.bundle_entries(bundle)
    assert entries[0].if_none_exist == "identifier=a%7Cb"
    with pytest.raises(FhirError) as caught:
        bodies.bundle_entries(_bundle({"method": "POST", "url": "Patient", "ifNoneExist": "Task?x=1"}))
    assert caught.value.expression == ["Bundle.entry[0].request.ifNoneExist"]


def test_canonical_urls_read_back_as_themselves():
    for url in ("Patient/1", "Task?identifier=a%7Cb&_count=2", "Patient/1/_history/2"):
        assert canonical.parse_entry_url(url).url == url


# ---------------------------------------------------------------- the request line


@pytest.fixture
def proxy():
    store = FakeStore()
    app = create_app(Settings(plugins=["request_id"], auth=False, public_base_url=PUBLIC_BASE), store=store)
    return app.test_client(), store


@pytest.mark.parametrize(
    ("url", "path", "query"),
    [
        ("/fhir/Patient/1", "Patient/1", []),
        ("/fhir/Patient/1/", "Patient/1", []),
        ("/fhir/%50atient/1", "Patient/1", []),
        ("/fhir/Task?identifier=a%7Cb&&", "Task", [("identifier", "a|b")]),
        ("/fhir/Task?name=a+b", "Task", [("name", "a b")]),
    ],
)
def test_the_request_line_is_relayed_in_its_canonical_form(proxy, url, path, query):
    client, store = proxy
    r = client.get(url)
    assert r.status_code == 200, r.json
    assert (store.calls[-1]["path"], store.calls[-1]["query"]) == (path, query)


@pytest.mark.parametrize(
    "url",
    [
        "/fhir/Patient%2F1",
        "/fhir/Patient/1%3F_format=xml",
        "/fhir/Patient/%2e%2e/Task/1",
        "/fhir/Task//1",
        "/fhir/Patient/1%00",
        "/fhir/Patient/1%2500",
        "/fhir/Patient/1?_method=DELETE",
        "/fhir/Patient/1?name=a%00",
        "/fhir/Patient?=x",
        "/fhir/Patient/%ZZ",
    ],
)
def test_request_lines_that_cannot_be_read_canonically_are_refused(proxy, url):
    client, store = proxy
    r = client.get(url)
    assert r.status_code == 400 and r.json["resourceType"] == "OperationOutcome"
    assert not store.calls


@pytest.mark.parametrize("header", ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"])
def test_method_override_headers_are_refused(proxy, header):
    client, store = proxy
    r = client.get("/fhir/Patient/1", headers={header: "DELETE"})
    assert r.status_code == 400 and not store.calls


def test_a_form_search_body_is_read_canonically_and_sent_as_query(proxy):
    client, store = proxy
    r = client.post(
        "/fhir/Task/_search",
        data="identifier=a%7Cb&_format=xml",
        content_type="application/x-www-form-urlencoded",
    )
    assert r.status_code == 200
    call = store.calls[-1]
    assert call["query"] == [("identifier", "a|b"), ("_format", "xml")] and call["body"] is None
    r = client.post(
        "/fhir/Task/_search", data="_method=DELETE", content_type="application/x-www-form-urlencoded"
    )
    assert r.status_code == 400


def test_a_write_by_id_with_a_query_is_a_write_by_id():
    """``DELETE Task/1?_format=xml`` deletes Task/1 in the store: it must be judged as such, not
    as a conditional delete whose criteria could be narrowed."""
    by_id = WriteEntry("DELETE", "Task/1?_format=xml", None)
    assert not by_id.conditional and by_id.resource_id == "1"
    assert WriteEntry("DELETE", "Task?identifier=x", None).conditional
