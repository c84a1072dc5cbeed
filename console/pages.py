"""The validator's pages: the profiles loaded (with versions), uploading a profile, validating a
resource or bundle against a chosen profile. Each asks the proxy's FHIR API as the person."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from flask import Blueprint, Response, render_template, request

from console import fhir_api
from console.state import current, signed_in, state
from ops.validate_report import Row, write_json_report, write_junit_report

bp = Blueprint("console_pages", __name__)
MAX_UPLOAD = 5 * 1024 * 1024
JSON = "application/fhir+json"
XML = "application/fhir+xml"
GZIP = "application/gzip"
GZIP_MAGIC = b"\x1f\x8b"
EVERYONE = ("validator", "operator", "admin")
VALIDATORS = ("validator", "admin")


def _render(template: str, status: int = 200, **values) -> Response:
    session = current()
    html = render_template(template, person=session, **values)
    return state().page(html, status)


def _token() -> str:
    st = state()
    account = st.accounts.get(current().username)
    if account is None or not account.enabled:
        raise PermissionError("account gone")
    return st.server.person_token(account)


def _sent_document() -> tuple[bytes, str] | None:
    """The document a form sent, from the file field or else the text area, and its media type
    (by its first character: FHIR XML starts with '<')."""
    upload = request.files.get("file")
    data = upload.read(MAX_UPLOAD + 1) if upload and upload.filename else b""
    if not data:
        data = request.form.get("text", "").encode("utf-8")
    if data.startswith(GZIP_MAGIC):  # an IG package (.tgz)
        return (data, GZIP) if len(data) <= MAX_UPLOAD else None
    data = data.strip()
    if not data or len(data) > MAX_UPLOAD:
        return None
    return data, XML if data.startswith(b"<") else JSON


def _profiles() -> tuple[list[dict], str | None]:
    answer = fhir_api.call(
        state().app,
        _token(),
        "GET",
        "StructureDefinition",
        [("_elements", "url,version,name,title,status,type,derivation"), ("_count", "500")],
    )
    if not answer.ok or not answer.body:
        return [], f"The profile list could not be read ({answer.status})"
    rows = [e.get("resource") or {} for e in answer.body.get("entry") or []]
    rows = [r for r in rows if r.get("resourceType") == "StructureDefinition"]
    return sorted(rows, key=lambda r: (str(r.get("url", "")), str(r.get("version", "")))), None


@bp.get("/console/")
@signed_in(*EVERYONE)
def home() -> Response:
    return _render("console_home.html")


@bp.get("/console/profiles")
@signed_in(*VALIDATORS)
def profiles() -> Response:
    rows, problem = _profiles()
    return _render("console_profiles.html", rows=rows, problem=problem, result=None)


@bp.post("/console/profiles")
@signed_in(*VALIDATORS)
def upload_profile() -> Response:
    st = state()
    sent = _sent_document()
    if sent is None:
        result = {"ok": False, "title": "Nothing was uploaded", "issues": [], "status": 400}
        rows, problem = _profiles()
        return _render("console_profiles.html", 400, rows=rows, problem=problem, result=result)
    data, media = sent
    answer = fhir_api.call(st.app, _token(), *_upload_target(data, media), body=data, content_type=media)
    stored = answer.body if answer.ok and answer.body else {}
    if stored.get("resourceType") != "StructureDefinition":  # a package: its own summary
        stored = {"url": "the package", "version": ""} if answer.ok else {}
    name = str(stored.get("url") or stored.get("name") or "")
    if answer.ok:
        title = f"Accepted: {name} version {stored.get('version', '(none)')} (id {stored.get('id', '')})"
    else:
        title = f"Refused ({answer.status})"
    issues = answer.issues()
    if not issues and not answer.ok:  # not an OperationOutcome: show what came back
        issues = [{"severity": "error", "code": "", "where": "", "text": answer.text[:500]}]
    result = {"ok": answer.ok, "title": title, "issues": issues, "status": answer.status}
    who = current()
    st.audit.record("profile-upload", who.username, who.role, answer.ok, f"{answer.status} {name}"[:200])
    rows, problem = _profiles()
    return _render(
        "console_profiles.html", 201 if answer.ok else 422, rows=rows, problem=problem, result=result
    )


def _upload_target(data: bytes, media: str) -> tuple[str, str, list[tuple[str, str]]]:
    """Where an upload goes: a package to ImplementationGuide/$install; a JSON profile with a url
    to a conditional update on it (one stored copy per canonical, as `fhirplug profiles load`
    does); anything else is created, and the proxy's answer says what it thinks of it."""
    if media == GZIP:
        return "POST", "ImplementationGuide/$install", []
    if media == JSON:
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("url"), str) and doc.get("url"):
            return "PUT", "StructureDefinition", [("url", doc["url"])]
    return "POST", "StructureDefinition", []


def _resource_type(data: bytes, media: str) -> str | None:
    if media == XML:
        head = data.lstrip()[1:80].decode("utf-8", "replace")
        while head.startswith("?"):  # an XML declaration first
            head = head.split("<", 1)[1] if "<" in head else ""
        name = head.split(None, 1)[0].split(">", 1)[0] if head else ""
        return name if name.isalpha() else None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    rt = doc.get("resourceType") if isinstance(doc, dict) else None
    return rt if isinstance(rt, str) and rt.isalpha() else None


MAX_SHOWN_LINES = 5000


def _report(kind: str, name: str, profile: str, issues: list[dict]) -> Response:
    """The validation as `fhirplug validate` reports it (its JSON or JUnit XML writer), to keep."""
    row = Row(name, [profile] if profile else [])
    for i in issues:
        issue = {
            "severity": i["severity"],
            "code": i["code"],
            "diagnostics": i["text"],
            "expression": [w.strip() for w in i["where"].split(",") if w.strip()],
        }
        if i.get("line"):
            issue["line"] = i["line"]
        row.issues.append(issue)
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "report"
        if kind == "json":
            write_json_report(target, [row], state().issuer + "/fhir", name, profile or None)
            media, filename = "application/json", "validation-report.json"
        else:
            write_junit_report(target, [row])
            media, filename = "application/xml", "validation-report.junit.xml"
        data = target.read_bytes()
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"}
    return Response(data, status=200, mimetype=media, headers=headers)


def _marked_lines(data: bytes, media: str, issues: list[dict]) -> list[dict]:
    """The document as sent, line by line, each line an issue points at marked with its worst
    severity (the proxy passes the caller's bytes to the store, so the store's line numbers are
    lines of this text)."""
    if media == GZIP:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if len(lines) > MAX_SHOWN_LINES:
        return []
    rank = {"fatal": 0, "error": 1, "warning": 2, "information": 3}
    worst: dict[int, str] = {}
    for i in issues:
        n = i.get("line")
        if not isinstance(n, int) or not 1 <= n <= len(lines):
            continue
        if n not in worst or rank.get(i["severity"], 9) < rank.get(worst[n], 9):
            worst[n] = i["severity"]
    return [{"n": n, "text": text, "severity": worst.get(n)} for n, text in enumerate(lines, 1)]


@bp.get("/console/validate")
@signed_in(*VALIDATORS)
def validate_form() -> Response:
    rows, problem = _profiles()
    return _render("console_validate.html", rows=rows, problem=problem, result=None, chosen="", text="")


@bp.post("/console/validate")
@signed_in(*VALIDATORS)
def validate() -> Response:
    st = state()
    rows, problem = _profiles()
    chosen = request.form.get("profile", "")
    sent = _sent_document()
    text = request.form.get("text", "")
    if sent is None:
        result = {
            "ok": False,
            "title": "Nothing to validate: paste a resource or choose a file",
            "issues": [],
        }
        return _render(
            "console_validate.html", 400, rows=rows, problem=problem, result=result, chosen=chosen, text=text
        )
    data, media = sent
    rtype = _resource_type(data, media)
    if rtype is None:
        result = {"ok": False, "title": "This is not a FHIR resource (no resourceType)", "issues": []}
        return _render(
            "console_validate.html", 400, rows=rows, problem=problem, result=result, chosen=chosen, text=text
        )
    query = [("profile", chosen)] if chosen else []
    answer = fhir_api.call(st.app, _token(), "POST", f"{rtype}/$validate", query, data, media)
    issues = answer.issues()
    errors = [i for i in issues if i["severity"] in ("error", "fatal")]
    if answer.body and answer.body.get("resourceType") == "OperationOutcome":
        ok = answer.ok and not errors
        title = "Valid" if ok else f"Not valid: {len(errors)} error(s)"
    else:
        ok, title = False, f"The validation could not run ({answer.status})"
    result = {"ok": ok, "title": title, "issues": issues, "document": _marked_lines(data, media, issues)}
    who = current()
    st.audit.record(
        "validate", who.username, who.role, True, f"{rtype} against {chosen or 'its base'}: {title}"[:200]
    )
    report = request.form.get("report")
    if report in ("json", "junit") and answer.body and answer.body.get("resourceType") == "OperationOutcome":
        upload = request.files.get("file")
        name = (upload.filename if upload and upload.filename else "") or f"pasted {rtype}"
        return _report(report, name, chosen, issues)
    return _render(
        "console_validate.html", 200, rows=rows, problem=problem, result=result, chosen=chosen, text=text
    )
