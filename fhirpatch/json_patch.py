"""RFC 6902 JSON Patch (``application/json-patch+json``), with RFC 6901 JSON Pointer.

:func:`apply_json_patch` applies the operations in order to a copy of the resource; all or
nothing. The operations are applied by ``jsonpatch`` (the reference Python implementation,
tested against the RFC's cases by its authors); what is ours is the checking of each operation's
shape, the answers in our words naming the operation and the JSON Pointer (never quoting the
document), and ``test`` as JSON equality (``1 == 1.0``; ``true`` is not ``1``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer

from fhirpatch.json_values import OpError, finish, json_equal
from proxy.errors import FhirError

JSON_PATCH = "application/json-patch+json"

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def _pointer(text: Any, member: str) -> list[str]:
    if not isinstance(text, str):
        raise OpError(f"'{member}' must be a JSON Pointer string")
    if text == "":
        return []
    if not text.startswith("/"):
        raise OpError(f"'{member}' {text!r} is not a JSON Pointer (it must be empty or start with '/')")
    tokens = text[1:].split("/")
    for token in tokens:
        if re.search(r"~(?![01])", token):
            raise OpError(f"'{member}' {text!r} has a '~' not followed by 0 or 1")
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _show(tokens: list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens) or "(the whole document)"


def _resolve(doc: Any, tokens: list[str]) -> Any:
    """The value at ``tokens``, or :data:`_MISSING`."""
    try:
        return jsonpointer.JsonPointer.from_parts(tokens).resolve(doc)
    except jsonpointer.JsonPointerException:
        return _MISSING


_MISSING = object()


def _why(doc: Any, kind: str, tokens: list[str], source: list[str] | None, exc: Exception) -> str:
    """Our words for what ``jsonpatch`` refused: its own messages may quote the whole document."""
    where = source if source is not None and _resolve(doc, source) is _MISSING else tokens
    text = str(exc)
    if "own children" in text:
        return f"cannot move {_show(source or [])} into its own child {_show(tokens)}"
    parent = _resolve(doc, where[:-1]) if where else _MISSING
    if isinstance(parent, list) and where:
        token = where[-1]
        if not _ARRAY_INDEX.fullmatch(token) and not (token == "-" and kind in ("add", "move", "copy")):
            return f"{_show(where)}: {token!r} is not an array index"
        return f"{_show(where)}: index {token} is out of range (the array has {len(parent)} items)"
    if "sequence index" in text:
        return f"{_show(where)}: not an array index"
    return f"{_show(where)} does not exist"


def _json_patch_op(doc: Any, op: Any) -> Any:
    """One operation, checked here (its shape, and ``test`` as JSON equality: ``jsonpatch``
    compares Python values, for which ``true == 1``), applied by ``jsonpatch``."""
    if not isinstance(op, dict):
        raise OpError("an operation must be a JSON object")
    kind = op.get("op")
    if kind not in ("add", "remove", "replace", "move", "copy", "test"):
        raise OpError(f"'op' must be add, remove, replace, move, copy or test, not {kind!r}")
    path = _pointer(op.get("path"), "path")
    if kind in ("add", "replace", "test") and "value" not in op:
        raise OpError(f"a '{kind}' operation needs a 'value'")
    if kind in ("move", "copy") and "from" not in op:
        raise OpError(f"a '{kind}' operation needs a 'from'")
    source = _pointer(op["from"], "from") if kind in ("move", "copy") else None
    if kind == "remove" and not path:
        raise OpError("cannot remove the whole document")
    if kind == "test":
        actual = _resolve(doc, path)
        if actual is _MISSING:
            raise OpError(f"{_show(path)} does not exist")
        if not json_equal(actual, op["value"]):
            raise OpError(f"test failed: {_show(path)} is not {op['value']!r}")
        return doc
    if kind == "move" and source is not None and source != path and path[: len(source)] == source:
        raise OpError(f"cannot move {_show(source)} into its own child {_show(path)}")
    try:
        return jsonpatch.apply_patch(doc, [copy.deepcopy(op)], in_place=True)  # no shared values
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise OpError(_why(doc, kind, path, source, exc)) from None


def apply_json_patch(resource: Mapping[str, Any], patch: Any) -> dict:
    """A new resource: ``resource`` (left untouched) with the JSON Patch ``patch`` applied.

    400 when ``patch`` is not a list of operations; 422 naming the operation that is malformed
    or cannot be applied.
    """
    if not isinstance(patch, list):
        raise FhirError(
            400,
            "a JSON Patch (application/json-patch+json) must be a JSON array of operations",
            [],
            "invalid",
        )
    doc: Any = copy.deepcopy(dict(resource))
    for n, op in enumerate(patch):
        try:
            doc = _json_patch_op(doc, op)
        except OpError as e:
            label = f"{op.get('op')} {op.get('path')}" if isinstance(op, dict) else "?"
            raise FhirError(422, f"JSON Patch operation {n} ({label}): {e}", [], "processing") from None
    return finish(resource, doc, "the JSON Patch")
