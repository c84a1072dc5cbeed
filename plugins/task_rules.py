"""Hub-and-spoke Task rules, as pure functions: who may move a Task where, which elements each
party may change, and the two PATCH formats a Task update arrives in.

Parties. The spoke pharmacy is the Task's *requester*; the hub pharmacy is its *owner* (the
performer). A client that is both (a test harness, a single-site deployment) is ``"both"`` and
may make any legal move and change the union of what the two may change.

State machine (FHIR R4 Task, https://hl7.org/fhir/R4/task.html#statemachine, cut down to the
hub-and-spoke workflow)::

    requested   -> received | accepted | rejected     owner (hub)
    received    -> accepted | rejected                owner
    accepted    -> in-progress                        owner
    in-progress -> on-hold | completed | failed       owner
    on-hold     -> in-progress                        owner
    requested | received | accepted -> cancelled      requester (spoke)

* Only the requester cancels: ``cancelled`` means "the spoke withdrew its request". The hub's
  ways out are ``rejected`` (before work starts) and ``failed`` (after). Once the hub has
  started (``in-progress``/``on-hold``) the spoke can no longer cancel: it must ask the hub,
  which then ends the Task ``failed``.
* ``rejected``, ``cancelled``, ``completed`` and ``failed`` are final: nothing moves out.
* ``draft``, ``ready`` and ``entered-in-error`` are FHIR codes the workflow does not use: no
  move leads to or from them.
* Keeping the status is not a transition (a progress note, a new ``businessStatus`` while
  ``in-progress``); what such an update may touch is the business of :func:`check_changes`.
  A Task in a final status, though, accepts no change at all (the NHS England guidance: reject
  PATCHes from terminal states); :func:`check_task_update` enforces that, while an exact replay
  (nothing changed) still passes so a retried request is harmless.

Refusals are :class:`proxy.errors.FhirError`: 409 ``conflict`` for a move the state machine
does not have, 403 ``forbidden`` for a legal move or a change by the wrong party, 422 for a
status code that is not a Task status or a patch that cannot be applied.

Patches. :func:`apply_patch` applies an RFC 6902 JSON Patch (``application/json-patch+json``)
or a FHIRPath Patch (a ``Parameters`` resource, https://hl7.org/fhir/R4/fhirpatch.html) to a
copy of the resource. FHIRPath support is the subset PATCHes of a Task need: paths made of
element names with optional ``[n]`` indexes, starting at the resource type
(``Task.output[0].value``); anything else (functions, operators, ``$this``) is refused with 422
naming the operation. After either kind of patch, empty objects, empty arrays and JSON nulls
are dropped (FHIR JSON never carries them), and ``resourceType`` and ``id`` must be unchanged.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from proxy.errors import FhirError

# ---------------------------------------------------------------- state machine

#: Every code of http://hl7.org/fhir/task-status (R4), in the code system's order.
STATUSES: tuple[str, ...] = (
    "draft",
    "requested",
    "received",
    "accepted",
    "rejected",
    "ready",
    "cancelled",
    "in-progress",
    "on-hold",
    "failed",
    "completed",
    "entered-in-error",
)

#: Statuses a Task never leaves.
FINAL_STATUSES = frozenset({"rejected", "cancelled", "completed", "failed"})

OWNER = "owner"
REQUESTER = "requester"
BOTH = "both"
ACTORS = frozenset({OWNER, REQUESTER, BOTH})

#: (from, to) -> the one party that may make the move. Pairs not listed are not moves.
TRANSITIONS: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("requested", "received"): OWNER,
        ("requested", "accepted"): OWNER,
        ("requested", "rejected"): OWNER,
        ("received", "accepted"): OWNER,
        ("received", "rejected"): OWNER,
        ("accepted", "in-progress"): OWNER,
        ("in-progress", "on-hold"): OWNER,
        ("in-progress", "completed"): OWNER,
        ("in-progress", "failed"): OWNER,
        ("on-hold", "in-progress"): OWNER,
        ("requested", "cancelled"): REQUESTER,
        ("received", "cancelled"): REQUESTER,
        ("accepted", "cancelled"): REQUESTER,
    }
)

#: Top-level Task elements each party may change (``both``: the union).
ALLOWED_CHANGES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        OWNER: frozenset(
            {"status", "businessStatus", "statusReason", "output", "note", "executionPeriod", "lastModified"}
        ),
        REQUESTER: frozenset({"status", "note", "lastModified"}),
    }
)

#: Elements that never count as a change: the store manages them.
IGNORED_ELEMENTS = frozenset({"meta", "text", "id"})


def _check_actor(actor: str) -> None:
    if actor not in ACTORS:
        raise ValueError(f"actor must be one of {sorted(ACTORS)}, not {actor!r}")


def _acts_as(actor: str, party: str) -> bool:
    return actor in (BOTH, party)


def _check_status_code(status: Any, which: str) -> None:
    if status is None:
        raise FhirError(422, f"the {which} Task has no status", ["Task.status"], "required")
    if status not in STATUSES:
        raise FhirError(
            422,
            f"the {which} Task's status {status!r} is not a Task status code "
            f"(http://hl7.org/fhir/task-status: {', '.join(STATUSES)})",
            ["Task.status"],
            "code-invalid",
        )


def check_transition(old: str, new: str, actor: str) -> None:
    """Refuse moving a Task from ``old`` to ``new`` by ``actor`` (owner, requester or both).

    Keeping the status is not a move and passes here; 409 for a move the state machine does not
    have, 403 when the move exists but belongs to the other party.
    """
    _check_actor(actor)
    _check_status_code(old, "stored")
    _check_status_code(new, "updated")
    if old == new:
        return
    party = TRANSITIONS.get((old, new))
    if party is None:
        if old in FINAL_STATUSES:
            why = f"'{old}' is a final status"
        else:
            legal = sorted(to for (frm, to) in TRANSITIONS if frm == old)
            why = (
                f"from '{old}' it may move to: {', '.join(legal)}"
                if legal
                else f"hub-and-spoke does not use '{old}'"
            )
        raise FhirError(409, f"Task cannot move from '{old}' to '{new}' ({why})", ["Task.status"], "conflict")
    if not _acts_as(actor, party):
        raise FhirError(
            403,
            f"only the {party} may move a Task from '{old}' to '{new}'"
            f" (the {party} is the {'hub' if party == OWNER else 'spoke'} pharmacy;"
            f" this client is the {actor})",
            ["Task.status"],
            "forbidden",
        )


# ---------------------------------------------------------------- element changes


def changed_elements(old: Mapping[str, Any], new: Mapping[str, Any]) -> set[str]:
    """Top-level element names whose value differs between ``old`` and ``new`` (added, removed or
    changed), leaving out meta, text and id. A primitive's extension (``_status``) counts as its
    element (``status``)."""
    changed = set()
    for key in set(old) | set(new):
        name = key[1:] if key.startswith("_") else key
        if name in IGNORED_ELEMENTS:
            continue
        if not _json_equal(old.get(key, _MISSING), new.get(key, _MISSING)):
            changed.add(name)
    return changed


def _allowed(actor: str) -> frozenset[str]:
    if actor == BOTH:
        return ALLOWED_CHANGES[OWNER] | ALLOWED_CHANGES[REQUESTER]
    return ALLOWED_CHANGES[actor]


def check_changes(old: Mapping[str, Any], new: Mapping[str, Any], actor: str) -> None:
    """403 listing every top-level element ``actor`` changed but may not."""
    _check_actor(actor)
    allowed = _allowed(actor)
    forbidden = changed_elements(old, new) - allowed
    if forbidden:
        rtype = old.get("resourceType") or "Task"
        names = sorted(forbidden)
        raise FhirError(
            403,
            f"the {actor} may not change {', '.join(f'{rtype}.{e}' for e in names)}"
            f" (it may change only: {', '.join(sorted(allowed))})",
            [f"{rtype}.{e}" for e in names],
            "forbidden",
        )


def check_task_update(old: Mapping[str, Any], new: Mapping[str, Any], actor: str) -> None:
    """Everything a Task update must pass: the elements ``actor`` changed, the status move, and
    nothing at all changing once the Task is in a final status."""
    check_changes(old, new, actor)
    check_transition(old.get("status"), new.get("status"), actor)
    if old["status"] in FINAL_STATUSES:
        changed = changed_elements(old, new)
        if changed:
            raise FhirError(
                409,
                f"Task is '{old['status']}', a final status, and can no longer change"
                f" (this update changes {', '.join(sorted(changed))})",
                [f"Task.{e}" for e in sorted(changed)],
                "conflict",
            )


# ---------------------------------------------------------------- JSON helpers

_MISSING = object()


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1 and objects compare key by key."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return Decimal(str(a)) == Decimal(str(b)) if isinstance(a, float) or isinstance(b, float) else a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b):
        return False
    return a == b


def _prune(value: Any) -> Any:
    """Drop empty objects, empty arrays and null members, bottom up (FHIR JSON has none)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _prune(v)
            if v is None or v == {} or v == []:
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        items = [_prune(v) for v in value]
        return [v for v in items if v != {} and v != []]
    return value


def _finish(original: Mapping[str, Any], patched: Any, what: str) -> dict:
    if not isinstance(patched, dict):
        raise FhirError(422, f"{what} leaves no resource (the result is not a JSON object)", [], "processing")
    patched = _prune(patched)
    rtype = original.get("resourceType") or "Resource"
    for element in ("resourceType", "id"):
        if patched.get(element) != original.get(element):
            raise FhirError(
                422, f"{what} may not change {rtype}.{element}", [f"{rtype}.{element}"], "processing"
            )
    return patched


# ---------------------------------------------------------------- apply_patch

JSON_PATCH = "application/json-patch+json"


def apply_patch(resource: Mapping[str, Any], patch: Any, content_type: str) -> dict:
    """A new resource: ``resource`` (left untouched) with ``patch`` applied.

    ``content_type`` ``application/json-patch+json`` (parameters ignored) means an RFC 6902
    JSON Patch (a list of operations); anything else a FHIRPath Patch ``Parameters`` resource.
    400 when the patch is not a patch document at all; 422 naming the operation that is
    malformed, unsupported or cannot be applied.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        return _apply_json_patch(resource, patch)
    return _apply_fhirpath_patch(resource, patch)


# ---- RFC 6902 JSON Patch (with RFC 6901 JSON Pointer)

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


class _OpError(Exception):
    """One operation failed; the caller adds which."""


def _pointer(text: Any, member: str) -> list[str]:
    if not isinstance(text, str):
        raise _OpError(f"'{member}' must be a JSON Pointer string")
    if text == "":
        return []
    if not text.startswith("/"):
        raise _OpError(f"'{member}' {text!r} is not a JSON Pointer (it must be empty or start with '/')")
    tokens = text[1:].split("/")
    for token in tokens:
        if re.search(r"~(?![01])", token):
            raise _OpError(f"'{member}' {text!r} has a '~' not followed by 0 or 1")
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _show(tokens: list[str]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens) or "(the whole document)"


def _index(container: list, token: str, tokens: list[str], *, end_ok: bool = False) -> int:
    if end_ok and token == "-":
        return len(container)
    if not _ARRAY_INDEX.fullmatch(token):
        raise _OpError(f"{_show(tokens)}: {token!r} is not an array index")
    i = int(token)
    if i > len(container) or (i == len(container) and not end_ok):
        raise _OpError(f"{_show(tokens)}: index {i} is out of range (the array has {len(container)} items)")
    return i


def _get(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for n, token in enumerate(tokens):
        here = tokens[: n + 1]
        if isinstance(node, dict):
            if token not in node:
                raise _OpError(f"{_show(here)} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, here)]
        else:
            raise _OpError(f"{_show(here)} does not exist ({_show(tokens[:n])} is not an object or array)")
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
        raise _OpError(f"{_show(tokens[:-1])} is not an object or array")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise _OpError("cannot remove the whole document")
    parent = _get(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _OpError(f"{_show(tokens)} does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, tokens))
    raise _OpError(f"{_show(tokens)} does not exist")


def _json_patch_op(doc: Any, op: Any) -> Any:
    if not isinstance(op, dict):
        raise _OpError("an operation must be a JSON object")
    kind = op.get("op")
    if kind not in ("add", "remove", "replace", "move", "copy", "test"):
        raise _OpError(f"'op' must be add, remove, replace, move, copy or test, not {kind!r}")
    path = _pointer(op.get("path"), "path")
    if kind in ("add", "replace", "test") and "value" not in op:
        raise _OpError(f"a '{kind}' operation needs a 'value'")
    if kind in ("move", "copy") and "from" not in op:
        raise _OpError(f"a '{kind}' operation needs a 'from'")
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
        if not _json_equal(actual, op["value"]):
            raise _OpError(f"test failed: {_show(path)} is not {op['value']!r}")
        return doc
    source = _pointer(op["from"], "from")
    if kind == "copy":
        return _add(doc, path, copy.deepcopy(_get(doc, source)))
    if source == path:  # move onto itself: RFC 6902 says it must exist, and nothing changes
        _get(doc, source)
        return doc
    if path[: len(source)] == source:
        raise _OpError(f"cannot move {_show(source)} into its own child {_show(path)}")
    return _add(doc, path, _remove(doc, source))


def _apply_json_patch(resource: Mapping[str, Any], patch: Any) -> dict:
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
        except _OpError as e:
            label = f"{op.get('op')} {op.get('path')}" if isinstance(op, dict) else "?"
            raise FhirError(422, f"JSON Patch operation {n} ({label}): {e}", [], "processing") from None
    return _finish(resource, doc, "the JSON Patch")


# ---- FHIRPath Patch (Parameters)

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
        raise _OpError(f"part {part.get('name')!r} has more than one value[x] ({', '.join(sorted(keys))})")
    return keys[0] if keys else None


def _child_key(element_path: str, name: str, value_key: str | None) -> str:
    """The JSON member for child ``name`` of ``element_path``: a choice element named ``value``
    takes its type from the part's value[x] (``valueReference``)."""
    if _is_choice(f"{element_path}.{name}"):
        if value_key is None:
            raise _OpError(
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
        raise _OpError(f"part {part.get('name')!r} has both a value[x] and nested parts")
    if key is not None:
        return copy.deepcopy(part[key])
    if not nested:
        raise _OpError(f"part {part.get('name')!r} has no value[x] and no nested parts")
    if not isinstance(nested, list):
        raise _OpError(f"part {part.get('name')!r}: 'part' must be an array")
    out: dict[str, Any] = {}
    for child in nested:
        if not isinstance(child, dict) or not isinstance(child.get("name"), str) or not child["name"]:
            raise _OpError(f"a nested part of {part.get('name')!r} has no name")
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


def _parse_path(path: Any, rtype: str) -> list[tuple[str, int | None]]:
    if not isinstance(path, str) or not path:
        raise _OpError("the 'path' part must be a non-empty valueString")
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
            raise _OpError(f"unsupported FHIRPath {path!r}: {what} (e.g. {rtype}.output[0].value)")
        parsed.append((m.group(1), None if m.group(2) is None else int(m.group(2))))
    head, head_index = parsed[0]
    if head != rtype or head_index is not None:
        raise _OpError(f"path {path!r} must start with the resource type: this resource is a {rtype}")
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
        raise _OpError(f"{path} does not exist")
    if len(locs) > 1:
        raise _OpError(f"{path} matches {len(locs)} elements; {why} needs exactly one (add an [n] index)")
    return locs[0]


def _list_at(root: dict, steps: list[tuple[str, int | None]], rtype: str, path: str, *, create: bool) -> list:
    """The repeating element ``path`` names (its last step must have no index)."""
    if not steps or steps[-1][1] is not None:
        raise _OpError(f"{path} must name a repeating element (a list), without an index on its last step")
    name = steps[-1][0]
    parent = _single(root, steps[:-1], rtype, ".".join([rtype] + [_fmt(s) for s in steps[:-1]]), "a list")
    container = parent.get(root)
    if not isinstance(container, dict):
        raise _OpError(f"{path}: its parent is not an element with children")
    current = container.get(name)
    if current is None:
        if not create:
            raise _OpError(f"{path} does not exist")
        current = container[name] = []
    if not isinstance(current, list):
        raise _OpError(f"{path} is not a repeating element")
    return current


def _fmt(step: tuple[str, int | None]) -> str:
    return step[0] if step[1] is None else f"{step[0]}[{step[1]}]"


def _int_part(parts: dict[str, dict], name: str) -> int:
    part = parts.get(name)
    value = part.get("valueInteger") if part else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _OpError(f"needs a '{name}' part with a valueInteger of 0 or more")
    return value


def _fhirpath_op(root: dict, parameter: Any, rtype: str) -> None:
    if not isinstance(parameter, dict) or parameter.get("name") != "operation":
        raise _OpError("every parameter of a FHIRPath Patch must be named 'operation'")
    parts: dict[str, dict] = {}
    for part in parameter.get("part") or []:
        name = part.get("name") if isinstance(part, dict) else None
        if not isinstance(name, str):
            raise _OpError("a part has no name")
        if name in parts:
            raise _OpError(f"the '{name}' part appears more than once")
        parts[name] = part
    kind = parts.get("type", {}).get("valueCode")
    if kind not in _OPERATION_TYPES:
        raise _OpError(f"the 'type' part must be a valueCode, one of {', '.join(_OPERATION_TYPES)}")
    path = parts.get("path", {}).get("valueString")
    steps = _parse_path(path, rtype)

    if kind in ("add", "insert", "replace") and "value" not in parts:
        raise _OpError(f"a '{kind}' operation needs a 'value' part")

    if kind == "replace":
        loc = _single(root, steps, rtype, path, "replace")
        if loc.parent is None:
            raise _OpError("cannot replace the resource itself")
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
            raise _OpError(
                f"{path} matches {len(locs)} elements; delete removes exactly one (add an [n] index)"
            )
        loc = locs[0]
        if loc.parent is None:
            raise _OpError("cannot delete the resource itself")
        if loc.index is None:
            del loc.parent[loc.key]
        else:
            del loc.parent[loc.key][loc.index]
    elif kind == "add":
        name = parts.get("name", {}).get("valueString")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            raise _OpError("an 'add' operation needs a 'name' part (valueString, an element name)")
        loc = _single(root, steps, rtype, path, "add")
        container = loc.get(root)
        if not isinstance(container, dict):
            raise _OpError(f"{path} is not an element with children")
        epath = f"{loc.element_path}.{name}"
        member = _child_key(loc.element_path, name, _value_key(parts["value"]))
        value = _part_value(parts["value"], epath)
        existing = container.get(member)
        if isinstance(existing, list):
            existing.append(value)
        elif existing is None:
            container[member] = [value] if _repeats(epath) else value
        else:
            raise _OpError(f"{path}.{name} already has a value: use 'replace' to change it")
    elif kind == "insert":
        items = _list_at(root, steps, rtype, path, create=True)
        index = _int_part(parts, "index")
        if index > len(items):
            raise _OpError(f"index {index} is out of range ({path} has {len(items)} items)")
        items.insert(index, _part_value(parts["value"], _element_path(rtype, steps)))
    else:  # move
        items = _list_at(root, steps, rtype, path, create=False)
        source, destination = _int_part(parts, "source"), _int_part(parts, "destination")
        for label, i in (("source", source), ("destination", destination)):
            if i >= len(items):
                raise _OpError(f"{label} {i} is out of range ({path} has {len(items)} items)")
        items.insert(destination, items.pop(source))


def _element_path(rtype: str, steps: list[tuple[str, int | None]]) -> str:
    return ".".join([rtype] + [name for name, _ in steps])


def _apply_fhirpath_patch(resource: Mapping[str, Any], patch: Any) -> dict:
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
        except _OpError as e:
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
    return _finish(resource, doc, "the FHIRPath Patch")
