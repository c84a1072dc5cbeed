"""JSON Merge Patch (RFC 7386) bodies of a PATCH, turned into the JSON Patch (RFC 6902) the store
and the plugins understand.

Client libraries send a PATCH as a plain JSON object with ``application/json`` (fhirpy's
``client.patch("Task", id, status="accepted")`` sends ``{"status": "accepted"}``): a merge patch.
HAPI takes only JSON Patch and FHIRPath Patch, and the plugins judge JSON Patch operations, so
the front door translates, against the resource as stored now: a member set is an ``add`` (which
replaces a member that exists), ``null`` is a ``remove`` of a member that exists (and nothing for
one that does not, as RFC 7386 says), an object is merged member by member into an object that
exists and added whole otherwise. The store then applies the operations to the version it holds;
a PATCH with ``If-Match`` keeps the translation and the version it was made against together.
"""

from __future__ import annotations

from typing import Any


def to_json_patch(merge: dict[str, Any], current: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The JSON Patch operations that do to ``current`` what the merge patch ``merge`` does."""
    return _ops(merge, current if isinstance(current, dict) else {}, "")


def _ops(merge: dict[str, Any], target: dict[str, Any], path: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, value in merge.items():
        here = f"{path}/{_escape(name)}"
        if value is None:
            if name in target:
                out.append({"op": "remove", "path": here})
        elif isinstance(value, dict) and isinstance(target.get(name), dict):
            out += _ops(value, target[name], here)
        else:
            out.append({"op": "add", "path": here, "value": _without_nulls(value)})
    return out


def _without_nulls(value: Any) -> Any:
    """What a merge patch's value becomes where nothing was: its ``null`` members left out."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")  # RFC 6901
