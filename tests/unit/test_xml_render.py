"""The proxy's rendering of judged JSON as FHIR XML, and how a tenant's representation is chosen."""

import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from plugins.tenancy import _from_accept
from proxy.xml_render import to_xml

F = "{http://hl7.org/fhir}"


def test_primitives_complex_types_extensions_and_nested_resources():
    task = {
        "resourceType": "Task",
        "id": "1",
        "extension": [{"url": "https://x/e", "valueDecimal": Decimal("1.50")}],
        "status": "requested",
        "_status": {"id": "s1", "extension": [{"url": "https://x/f", "valueBoolean": True}]},
        "input": [{"id": "i1", "type": {"text": 'a<b&"c"\n'}, "valueInteger": 3}],
        "contained": [{"resourceType": "Patient", "id": "p"}],
    }
    root = ET.fromstring(to_xml(task))
    assert root.tag == f"{F}Task" and root.find(f"{F}id").get("value") == "1"
    ext = root.find(f"{F}extension")
    assert ext.get("url") == "https://x/e" and ext.find(f"{F}valueDecimal").get("value") == "1.50"
    status = root.find(f"{F}status")
    assert status.get("value") == "requested" and status.get("id") == "s1"
    assert status.find(f"{F}extension/{F}valueBoolean").get("value") == "true"
    inp = root.find(f"{F}input")
    assert inp.get("id") == "i1" and inp.find(f"{F}type/{F}text").get("value") == 'a<b&"c"\n'
    assert root.find(f"{F}contained/{F}Patient/{F}id").get("value") == "p"


def test_primitive_arrays_keep_their_extensions_in_place():
    patient = {
        "resourceType": "Patient",
        "name": [{"given": ["A", None], "_given": [None, {"extension": [{"url": "u", "valueString": "x"}]}]}],
    }
    given = ET.fromstring(to_xml(patient)).findall(f"{F}name/{F}given")
    assert [g.get("value") for g in given] == ["A", None]
    assert given[1].find(f"{F}extension").get("url") == "u"


@pytest.mark.parametrize(
    "div",
    [
        '<!DOCTYPE x [<!ENTITY a "b">]><div xmlns="http://www.w3.org/1999/xhtml">&a;</div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><script xmlns="urn:evil">x</script></div>',
        "<div>not xhtml</div></text><id value='2'/><text><div>",
    ],
)
def test_a_narrative_that_is_not_plain_xhtml_is_written_as_text(div):
    root = ET.fromstring(to_xml({"resourceType": "Patient", "text": {"status": "generated", "div": div}}))
    out = root.find(f"{F}text/{{http://www.w3.org/1999/xhtml}}div")
    assert out is not None and len(out) == 0
    assert root.find(f"{F}id") is None


def test_a_narrative_keeps_its_markup():
    div = '<div xmlns="http://www.w3.org/1999/xhtml" xml:lang="en">hi &amp; <b class="c">x</b> t</div>'
    xml = to_xml({"resourceType": "Patient", "text": {"status": "generated", "div": div}}).decode()
    assert (
        '<div xmlns="http://www.w3.org/1999/xhtml" xml:lang="en">hi &amp; <b class="c">x</b> t</div>' in xml
    )


@pytest.mark.parametrize(
    ("accept", "want"),
    [
        (None, "json"),
        ("", "json"),
        ("*/*", "json"),
        ("application/fhir+json", "json"),
        ("application/fhir+xml", "xml"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "xml"),
        ("application/fhir+xml;q=0.5, application/fhir+json", "json"),
        ("text/turtle", None),
        ("application/fhir+turtle, text/html", None),
        ("application/fhir+xml;q=0", None),
    ],
)
def test_a_tenants_representation_follows_accept(accept, want):
    assert _from_accept(accept) == want
