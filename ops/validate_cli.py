"""``fhirplug validate PATH``: validate example files through the proxy's ``$validate``.

Every ``*.json`` and ``*.xml`` file under PATH (or PATH itself, when it is a file) is sent as is
to ``POST {base}/{resourceType}/$validate``: against ``--profile`` when given, else against each
profile the resource declares in ``meta.profile`` (one request per profile, issues merged), else
against its base type. The outcome is a table on stdout, a JSON report and a JUnit XML report.

Exit codes: 0 no file has an error, 1 some file has, 2 a usage problem (no such path, no files,
missing or unreadable credentials).
"""

from __future__ import annotations

import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import requests

from ops.validate_report import Row, print_results, write_json_report, write_junit_report

FHIR_NS = "http://hl7.org/fhir"
JSON_TYPE = "application/fhir+json"
XML_TYPE = "application/fhir+xml"
SUFFIXES = {".json": JSON_TYPE, ".xml": XML_TYPE}
DEFAULT_BASE = "http://127.0.0.1:8080/fhir"
DEFAULT_JSON_REPORT = "validation-report.json"
DEFAULT_JUNIT_REPORT = "validation-report.junit.xml"
# a resource type goes into the URL path: only a plain type name may (no "../", no query)
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{0,63}$")


class UsageError(Exception):
    """Exit 2: the command cannot run as invoked."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "validate",
        help="validate a folder of JSON and XML examples through $validate",
        description="Validate FHIR resources (*.json, *.xml; a folder is searched recursively) "
        "through the proxy's $validate. Exit 0: no errors; 1: some file has errors; 2: usage problem.",
    )
    p.add_argument("path", help="a folder (searched recursively) or a single file")
    p.add_argument(
        "--profile",
        help="validate every file against this profile URL (default: each file's meta.profile, "
        "else its base type)",
    )
    p.add_argument("--base", help=f"the proxy's FHIR base (default: $FHIRPLUG_BASE or {DEFAULT_BASE})")
    auth = p.add_argument_group("authentication (--token, or --client-id with --key)")
    auth.add_argument("--token", help="a Bearer access token (default: $FHIRPLUG_TOKEN)")
    auth.add_argument("--client-id", help="our OAuth client id at the proxy's token endpoint")
    auth.add_argument("--key", help="the private JWK file from `fhirplug keys generate`")
    auth.add_argument("--token-url", help="default: the base without /fhir, plus /oauth2/token")
    p.add_argument("--report-json", default=DEFAULT_JSON_REPORT, help=f"default: ./{DEFAULT_JSON_REPORT}")
    p.add_argument("--report-junit", default=DEFAULT_JUNIT_REPORT, help=f"default: ./{DEFAULT_JUNIT_REPORT}")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request (default 120)")


def run(args) -> int:
    try:
        files, root = _find_files(Path(args.path), {Path(args.report_json), Path(args.report_junit)})
        base = (args.base or os.environ.get("FHIRPLUG_BASE") or DEFAULT_BASE).rstrip("/")
        sender = _sender(args, base)
    except UsageError as exc:
        print(f"fhirplug validate: {exc}", file=sys.stderr)
        return 2

    from proxy.auth.outbound import TokenRequestError

    try:
        sender.warm_up()
    except TokenRequestError as exc:
        print(f"fhirplug validate: no access token: {exc}", file=sys.stderr)
        return 1

    rows = _validate_all(files, root, base, args.profile, sender)
    print_results(rows)
    try:
        write_json_report(Path(args.report_json), rows, base, args.path, args.profile)
        write_junit_report(Path(args.report_junit), rows)
    except OSError as exc:
        print(f"fhirplug validate: cannot write a report: {exc}", file=sys.stderr)
        return 2
    return 1 if any(r.errors for r in rows) else 0


# ---------------------------------------------------------------- files


def _find_files(path: Path, reports: set[Path]) -> tuple[list[Path], Path]:
    """The files to validate, sorted, and the folder their names are shown relative to."""
    if not path.exists():
        raise UsageError(f"no such file or folder: {path}")
    if path.is_file():
        return [path], path.parent
    skip = {r.resolve() for r in reports}  # a report of an earlier run is not an example
    found = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            f = Path(folder, name)
            if f.suffix.lower() in SUFFIXES and f.resolve() not in skip:
                found.append(f)
    if not found:
        raise UsageError(f"no *.json or *.xml files under {path}")
    return found, path


@dataclass
class Parsed:
    resource_type: str
    profiles: list[str]
    content_type: str


def _parse(raw: bytes, suffix: str) -> Parsed:
    """Resource type and declared profiles; ValueError (the message for the row) if unusable."""
    if SUFFIXES[suffix] == JSON_TYPE:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"does not parse: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
            raise ValueError("not a FHIR resource: no resourceType")
        rtype = doc["resourceType"]
        meta = doc.get("meta") if isinstance(doc.get("meta"), dict) else {}
        declared = meta.get("profile") if isinstance(meta.get("profile"), list) else []
        profiles = [p for p in declared if isinstance(p, str)]
    else:
        try:
            root = ET.fromstring(raw)
        except ET.ParseError as exc:
            raise ValueError(f"does not parse: {exc}") from exc
        ns, _, rtype = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
        if ns != FHIR_NS:
            raise ValueError(f"not a FHIR resource: root element <{rtype}> is not in the {FHIR_NS} namespace")
        profiles = [
            p.get("value", "")
            for p in root.findall(f"{{{FHIR_NS}}}meta/{{{FHIR_NS}}}profile")
            if p.get("value")
        ]
    if not _RESOURCE_TYPE.match(rtype):
        raise ValueError(f"not a FHIR resource: {rtype!r} is not a resource type name")
    return Parsed(rtype, list(dict.fromkeys(profiles)), SUFFIXES[suffix])


# ---------------------------------------------------------------- HTTP


class _Sender:
    """Sends with a fixed Bearer token (--token / $FHIRPLUG_TOKEN)."""

    def __init__(self, token: str, timeout: float):
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def warm_up(self) -> None:
        pass

    def post(self, url: str, **kwargs) -> requests.Response:
        return self.session.post(url, timeout=self.timeout, **kwargs)


class _ClientSender:
    """Sends through the product's outbound OAuth client: signed-JWT token, one refresh on a 401."""

    def __init__(self, client):
        self.client = client

    def warm_up(self) -> None:
        self.client.token()  # a refused client stops here, not once per file

    def post(self, url: str, **kwargs) -> requests.Response:
        return self.client.request("POST", url, **kwargs)


def _sender(args, base: str):
    token = args.token or None
    if token and (args.client_id or args.key):
        raise UsageError("give either --token or --client-id with --key, not both")
    if args.client_id or args.key:
        if not (args.client_id and args.key):
            raise UsageError("--client-id and --key go together")
        from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient

        token_url = args.token_url or base.removesuffix("/fhir") + "/oauth2/token"
        try:
            creds = PartnerCredentials.from_files(token_url, args.client_id, args.key)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the private key {args.key}: {exc}") from exc
        if not isinstance(creds.private_jwk, dict) or "d" not in creds.private_jwk:
            raise UsageError(f"{args.key} is not a private JWK (from `fhirplug keys generate`)")
        return _ClientSender(PartnerTokenClient(creds, timeout=args.timeout))
    token = token or os.environ.get("FHIRPLUG_TOKEN")
    if not token:
        raise UsageError("no credentials: give --token (or set FHIRPLUG_TOKEN), or --client-id and --key")
    return _Sender(token, args.timeout)


# ---------------------------------------------------------------- validation


def _issue(
    severity: str, code: str, diagnostics: str, expression=(), profile: str | None = None, location=()
) -> dict:
    issue = {
        "severity": severity,
        "code": code,
        "diagnostics": diagnostics,
        "expression": list(expression),
        "profiles": [profile] if profile else [],  # the profiles under which the store reported it
    }
    if location:
        issue["location"] = list(location)
    return issue


def _merge(issues: list[dict], more: list[dict]) -> None:
    """Add ``more`` to ``issues``; an issue reported again under another profile (base-type rules
    are checked under every profile) is counted once and lists both profiles."""
    seen = {_identity(i): i for i in issues}
    for issue in more:
        same = seen.get(_identity(issue))
        if same is None:
            issues.append(issue)
            seen[_identity(issue)] = issue
        else:
            same["profiles"] += [p for p in issue["profiles"] if p not in same["profiles"]]


def _identity(issue: dict) -> tuple:
    return (
        issue["severity"],
        issue["code"],
        issue["diagnostics"],
        tuple(issue["expression"]),
        tuple(issue.get("location", ())),
    )


def _validate_all(files: list[Path], root: Path, base: str, profile: str | None, sender) -> list[Row]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    rows = []
    # on stderr and transient: stdout carries only the table and the summary; none in a CI log
    console = Console(stderr=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[file]}", markup=False),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("validating", total=len(files), file="")
        for f in files:
            name = f.relative_to(root).as_posix()
            progress.update(task, file=name)
            rows.append(_validate_file(f, name, base, profile, sender))
            progress.advance(task)
    return rows


def _validate_file(path: Path, name: str, base: str, profile: str | None, sender) -> Row:
    row = Row(name)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        row.issues.append(_issue("error", "exception", f"cannot read: {exc}"))
        return row
    try:
        parsed = _parse(raw, path.suffix.lower())
    except ValueError as exc:
        row.issues.append(_issue("error", "structure", str(exc)))
        return row
    row.profiles = [profile] if profile else parsed.profiles
    url = f"{base}/{parsed.resource_type}/$validate"
    headers = {"Content-Type": parsed.content_type, "Accept": JSON_TYPE}
    for prof in row.profiles or [None]:
        _merge(row.issues, _validate_once(sender, url, raw, headers, prof))
    return row


def _validate_once(sender, url: str, raw: bytes, headers: dict, profile: str | None) -> list[dict]:
    from proxy.auth.outbound import TokenRequestError

    try:
        resp = sender.post(url, data=raw, headers=headers, params={"profile": profile} if profile else None)
    except (requests.RequestException, TokenRequestError) as exc:
        return [_issue("error", "exception", f"request failed: {exc}", profile=profile)]
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    is_outcome = isinstance(doc, dict) and doc.get("resourceType") == "OperationOutcome"
    if resp.status_code == 200 and is_outcome:
        return [_from_outcome(i, profile) for i in doc.get("issue") or [] if isinstance(i, dict)]
    if is_outcome:
        said = "; ".join(_diagnostics(i) for i in doc.get("issue") or [] if isinstance(i, dict))
        code = next((i.get("code") for i in doc.get("issue") or [] if isinstance(i, dict)), None)
    else:
        said, code = " ".join(resp.text.split())[:300], None
    what = f"HTTP {resp.status_code}" if resp.status_code != 200 else "HTTP 200 without an OperationOutcome"
    return [_issue("error", code or "exception", f"{what}: {said}" if said else what, profile=profile)]


def _diagnostics(issue: dict) -> str:
    details = issue.get("details") if isinstance(issue.get("details"), dict) else {}
    return str(issue.get("diagnostics") or details.get("text") or "")


def _strings(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _from_outcome(issue: dict, profile: str | None) -> dict:
    return _issue(
        str(issue.get("severity") or "error"),
        str(issue.get("code") or ""),
        _diagnostics(issue),
        _strings(issue.get("expression")),
        profile,
        _strings(issue.get("location")),
    )
