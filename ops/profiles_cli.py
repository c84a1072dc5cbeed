"""``fhirplug profiles load PATH``: load conformance resources into the store. (Being written.)"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("profiles", help="load conformance resources (a folder or a .tgz package)")
    p.add_argument("action", choices=["load"])
    p.add_argument("path")


def run(args) -> int:
    raise SystemExit("fhirplug profiles: not yet available")
