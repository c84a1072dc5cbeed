"""``fhirplug validate`` end to end, as an operator runs it: a folder of examples, a token from the
real token endpoint for a validator client, $validate on the real store through the proxy, and
the table, JSON report and JUnit report agreeing with each other.

The made-up examples declare no meta.profile (except where an unknown profile is the point);
the IG's examples are validated against the England profiles the test stack loads at start."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
FHIRPLUG = str(Path(sys.prefix) / "bin" / "fhirplug")
UNKNOWN_PROFILE = "http://example.org/fhir/StructureDefinition/no-such-profile"

VALID_JSON = {
    "resourceType": "Patient",
    "name": [{"family": "Smith", "given": ["Ann"]}],
    "gender": "female",
    "birthDate": "1980-02-03",
}
# HAPI refuses this one while parsing it (a 400 from $validate, not an OperationOutcome of 200)
INVALID_JSON = {"resourceType": "Patient", "gender": "nonsense"}
# parses, then breaks the rules: communication.language is 1..1, pat-1 wants a contact's details
BREAKS_RULES_JSON = {"resourceType": "Patient", "communication": [{"preferred": True}], "contact": [{}]}
VALID_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Patient xmlns="http://hl7.org/fhir">\n'
    '  <name><family value="Jones"/><given value="Bob"/></name>\n'
    '  <gender value="male"/>\n'
    '  <birthDate value="1975-11-30"/>\n'
    "</Patient>\n"
)
BROKEN_JSON = '{"resourceType": "Patient", "gender": '


@dataclass
class Result:
    proc: subprocess.CompletedProcess
    report: dict
    junit: ET.Element

    @property
    def rows(self) -> dict[str, dict]:
        return {f["file"]: f for f in self.report["files"]}


@pytest.fixture(scope="module")
def validator(stack, tmp_path_factory) -> tuple[str, Path]:
    """A registered validator client and its private JWK file, as `fhirplug keys generate` writes it."""
    client = stack.client("validate-cli", "validator")
    key = tmp_path_factory.mktemp("validate-cli-key") / f"{client.kid}.private.jwk.json"
    key.write_text(json.dumps(client.private_jwk))
    key.chmod(0o600)
    return client.client_id, key


@pytest.fixture
def validate(stack, validator, tmp_path):
    client_id, key = validator

    def run(path: Path, *extra: str) -> Result:
        report, junit = tmp_path / "out" / "report.json", tmp_path / "out" / "report.junit.xml"
        env = {k: v for k, v in os.environ.items() if k not in ("FHIRPLUG_TOKEN", "FHIRPLUG_BASE")}
        env["COLUMNS"] = "200"
        proc = subprocess.run(
            [
                FHIRPLUG,
                "validate",
                str(path),
                "--base",
                stack.fhir,
                "--client-id",
                client_id,
                "--key",
                str(key),
                "--report-json",
                str(report),
                "--report-junit",
                str(junit),
                *extra,
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode in (0, 1), f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return Result(proc, json.loads(report.read_text()), ET.parse(junit).getroot())

    return run


def write_examples(folder: Path, broken: bool = True, invalid: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "patient-valid.json").write_text(json.dumps(VALID_JSON, indent=2))
    (folder / "xml").mkdir(exist_ok=True)
    (folder / "xml" / "patient-valid.xml").write_text(VALID_XML)
    (folder / "notes.txt").write_text("not an example")  # neither .json nor .xml: not validated
    if invalid:
        (folder / "patient-invalid.json").write_text(json.dumps(INVALID_JSON))
        (folder / "patient-breaks-rules.json").write_text(json.dumps(BREAKS_RULES_JSON))
    if broken:
        (folder / "broken.json").write_text(BROKEN_JSON)


def table_rows(stdout: str, files: set[str]) -> dict[str, tuple[int, int]]:
    """(errors, warnings) per file, read back from the plain lines (stdout is a pipe here)."""
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\S.*): (\d+) errors, (\d+) warnings$", line)
        if m and m.group(1) in files:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return rows


def assert_consistent(result: Result) -> None:
    """The table, the summary line, the JSON report and the JUnit report tell the same story."""
    rows = result.rows
    printed = table_rows(result.proc.stdout, set(rows))
    assert printed == {f: (r["errors"], r["warnings"]) for f, r in rows.items()}, result.proc.stdout
    for r in rows.values():
        errors = [i for i in r["issues"] if i["severity"] in ("error", "fatal")]
        assert r["errors"] == len(errors)
        assert r["warnings"] == sum(1 for i in r["issues"] if i["severity"] == "warning")
        for issue in r["issues"]:
            assert {"severity", "code", "diagnostics", "expression"} <= set(issue)

    with_errors = {f for f, r in rows.items() if r["errors"]}
    n_errors, n_warnings = (sum(r[k] for r in rows.values()) for k in ("errors", "warnings"))
    summary = f"{len(rows)} files, {len(with_errors)} with errors, {n_errors} errors, {n_warnings} warnings"
    assert summary in result.proc.stdout

    suite = result.junit
    assert suite.tag == "testsuite" and suite.get("name") == "fhirplug validate"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == set(rows)
    assert all(c.get("classname") == "fhirplug.validate" for c in cases.values())
    assert {n for n, c in cases.items() if c.find("failure") is not None} == with_errors
    assert suite.get("tests") == str(len(rows)) and suite.get("failures") == str(len(with_errors))
    for name in with_errors:
        failure = cases[name].find("failure")
        assert failure.get("message")
        assert len(failure.text.strip().splitlines()) == rows[name]["errors"]

    assert result.proc.returncode == (1 if with_errors else 0)


def test_a_folder_with_invalid_and_broken_files(validate, tmp_path):
    folder = tmp_path / "examples"
    write_examples(folder)
    result = validate(folder)

    assert result.proc.returncode == 1, result.proc.stdout + result.proc.stderr
    rows = result.rows
    assert set(rows) == {
        "patient-valid.json",
        "xml/patient-valid.xml",
        "patient-invalid.json",
        "patient-breaks-rules.json",
        "broken.json",
    }
    assert_consistent(result)

    assert rows["patient-valid.json"]["errors"] == 0, rows["patient-valid.json"]
    assert rows["xml/patient-valid.xml"]["errors"] == 0, rows["xml/patient-valid.xml"]

    invalid = rows["patient-invalid.json"]
    assert invalid["errors"] >= 1, invalid
    assert any("nonsense" in i["diagnostics"] for i in invalid["issues"]), json.dumps(invalid)
    assert invalid["issues"][0]["diagnostics"].startswith("HTTP 400:")  # refused while parsing

    rules = rows["patient-breaks-rules.json"]  # a 200 OperationOutcome with errors, each with a path
    assert rules["errors"] >= 2, json.dumps(rules)
    paths = {e for i in rules["issues"] if i["severity"] == "error" for e in i["expression"]}
    assert {"Patient.communication[0]", "Patient.contact[0]"} <= paths, json.dumps(rules)
    first = next(i for i in rules["issues"] if i["severity"] == "error")
    # the first error's own plain line: the file, its line and column in the file, where, what
    line = next(ln for ln in result.proc.stdout.splitlines() if ln.startswith("  patient-breaks-rules.json:"))
    assert f"error: {first['expression'][0]}: {first['diagnostics'][:40]}" in line

    broken = rows["broken.json"]
    assert broken["errors"] == 1 and broken["profiles"] == []
    assert broken["issues"][0]["diagnostics"].startswith("does not parse:")

    assert "5 files, 3 with errors" in result.proc.stdout


def test_a_folder_of_valid_files_exits_0(validate, tmp_path):
    folder = tmp_path / "valid"
    write_examples(folder, broken=False, invalid=False)
    result = validate(folder)

    assert result.proc.returncode == 0, result.proc.stdout + result.proc.stderr
    assert set(result.rows) == {"patient-valid.json", "xml/patient-valid.xml"}
    assert_consistent(result)
    assert "2 files, 0 with errors, 0 errors" in result.proc.stdout


def test_an_unknown_profile_is_an_error(validate, tmp_path):
    folder = tmp_path / "profiled"
    write_examples(folder, broken=False, invalid=False)
    result = validate(folder / "patient-valid.json", "--profile", UNKNOWN_PROFILE)

    assert result.proc.returncode == 1, result.proc.stdout + result.proc.stderr
    row = result.rows["patient-valid.json"]
    assert row["profiles"] == [UNKNOWN_PROFILE]
    assert row["errors"] >= 1, row
    errors = [i for i in row["issues"] if i["severity"] in ("error", "fatal")]
    assert any(UNKNOWN_PROFILE in i["diagnostics"] for i in errors), json.dumps(row)
    assert_consistent(result)


def test_each_declared_profile_is_checked(validate, tmp_path):
    """Without --profile, every meta.profile of a resource gets its own $validate, issues merged."""
    declared = [UNKNOWN_PROFILE, UNKNOWN_PROFILE + "-two"]
    folder = tmp_path / "declared"
    folder.mkdir()
    (folder / "patient.json").write_text(json.dumps({**VALID_JSON, "meta": {"profile": declared}}))
    result = validate(folder)

    assert result.proc.returncode == 1, result.proc.stdout + result.proc.stderr
    row = result.rows["patient.json"]
    assert row["profiles"] == declared
    errors = [i for i in row["issues"] if i["severity"] in ("error", "fatal")]
    assert {p for i in errors for p in i["profiles"]} == set(declared), json.dumps(row)
    # what the base type's rules find is found under each profile, and counted once
    identities = [(i["severity"], i["diagnostics"], tuple(i["expression"])) for i in row["issues"]]
    assert len(identities) == len(set(identities)), json.dumps(row)
    assert any(i["profiles"] == declared for i in row["issues"]), json.dumps(row)
    assert_consistent(result)


def test_a_refused_token_is_could_not_validate_not_an_error_row(stack, tmp_path):
    folder = tmp_path / "examples"
    write_examples(folder, broken=False, invalid=False)
    env = {**os.environ, "COLUMNS": "200", "FHIRPLUG_TOKEN": "not-a-token"}
    proc = subprocess.run(
        [FHIRPLUG, "validate", str(folder), "--base", stack.fhir],
        env=env,
        cwd=tmp_path,  # the reports go to their default names here
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    rows = {f["file"]: f for f in report["files"]}
    assert set(rows) == {"patient-valid.json", "xml/patient-valid.xml"}
    for row in rows.values():
        assert row["errors"] == 0 and not row["validated"] and row["not_validated"].startswith("HTTP 401"), (
            row
        )
    assert "2 not validated" in proc.stdout
    assert ET.parse(tmp_path / "validation-report.junit.xml").getroot().get("errors") == "2"


def test_issues_carry_the_files_own_line_numbers_json_and_xml(validate, tmp_path):
    folder = tmp_path / "lines"
    folder.mkdir()
    (folder / "breaks.json").write_text(json.dumps(BREAKS_RULES_JSON, indent=2))
    (folder / "breaks.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Patient xmlns="http://hl7.org/fhir">\n'
        "  <communication>\n"
        '    <preferred value="true"/>\n'
        "  </communication>\n"
        "</Patient>\n"
    )
    result = validate(folder)
    for name in ("breaks.json", "breaks.xml"):
        lines = {i.get("line") for i in result.rows[name]["issues"] if i["severity"] == "error"}
        assert lines - {None, 1}, (name, result.rows[name])
    assert re.search(r"^  breaks\.json:\d+:\d+: error: ", result.proc.stdout, re.M), result.proc.stdout


def test_rules_report_the_bad_nhs_number_a_write_would_refuse(validate):
    example = (
        Path(__file__).resolve().parents[2] / "ig" / "examples" / "invalid-spoke-to-hub-bad-nhs-number.json"
    )
    plain = validate(example)
    assert plain.rows[example.name]["errors"] == 0, plain.proc.stdout
    ruled = validate(example, "--rules")
    issues = ruled.rows[example.name]["issues"]
    assert any(i["code"] == "business-rule" and "NHS" in i["diagnostics"] for i in issues), ruled.proc.stdout
    assert ruled.proc.returncode == 1


def test_usage_problems_exit_2(tmp_path):
    env = {**os.environ, "FHIRPLUG_TOKEN": "unused"}
    missing = subprocess.run(
        [FHIRPLUG, "validate", str(tmp_path / "nowhere")], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no examples here")
    empty = subprocess.run(
        [FHIRPLUG, "validate", str(tmp_path / "empty")], env=env, capture_output=True, text=True, timeout=60
    )
    assert empty.returncode == 2 and "no *.json or *.xml" in empty.stderr


def test_the_ig_examples_validate_with_reports_that_match_the_table(validate):
    """`fhirplug validate ig/examples` against the England profiles the stack loaded at start."""
    examples = Path(__file__).resolve().parents[2] / "ig" / "examples"
    result = validate(examples)
    assert_consistent(result)
    rows = result.rows
    assert set(rows) == {p.name for p in examples.glob("*.json")}
    assert all(rows[n]["errors"] == 0 for n in rows if n.startswith("valid-")), result.proc.stdout
    # the profile-level breaks are caught by $validate (message-level ones are the plugin's job)
    assert rows["invalid-spoke-to-hub-bundle-type-batch.json"]["errors"] >= 1
    assert rows["invalid-spoke-to-hub-no-task.json"]["errors"] >= 1
    assert result.proc.returncode == 1
