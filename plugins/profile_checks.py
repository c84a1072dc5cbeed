"""A StructureDefinition is checked by the store before it is stored (issue 16, item 3): written
alone, in a transaction or batch, or by a package install, it is validated by the store's
``$validate`` (HAPI generates its snapshot and checks the differential against it), and an
error refuses the write with 422 and each issue's ``expression`` (``StructureDefinition.
differential.element[3]``; under ``Bundle.entry[n].resource`` in a Bundle): nothing of the request is
stored. Which findings refuse is ``validation.profile_checks``'s rule.
"""

from __future__ import annotations

from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from validation.profile_checks import refusing_issues


class ProfileChecks:
    @hookimpl
    def fhirplug_before_storage(self, ctx, entry):
        resource = entry.resource
        if entry.method not in ("POST", "PUT") or not isinstance(resource, dict):
            return None
        if resource.get("resourceType") != "StructureDefinition":
            return None
        problems = refusing_issues(ctx.store.validate(resource))
        if problems:
            return FhirError.many(422, problems, code="processing")
        return None


profile_checks = ProfileChecks()
