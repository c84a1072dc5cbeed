"""``fhirplug profiles dedupe [--dry-run]``: remove the copies of a canonical stored before the
one-copy rule (``canonicals``), keeping the newest of each url and version; and the start-up
check that warns when there are any.

Copies make ``$validate ?profile=`` unresolvable and a conditional update by url fail with 412,
so the stack's start says so rather than leaving the operator to find out from a validator.
"""

from __future__ import annotations

from collections.abc import Iterator

from redis import Redis

from canonicals.duplicates import Duplicates, find_duplicates
from proxy import conformance
from proxy.direct_store import ACCEPT, DirectStore
from proxy.errors import FhirError

PAGE = 1000


def stored_conformance(store: DirectStore) -> Iterator[dict]:
    """Every stored conformance resource, with only what identifies it (id, url, version, meta)."""
    for rtype in sorted(conformance.CONFORMANCE_TYPES):
        r = store.get(rtype, params={"_elements": "url,version", "_count": str(PAGE)}, timeout=120)
        while True:
            if r.status_code != 200:
                raise FhirError(503, f"the store did not list {rtype} ({r.status_code})")
            page = r.json()
            yield from (e["resource"] for e in page.get("entry") or [] if e.get("resource"))
            nxt = next((lk["url"] for lk in page.get("link") or [] if lk.get("relation") == "next"), None)
            if not nxt:
                break
            # the store's own paging link, under its base: the same signed session follows it
            r = store.http.get(nxt, headers=ACCEPT, timeout=120)


def duplicates(store_url: str) -> list[Duplicates]:
    with DirectStore(store_url, None) as store:
        return find_duplicates(list(stored_conformance(store)))


def dedupe(store_url: str, redis_url: str | None, dry_run: bool = False) -> list[Duplicates]:
    """Delete every copy but the newest of each url and version (none with ``dry_run``)."""
    found = duplicates(store_url)
    if dry_run or not found:
        return found
    redis = Redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3) if redis_url else None
    with DirectStore(store_url, redis) as store:
        for d in found:
            for rid in d.remove:
                r = store.delete(f"{d.resource_type}/{rid}", timeout=60)
                if r.status_code >= 300 and r.status_code not in (404, 410):
                    raise FhirError(
                        503, f"the store refused to delete {d.resource_type}/{rid} ({r.status_code})"
                    )
    if redis is not None:
        conformance.bump_generation(redis)  # validations cached against a removed copy are stale
    return found


def report(found: list[Duplicates], dry_run: bool) -> list[str]:
    verb = "would delete" if dry_run else "deleted"
    lines = [
        f"{d.resource_type} {d.canonical}: kept {d.resource_type}/{d.keep}, {verb} "
        + ", ".join(f"{d.resource_type}/{r}" for r in d.remove)
        for d in found
    ]
    copies = sum(len(d.remove) for d in found)
    lines.append(f"{len(found)} canonicals stored more than once; {verb} {copies} copies")
    return lines


def startup_warning(store_url: str) -> str | None:
    """A warning for the start-up log when canonicals are stored more than once, else None."""
    found = duplicates(store_url)
    if not found:
        return None
    names = ", ".join(str(d.canonical) for d in found[:5]) + (" ..." if len(found) > 5 else "")
    return (
        f"{len(found)} canonicals are stored more than once ({names}): $validate cannot resolve them; "
        "run `fhirplug profiles dedupe --dry-run`, then `fhirplug profiles dedupe`"
    )
