"""Sections of bench/RESULTS.md that each benchmark rewrites on its own, leaving the rest alone."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, name: str, text: str) -> None:
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    doc = path.read_text() if path.exists() else ""
    section = f"{begin}\n{text.rstrip()}\n{end}\n"
    if begin in doc and end in doc:
        head, _, rest = doc.partition(begin)
        doc = head + section + rest.partition(end)[2].lstrip("\n")
    else:
        doc = doc.rstrip("\n") + ("\n\n" if doc else "") + section
    path.write_text(doc)
