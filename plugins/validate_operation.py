"""``$validate`` of any resource, ``Parameters`` included, with ``mode`` checked: the request is
put the way the store reads it (``validation.operation``) before the proxy relays it."""

from __future__ import annotations

from proxy import bodies
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from validation.operation import mode_problem, wrap


class ValidateOperation:
    @hookimpl
    def fhirplug_request(self, ctx):
        inter = ctx.interaction
        if inter.kind != "operation" or inter.operation != "$validate" or ctx.request.method != "POST":
            return None
        query = list(ctx.request.query)
        if problem := mode_problem(query):
            raise FhirError(400, problem, ["Parameters.parameter.where(name = 'mode')"], code="value")
        if bodies.media_type(ctx.request.content_type) not in bodies.JSON_TYPES:
            return None  # XML goes as it came; the store reads its root element
        wrapped = wrap(ctx.request_body(), query)
        if wrapped is not None:
            ctx.upstream_body = (wrapped.body, wrapped.media_type)
            ctx.upstream_query_withheld |= wrapped.withheld
        return None


validate_operation = ValidateOperation()
