"""Task updates follow the hub-and-spoke state machine, and who acts decides what may change.

A PATCH of a Task (plain REST, or an entry of a transaction) is applied here to the version the
store holds now, the result is judged (``hubspoke.task_states``: the transition, and the elements
the owner or the requester may change), and what is written is that result as an update with
``If-Match`` on the version it was computed from: if someone changed the Task meanwhile the
store refuses it and the caller gets 412. A PUT of an existing Task is judged the same way.

Answers: an illegal transition 409 naming both states; a legal move by the wrong party, or a
change of an element the actor may not touch, 403; an unknown Task 404; a concurrent change 412.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhirpatch import apply_patch
from fhirpatch.entries import patch_document
from hubspoke import task_states
from hubspoke.task_states import actor_of
from hubspoke.tenants import TENANT_ROLES, narrowing
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl


class TaskWorkflow:
    @hookimpl
    def fhirplug_before_storage(self, ctx, entry):
        if entry.method not in ("PATCH", "PUT") or entry.resource_type != "Task":
            return None
        current = self._current(ctx, entry)
        if current is None:
            if entry.method == "PUT":
                return None  # an update that creates: nothing to move from
            what = entry.url if entry.conditional else f"Task/{entry.resource_id}"
            raise FhirError(404, f"No Task matches {what}", code="not-found")
        if entry.method == "PATCH":
            patch, media_type = patch_document(entry)
            updated = apply_patch(current, patch, media_type)
            if updated.get("meta") != current.get("meta"):
                # versions, tags and tenant labels are the server's to set
                raise FhirError(403, "A patch may not change meta", ["Task.meta"], code="forbidden")
        else:
            updated = entry.resource
        task_states.check_task_update(current, updated, actor_of(ctx.client, current, ctx.store))
        if entry.method == "PATCH":
            # write what was judged, and only onto the version it was judged against
            entry.method, entry.url, entry.resource = "PUT", f"Task/{current['id']}", updated
            entry.if_match = f'W/"{(current.get("meta") or {}).get("versionId", "1")}"'
        return None

    def _current(self, ctx, entry) -> dict | None:
        if not entry.conditional:
            return ctx.store.read("Task", entry.resource_id) if entry.resource_id else None
        query = parse_qsl(entry.url.partition("?")[2], keep_blank_values=True)
        if ctx.client.role in TENANT_ROLES and ctx.client.ods:
            query.append(narrowing(ctx.client.ods))  # a tenant's criteria match its own Tasks only
        found = ctx.store.search("Task", query)
        if len(found) > 1:
            raise FhirError(412, f"{entry.url} matches {len(found)} Tasks; name one", code="multiple-matches")
        return found[0] if found else None


task_workflow = TaskWorkflow()
