"""The leaf-by-leaf comparison the XML round trips rely on can tell documents apart."""

from tests.support import fhir_leaves

XML = b"""<Patient xmlns="http://hl7.org/fhir"><id value="p"/>
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>Hi  there</p></div></text>
  <extension url="http://e.org/x"><valueDecimal value="1.50"/></extension>
  <name id="n1"><given value="A"/><given value="B"/></name>
  <birthDate id="b"><extension url="http://e.org/y"><valueBoolean value="true"/></extension></birthDate>
</Patient>"""
JSON = {
    "resourceType": "Patient",
    "id": "other",
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Hi there</p></div>'},
    "extension": [{"url": "http://e.org/x", "valueDecimal": "1.50"}],
    "name": [{"id": "n1", "given": ["A", "B"]}],
    "_birthDate": {"id": "b", "extension": [{"url": "http://e.org/y", "valueBoolean": True}]},
}


def test_the_same_document_in_xml_and_json_has_the_same_leaves():
    assert fhir_leaves.from_xml(XML) == fhir_leaves.from_json(JSON)


def test_a_lost_or_changed_value_is_seen():
    lost = {**JSON, "name": [{"id": "n1", "given": ["A"]}]}
    changed = {**JSON, "extension": [{"url": "http://e.org/x", "valueDecimal": "1.5"}]}
    assert fhir_leaves.from_xml(XML) != fhir_leaves.from_json(lost)
    assert fhir_leaves.from_xml(XML) != fhir_leaves.from_json(changed)
