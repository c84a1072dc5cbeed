from console.fhir_api import Answer
from console.pages import JSON, _marked_lines, _resource_type, _upload_target

LINE = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-line"


def test_issues_carry_their_line_and_where():
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "required",
                "diagnostics": "Bundle.type: minimum required = 1",
                "expression": ["Bundle"],
                "extension": [{"url": LINE, "valueInteger": 3}],
            },
            {"severity": "warning", "code": "informational", "details": {"text": "no line"}},
        ],
    }
    issues = Answer(200, outcome, "").issues()
    assert issues[0] == {
        "severity": "error",
        "code": "required",
        "text": "Bundle.type: minimum required = 1",
        "where": "Bundle",
        "line": 3,
    }
    assert issues[1]["line"] is None and issues[1]["text"] == "no line"


def test_a_line_is_marked_with_its_worst_severity():
    doc = b'{\n  "resourceType": "Bundle",\n  "entry": []\n}'
    issues = [
        {"severity": "warning", "line": 2},
        {"severity": "error", "line": 2},
        {"severity": "information", "line": 3},
        {"severity": "error", "line": 99},  # past the end: not shown anywhere
        {"severity": "error", "line": None},
    ]
    lines = _marked_lines(doc, JSON, issues)
    assert [(line["n"], line["severity"]) for line in lines] == [
        (1, None),
        (2, "error"),
        (3, "information"),
        (4, None),
    ]


def test_a_json_profile_with_a_url_is_a_conditional_update():
    assert _upload_target(b'{"resourceType": "StructureDefinition", "url": "https://x/y"}', JSON) == (
        "PUT",
        "StructureDefinition",
        [("url", "https://x/y")],
    )
    assert _upload_target(b"\x1f\x8b...", "application/gzip")[1] == "ImplementationGuide/$install"
    assert _upload_target(b"<StructureDefinition/>", "application/fhir+xml")[0] == "POST"


def test_the_resource_type_is_read_from_json_or_xml():
    assert _resource_type(b'{"resourceType": "Bundle"}', JSON) == "Bundle"
    xml = b'<?xml version="1.0"?><Patient xmlns="http://hl7.org/fhir"/>'
    assert _resource_type(xml, "application/fhir+xml") == "Patient"
    assert _resource_type(b'{"resourceType": "../x"}', JSON) is None
    assert _resource_type(b"not json", JSON) is None


def test_outcome_text_and_the_document_are_escaped(redis):
    import tempfile

    from flask import render_template

    from console.sessions import Session
    from proxy.app import create_app
    from proxy.config import Settings
    from tests.support.fake_store import FakeStore

    settings = Settings(
        plugins=["request_id"],
        auth=True,
        public_base_url="http://127.0.0.1:9/fhir",
        keys_dir=tempfile.mkdtemp(),
    )
    app = create_app(settings, store=FakeStore(), redis=redis)
    evil = "<script>alert(1)</script>"
    result = {
        "ok": False,
        "title": evil,
        "issues": [{"severity": "error", "code": "x", "text": evil, "where": evil, "line": 1}],
        "document": [{"n": 1, "text": evil, "severity": "error"}],
    }
    person = Session("alice", "validator", 0, 0, "tok")
    with app.test_request_context():
        html = render_template(
            "console_validate.html", person=person, rows=[], problem=None, result=result, chosen="", text=evil
        )
    assert "<script>" not in html and html.count("&lt;script&gt;") >= 5
