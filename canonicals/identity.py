"""A conformance resource's identity is its canonical ``url`` and ``version``, not its id.

A second upload of the same url and version is the same resource fixed: it must replace the
stored one, whatever id (or no id) the caller gave it. A different version is another resource,
kept beside the first. The store itself does the matching: every such write becomes a
conditional update by ``url`` and ``version`` (the store finds the copy, or creates the first
one, in one step; see ``upsert``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from proxy.conformance import CONFORMANCE_TYPES


@dataclass(frozen=True)
class Canonical:
    url: str
    version: str | None = None

    @classmethod
    def of(cls, resource: object) -> Canonical | None:
        """The canonical of a conformance resource, None for anything else (or no url)."""
        if not isinstance(resource, dict) or resource.get("resourceType") not in CONFORMANCE_TYPES:
            return None
        url, version = resource.get("url"), resource.get("version")
        if not isinstance(url, str) or not url.strip():
            return None
        return cls(url, str(version) if isinstance(version, (str, int, float)) and version != "" else None)

    @classmethod
    def parse(cls, reference: str) -> Canonical:
        """``url|version`` (FHIR's canonical reference with a version) or a plain ``url``."""
        url, bar, version = reference.partition("|")
        return cls(url, version if bar and version else None)

    def criteria(self) -> str:
        """Search criteria the store matches this canonical by (``url=...&version=...``)."""
        pairs = [("url", self.url)] + ([("version", self.version)] if self.version else [])
        return urlencode(pairs, safe=":/")

    def __str__(self) -> str:
        return f"{self.url}|{self.version}" if self.version else self.url


@dataclass(frozen=True)
class Upsert:
    """How a write of a conformance resource is sent so that the store keeps one copy."""

    method: str
    url: str
    body_id: str | None  # the id the body must carry (None: none, the store finds the copy)


def needs_lookup(method: str, url: str, canonical: Canonical) -> bool:
    """Whether ``upsert`` needs the id of the stored copy (the store cannot match it itself)."""
    path = url.split("?", 1)[0]
    if "?" in url and "/" not in path:
        return False  # a conditional write: the caller's criteria decide
    return method == "PUT" or canonical.version is None


def upsert(
    resource_type: str, method: str, url: str, canonical: Canonical, stored_id: str | None
) -> Upsert | None:
    """The write to send instead of ``method url``, or None to send it as it is.

    - a create (POST) of a versioned canonical becomes a conditional update by url and version:
      the store updates the copy it finds or creates the first, in one step (two concurrent first
      uploads are decided inside the store);
    - a create of a canonical without a version updates the stored copy without one
      (``stored_id``): criteria by url alone would also match, and overwrite, other versions;
    - an update of another id (``PUT Type/B`` while the canonical is stored as ``Type/A``)
      updates ``Type/A``: a second copy under ``B`` would make the canonical ambiguous;
    - anything else (the copy itself, a canonical not stored yet, a conditional write whose
      criteria the caller chose) goes as sent.
    """
    path = url.split("?", 1)[0]
    parts = path.split("/")
    if method == "POST" and path == resource_type:
        if canonical.version is not None:
            return Upsert("PUT", f"{resource_type}?{canonical.criteria()}", None)
        if stored_id:
            return Upsert("PUT", f"{resource_type}/{stored_id}", stored_id)
        return None
    if method == "PUT" and len(parts) == 2 and "?" not in url and stored_id and parts[1] != stored_id:
        return Upsert("PUT", f"{resource_type}/{stored_id}", stored_id)
    return None


def stored_copy(found: list[dict], canonical: Canonical) -> str | None:
    """The id of the stored copy of ``canonical`` among search results by its url (a search by
    url also finds other versions; one without a version is matched only by one without)."""
    for r in found:
        if Canonical.of(r) == canonical and isinstance(r.get("id"), str):
            return r["id"]
    return None
