"""Searches by a business identifier in the forms integrators write (``Task?owner:identifier=``,
``MedicationDispense?patient.identifier=``), rewritten before any plugin judges the request into
forms the store answers and tenancy admits (hubspoke.search_aliases). Runs first: tenancy then
judges, and the store is sent, the rewritten search only."""

from __future__ import annotations

import dataclasses

from hubspoke.search_aliases import MAX_PATIENTS, TooManyPatients, needs_rewrite, rewrite
from proxy.context import RequestContext
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl

SEARCHES = ("search-type",)


class SearchAliases:
    @hookimpl(tryfirst=True)
    def fhirplug_request(self, ctx: RequestContext):
        inter = ctx.interaction
        if inter.kind not in SEARCHES or not needs_rewrite(inter.resource_type, ctx.request.query):
            return None
        seen_as = ctx.store.as_caller(ctx.client.role, ctx.client.ods)

        def patients_with(identifier: str) -> list[str]:
            found = seen_as.search(
                "Patient", [("identifier", identifier), ("_elements", "id")], MAX_PATIENTS + 1
            )
            return [str(p["id"]) for p in found if p.get("id")]

        try:
            query = rewrite(str(inter.resource_type), ctx.request.query, patients_with)
        except TooManyPatients as exc:
            raise FhirError(
                400,
                f"More than {MAX_PATIENTS} Patients carry {exc.identifier}: "
                "search by a patient reference instead",
                [exc.parameter],
                code="too-costly",
            ) from None
        ctx.request = dataclasses.replace(ctx.request, query=tuple(query))
        return None


search_aliases = SearchAliases()
