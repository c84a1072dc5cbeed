"""FHIRPath Patch (a ``Parameters`` resource, https://hl7.org/fhir/R4/fhirpatch.html).

Supported is the subset PATCHes of a Task need: paths made of element names with optional
``[n]`` indexes, starting at the resource type (``Task.output[0].value``); anything else
(functions, operators, ``$this``) is refused with 422 naming the operation. Operations: add,
insert, delete, replace and move, applied in order to a copy of the resource; all or nothing.
Which elements repeat and which are choices (``value[x]``) is known for Task and for the
members that repeat anywhere (extension, coding, ...).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from fhirpatch.json_values import OpError, finish
from proxy.errors import FhirError

#: Repeating elements (max '*') of Task, by element path without indexes.
TASK_REPEATING = frozenset(
    {
        "Task.identifier",
        "Task.basedOn",
        "Task.partOf",
        "Task.performerType",
        "Task.insurance",
        "Task.note",
        "Task.relevantHistory",
        "Task.restriction.recipient",
        "Task.input",
        "Task.output",
    }
)
#: Child names that repeat wherever they appear (Element/DomainResource and datatype members).
REPEATING_ANYWHERE = frozenset({"extension", "modifierExtension", "contained", "coding"})
#: Choice elements (``value[x]``) by element path; an Extension's value is one wherever it sits.
TASK_CHOICES = frozenset({"Task.input.value", "Task.output.value"})

_STEP = re.compile(r"([A-Za-z][A-Za-z0-9_]*)(?:\[(0|[1-9][0-9]*)\])?")
_OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")


def _repeats(element_path: str) -> bool:
    return element_path in TASK_REPEATING or element_path.rsplit(".", 1)[-1] in REPEATING_ANYWHERE


def _is_choice(element_path: str) -> bool:
    parent, _, name = element_path.rpartition(".")
    return element_path in TASK_CHOICES or (
        name == "value" and parent.rsplit(".", 1)[-1] in ("extension", "modifierExtension")
    )


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


def _parse_path(path: str, rtype: str) -> list[tuple[str, int | None]]:
    steps = path.split(".")
    parsed: list[tuple[str, int | None]] = []
    for step in steps:
        m = _STEP.fullmatch(step)
        if not m:
            what = (
                "functions (where(), first(), ...) are not supported"
                if "(" in path
                else "only element names with optional [n] indexes are supported"
            )
            raise OpError(f"unsupported FHIRPath {path!r}: {what} (e.g. {rtype}.output[0].value)")
        parsed.append((m.group(1), None if m.group(2) is None else int(m.group(2))))
    head, head_index = parsed[0]
    if head != rtype or head_index is not None:
        raise OpError(f"path {path!r} must start with the resource type: this resource is a {rtype}")
    return parsed[1:]


def _evaluate(root: dict, steps: list[tuple[str, int | None]], rtype: str) -> list[_Loc]:
    nodes = [_Loc(None, None, None, rtype)]
    for name, index in steps:
        found: list[_Loc] = []
        for loc in nodes:
            value = loc.get(root)
            if not isinstance(value, dict):
                continue
            epath = f"{loc.element_path}.{name}"
            key = name
            if name not in value and _is_choice(epath):  # Task.output[0].value finds valueReference
                key = next(
                    (k for k in value if k.startswith(name) and k[len(name) : len(name) + 1].isupper()), name
                )
            if key not in value:
                continue
            child = value[key]
            if isinstance(child, list):
                found.extend(_Loc(value, key, i, epath) for i in range(len(child)))
            else:
                found.append(_Loc(value, key, None, epath))
        if index is not None:
            found = found[index : index + 1]
        nodes = found
    return nodes


def _single(root: dict, steps: list[tuple[str, int | None]], rtype: str, path: str, why: str) -> _Loc:
    locs = _evaluate(root, steps, rtype)
    if not locs:
        raise OpError(f"{path} does not exist")
    if len(locs) > 1:
        raise OpError(f"{path} matches {len(locs)} elements; {why} needs exactly one (add an [n] index)")
    return locs[0]


def _list_at(root: dict, steps: list[tuple[str, int | None]], rtype: str, path: str, *, create: bool) -> list:
    """The repeating element ``path`` names (its last step must have no index)."""
    if not steps or steps[-1][1] is not None:
        raise OpError(f"{path} must name a repeating element (a list), without an index on its last step")
    name = steps[-1][0]
    parent = _single(root, steps[:-1], rtype, ".".join([rtype] + [_fmt(s) for s in steps[:-1]]), "a list")
    container = parent.get(root)
    if not isinstance(container, dict):
        raise OpError(f"{path}: its parent is not an element with children")
    current = container.get(name)
    if current is None:
        if not create:
            raise OpError(f"{path} does not exist")
        current = container[name] = []
    if not isinstance(current, list):
        raise OpError(f"{path} is not a repeating element")
    return current


def _fmt(step: tuple[str, int | None]) -> str:
    return step[0] if step[1] is None else f"{step[0]}[{step[1]}]"


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
    steps = _parse_path(path, rtype)

    if kind in ("add", "insert", "replace") and "value" not in parts:
        raise OpError(f"a '{kind}' operation needs a 'value' part")

    if kind == "replace":
        loc = _single(root, steps, rtype, path, "replace")
        if loc.parent is None:
            raise OpError("cannot replace the resource itself")
        value = _part_value(parts["value"], loc.element_path)
        if loc.index is not None:
            loc.parent[loc.key][loc.index] = value
        elif _is_choice(loc.element_path):  # Task.output[0].value: the new value[x] may change type
            parent_path, _, name = loc.element_path.rpartition(".")
            del loc.parent[loc.key]
            loc.parent[_child_key(parent_path, name, _value_key(parts["value"]))] = value
        else:
            loc.parent[loc.key] = value
    elif kind == "delete":
        locs = _evaluate(root, steps, rtype)
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
            del loc.parent[loc.key]
        else:
            del loc.parent[loc.key][loc.index]
    elif kind == "add":
        name = parts.get("name", {}).get("valueString")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise OpError("an 'add' operation needs a 'name' part (valueString, an element name)")
        loc = _single(root, steps, rtype, path, "add")
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
        items = _list_at(root, steps, rtype, path, create=True)
        index = _int_part(parts, "index")
        if index > len(items):
            raise OpError(f"index {index} is out of range ({path} has {len(items)} items)")
        items.insert(index, _part_value(parts["value"], _element_path(rtype, steps)))
    else:  # move
        items = _list_at(root, steps, rtype, path, create=False)
        source, destination = _int_part(parts, "source"), _int_part(parts, "destination")
        for label, i in (("source", source), ("destination", destination)):
            if i >= len(items):
                raise OpError(f"{label} {i} is out of range ({path} has {len(items)} items)")
        items.insert(destination, items.pop(source))


def _element_path(rtype: str, steps: list[tuple[str, int | None]]) -> str:
    return ".".join([rtype] + [name for name, _ in steps])


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
