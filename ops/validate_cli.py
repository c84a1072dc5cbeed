"""``fhirplug validate PATH``: validate example files through the proxy's ``$validate``.

Every ``*.json`` and ``*.xml`` file under PATH (or PATH itself, when it is a file) is sent as is
to ``POST {base}/{resourceType}/$validate``: against ``--profile`` when given, else against each
profile the resource declares in ``meta.profile`` (one request per profile, issues merged), else
against its base type. The file's bytes go as they are, with the Content-Type of their format,
so the store's line and column refer to the file. ``--jobs`` requests run at once. The outcome
is a table on stdout (plain lines, one per file and one per issue as ``file:line:col:``, when
stdout is not a terminal: a CI log or a pipe), a JSON report and a JUnit XML report.

With ``--client-id``/``--key`` the token is renewed before it expires and once more on a 401,
so a long run never reports an expired token. ``--rules`` asks the proxy for fhirplug's business
rules too (``$validate?rules=true``).

Exit codes: 0 every file validated without an error; 1 some file has an error (including a file
that does not parse, or that the store refuses to read); 2 some file could not be validated
(server unreachable, token refused, a status that says nothing about the file) or a usage
problem (no such path, no files, missing or unreadable credentials). 2 wins over 1: a run that
could not look at every file has not shown that the others are all there is to fix.
"""

from __future__ import annotations

import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
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


class NotValidated(Exception):
    """Exit 2: the server said nothing about the file (unreachable, token refused, 5xx)."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "validate",
        help="validate a folder of JSON and XML examples through $validate",
        description="Validate FHIR resources (*.json, *.xml; a folder is searched recursively) "
        "through the proxy's $validate. Exit 0: no errors; 1: some file has errors; 2: some file could "
        "not be validated (server unreachable, token refused), or a usage problem.",
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
    p.add_argument("--jobs", "-j", type=int, default=4, help="requests in flight at once (default 4)")
    p.add_argument(
        "--rules",
        action="store_true",
        help="report fhirplug's business rules too (hub-and-spoke message checks; JSON files)",
    )


def run(args) -> int:
    try:
        files, root = _find_files(Path(args.path), {Path(args.report_json), Path(args.report_junit)})
        base = (args.base or os.environ.get("FHIRPLUG_BASE") or DEFAULT_BASE).rstrip("/")
        sender = _sender(args, base)
        if args.jobs < 1:
            raise UsageError("--jobs takes a whole number of 1 or more")
    except UsageError as exc:
        print(f"fhirplug validate: {exc}", file=sys.stderr)
        return 2

    from proxy.auth.outbound import TokenRequestError

    try:
        sender.warm_up()
    except TokenRequestError as exc:
        print(f"fhirplug validate: no access token: {exc}", file=sys.stderr)
        return 2

    rows = _validate_all(files, root, base, args.profile, sender, args.jobs, args.rules)
    print_results(rows, plain=not sys.stdout.isatty())
    try:
        write_json_report(Path(args.report_json), rows, base, args.path, args.profile)
        write_junit_report(Path(args.report_junit), rows)
    except OSError as exc:
        print(f"fhirplug validate: cannot write a report: {exc}", file=sys.stderr)
        return 2
    return exit_code(rows)


def exit_code(rows: list[Row]) -> int:
    if any(r.not_validated for r in rows):
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


def _validate_all(
    files: list[Path], root: Path, base: str, profile: str | None, sender, jobs: int = 1, rules: bool = False
) -> list[Row]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # on stderr and transient: stdout carries only the table and the summary; none in a CI log
    console = Console(stderr=True)
    with (
        Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as progress,
        ThreadPoolExecutor(max_workers=jobs) as pool,
    ):
        task = progress.add_task("validating", total=len(files))

        def one(f: Path) -> Row:
            row = _validate_file(f, f.relative_to(root).as_posix(), base, profile, sender, rules)
            progress.advance(task)
            return row

        return list(pool.map(one, files))  # in the files' order, whatever order they finish in


def _validate_file(path: Path, name: str, base: str, profile: str | None, sender, rules: bool = False) -> Row:
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
    # the rules are the message's, not a profile's: asked for once
    with_rules = rules and parsed.content_type == JSON_TYPE
    if rules and not with_rules:
        # asked for and not run: say so rather than let the file look checked
        row.issues.append(
            _issue("warning", "not-supported", "--rules: the business rules read JSON; not run")
        )
    try:
        for n, prof in enumerate(row.profiles or [None]):
            params = {"profile": prof} if prof else {}
            if with_rules and n == 0:
                params["rules"] = "true"
            _merge(row.issues, _validate_once(sender, url, raw, headers, prof, params))
    except NotValidated as exc:
        row.not_validated = str(exc)
    return row


# statuses that say the file itself was refused; any other is about the server or the caller
_ABOUT_THE_FILE = {200, 400, 422}


def _validate_once(
    sender, url: str, raw: bytes, headers: dict, profile: str | None, params: dict | None = None
) -> list[dict]:
    from proxy.auth.outbound import TokenRequestError

    try:
        resp = sender.post(url, data=raw, headers=headers, params=params or None)
    except (requests.RequestException, TokenRequestError) as exc:
        raise NotValidated(f"request failed: {exc}") from exc
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
    if resp.status_code not in _ABOUT_THE_FILE or not is_outcome:
        raise NotValidated(f"{what}: {said}" if said else what)
    return [_issue("error", code or "exception", f"{what}: {said}" if said else what, profile=profile)]


def _diagnostics(issue: dict) -> str:
    details = issue.get("details") if isinstance(issue.get("details"), dict) else {}
    return str(issue.get("diagnostics") or details.get("text") or "")


def _strings(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


_ISSUE_LINE = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-line"
_ISSUE_COL = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-col"
_LINE_COL = re.compile(r"^Line\[(\d+)\] Col\[(\d+)\]$")


def _position(issue: dict) -> tuple[int | None, int | None]:
    """Line and column in the file: the standard extensions, else HAPI's ``Line[n] Col[m]``."""
    ext = {e.get("url"): e.get("valueInteger") for e in issue.get("extension") or [] if isinstance(e, dict)}
    line, col = ext.get(_ISSUE_LINE), ext.get(_ISSUE_COL)
    if isinstance(line, int):
        return line, col if isinstance(col, int) else None
    for loc in _strings(issue.get("location")):
        if m := _LINE_COL.match(loc):
            return int(m.group(1)), int(m.group(2))
    return None, None


def _from_outcome(issue: dict, profile: str | None) -> dict:
    out = _issue(
        str(issue.get("severity") or "error"),
        str(issue.get("code") or ""),
        _diagnostics(issue),
        _strings(issue.get("expression")),
        profile,
        _strings(issue.get("location")),
    )
    line, col = _position(issue)
    if line is not None:
        out["line"] = line
        if col is not None:
            out["col"] = col
    return out
