"""One stored copy per canonical: a conformance resource written again (POST, PUT to another id,
a transaction or batch entry) updates the stored copy of its url and version instead of adding
a second one. The rule is ``canonicals.identity``'s; this adapter only applies it to each write.

Listed after tenancy, which judges the write as the caller sent it (the same resource type).
"""

from __future__ import annotations

from canonicals.identity import Canonical, needs_lookup, stored_copy, upsert
from proxy.hookspecs import hookimpl


class OneCopy:
    @hookimpl
    def fhirplug_before_storage(self, ctx, entry):
        if entry.method not in ("POST", "PUT") or entry.resource is None:
            return None
        canonical = Canonical.of(entry.resource)
        if canonical is None or entry.if_none_exist:
            return None  # not a conformance resource, or a conditional create the caller chose
        rtype = entry.resource["resourceType"]
        stored_id = None
        if needs_lookup(entry.method, entry.url, canonical):
            stored_id = stored_copy(ctx.store.search(rtype, [("url", canonical.url)]), canonical)
        change = upsert(rtype, entry.method, entry.url, canonical, stored_id)
        if change is None:
            return None
        entry.method, entry.url = change.method, change.url
        if change.body_id is None:
            entry.resource.pop("id", None)
        else:
            entry.resource["id"] = change.body_id
        return None


one_copy = OneCopy()
