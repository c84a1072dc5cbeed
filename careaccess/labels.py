"""Reader labels: ``meta.security`` codings that let an organisation read, never write.

A resource carries tenant labels (``hubspoke.identifiers.TENANT_SYSTEM``: who owns it, who may
read and write it) and, since care-relationship access, reader labels (:data:`READER_SYSTEM`:
who may only read it). Both are the server's to set: whatever a caller sends in either system
is dropped and replaced (:func:`with_readers`).
"""

from __future__ import annotations

from typing import Any

from hubspoke.identifiers import READER_SYSTEM
from hubspoke.tenants import readers_of, tenants_of

__all__ = ["READER_SYSTEM", "readable_by", "readers_of", "tenants_of", "with_readers"]


def readable_by(resource: dict[str, Any], ods: str) -> bool:
    """``ods`` holds a tenant or a reader label on ``resource``: it may read it."""
    return ods in tenants_of(resource) or ods in readers_of(resource)


def with_readers(resource: dict[str, Any], readers: set[str]) -> None:
    """Replace the reader labels on ``resource`` with ``readers`` (other labels kept). An
    organisation that is already a tenant is not also labelled a reader: it reads anyway."""
    meta = resource.setdefault("meta", {})
    others = [s for s in meta.get("security") or [] if not _is_reader(s)]
    owners = tenants_of(resource)
    meta["security"] = others + [{"system": READER_SYSTEM, "code": r} for r in sorted(readers - owners)]
    if not meta["security"]:
        meta.pop("security")


def _is_reader(coding: object) -> bool:
    return isinstance(coding, dict) and coding.get("system") == READER_SYSTEM
