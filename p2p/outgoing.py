"""What a partner system is sent: the resource as it can be understood *there*.

The receiving deployment keeps the sender's identifier and gives the resource its own logical id
(the reference architectures' "adds the logical id on receipt"), so the copy sent carries no id
and no ``meta`` but its profiles (our labels, version and source mean nothing there). Its
references to resources held only here (``Patient/12``) would dangle there: each becomes a
logical reference, the target's identifier (an NHS Number, an ODS code, the prescription's own
identifier), which the receiving side can resolve. A reference whose target has no identifier
cannot travel, and the write is refused at the sender rather than delivered broken.

It travels as a one-entry transaction whose entry is a conditional create on that identifier
(``ifNoneExist``): a delivery repeated after a lost answer finds the copy it made the first time,
whatever became of the receiver's record of delivery ids.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

Resource = dict[str, Any]
# a local literal reference ("Patient/12", a bundle's "urn:uuid:...") read here, or None
Resolve = Callable[[str], "Resource | None"]


class UnportableReference(Exception):
    """A reference the receiving system could never resolve; ``expression`` names it."""

    def __init__(self, expression: str, reference: str):
        super().__init__(
            f"{reference} is held only here and has no identifier the receiving system could find "
            "it by: give it an identifier, or refer to it by one"
        )
        self.expression = expression


def shared_identifier(resource: Resource) -> dict[str, str] | None:
    """The identifier both copies will carry: the first with a system and a value."""
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
            return {"system": str(ident["system"]), "value": str(ident["value"])}
    return None


def criteria(identifier: dict[str, str]) -> str:
    """The search that finds the copy by its identifier (``identifier=system|value``)."""
    return "identifier=" + quote(f"{identifier['system']}|{identifier['value']}", safe=":/|")


def portable(resource: Resource, resolve: Resolve) -> Resource:
    """A copy for a partner: no id, ``meta`` only its profiles, every local reference logical."""
    out = copy.deepcopy(resource)
    out.pop("id", None)
    profiles = (out.pop("meta", None) or {}).get("profile")
    if profiles:
        out["meta"] = {"profile": profiles}
    _rewrite(out, str(out.get("resourceType", "")), resolve)
    return out


def transaction(resource: Resource, identifier: dict[str, str]) -> Resource:
    """The delivery body: one conditional create of ``resource`` by ``identifier``."""
    rtype = str(resource["resourceType"])
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": resource,
                "request": {"method": "POST", "url": rtype, "ifNoneExist": criteria(identifier)},
            }
        ],
    }


def _rewrite(node: Any, path: str, resolve: Resolve) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _rewrite(item, f"{path}[{i}]", resolve)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("reference"), str):
        _make_logical(node, path, resolve)
    for key, value in node.items():
        if key != "contained" and isinstance(value, dict | list):
            _rewrite(value, f"{path}.{key}", resolve)


def _make_logical(ref: dict[str, Any], path: str, resolve: Resolve) -> None:
    target = ref["reference"]
    if target.startswith("#") or target.startswith(("http://", "https://")):
        return  # contained (travels with it) or absolute (resolvable anywhere)
    found = resolve(target)
    identifier = shared_identifier(found) if found is not None else None
    if found is None or identifier is None:
        raise UnportableReference(path, target)
    del ref["reference"]
    ref.setdefault("type", found.get("resourceType"))
    ref["identifier"] = identifier
