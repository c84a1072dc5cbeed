"""A PATCH of any resource becomes the update it amounts to, so every rule judges the result.

The store could apply a PATCH itself, but then no rule would see what the resource becomes: a
patch could set an invalid NHS number, move a prescription to another pharmacy without its
reader labels following, or break a profile. Here the patch (JSON Patch, FHIRPath Patch, or a
merge patch already translated) is applied to the version the store holds now (``fhirpatch``),
and what goes on is a PUT of that result with ``If-Match`` on the version it was computed from:
the plugins after this one judge it as the update it is, and if someone changed the resource
meanwhile the store refuses and the caller gets 412. Tasks are left to ``task_workflow``, which
resolves their patches together with the state machine's judgement.

Answers: an unknown resource 404 (the same for another tenant's: tenancy has swapped its id
for one the store never held); criteria matching several 412; a patch touching ``meta`` 403.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhirpatch import apply_patch
from fhirpatch.entries import patch_document
from hubspoke.tenants import TENANT_ROLES, narrowing
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl


class PatchResolution:
    @hookimpl
    def fhirplug_before_storage(self, ctx, entry):
        rtype = entry.resource_type
        if entry.method != "PATCH" or rtype in (None, "Task"):
            return None
        current = self._current(ctx, entry, rtype)
        if current is None:
            what = entry.url if entry.conditional else f"{rtype}/{entry.resource_id}"
            raise FhirError(404, f"No {rtype} matches {what}", code="not-found")
        version = (current.get("meta") or {}).get("versionId", "1")
        if entry.if_match is not None and entry.if_match.strip() not in (f'W/"{version}"', f'"{version}"'):
            raise FhirError(
                412,
                f"{rtype}/{current['id']} is at version {version}, not {entry.if_match}",
                [f"{entry.expression_root}.meta.versionId"] if entry.index is None else [],
                code="conflict",
            )
        patch, media_type = patch_document(entry)
        updated = apply_patch(current, patch, media_type)
        if updated.get("meta") != current.get("meta"):
            # versions, tags and tenant labels are the server's to set
            raise FhirError(403, "A patch may not change meta", [f"{rtype}.meta"], code="forbidden")
        # write what the rules after this one judge, and only onto the version it was made from
        entry.method, entry.url, entry.resource = "PUT", f"{rtype}/{current['id']}", updated
        entry.if_match = f'W/"{version}"'
        return None

    def _current(self, ctx, entry, rtype: str) -> dict | None:
        if not entry.conditional:
            return ctx.store.read(rtype, entry.resource_id) if entry.resource_id else None
        query = parse_qsl(entry.url.partition("?")[2], keep_blank_values=True)
        if ctx.client.role in TENANT_ROLES and ctx.client.ods:
            query.append(narrowing(ctx.client.ods))  # a tenant's criteria match its own only
        found = ctx.store.search(rtype, query)
        if len(found) > 1:
            raise FhirError(
                412, f"{entry.url} matches {len(found)} resources; name one", code="multiple-matches"
            )
        return found[0] if found else None


patch_resolution = PatchResolution()
