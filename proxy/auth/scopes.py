"""SMART on FHIR v2 system scopes: what a token allows, checked per interaction.

``system/Task.cruds``, ``system/*.rs``, and the v1 spellings ``system/Task.read``,
``system/*.write`` and ``system/*.*`` (read = rs, write = cud). Scopes with query
parameters (``system/Observation.rs?category=...``) are refused as unsupported rather than
silently widened. ``patient/`` and ``user/`` scopes mean nothing to system clients and are
refused too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PERMS = "cruds"
_V2 = re.compile(r"^system/(\*|[A-Z][A-Za-z]{1,63})\.([cruds]{1,5})$")
_V1 = re.compile(r"^system/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*)$")
_V1_PERMS = {"read": "rs", "write": "cud", "*": "cruds"}
# operations that neither read nor change stored data need no scope beyond a valid token; who may
# call them is a role's question (EPS's $prepare, served by the eps_prepare plugin from the body
# alone: prescribers and administrators). EPS's $process-message is gated the same way: the event
# decides which role may send it (eps.events.SENDER_ROLES), and what it stores is written acting
# as that tenant, judged by the store's tenancy line, not through the caller's REST scopes
_DATA_FREE_OPERATIONS = {"$validate", "$prepare", "$process-message"}
# the Backport IG's Subscription/$status and $events, answered by the subscriptions plugin to the
# subscription's owner alone (judged there, as are the events it recorded): a SubscriptionStatus
# (a Parameters no scope or label names) that the filters below would take out of the answer
SUBSCRIPTION_OPERATIONS = frozenset({"$status", "$events"})
# their answers are not filtered by scope
ROLE_GATED_OPERATIONS = frozenset(_DATA_FREE_OPERATIONS) | SUBSCRIPTION_OPERATIONS
# operations the proxy answers itself from the caller's own body, never with stored data (EPS's
# $prepare digest, a $process-message response message): nothing in their answers to narrow
PROXY_ANSWERED_OPERATIONS = frozenset({"$prepare", "$process-message"}) | SUBSCRIPTION_OPERATIONS


class ScopeError(ValueError):
    pass


@dataclass(frozen=True)
class Scope:
    resource_type: str  # "*" or a resource type
    perms: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Scope:
        m = _V2.match(text)
        if m:
            perms = m.group(2)
            # SMART v2 writes permissions in c-r-u-d-s order, each at most once
            if "".join(p for p in PERMS if p in perms) != perms:
                raise ScopeError(f"scope {text!r}: permissions must be a subsequence of 'cruds'")
            return cls(m.group(1), frozenset(perms))
        m = _V1.match(text)
        if m:
            return cls(m.group(1), frozenset(_V1_PERMS[m.group(2)]))
        raise ScopeError(
            f"scope {text!r} is not supported: use system/<Type or *>.<cruds> (SMART v2) "
            "or system/<Type or *>.read|write|*"
        )

    def __str__(self) -> str:
        return f"system/{self.resource_type}.{''.join(p for p in PERMS if p in self.perms)}"


class ScopeSet:
    """The permissions a token carries."""

    def __init__(self, scopes: Iterable[Scope]):
        self.scopes = frozenset(scopes)
        self._by_type: dict[str, set[str]] = {}
        for s in self.scopes:
            self._by_type.setdefault(s.resource_type, set()).update(s.perms)

    @classmethod
    def parse(cls, text: str | None) -> ScopeSet:
        return cls(Scope.parse(t) for t in (text or "").split())

    def allows(self, resource_type: str, perm: str) -> bool:
        if perm in self._by_type.get("*", ()):
            return True
        return resource_type != "*" and perm in self._by_type.get(resource_type, ())

    def can_see(self, resource_type: str) -> bool:
        """May a resource of this type be returned to the token's client (read or search)."""
        return self.allows(resource_type, "r") or self.allows(resource_type, "s")

    def covers(self, other: Scope) -> bool:
        return all(self.allows(other.resource_type, p) for p in other.perms)

    def narrowed_to(self, requested: str | None) -> ScopeSet:
        """The scopes a token request may get: those asked for, each within what is registered."""
        if not requested or not requested.strip():
            return self
        asked = ScopeSet.parse(requested)
        for s in asked.scopes:
            if not self.covers(s):
                raise ScopeError(f"scope {s} is not granted to this client")
        return asked

    def __str__(self) -> str:
        return " ".join(sorted(str(s) for s in self.scopes))


@dataclass(frozen=True)
class Need:
    """One permission a request needs; ``where`` is the FHIRPath or parameter it came from."""

    resource_type: str
    perm: str
    where: str | None = None


def needs_for_interaction(kind: str, resource_type: str | None, operation: str | None) -> list[Need]:
    t = resource_type or "*"
    match kind:
        case "capabilities" | "page":
            return []  # metadata is open; a page is filtered entry by entry on the way out
        case "read" | "vread" | "history-instance":
            return [Need(t, "r")]
        case "search-type" | "history-type" | "search-compartment" | "search-system" | "history-system":
            return [Need(t, "s")]
        case "create":
            return [Need(t, "c")]
        case "update" | "patch":
            return [Need(t, "u")]
        case "delete":
            return [Need(t, "d")]
        case "operation":
            if operation == "$install":
                return [Need("ImplementationGuide", "c")]  # each resource it loads is checked too
            return [] if operation in _DATA_FREE_OPERATIONS else [Need(t, "r")]
        case "transaction" | "batch":
            return []  # checked entry by entry
    return [Need("*", "r")]


_METHOD_PERM = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}


def needs_for_entry(method: str, url: str, index: int) -> list[Need]:
    """A transaction or batch entry, by its request.method and request.url."""
    where = f"Bundle.entry[{index}].request"
    path, _, query = url.partition("?")
    segs = [s for s in path.split("/") if s]
    rtype = segs[0] if segs and not segs[0].startswith(("$", "_")) else "*"
    if method == "GET":
        if len(segs) >= 2 and not segs[1].startswith(("$", "_")):
            return [Need(rtype, "r", where)]
        return [Need(rtype, "s", where), *needs_for_query(_query_pairs(query), where)]
    perm = _METHOD_PERM.get(method)
    return [Need(rtype, perm, where)] if perm else [Need("*", "r", where)]


def needs_for_query(query: Iterable[tuple[str, str]], where: str | None = None) -> list[Need]:
    """``_include``/``_revinclude`` targets and ``_has`` sources a search would reveal."""
    out = []
    for name, value in query:
        base = name.split(":", 1)[0]
        if base == "_include":
            # Task:focus:MedicationRequest names its target; Task:focus alone is filtered on the way out
            parts = value.split(":")
            if value.strip() == "*":
                out.append(Need("*", "s", where or name))
            elif len(parts) >= 3:
                out.append(Need(parts[2], "s", where or name))
        elif base == "_revinclude":
            src = value.split(":", 1)[0]
            out.append(Need("*" if src == "*" else src, "s", where or name))
        elif base == "_has":
            # _has:Task:patient:owner=... searches Tasks to decide which Patients match
            parts = name.split(":")
            if len(parts) >= 2:
                out.append(Need(parts[1], "s", where or name))
    return out


def _query_pairs(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query, keep_blank_values=True)


def first_missing(scopes: ScopeSet, needs: Iterable[Need]) -> Need | None:
    return next((n for n in needs if not scopes.allows(n.resource_type, n.perm)), None)
