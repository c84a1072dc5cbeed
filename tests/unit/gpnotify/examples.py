"""Shared by the gpnotify tests: the official Digital Medicine examples, our R4 fixtures carrying the
same data, and the comparison "element for element apart from ids and timestamps"."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gpnotify.serialise import from_xml

EXAMPLES = Path("/work/shared/examples/digital-medicine")
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpnotify"
URN = re.compile(r"^urn:uuid:[0-9a-fA-F-]{36}$")
# what differs by design between two builds of the same notification: ids and the clock
TIMESTAMPS = {("MessageHeader", "timestamp"), ("Composition", "date")}


def example(name: str) -> dict[str, Any]:
    return from_xml((EXAMPLES / name).read_bytes())


def r4_inputs(name: str) -> list[dict[str, Any]]:
    bundle = json.loads((FIXTURES / name).read_text())
    return [e["resource"] for e in bundle["entry"]]


def _labels(bundle: dict[str, Any], out: dict[str, str], counts: dict[str, int]) -> None:
    """fullUrl → "Type#n" (n-th of its type in document order): references compare by what they
    point at, not by the uuid each side made up."""
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        kind = resource.get("resourceType", "?")
        counts[kind] = counts.get(kind, 0) + 1
        if entry.get("fullUrl"):
            out[entry["fullUrl"]] = f"{kind}#{counts[kind]}"
        if kind == "Bundle":
            _labels(resource, out, counts)


def normalise(message: dict[str, Any]) -> dict[str, Any]:
    labels: dict[str, str] = {}
    _labels(message, labels, {})

    def walk(value: Any, owner: str) -> Any:
        if isinstance(value, list):
            return [walk(v, owner) for v in value]
        if isinstance(value, str) and URN.match(value):
            return labels.get(value, "urn:uuid:(dangling)")
        if not isinstance(value, dict):
            return value
        owner = value.get("resourceType", owner)
        out = {}
        for k, v in value.items():
            if k in ("id", "fullUrl", "lastUpdated") or (owner, k) in TIMESTAMPS:
                continue
            if k == "div":
                out[k] = "(narrative)"  # compared by facts, see the module docstring of gpnotify.sections
                continue
            if k == "identifier" and owner in ("Bundle", "Composition", "List"):
                out[k] = "(made per message)"  # uuids the builder makes, with or without their system
                continue
            out[k] = walk(v, owner)
        return out

    return walk(message, "")


def differences(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Every path where the two differ, so a failing test says where, not just that."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found = []
        for k in sorted(set(ours) | set(theirs)):
            if k not in ours:
                found.append(f"{path}.{k}: missing in ours ({json.dumps(theirs[k])[:120]})")
            elif k not in theirs:
                found.append(f"{path}.{k}: only in ours ({json.dumps(ours[k])[:120]})")
            else:
                found += differences(ours[k], theirs[k], f"{path}.{k}")
        return found
    if isinstance(ours, list) and isinstance(theirs, list):
        found = (
            [f"{path}: {len(ours)} items in ours, {len(theirs)} in theirs"]
            if len(ours) != len(theirs)
            else []
        )
        for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
            found += differences(a, b, f"{path}[{i}]")
        return found
    return [] if ours == theirs else [f"{path}: ours {ours!r} != theirs {theirs!r}"]
