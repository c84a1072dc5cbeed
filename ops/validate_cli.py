"""``fhirplug validate PATH``: validate example files through $validate. (Being written.)"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("validate", help="validate a folder of JSON and XML examples through $validate")
    p.add_argument("path")


def run(args) -> int:
    raise SystemExit("fhirplug validate: not yet available")
