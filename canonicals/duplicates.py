"""Copies of one canonical stored before the rule held: which one is kept.

The newest (``meta.lastUpdated``) copy of each url and version is the one a caller last meant;
the others go. Pure: the caller reads the store and deletes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from canonicals.identity import Canonical


@dataclass
class Duplicates:
    resource_type: str
    canonical: Canonical
    keep: str  # the id kept
    remove: list[str] = field(default_factory=list)  # the ids deleted


def _updated(resource: dict) -> str:
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return ""
    # ISO 8601 instants from one store compare as text once the zone is normalised to Z
    return str(meta.get("lastUpdated") or "").replace("+00:00", "Z")


def find_duplicates(resources: list[dict]) -> list[Duplicates]:
    """Every url+version (per resource type) stored more than once, with the copy to keep."""
    groups: dict[tuple[str, Canonical], list[dict]] = defaultdict(list)
    for r in resources:
        c = Canonical.of(r)
        if c is not None and isinstance(r.get("id"), str):
            groups[(r["resourceType"], c)].append(r)
    out = []
    for (rtype, canonical), copies in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        if len(copies) < 2:
            continue
        # newest first; equal instants: the highest id, so a rerun picks the same one
        ordered = sorted(copies, key=lambda r: (_updated(r), r["id"]), reverse=True)
        out.append(Duplicates(rtype, canonical, ordered[0]["id"], [r["id"] for r in ordered[1:]]))
    return out
