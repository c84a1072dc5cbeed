"""``$validate`` of any resource, ``Parameters`` included, with ``mode`` checked: the request is
put the way the store reads it (``validation.operation``) before the proxy relays it. With
``rules=true`` (ours, withheld from the store) fhirplug's business rules that need no stored
state (``validation.business_rules``) are reported beside the profile's issues."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy import bodies
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from validation.business_rules import business_issues, merge
from validation.operation import mode_problem, wrap

RULES_PARAM = "rules"


@dataclass
class _Rules:
    issues: list[dict] = field(default_factory=list)


class ValidateOperation:
    @hookimpl
    def fhirplug_request(self, ctx):
        inter = ctx.interaction
        if inter.kind != "operation" or inter.operation != "$validate" or ctx.request.method != "POST":
            return None
        query = list(ctx.request.query)
        if problem := mode_problem(query):
            raise FhirError(400, problem, ["Parameters.parameter.where(name = 'mode')"], code="value")
        rules = [v for k, v in query if k == RULES_PARAM]
        if rules and rules != ["true"] and rules != ["false"]:
            raise FhirError(400, f"{RULES_PARAM} is true or false, once", [f"{RULES_PARAM}"], code="value")
        ctx.upstream_query_withheld.add(RULES_PARAM)
        json_body = bodies.media_type(ctx.request.content_type) in bodies.JSON_TYPES
        if rules == ["true"]:
            if not json_body:
                raise FhirError(
                    415, f"{RULES_PARAM}=true takes a JSON body (the rules read JSON)", code="not-supported"
                )
            ctx.notes(_Rules).issues = business_issues(bodies.parse_json(ctx.request_body()))
        if not json_body:
            return None  # XML goes as it came; the store reads its root element
        wrapped = wrap(ctx.request_body(), query)
        if wrapped is not None:
            ctx.upstream_body = (wrapped.body, wrapped.media_type)
            ctx.upstream_query_withheld |= wrapped.withheld
        return None

    @hookimpl
    def fhirplug_response(self, ctx, response):
        found = ctx.notes(_Rules).issues
        if not found or response.status != 200 or not response.is_json:
            return
        outcome = response.resource
        if isinstance(outcome, dict) and outcome.get("resourceType") == "OperationOutcome":
            response.resource = merge(outcome, found)


validate_operation = ValidateOperation()
