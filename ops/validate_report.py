"""What ``fhirplug validate`` reports: a row per file, the table on stdout, the JSON report and
the JUnit XML report."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ERROR_SEVERITIES = {"error", "fatal"}
# HAPI also puts "Line[3] Col[17]" into issue.location: a position in the file, not a FHIRPath
_LINE_COL = re.compile(r"^Line\[\d+\] Col\[\d+\]$")


@dataclass
class Row:
    file: str
    profiles: list[str] = field(default_factory=list)
    issues: list[dict] = field(default_factory=list)
    not_validated: str | None = None  # why the server said nothing about this file (exit 2)

    @property
    def error_issues(self) -> list[dict]:
        return [i for i in self.issues if i["severity"] in ERROR_SEVERITIES]

    @property
    def errors(self) -> int:
        return len(self.error_issues)

    @property
    def warnings(self) -> int:
        return sum(1 for i in self.issues if i["severity"] == "warning")

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "profiles": self.profiles,
            "errors": self.errors,
            "warnings": self.warnings,
            "issues": self.issues,
            "validated": self.not_validated is None,
            **({"not_validated": self.not_validated} if self.not_validated else {}),
        }


def describe(issue: dict) -> str:
    """One line for an issue: its FHIRPath location first (expression, else location), if any."""
    where = (issue["expression"] or [w for w in issue.get("location", []) if not _LINE_COL.match(w)] or [""])[
        0
    ]
    return f"{where}: {issue['diagnostics']}" if where else issue["diagnostics"]


def position(issue: dict) -> str:
    """``line:col`` in the file (``line`` alone, or "" when the store gave none)."""
    if "line" not in issue:
        return ""
    return f"{issue['line']}:{issue['col']}" if "col" in issue else str(issue["line"])


def summary(rows: list[Row]) -> dict:
    return {
        "files": len(rows),
        "not_validated": sum(1 for r in rows if r.not_validated),
        "files_with_errors": sum(1 for r in rows if r.errors),
        "errors": sum(r.errors for r in rows),
        "warnings": sum(r.warnings for r in rows),
    }


def summary_line(rows: list[Row]) -> str:
    s = summary(rows)
    line = (
        f"{s['files']} files, {s['files_with_errors']} with errors, {s['errors']} errors, "
        f"{s['warnings']} warnings"
    )
    return line + (f", {s['not_validated']} not validated" if s["not_validated"] else "")


def plain_lines(rows: list[Row]) -> list[str]:
    """For a log or a pipe: nothing wraps, one line per file, then one per error and warning as
    ``file:line:col: severity: where: what`` (the shape editors and CI annotations read)."""
    out = []
    for r in rows:
        if r.not_validated:
            out.append(f"{r.file}: not validated: {r.not_validated}")
            continue
        out.append(f"{r.file}: {r.errors} errors, {r.warnings} warnings")
        for i in r.issues:
            if i["severity"] in ERROR_SEVERITIES or i["severity"] == "warning":
                at = ":".join(p for p in (r.file, position(i)) if p)
                out.append(f"  {at}: {i['severity']}: {describe(i)}")
    out.append(summary_line(rows))
    return out


def print_results(rows: list[Row], plain: bool = False) -> None:
    if plain:
        print("\n".join(plain_lines(rows)), flush=True)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    table = Table(title="fhirplug validate")
    table.add_column("File", no_wrap=True)
    table.add_column("Errors", justify="right")
    table.add_column("Warnings", justify="right")
    table.add_column("First error", overflow="fold")
    for r in rows:
        first = r.error_issues[0] if r.errors else None
        said = f"not validated: {r.not_validated}" if r.not_validated else ""
        if first:
            said = f"{position(first)} {describe(first)}".strip()
        table.add_row(
            Text(r.file),  # Text, not markup: names and FHIRPaths contain [brackets]
            Text(str(r.errors), style="bold red" if r.errors else "green"),
            Text(str(r.warnings), style="yellow" if r.warnings else ""),
            Text(said),
        )
    console.print(table)
    console.print(summary_line(rows), markup=False)


def write_json_report(target: Path, rows: list[Row], base: str, path: str, profile: str | None) -> None:
    report = {
        "base": base,
        "path": path,
        "profile": profile,
        "summary": summary(rows),
        "files": [r.to_json() for r in rows],
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_junit_report(target: Path, rows: list[Row]) -> None:
    failed = sum(1 for r in rows if r.errors)
    unvalidated = sum(1 for r in rows if r.not_validated)
    suite = ET.Element(
        "testsuite",
        name="fhirplug validate",
        tests=str(len(rows)),
        failures=str(failed),
        errors=str(unvalidated),  # JUnit's "error": the test could not run, not that it failed
    )
    for r in rows:
        case = ET.SubElement(suite, "testcase", classname="fhirplug.validate", name=r.file)
        if r.not_validated:
            ET.SubElement(case, "error", message=r.not_validated)
        if r.errors:
            failure = ET.SubElement(case, "failure", message=describe(r.error_issues[0]))
            failure.text = "\n".join(
                f"{':'.join(p for p in (r.file, position(i)) if p)}: {i['severity']}: {describe(i)}"
                for i in r.error_issues
            )
        warnings = [i for i in r.issues if i["severity"] == "warning"]
        if warnings:
            ET.SubElement(case, "system-out").text = "\n".join(f"warning: {describe(i)}" for i in warnings)
    ET.indent(suite)
    target.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(target, encoding="utf-8", xml_declaration=True)
