"""FHIRPath Patch (a ``Parameters`` resource, https://hl7.org/fhir/R4/fhirpatch.html), any type.

Paths are FHIRPath expressions evaluated by ``fhirpathpy`` (its R4 model resolves choice
elements such as ``Task.output[0].value``), so ``where()``, ``first()``, indexes and the rest of
the language select what an operation acts on; ``fhirpathpy`` tells for every node it returns
the concrete place it came from (``Patient.name[0].given[1]``), which is where the operation
writes. Whether an added element repeats and what JSON name a choice takes come from the typed
models (:mod:`fhirpatch.element_info`). Operations: add, insert, delete, replace and move, applied
in order to a copy of the resource; all or nothing.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import fhirpathpy
from fhirpathpy.models import models as _fhirpath_models

from fhirpatch.element_info import is_choice as _is_choice
from fhirpatch.element_info import repeats as _repeats
from fhirpatch.json_values import OpError, finish
from proxy.errors import FhirError

R4_MODEL = _fhirpath_models["r4"]
_OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")
#: A path that starts with a type name (``Patient.``): it must be this resource's type.
_TYPE_HEAD = re.compile(r"([A-Z][A-Za-z]*)(?:\.|$)")
#: ``<expression>.<name>``: where an insert into a list that does not exist yet creates it.
_TAIL = re.compile(r"(.+)\.([A-Za-z][A-Za-z0-9_]*)")


def _value_key(part: Mapping[str, Any]) -> str | None:
    keys = [k for k in part if k.startswith("value") and k[5:6].isupper()]
    if len(keys) > 1:
        raise OpError(f"part {part.get('name')!r} has more than one value[x] ({', '.join(sorted(keys))})")
    return keys[0] if keys else None


def _child_key(element_path: str, name: str, value_key: str | None) -> str:
    """The JSON member for child ``name`` of ``element_path``: a choice element named ``value``
    takes its type from the part's value[x] (``valueReference``)."""
    if _is_choice(f"{element_path}.{name}"):
        if value_key is None:
            raise OpError(
                f"{element_path}.{name} is a choice element: give it as value[x] (e.g. valueReference),"
                f" or name the part with its type (e.g. {name}Reference)"
            )
        return name + value_key[5:]
    return name


def _part_value(part: Mapping[str, Any], element_path: str) -> Any:
    """The JSON for a part: its value[x], or an object built from its nested parts."""
    key = _value_key(part)
    nested = part.get("part")
    if key is not None and nested is not None:
        raise OpError(f"part {part.get('name')!r} has both a value[x] and nested parts")
    if key is not None:
        return copy.deepcopy(part[key])
    if not nested:
        raise OpError(f"part {part.get('name')!r} has no value[x] and no nested parts")
    if not isinstance(nested, list):
        raise OpError(f"part {part.get('name')!r}: 'part' must be an array")
    out: dict[str, Any] = {}
    for child in nested:
        if not isinstance(child, dict) or not isinstance(child.get("name"), str) or not child["name"]:
            raise OpError(f"a nested part of {part.get('name')!r} has no name")
        name = child["name"]
        member = _child_key(element_path, name, _value_key(child))
        value = _part_value(child, f"{element_path}.{name}")
        if member in out:  # a name given twice repeats, known repeating element or not
            if not isinstance(out[member], list):
                out[member] = [out[member]]
            out[member].append(value)
        elif _repeats(f"{element_path}.{name}"):
            out[member] = [value]
        else:
            out[member] = value
    return out


class _Loc:
    """Where a path landed: ``parent[key]`` (or ``parent[key][index]``); the root has no parent."""

    __slots__ = ("parent", "key", "index", "element_path")

    def __init__(self, parent: dict | None, key: str | None, index: int | None, element_path: str):
        self.parent, self.key, self.index, self.element_path = parent, key, index, element_path

    def get(self, root: dict) -> Any:
        if self.parent is None:
            return root
        value = self.parent[self.key]
        return value if self.index is None else value[self.index]


#: An element named like an operator keyword after a dot (``Patient.text.div``): fhirpathpy's parser
#: reads it as the operator ("Infix invoke should have arity 2"); as a delimited identifier
#: (```div```), which means the same element, it parses. The gap is named in the unit tests.
_KEYWORD_MEMBER = re.compile(r"\.(div|mod|and|or|xor|implies)\b(?!\s*\()")


@lru_cache(maxsize=1024)
def _compiled(path: str) -> Any:
    """The FHIRPath expression, parsed once (parsing costs far more than evaluating)."""
    try:
        expression = _KEYWORD_MEMBER.sub(lambda m: f".`{m.group(1)}`", path)
        return fhirpathpy.compile(expression, model=R4_MODEL, options={"returnRawData": True})
    except Exception as exc:  # fhirpathpy's parser raises its own and antlr's errors
        raise OpError(f"{path!r} is not a FHIRPath expression ({exc})") from None


_PROP_STEP = re.compile(r"([A-Za-z][A-Za-z0-9_]*)(?:\[([0-9]+)\])?")


def _located(root: dict, node: Any, path: str, rtype: str) -> _Loc:
    """Where in ``root`` a node fhirpathpy returned sits: its ``propName`` is the concrete path
    (``Patient.name[0].given[1]``); the element found there must be the node's own data."""
    prop = getattr(node, "propName", None) or ""
    data = node.data
    if data is root or not prop:
        if data is not root:
            raise OpError(f"{path} names something that is not an element of this {rtype}")
        return _Loc(None, None, None, rtype)
    steps = [_PROP_STEP.fullmatch(step) for step in prop.split(".")]
    if any(m is None for m in steps) or steps[0].group(1) != rtype:  # type: ignore[union-attr]
        raise OpError(f"{path} names something that is not an element of this {rtype}")
    loc = _Loc(None, None, None, rtype)
    current: Any = root
    for m in steps[1:]:
        name, index = m.group(1), m.group(2)  # type: ignore[union-attr]
        if not isinstance(current, dict):
            raise OpError(f"{path} names something that is not an element of this {rtype}")
        key = name
        if name not in current:  # a choice: Task.output[0].value is valueReference in JSON
            key = next(
                (k for k in current if k.startswith(name) and k[len(name) : len(name) + 1].isupper()), name
            )
        if key not in current:
            raise OpError(f"{path} names something that is not an element of this {rtype}")
        value = current[key]
        loc = _Loc(current, key, None if index is None else int(index), f"{loc.element_path}.{name}")
        if loc.index is not None:
            if not isinstance(value, list) or loc.index >= len(value):
                raise OpError(f"{path} names something that is not an element of this {rtype}")
            value = value[loc.index]
        current = value
    same = current is data if isinstance(data, dict | list) else current == data
    if not same:
        raise OpError(f"{path} names something that is not an element of this {rtype}")
    return loc


def _evaluate(root: dict, path: str, rtype: str) -> list[_Loc]:
    """The elements ``path`` selects in ``root``, each with its place."""
    head = _TYPE_HEAD.match(path)
    if head and head.group(1) != rtype:
        raise OpError(f"path {path!r} must start with the resource type: this resource is a {rtype}")
    try:
        nodes = _compiled(path)(root)
    except OpError:
        raise
    except Exception as exc:  # an expression that parses but cannot be evaluated here
        raise OpError(f"{path!r} cannot be evaluated on this {rtype} ({exc})") from None
    locs = []
    for node in nodes:
        if not hasattr(node, "propName"):
            raise OpError(f"{path} evaluates to a value ({node!r}), not to elements of the {rtype}")
        locs.append(_located(root, node, path, rtype))
    return locs


def _single(root: dict, path: str, rtype: str, why: str) -> _Loc:
    locs = _evaluate(root, path, rtype)
    if not locs:
        raise OpError(f"{path} does not exist")
    if len(locs) > 1:
        raise OpError(f"{path} matches {len(locs)} elements; {why} needs exactly one (add an [n] index)")
    return locs[0]


def _list_at(root: dict, path: str, rtype: str, *, create: bool) -> tuple[list, str]:
    """The repeating element ``path`` names, and its element path."""
    locs = _evaluate(root, path, rtype)
    if locs:
        first = locs[0]
        if any(loc.index is None for loc in locs):
            raise OpError(f"{path} is not a repeating element")
        if any(loc.parent is not first.parent or loc.key != first.key for loc in locs):
            raise OpError(f"{path} names more than one list")
        items = first.parent[first.key]  # type: ignore[index]
        if len(items) != len(locs):
            raise OpError(f"{path} must name a whole list, not some of its items")
        return items, first.element_path
    tail = _TAIL.fullmatch(path)
    if tail is None:
        raise OpError(f"{path} does not exist")
    parent = _single(root, tail.group(1), rtype, "a list")
    container = parent.get(root)
    epath = f"{parent.element_path}.{tail.group(2)}"
    if not isinstance(container, dict) or not _repeats(epath):
        raise OpError(f"{path} is not a repeating element")
    if not create:
        raise OpError(f"{path} does not exist")
    items = container[tail.group(2)] = []
    return items, epath


def _int_part(parts: dict[str, dict], name: str) -> int:
    part = parts.get(name)
    value = part.get("valueInteger") if part else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise OpError(f"needs a '{name}' part with a valueInteger of 0 or more")
    return value


def _fhirpath_op(root: dict, parameter: Any, rtype: str) -> None:
    if not isinstance(parameter, dict) or parameter.get("name") != "operation":
        raise OpError("every parameter of a FHIRPath Patch must be named 'operation'")
    parts: dict[str, dict] = {}
    for part in parameter.get("part") or []:
        name = part.get("name") if isinstance(part, dict) else None
        if not isinstance(name, str):
            raise OpError("a part has no name")
        if name in parts:
            raise OpError(f"the '{name}' part appears more than once")
        parts[name] = part
    kind = parts.get("type", {}).get("valueCode")
    if kind not in _OPERATION_TYPES:
        raise OpError(f"the 'type' part must be a valueCode, one of {', '.join(_OPERATION_TYPES)}")
    path = parts.get("path", {}).get("valueString")
    if not isinstance(path, str) or not path:
        raise OpError("the 'path' part must be a non-empty valueString")

    if kind in ("add", "insert", "replace") and "value" not in parts:
        raise OpError(f"a '{kind}' operation needs a 'value' part")

    if kind == "replace":
        loc = _single(root, path, rtype, "replace")
        if loc.parent is None:
            raise OpError("cannot replace the resource itself")
        value = _part_value(parts["value"], loc.element_path)
        if loc.index is not None:
            loc.parent[loc.key][loc.index] = value
        elif _is_choice(loc.element_path):  # Task.output[0].value: the new value[x] may change type
            parent_path, _, name = loc.element_path.rpartition(".")
            _drop(loc.parent, loc.key)  # type: ignore[arg-type]
            loc.parent[_child_key(parent_path, name, _value_key(parts["value"]))] = value
        else:
            _drop(loc.parent, loc.key)  # type: ignore[arg-type]
            loc.parent[loc.key] = value
    elif kind == "delete":
        locs = _evaluate(root, path, rtype)
        if not locs:
            return  # deleting what is not there changes nothing (FHIRPath Patch)
        if len(locs) > 1:
            raise OpError(
                f"{path} matches {len(locs)} elements; delete removes exactly one (add an [n] index)"
            )
        loc = locs[0]
        if loc.parent is None:
            raise OpError("cannot delete the resource itself")
        if loc.index is None:
            _drop(loc.parent, loc.key)  # type: ignore[arg-type]
        else:
            del loc.parent[loc.key][loc.index]
            shadow = loc.parent.get(f"_{loc.key}")
            if isinstance(shadow, list) and loc.index < len(shadow):
                del shadow[loc.index]  # a primitive list's extensions sit at the same index
    elif kind == "add":
        name = parts.get("name", {}).get("valueString")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise OpError("an 'add' operation needs a 'name' part (valueString, an element name)")
        loc = _single(root, path, rtype, "add")
        container = loc.get(root)
        if not isinstance(container, dict):
            raise OpError(f"{path} is not an element with children")
        epath = f"{loc.element_path}.{name}"
        member = _child_key(loc.element_path, name, _value_key(parts["value"]))
        value = _part_value(parts["value"], epath)
        existing = container.get(member)
        if isinstance(existing, list):
            existing.append(value)
        elif existing is None:
            container[member] = [value] if _repeats(epath) else value
        else:
            raise OpError(f"{path}.{name} already has a value: use 'replace' to change it")
    elif kind == "insert":
        items, epath = _list_at(root, path, rtype, create=True)
        index = _int_part(parts, "index")
        if index > len(items):
            raise OpError(f"index {index} is out of range ({path} has {len(items)} items)")
        items.insert(index, _part_value(parts["value"], epath))
    else:  # move
        items, _ = _list_at(root, path, rtype, create=False)
        source, destination = _int_part(parts, "source"), _int_part(parts, "destination")
        for label, i in (("source", source), ("destination", destination)):
            if i >= len(items):
                raise OpError(f"{label} {i} is out of range ({path} has {len(items)} items)")
        items.insert(destination, items.pop(source))


def _drop(parent: dict, key: str) -> None:
    """Remove ``key`` and the extensions of its primitive value (``_key``) that go with it."""
    parent.pop(key, None)
    parent.pop(f"_{key}", None)


def apply_fhirpath_patch(resource: Mapping[str, Any], patch: Any) -> dict:
    """A new resource: ``resource`` (left untouched) with the FHIRPath Patch ``patch`` applied.

    400 when ``patch`` is not a Parameters resource; 422 naming the operation that is malformed,
    unsupported or cannot be applied.
    """
    if not isinstance(patch, dict) or patch.get("resourceType") != "Parameters":
        raise FhirError(
            400,
            "a FHIRPath Patch must be a Parameters resource"
            " (send a JSON Patch as application/json-patch+json)",
            [],
            "invalid",
        )
    parameters = patch.get("parameter") or []
    if not isinstance(parameters, list):
        raise FhirError(400, "Parameters.parameter must be an array", ["Parameters.parameter"], "invalid")
    rtype = resource.get("resourceType") or "Resource"
    doc = copy.deepcopy(dict(resource))
    for n, parameter in enumerate(parameters):
        try:
            _fhirpath_op(doc, parameter, rtype)
        except OpError as e:
            parts = (
                {p.get("name"): p for p in parameter.get("part") or [] if isinstance(p, dict)}
                if isinstance(parameter, dict)
                else {}
            )
            kind = (parts.get("type") or {}).get("valueCode")
            path = (parts.get("path") or {}).get("valueString")
            label = f" ({kind} {path})" if kind or path else ""
            raise FhirError(
                422,
                f"FHIRPath Patch operation {n}{label}: {e}",
                [f"Parameters.parameter[{n}]"],
                "processing",
            ) from None
    return finish(resource, doc, "the FHIRPath Patch")
