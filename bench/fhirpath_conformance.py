"""``fhirpathpy`` against HL7's official FHIRPath R4 test suite (issue 21): how much of FHIRPath
the library gets right, measured, before fhirplug leans on it for FHIRPath Patch and rules.

    python -m bench.fhirpath_conformance --cases <fhir-test-cases checkout>/r4 --write bench/RESULTS.md

The suite is ``r4/fhirpath/tests-fhir-r4.xml`` of https://github.com/FHIR/fhir-test-cases (read
from a checkout, not copied here). Each test evaluates one expression on one example resource
and names the expected outputs (type and value), or marks the expression ``invalid``. Inputs
come from the checkout's JSON copies of the examples, or, for an example it has only as XML, from
that XML read by fhir.resources' R4B models; a test whose example neither gives is counted as
*not run* (fhirpathpy reads JSON), never as passed.

How a test is judged, as the suite's own runners do: an ``invalid`` expression passes when the
library raises; otherwise the outputs must match in number and order, each by its type
(booleans, integers and strings exactly, decimals numerically, dates and times as written
without the ``@``, quantities as ``value 'unit'``); ``predicate="true"`` turns the result into
"is it non-empty". Anything raised by a valid expression is a failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from bench.__main__ import machine
from bench.report import write_section

SECTION = "bench.fhirpath_conformance"


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    not_run: int = 0
    failures: list[str] = field(default_factory=list)
    by_group: dict[str, Counter] = field(default_factory=dict)

    def add(self, group: str, outcome: str, name: str = "") -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.by_group.setdefault(group, Counter())[outcome] += 1
        if outcome == "failed":
            self.failures.append(f"{group}/{name}")


def _inputs(r4: Path) -> dict[str, dict]:
    """Example name (as the suite writes it, ``patient-example.xml``) -> its JSON."""
    found: dict[str, dict] = {}
    for path in list(r4.glob("*.json")) + list((r4 / "examples").glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        found.setdefault(path.stem + ".xml", doc)
        found.setdefault(path.name, doc)
    for path in r4.glob("*.xml"):
        if path.name not in found and (doc := _from_xml(path.read_bytes())) is not None:
            found[path.name] = doc
    return found


def _from_xml(raw: bytes) -> dict | None:
    """An example the checkout has only as XML, read by fhir.resources' R4B models (R4's
    structure for these resources); None when they refuse it."""
    import importlib
    import re

    head = re.search(rb"<([A-Z][A-Za-z]+)[\s>]", raw.split(b"?>", 1)[-1])
    if head is None:
        return None
    rtype = head.group(1).decode()
    try:
        model = getattr(importlib.import_module(f"fhir.resources.R4B.{rtype.lower()}"), rtype)
        parsed: dict = json.loads(model.model_validate_xml(raw).model_dump_json(exclude_none=True))
        return parsed
    except Exception:  # pydantic's and the XML reader's errors alike: counted as not run
        return None


def _text(value: Any) -> str:
    text = str(value)
    return text[1:] if text.startswith("@") else text


def _matches(kind: str | None, expected: str, actual: Any) -> bool:
    if kind == "boolean":
        return isinstance(actual, bool) and str(actual).lower() == expected
    if kind == "integer":
        return isinstance(actual, int) and not isinstance(actual, bool) and str(actual) == expected
    if kind == "decimal":
        try:
            return not isinstance(actual, bool) and Decimal(str(actual)) == Decimal(expected)
        except InvalidOperation:
            return False
    if kind in ("date", "dateTime", "time"):
        return _text(actual) == _text(expected)
    if kind == "Quantity":
        return " ".join(str(actual).replace('"', "'").split()) == " ".join(expected.split())
    if kind == "string" or kind == "code":
        return isinstance(actual, str) and actual == expected
    return True  # a complex output (no value in the suite): its presence is what counts


def run(r4: Path) -> Tally:
    from fhirpathpy import evaluate
    from fhirpathpy.models import models

    model = models["r4"]
    inputs = _inputs(r4)
    tally = Tally()
    suite = ET.parse(r4 / "fhirpath" / "tests-fhir-r4.xml").getroot()
    for group in suite.findall("group"):
        gname = group.get("name", "?")
        for test in group.findall("test"):
            name = test.get("name", "?")
            expression = test.find("expression")
            if expression is None or expression.text is None:
                continue
            source = test.get("inputfile")
            resource = inputs.get(source) if source else {}  # no input: an expression on nothing
            if resource is None:
                tally.add(gname, "not_run")
                continue
            invalid = expression.get("invalid")
            try:
                result = evaluate(json.loads(json.dumps(resource)), expression.text.strip(), {}, model)
            except Exception:  # the library's errors have no common base
                tally.add(gname, "passed" if invalid else "failed", name)
                continue
            if invalid:
                tally.add(gname, "failed", name)
                continue
            if test.get("predicate") == "true":
                result = [bool(result)]
            outputs = test.findall("output")
            ok = len(result) == len(outputs) and all(
                _matches(o.get("type"), (o.text or "").strip(), r)
                for o, r in zip(outputs, result, strict=True)
            )
            tally.add(gname, "passed" if ok else "failed", name)
    return tally


def report(tally: Tally, r4: Path) -> str:
    from importlib import metadata

    ran = tally.passed + tally.failed
    try:
        commit = subprocess.run(
            ["git", "-C", str(r4), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # an exported copy: its COMMIT file, if any
        marker = r4.parent / "COMMIT"
        commit = marker.read_text().strip() if marker.exists() else "unknown"
    worst = sorted(tally.by_group.items(), key=lambda kv: -kv[1]["failed"])[:8]
    lines = [
        "## FHIRPath: fhirpathpy against HL7's FHIRPath R4 test suite",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Library: fhirpathpy {metadata.version('fhirpathpy')}; suite: FHIR/fhir-test-cases "
        f"`r4/fhirpath/tests-fhir-r4.xml` at commit `{commit[:12]}`",
        "- Method: `python -m bench.fhirpath_conformance --cases <checkout>/r4` (see the module's docstring)",
        "",
        f"**{tally.passed} of {ran} run tests pass ({100 * tally.passed / ran:.1f}%)**; "
        f"{tally.not_run} not run (their example, parameters-example-types, exists only as XML, and "
        "fhir.resources refuses it: a version-1 UUID where its model wants version 4).",
        "",
        "| group with most failures | passed | failed |",
        "|---|---:|---:|",
        *[f"| {g} | {c['passed']} | {c['failed']} |" for g, c in worst if c["failed"]],
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True, help="the r4 folder of a FHIR/fhir-test-cases checkout")
    ap.add_argument("--write", help="update this Markdown report's section")
    ap.add_argument("--failures", action="store_true", help="list every failing test")
    args = ap.parse_args()
    r4 = Path(args.cases)
    tally = run(r4)
    text = report(tally, r4)
    print(text)
    if args.failures:
        print("\n".join(tally.failures))
    if args.write:
        write_section(Path(args.write), SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
