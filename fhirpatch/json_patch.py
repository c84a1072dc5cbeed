"""RFC 6902 JSON Patch (``application/json-patch+json``), with RFC 6901 JSON Pointer.

:func:`apply_json_patch` applies the operations in order to a copy of the resource; all or
nothing. Operation ``test`` compares JSON values (``1 == 1.0``; ``true`` is not ``1``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

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


def _index(container: list, token: str, tokens: list[str], *, end_ok: bool = False) -> int:
    if end_ok and token == "-":
        return len(container)
    if not _ARRAY_INDEX.fullmatch(token):
        raise OpError(f"{_show(tokens)}: {token!r} is not an array index")
    i = int(token)
    if i > len(container) or (i == len(container) and not end_ok):
        raise OpError(f"{_show(tokens)}: index {i} is out of range (the array has {len(container)} items)")
    return i


def _get(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for n, token in enumerate(tokens):
        here = tokens[: n + 1]
        if isinstance(node, dict):
            if token not in node:
                raise OpError(f"{_show(here)} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, here)]
        else:
            raise OpError(f"{_show(here)} does not exist ({_show(tokens[:n])} is not an object or array)")
    return node


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _get(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, tokens, end_ok=True), value)
    else:
        raise OpError(f"{_show(tokens[:-1])} is not an object or array")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise OpError("cannot remove the whole document")
    parent = _get(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise OpError(f"{_show(tokens)} does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, tokens))
    raise OpError(f"{_show(tokens)} does not exist")


def _json_patch_op(doc: Any, op: Any) -> Any:
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
    if kind == "add":
        return _add(doc, path, copy.deepcopy(op["value"]))
    if kind == "remove":
        _remove(doc, path)
        return doc
    if kind == "replace":
        _get(doc, path)  # must exist
        if not path:
            return copy.deepcopy(op["value"])
        parent = _get(doc, path[:-1])
        parent[path[-1] if isinstance(parent, dict) else int(path[-1])] = copy.deepcopy(op["value"])
        return doc
    if kind == "test":
        actual = _get(doc, path)
        if not json_equal(actual, op["value"]):
            raise OpError(f"test failed: {_show(path)} is not {op['value']!r}")
        return doc
    source = _pointer(op["from"], "from")
    if kind == "copy":
        return _add(doc, path, copy.deepcopy(_get(doc, source)))
    if source == path:  # move onto itself: RFC 6902 says it must exist, and nothing changes
        _get(doc, source)
        return doc
    if path[: len(source)] == source:
        raise OpError(f"cannot move {_show(source)} into its own child {_show(path)}")
    return _add(doc, path, _remove(doc, source))


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
