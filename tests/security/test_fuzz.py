"""A fuzzer against the real proxy: a fixed seed, a bounded count, three callers.

An administrator and two spokes of different ODS codes send mutated requests (methods, paths,
query strings, headers, bodies made from valid seed resources with wrong types, missing
fields, deep nesting, odd unicode, huge numbers, bad bundles and entry URLs), and raw-socket
requests that HTTP clients refuse to send (bad request lines, bad chunking, CR/LF, oversized
headers). Whatever comes back: no 5xx, every error an OperationOutcome whose issues each have
a severity and a code, the proxy healthy afterwards and its workers' memory flat.
"""

from __future__ import annotations

import collections
import copy
import gzip
import json
import random
import re
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.security]

SEED = 20261129
HTTP_REQUESTS = 10_000  # through requests' keep-alive sessions
RAW_REQUESTS = 600  # over raw sockets
THREADS = 4
WARM_UP = 1_000  # requests before the first memory reading
MAX_RSS_GROWTH_MB = 50
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SPOKE_A, SPOKE_B = "FZ001", "FZ002"
FHIR_NS = "{http://hl7.org/fhir}"
EXAMPLES = Path(__file__).resolve().parents[2] / "ig" / "examples"
RUN = uuid.uuid4().hex[:8]  # marks what this run creates, so conditional writes touch only that


# ---------------------------------------------------------------- seeds


def seeds() -> dict[str, dict]:
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "identifier": [{"system": "https://fhirplug.test/fuzz", "value": RUN}],
        "requester": {"identifier": {"system": ODS, "value": SPOKE_A}},
        "owner": {"identifier": {"system": ODS, "value": SPOKE_A}},
        "for": {"reference": "Patient/fuzz-1", "display": "Fuzz"},
        "meta": {
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]
        },
    }
    return {
        "Patient": {
            "resourceType": "Patient",
            "identifier": [{"system": "https://fhirplug.test/fuzz", "value": RUN}],
            "name": [{"family": "Fuzz", "given": ["Ada"]}],
            "birthDate": "1970-01-01",
            "multipleBirthInteger": 2,
            "extension": [{"url": "https://fhirplug.test/x", "valueDecimal": 1.5}],
        },
        "Task": task,
        "Observation": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": "Patient/fuzz-1"},
            "valueQuantity": {"value": 70.5, "unit": "kg"},
        },
        "MedicationRequest": {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "x"},
            "subject": {"reference": "Patient/fuzz-1"},
        },
        "Parameters": {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "operation",
                    "part": [
                        {"name": "type", "valueCode": "replace"},
                        {"name": "path", "valueString": "Task.status"},
                        {"name": "value", "valueCode": "cancelled"},
                    ],
                }
            ],
        },
        "Bundle": json.loads((EXAMPLES / "valid-spoke-to-hub.json").read_text()),
        "batch": {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"request": {"method": "GET", "url": "Patient?_count=1"}},
                {"resource": task, "request": {"method": "POST", "url": "Task"}},
                {"request": {"method": "DELETE", "url": f"Patient/fuzz-{RUN}"}},
            ],
        },
    }


# ---------------------------------------------------------------- mutation

ODD_STRINGS = [
    "",
    " ",
    "\u0000",
    "\u202e\u0645\u0631\u062d\u0628\u0627",
    "\u200b\u200d\ufeff",
    "😀" * 50,
    "a" * 5000,
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "Patient/1",
    "urn:uuid:00000000-0000-0000-0000-000000000000",
    "%00%0d%0a",
    "\r\n\r\nGET / HTTP/1.1",
    "ǅ̶͍͌",
]
ODD_VALUES = [None, True, False, 0, -1, 2**31, 2**63, 1.5, [], {}, [1, "x"], {"a": {"b": []}}, "x", 5]
ODD_NUMBERS_RAW = [
    b"1e999999999",
    b"9" * 5000,
    b"-0",
    b"1e-999999",
    b"1E400",
    b"0.0000000000001",
    b"123456789012345678901234567890",
]


def paths_of(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths_of(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths_of(v, (*prefix, i))


def set_at(node, path, value):
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def nested(depth: int):
    v: object = "deep"
    for i in range(depth):
        v = [v] if i % 2 else {"x": v}
    return v


def mutate(rng: random.Random, resource: dict) -> dict:
    res = copy.deepcopy(resource)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in paths_of(res) if p]
        if not paths:
            break
        path = rng.choice(paths)
        kind = rng.random()
        if kind < 0.35:
            set_at(res, path, copy.deepcopy(rng.choice(ODD_VALUES)))
        elif kind < 0.55:
            set_at(res, path, rng.choice(ODD_STRINGS))
        elif kind < 0.65:
            set_at(res, path, nested(rng.choice([20, 99, 101, 150, 400])))
        elif kind < 0.85:  # remove the element
            parent = res
            for p in path[:-1]:
                parent = parent[p]
            del parent[path[-1]]
        else:  # an extra element: unknown, empty-keyed or oddly named
            name = rng.choice(["", "x", "resourceType", "meta", "id", "\u0000", "reference", "😀"])
            target = res
            for p in path[:-1]:
                target = target[p]
            if isinstance(target, dict):
                target[name] = copy.deepcopy(rng.choice(ODD_VALUES))
    return res


ENTRY_URLS = [
    "Patient",
    "/Patient",
    "Patient/",
    "//Patient",
    "Patient//x",
    "Patient?",
    "Patient/../Task/1",
    "Patient/%2e%2e/Task/1",
    "http://127.0.0.1:1/fhir/Patient/1",
    "Patient/1/_history/x",
    "Patient?_filter=(((",
    "Patient?_offset=-1",
    "Patient/1?_format=xml",
    "Task/a%0d%0ab",
    "Patient/ id",
    "$process-message",
    "",
    "Patient/\u00e9",
    f"Patient/fuzz-{RUN}",
    f"Patient?identifier=https://fhirplug.test/fuzz|{RUN}",
]


def mutate_bundle(rng: random.Random, bundle: dict) -> dict:
    b = copy.deepcopy(bundle)
    entries = b.get("entry") or []
    for e in entries:
        if rng.random() < 0.5 and isinstance(e.get("request"), dict):
            e["request"]["url"] = rng.choice(ENTRY_URLS)
        if rng.random() < 0.2 and isinstance(e.get("request"), dict):
            e["request"]["method"] = rng.choice(
                ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "get", "FOO", ""]
            )
            if e["request"]["method"] in ("DELETE", "PUT", "PATCH"):
                # never conditional on anything but what this run made
                e["request"]["url"] = rng.choice(
                    [
                        f"Patient/fuzz-{RUN}",
                        f"Task?identifier=https://fhirplug.test/fuzz|{RUN}",
                        "Patient//x",
                        "/Patient/x",
                    ]
                )
        if rng.random() < 0.2:
            e["fullUrl"] = rng.choice(["urn:uuid:x", "", "http://x/Patient/1", 5, None])
    if rng.random() < 0.3:
        b["type"] = rng.choice(["transaction", "batch", "collection", "", 5, None])
    return mutate(rng, b) if rng.random() < 0.5 else b


# ---------------------------------------------------------------- requests

TYPES = [
    "Patient",
    "Task",
    "Observation",
    "MedicationRequest",
    "Organization",
    "Basic",
    "StructureDefinition",
    "Nope",
    "patient",
]
METHODS = (
    ["GET"] * 8
    + ["POST"] * 6
    + ["PUT"] * 3
    + ["PATCH"] * 2
    + ["DELETE", "HEAD", "OPTIONS", "PROPFIND", "FOO", "TRACE"]
)
OPERATIONS = ["$validate", "$meta", "$everything", "$nope", "$"]
SEARCH_PARAMS = [
    ("_count", ["1", "0", "-1", "x", "99999999999", "1.5", ""]),
    ("_offset", ["0", "-5", "abc", "1e3", "10"]),
    ("_filter", ["(((", "name eq x", "name eq 'x' and", "\u0000", "a" * 300]),
    ("_format", ["json", "xml", "application/fhir+json", "nope", "ttl"]),
    ("_summary", ["true", "text", "count", "nope"]),
    ("_elements", ["id", "meta,id", ",,,", "x.y.z"]),
    ("_include", ["Task:patient", "*", "Nope:nope", ":"]),
    ("_revinclude", ["Provenance:target", "*"]),
    ("_sort", ["-_lastUpdated", "nope", ""]),
    ("_has", ["Task:patient:status=requested", "::::", "x"]),
    ("patient.family", ["x"]),
    ("identifier", [f"https://fhirplug.test/fuzz|{RUN}", "|", "||||"]),
    ("_lastUpdated", ["gt2020", "xx2020", "ge"]),
    ("_id", ["1", "a,b,c", ""]),
    ("name:contains", ["a", "%", "\u00e9"]),
    ("_total", ["accurate", "nope"]),
    ("nope", ["1"]),
    ("_security", ["x|y"]),
]
CONTENT_TYPES = [
    "application/fhir+json",
    "application/fhir+json",
    "application/json",
    "application/json-patch+json",
    "application/fhir+xml",
    "application/x-www-form-urlencoded",
    "text/plain",
    "",
    "application/fhir+json; charset=latin-1",
    "multipart/form-data; boundary=x",
]
ACCEPTS = ["application/fhir+json", "application/fhir+xml", "*/*", "text/html", "application/nope", ""]


@dataclass
class Probe:
    method: str
    url: str
    headers: dict = field(default_factory=dict)
    body: bytes | None = None
    who: str = "admin"


def random_id(rng: random.Random) -> str:
    return rng.choice(
        [
            "1",
            "fuzz-1",
            f"fuzz-{RUN}",
            "x" * 64,
            "x" * 65,
            "a%2Fb",
            "%0d%0a",
            "%00",
            "..",
            "%2e%2e",
            "-",
            "\u00e9",
            "1 2",
        ]
    )


def make_probe(rng: random.Random, base: str, seed: dict[str, dict]) -> Probe:
    who = rng.choice(["admin", "a", "a", "b", "b", "anon"])
    method = rng.choice(METHODS)
    rtype = rng.choice(TYPES)
    shape = rng.random()
    if shape < 0.3:
        path = f"/fhir/{rtype}"
    elif shape < 0.55:
        path = f"/fhir/{rtype}/{random_id(rng)}"
    elif shape < 0.62:
        path = f"/fhir/{rtype}/{random_id(rng)}/_history/{rng.choice(['1', 'x', ''])}"
    elif shape < 0.67:
        path = f"/fhir/{rtype}/_search"
    elif shape < 0.72:
        path = f"/fhir/{rtype}/{rng.choice(OPERATIONS)}"
    elif shape < 0.85:
        path = "/fhir"
    else:
        path = rng.choice(
            [
                "/fhir/metadata",
                "//fhir/Patient",
                "/fhir/Patient/a%0d%0ab",
                "/fhir/Pat%00ient",
                "/fhir/_history",
                "/healthz",
                "/readyz",
                "/oauth2/token",
                "/metrics",
                "/nope",
                "/fhir/Patient/" + "a" * 3000,
                "/fhir/%ZZ",
                "/fhir/\u00e9",
            ]
        )
    query = []
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        name, values = rng.choice(SEARCH_PARAMS)
        query.append((name, rng.choice(values)))
    headers = {}
    if rng.random() < 0.15:
        headers["Accept"] = rng.choice(ACCEPTS)
    if rng.random() < 0.05:
        headers[rng.choice(["If-Match", "If-None-Match", "If-None-Exist", "If-Modified-Since", "Prefer"])] = (
            rng.choice(['W/"1"', "x", "", "identifier=|", "return=OperationOutcome", "Mon, 99 Xxx 2020"])
        )
    if rng.random() < 0.03:
        headers["X-Request-ID"] = rng.choice(["", "x" * 300, "a b", "\u00e9".encode().decode("latin-1")])
    if who == "anon" and rng.random() < 0.5:
        headers["Authorization"] = rng.choice(["Bearer x", "Bearer", "Basic YTpi", "Bearer " + "a" * 2000])
    body = None
    if method in ("POST", "PUT", "PATCH") or rng.random() < 0.05:
        body, ctype = make_body(rng, method, rtype, path, seed, {"a": SPOKE_A, "b": SPOKE_B}.get(who))
        if ctype:
            headers["Content-Type"] = ctype
        if body and rng.random() < 0.05:
            headers["Content-Encoding"] = "gzip"
            body = gzip.compress(body) if rng.random() < 0.7 else body[: len(body) // 2]
    url = base + path
    if query:
        url += "?" + "&".join(
            f"{requests.utils.quote(k)}={requests.utils.quote(v, safe='|:,')}" for k, v in query
        )
    if rng.random() < 0.02:
        url += rng.choice(["&&&", "?=&=", "%", "%zz", "#frag"])
    return Probe(method, url, headers, body, who)


def make_body(rng, method, rtype, path, seed, ods: str | None) -> tuple[bytes, str]:
    kind = rng.random()
    if kind < 0.2:  # a valid write, so that the plugins' paths past the checks run too
        doc = seed["Bundle"] if path == "/fhir" else seed.get(rtype, seed["Patient"])
        text = json.dumps(doc).replace("VNE51", ods or "VNE51").replace(SPOKE_A, ods or SPOKE_A)
        if doc is seed["Bundle"]:  # a new message each time (the same identifier is a resend)
            text = text.replace(doc["identifier"]["value"], str(uuid.UUID(int=rng.getrandbits(128))))
        return text.encode(), "application/fhir+json"
    if path == "/fhir" or kind < 0.32:
        doc = mutate_bundle(rng, seed["Bundle"] if rng.random() < 0.3 else seed["batch"])
    elif method == "PATCH":
        if rng.random() < 0.5:
            ops = [{"op": "replace", "path": "/status", "value": "cancelled"}]
            if rng.random() < 0.7:
                ops = rng.choice(
                    [[1], "x", [{"op": 5}], [{"op": "add", "path": "/meta/security/0", "value": {}}], [{}]]
                )
            return json.dumps(ops).encode(), "application/json-patch+json"
        doc = mutate(rng, seed["Parameters"])
    else:
        doc = mutate(rng, seed.get(rtype, seed["Patient"]))
    text = json.dumps(doc).encode()
    raw_kind = rng.random()
    if raw_kind < 0.05:
        text = text.replace(b'"', b"", 1)  # broken JSON
    elif raw_kind < 0.09:
        text = text[:-1] + b',"x":' + rng.choice(ODD_NUMBERS_RAW) + b"}"
    elif raw_kind < 0.12:
        text = text[:-1] + rng.choice([b',"":1}', b',"a":"\\ud800"}', b',"b":"\\udc00x"}', b',"a":1,"a":2}'])
    elif raw_kind < 0.14:
        text = text[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    elif raw_kind < 0.16:
        text = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
    elif raw_kind < 0.18:
        text = text.replace(b"a", b"\xff", 1)  # not UTF-8
    ctype = "application/fhir+json" if rng.random() < 0.85 else rng.choice(CONTENT_TYPES)
    return text, ctype


# ---------------------------------------------------------------- checking answers


def outcome_problem(status: int, ctype: str, body: bytes, method: str, url: str = "") -> str | None:
    """None when an error answer is an OperationOutcome whose issues have a severity and a code.

    The token endpoint is OAuth's, not FHIR's: its errors are RFC 6749 section 5.2 JSON."""
    if status >= 500:
        return f"{status} (a 5xx)"
    if status < 400 or method == "HEAD":
        return None
    if "/oauth2/" in url and ctype.startswith("application/json"):
        try:
            return None if isinstance(json.loads(body).get("error"), str) else "an OAuth error without error"
        except (ValueError, AttributeError):
            return "an OAuth error that is not JSON"
    if ctype.startswith("application/fhir+json") or ctype.startswith("application/json"):
        try:
            oo = json.loads(body)
        except ValueError:
            return "an error whose body is not JSON"
        if not isinstance(oo, dict) or oo.get("resourceType") != "OperationOutcome":
            return "an error that is not an OperationOutcome"
        issues = oo.get("issue")
        if not issues or not all(isinstance(i, dict) and i.get("severity") and i.get("code") for i in issues):
            return "an OperationOutcome without severity and code on every issue"
        return None
    if "xml" in ctype:  # the caller asked for XML: an XML OperationOutcome is the right answer
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return "an XML error that does not parse"
        if root.tag != FHIR_NS + "OperationOutcome":
            return "an XML error that is not an OperationOutcome"
        for issue in root.findall(FHIR_NS + "issue"):
            if issue.find(FHIR_NS + "severity") is None or issue.find(FHIR_NS + "code") is None:
                return "an XML OperationOutcome without severity and code"
        return None
    if "turtle" in ctype:  # the caller asked for RDF (_format=ttl): an RDF OperationOutcome
        text = body.decode("utf-8", "replace")
        if "fhir:OperationOutcome" in text and "issue.code" in text and "issue.severity" in text:
            return None
        return "a Turtle error that is not an OperationOutcome with severity and code"
    return f"an error with Content-Type {ctype!r}"


# ---------------------------------------------------------------- raw sockets


def raw_requests(rng: random.Random, host: str, token: str) -> list[bytes]:
    good = f"Host: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n".encode()
    json_ct = b"Content-Type: application/fhir+json\r\n"
    chunked = b"Transfer-Encoding: chunked\r\n\r\n"
    templates = [
        lambda: b"GET /fhir/Pat\rient HTTP/1.1\r\n" + good + b"\r\n",
        lambda: b"GET /fhir/Pat\nient HTTP/1.1\r\n" + good + b"\r\n",
        lambda: b"GET /fhir/Pat\x00ient HTTP/1.1\r\n" + good + b"\r\n",
        lambda: b"GET /fhir/Pat ient HTTP/1.1\r\n" + good + b"\r\n",
        lambda: b"GET /fhir/Patient/\xff\xfe HTTP/1.1\r\n" + good + b"\r\n",
        lambda: b"GET /" + b"a" * rng.randint(4100, 20000) + b" HTTP/1.1\r\n" + good + b"\r\n",
        lambda: (
            b"GET /fhir/Patient HTTP/1.1\r\n"
            + good
            + b"X-Big: "
            + b"a" * rng.randint(8200, 30000)
            + b"\r\n\r\n"
        ),
        lambda: (
            b"GET /fhir/Patient HTTP/1.1\r\n"
            + good
            + b"".join(b"X-H%d: a\r\n" % i for i in range(rng.randint(101, 300)))
            + b"\r\n"
        ),
        lambda: (
            rng.choice([b"get", b"G@T", b"GE T", b"\x00GET", b"GETGETGETGETGETGETGETGETGETGETGETGETGET"])
            + b" /fhir/Patient HTTP/1.1\r\n"
            + good
            + b"\r\n"
        ),
        lambda: (
            rng.choice([b"PROPFIND", b"FOO", b"BREW", b"CONNECT", b"TRACE"])
            + b" /fhir/Patient HTTP/1.1\r\n"
            + good
            + b"\r\n"
        ),
        lambda: (
            b"GET /fhir/Patient HTTP/"
            + rng.choice([b"9.9", b"1.x", b"", b"2.0", b"0.9"])
            + b"\r\n"
            + good
            + b"\r\n"
        ),
        lambda: (
            rng.choice([b"GARBAGE", b"\r\n\r\n\r\n", b"\x16\x03\x01\x02\x00", b"PRI * HTTP/2.0\r\n\r\nSM"])
            + b"\r\n\r\n"
        ),
        lambda: (
            b"GET /fhir/Patient HTTP/1.1\r\n"
            + good
            + rng.choice([b"Bad Header: y", b"X: a\x00b", b"X: a\r\n folded", b":empty", b"X\x7f: y"])
            + b"\r\n\r\n"
        ),
        lambda: (
            b"GET /fhir/Patient HTTP/1.1\r\n"
            + good
            + b"Content-Length: "
            + rng.choice([b"abc", b"-1", b"1, 2", b"99999999999999999999"])
            + b"\r\n\r\n"
        ),
        lambda: (
            b"POST /fhir/Patient HTTP/1.1\r\n"
            + good
            + json_ct
            + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
        ),
        lambda: (
            b"POST /fhir/Patient HTTP/1.1\r\n"
            + good
            + json_ct
            + b"Transfer-Encoding: "
            + rng.choice([b"gzip, chunked", b"nope", b"chunked, chunked", b"identity"])
            + b"\r\n\r\n0\r\n\r\n"
        ),
        lambda: (
            b"POST /fhir/Patient HTTP/1.1\r\n"
            + good
            + json_ct
            + chunked
            + rng.choice(
                [
                    b"zz\r\nabc\r\n0\r\n\r\n",
                    b"3\r\nabcdef\r\n0\r\n\r\n",
                    b"3;\x01\r\nabc\r\n0\r\n\r\n",
                    b"-1\r\n\r\n",
                    b"ffffffffffffffffff\r\n",
                    b"2\r\n{}\r\n0\r\nX-Trailer\x00: y\r\n\r\n",
                ]
            )
        ),
        lambda: (
            b"POST /oauth2/token HTTP/1.1\r\n"
            + good
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            + chunked
            + b"zz\r\nx\r\n0\r\n\r\n"
        ),
        lambda: (
            b"GET /fhir/Patient HTTP/1.1\r\n"
            + good
            + b"Expect: "
            + rng.choice([b"200-ok", b"100-continue, x"])
            + b"\r\n\r\n"
        ),
        lambda: b"GET /fhir/Patient/a%0d%0ab HTTP/1.1\r\n" + good + b"\r\n",
        lambda: b"GET /fhir/Patient?x=%ZZ&_count=%00 HTTP/1.1\r\n" + good + b"\r\n",
        lambda: b"GET * HTTP/1.1\r\n" + good + b"\r\n",
        lambda: b"GET http://evil.example/fhir/Patient HTTP/1.1\r\n" + good + b"\r\n",
        lambda: b"GET /fhir/Patient HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        lambda: (
            b"GET /fhir/Patient HTTP/1.1\r\n" + good + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n"
        ),  # unread bad body
    ]
    return [rng.choice(templates)() for _ in range(RAW_REQUESTS)]


def send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse and close before reading everything
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass  # judged by what arrived before

    return out


def parse_raw(answer: bytes) -> tuple[int, str, bytes] | None:
    """The first response in ``answer``: status, Content-Type and body (chunked decoded)."""
    head, sep, rest = answer.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.split(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        return None
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip().decode("latin-1")
    if headers.get(b"transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            body, rest = body + rest[:size], rest[size + 2 :]
    else:
        body = rest[: int(headers.get(b"content-length", len(rest)))]
    return int(m.group(1)), headers.get(b"content-type", ""), body


# ---------------------------------------------------------------- memory


def worker_pids(master: int) -> set[int]:
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == master:
            pids.add(int(stat.parent.name))
    return pids


def rss_mb(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


# ---------------------------------------------------------------- the test


def test_fuzz_never_5xx_always_operation_outcome_healthy_and_flat(stack):
    started = time.monotonic()
    rng = random.Random(SEED)
    seed = seeds()
    port = stack.cfg.proxy_port
    host = f"{stack.cfg.host}:{port}"
    clients = {
        "admin": stack.client("fuzz-admin", "admin"),
        "a": stack.client("fuzz-spoke-a", "spoke", SPOKE_A),
        "b": stack.client("fuzz-spoke-b", "spoke", SPOKE_B),
    }
    # every probe decided up front from the seed: the run is the same whatever the threads do
    probes = [make_probe(rng, stack.proxy, seed) for _ in range(HTTP_REQUESTS)]
    master = int(stack.cfg.path("run", "proxy.pid").read_text())
    workers_before = worker_pids(master)
    assert workers_before, "no gunicorn workers found under the proxy's master process"

    failures: list[str] = []
    counts = {"sent": 0}
    statuses: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    def run(chunk: list[Probe]) -> None:
        sessions = {who: stack.session(client=c) for who, c in clients.items()}
        anon = requests.Session()
        try:
            for p in chunk:
                s = anon if p.who == "anon" else sessions[p.who]
                status = 0  # 0: no answer, or an answer that is not a proper error
                try:
                    r = s.request(
                        p.method, p.url, headers=p.headers, data=p.body, timeout=60, allow_redirects=False
                    )
                    problem = outcome_problem(
                        r.status_code, r.headers.get("Content-Type", ""), r.content, p.method, p.url
                    )
                    status = r.status_code if not problem or "5xx" in problem else 0
                    if problem:
                        shown = {k: v for k, v in (p.headers or {}).items() if k.lower() != "authorization"}
                        problem += f" headers={shown} answer={r.content[:300]!r}"
                except requests.RequestException as exc:
                    problem = f"no answer: {type(exc).__name__}: {exc}"
                with lock:
                    counts["sent"] += 1
                    statuses[status] += 1
                    if problem:
                        failures.append(
                            f"{p.who} {p.method} {p.url[:200]} body={(p.body or b'')[:200]!r}: {problem}"
                        )
        finally:
            anon.close()
            for s in sessions.values():
                s.close()

    def run_all(batch: list[Probe]) -> None:
        threads = [threading.Thread(target=run, args=(batch[i::THREADS],)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run_all(probes[:WARM_UP])
    rss_warm = rss_mb(workers_before)
    run_all(probes[WARM_UP:])

    token = stack.session(client=clients["admin"]).auth.oauth.token()
    for data in raw_requests(rng, host, token):
        answer = send_raw(port, data)
        counts["sent"] += 1
        parsed = parse_raw(answer)
        if parsed is None:
            failures.append(f"raw {data[:120]!r}: an answer that is not HTTP: {answer[:200]!r}")
            continue
        problem = outcome_problem(parsed[0], parsed[1], parsed[2], "RAW")
        if problem:
            failures.append(f"raw {data[:120]!r}: {problem} {parsed[2][:200]!r}")

    health = requests.get(stack.proxy + "/healthz", timeout=10)
    rss_end = rss_mb(workers_before)
    elapsed = time.monotonic() - started
    print(
        f"\nfuzz: {counts['sent']} requests in {elapsed:.0f} s; worker RSS {rss_warm:.0f} MB after warm-up,"
        f" {rss_end:.0f} MB at the end; {len(failures)} failures; statuses {sorted(statuses.items())}"
    )
    assert counts["sent"] >= HTTP_REQUESTS + RAW_REQUESTS
    assert not failures, f"{len(failures)} bad answers, first ones:\n" + "\n".join(failures[:25])
    assert health.status_code == 200
    assert worker_pids(master) == workers_before, "a worker died or was restarted during the run"
    assert rss_end - rss_warm < MAX_RSS_GROWTH_MB
