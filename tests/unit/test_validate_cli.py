"""`fhirplug validate` against a fake proxy (token endpoint and $validate): plain output when
stdout is not a terminal, line numbers from the store's issues, exit codes 0/1/2, an expired
token renewed without a row saying so, the business rules asked for with --rules."""

from __future__ import annotations

import argparse
import json
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from ops import validate_cli
from proxy.auth.partner_keys import generate
from tests.support.http_stub import QuietHandler

LINE = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-line"
COL = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-col"


def outcome(*issues: dict) -> bytes:
    return json.dumps({"resourceType": "OperationOutcome", "issue": list(issues)}).encode()


BROKEN_AT_3 = {
    "severity": "error",
    "code": "required",
    "diagnostics": "Patient.communication.language: minimum required = 1",
    "expression": ["Patient.communication[0]"],
    "location": ["Patient.communication[0]", "Line[3] Col[5]"],
    "extension": [{"url": LINE, "valueInteger": 3}, {"url": COL, "valueInteger": 5}],
}


class FakeProxy:
    """Answers /oauth2/token with numbered tokens and $validate by the file's content; ``expired``
    tokens get 401 as an expired one would; ``down`` answers every $validate with 503."""

    def __init__(self):
        self.tokens_issued = 0
        self.expired: set[str] = set()
        self.down = False
        self.seen: list[dict] = []
        fake = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                url = urlparse(self.path)
                if url.path == "/oauth2/token":
                    fake.tokens_issued += 1
                    token = f"t{fake.tokens_issued}"
                    return self.reply(
                        200,
                        json.dumps(
                            {"access_token": token, "token_type": "Bearer", "expires_in": 300}
                        ).encode(),
                        "application/json",
                    )
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                fake.seen.append({"token": token, "query": parse_qs(url.query), "body": body})
                if token in fake.expired or not token:
                    return self.reply(
                        401, outcome({"severity": "error", "code": "login", "diagnostics": "expired"})
                    )
                if fake.down:
                    return self.reply(
                        503, outcome({"severity": "error", "code": "transient", "diagnostics": "down"})
                    )
                if b"communication" in body:
                    return self.reply(200, outcome(BROKEN_AT_3))
                if parse_qs(url.query).get("rules") == ["true"] and b"bad-nhs" in body:
                    return self.reply(
                        200,
                        outcome(
                            {
                                "severity": "error",
                                "code": "business-rule",
                                "diagnostics": "NHS Number",
                                "expression": ["Bundle.entry[1]"],
                            }
                        ),
                    )
                return self.reply(
                    200,
                    outcome(
                        {
                            "severity": "information",
                            "code": "informational",
                            "diagnostics": "No issues detected during validation",
                        }
                    ),
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def fake():
    f = FakeProxy()
    yield f
    f.close()


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    private, _ = generate("cli-test", tmp_path_factory.mktemp("keys"), rsa_bits=2048)
    return private


def examples(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ok.json").write_text(json.dumps({"resourceType": "Patient"}, indent=2))
    (folder / "broken.json").write_text(
        json.dumps({"resourceType": "Patient", "communication": [{"preferred": True}]}, indent=2)
    )
    return folder


def run(fake: FakeProxy, folder: Path, tmp_path: Path, *extra: str, key: Path | None = None) -> int:
    parser = argparse.ArgumentParser()
    validate_cli.add_parser(parser.add_subparsers())
    auth = ["--client-id", "cli", "--key", str(key)] if key else ["--token", "t-fixed"]
    args = parser.parse_args(
        [
            "validate",
            str(folder),
            "--base",
            fake.base,
            *auth,
            "--report-json",
            str(tmp_path / "r.json"),
            "--report-junit",
            str(tmp_path / "r.xml"),
            *extra,
        ]
    )
    return validate_cli.run(args)


def test_piped_output_is_plain_lines_with_the_files_line_and_column(fake, tmp_path, capsys):
    assert run(fake, examples(tmp_path / "ex"), tmp_path) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "broken.json: 1 errors, 0 warnings",
        "  broken.json:3:5: error: Patient.communication[0]: "
        "Patient.communication.language: minimum required = 1",
        "ok.json: 0 errors, 0 warnings",
        "2 files, 1 with errors, 1 errors, 0 warnings",
    ]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["files"][0]["issues"][0]["line"] == 3 and report["files"][0]["issues"][0]["col"] == 5


def test_the_files_bytes_are_sent_as_they_are(fake, tmp_path):
    folder = examples(tmp_path / "ex")
    run(fake, folder, tmp_path)
    assert sorted(s["body"] for s in fake.seen) == sorted(p.read_bytes() for p in folder.iterdir())


def test_all_valid_exits_0(fake, tmp_path):
    folder = tmp_path / "ex"
    folder.mkdir()
    (folder / "ok.json").write_text('{"resourceType": "Patient"}')
    assert run(fake, folder, tmp_path) == 0


def test_a_server_that_cannot_validate_exits_2_and_counts_no_validation_error(fake, tmp_path, capsys):
    fake.down = True
    assert run(fake, examples(tmp_path / "ex"), tmp_path) == 2
    out = capsys.readouterr().out
    assert "ok.json: not validated: HTTP 503: down" in out and ", 2 not validated" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["errors"] == 0 and not report["files"][0]["validated"]
    assert 'errors="2"' in (tmp_path / "r.xml").read_text()


def test_an_unreachable_server_exits_2(tmp_path):
    fake = FakeProxy()
    fake.close()
    fake.server.server_close()
    assert run(fake, examples(tmp_path / "ex"), tmp_path) == 2


def test_a_refused_fixed_token_exits_2(fake, tmp_path):
    fake.expired.add("t-fixed")
    assert run(fake, examples(tmp_path / "ex"), tmp_path) == 2


def test_an_expired_token_is_renewed_and_never_reported(fake, tmp_path, key, capsys):
    fake.expired.add("t1")  # the first token expires before the first $validate
    assert run(fake, examples(tmp_path / "ex"), tmp_path, "--jobs", "1", key=key) == 1
    out = capsys.readouterr().out
    assert "ok.json: 0 errors, 0 warnings" in out and "401" not in out
    assert fake.tokens_issued == 2 and {s["token"] for s in fake.seen} == {"t1", "t2"}


def test_rules_are_asked_for_once_per_json_file(fake, tmp_path, capsys):
    folder = tmp_path / "ex"
    folder.mkdir()
    (folder / "msg.json").write_text('{"resourceType": "Bundle", "id": "bad-nhs"}')
    assert run(fake, folder, tmp_path) == 0
    assert run(fake, folder, tmp_path, "--rules") == 1
    assert fake.seen[-1]["query"]["rules"] == ["true"]


def test_parallel_requests_keep_the_files_order(fake, tmp_path, capsys):
    folder = tmp_path / "ex"
    folder.mkdir()
    for n in range(20):
        (folder / f"f{n:02d}.json").write_text('{"resourceType": "Patient"}')
    assert run(fake, folder, tmp_path, "--jobs", "8") == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("f")]
    assert lines == [f"f{n:02d}.json: 0 errors, 0 warnings" for n in range(20)]


def test_jobs_below_one_is_a_usage_error(fake, tmp_path):
    assert run(fake, examples(tmp_path / "ex"), tmp_path, "--jobs", "0") == 2


def test_rules_not_run_on_an_xml_file_is_a_warning_not_silence(fake, tmp_path, capsys):
    folder = tmp_path / "ex"
    folder.mkdir()
    (folder / "p.xml").write_text('<Patient xmlns="http://hl7.org/fhir"/>')
    assert run(fake, folder, tmp_path, "--rules") == 0
    assert "p.xml: warning: --rules: the business rules read JSON; not run" in capsys.readouterr().out
    assert "rules" not in fake.seen[-1]["query"]
