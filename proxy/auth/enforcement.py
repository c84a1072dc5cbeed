"""The bearer check and SMART scope enforcement on /fhir, as a built-in plugin.

It is registered by the app itself, ahead of every configured plugin, and cannot be left out
of FHIRPLUG_PLUGINS: a deployment that forgot to list it would otherwise be open. Only
``GET /fhir/metadata`` passes without a token (FHIR clients read it to find the token URL).
"""

from __future__ import annotations

import logging

from proxy.auth.access_tokens import BearerError, TokenService
from proxy.auth.registry import TENANT_ROLES
from proxy.auth.scopes import (
    ROLE_GATED_OPERATIONS,
    Need,
    ScopeSet,
    first_missing,
    needs_for_entry,
    needs_for_interaction,
    needs_for_query,
)
from proxy.context import Client, RequestContext
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.response import ProxyResponse

log = logging.getLogger("fhirplug.auth")
NOT_FHIR = {"health", "oauth", "unknown"}
SEARCH_KINDS = {"search-type", "search-system", "search-compartment", "operation"}
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
FULL_ACCESS = ScopeSet.parse("system/*.cruds")


class AuthEnforcer:
    """``tokens`` None means authentication is switched off (FHIRPLUG_AUTH=off, benchmarks only):
    every caller is then an anonymous administrator."""

    def __init__(self, tokens: TokenService | None, issuer: str, tenant_scoping: bool = True):
        self.tokens = tokens
        self.issuer = issuer  # this server's issuer (public origin), from configuration
        # without the tenancy plugin a spoke would see every spoke's data: refuse tenants then
        self.tenant_scoping = tenant_scoping

    @hookimpl(tryfirst=True)
    def fhirplug_request(self, ctx: RequestContext) -> None:
        kind = ctx.interaction.kind
        if kind in NOT_FHIR or (kind == "capabilities" and ctx.request.method == "GET"):
            return None
        if self.tokens is None:
            ctx.client = Client(id="anonymous", role="admin", scopes=FULL_ACCESS)
            return None
        if ctx.request.param("access_token") is not None:
            raise BearerError(
                "Access tokens are accepted only in the Authorization header, never in the URL",
                "invalid_request",
            )
        claims = self.tokens.verify(ctx.request.header("Authorization"), self.issuer)
        scopes = claims.scopes
        ctx.client = Client(id=claims.client_id, ods=claims.ods, role=claims.role, scopes=scopes)
        if claims.role in TENANT_ROLES and not self.tenant_scoping:
            raise FhirError(403, "Tenant scoping is not enabled here (FHIRPLUG_PLUGINS lacks tenancy)")
        i = ctx.interaction
        needs = needs_for_interaction(i.kind, i.resource_type, i.operation)
        types = [t for v in (ctx.request.param("_type") or "").split(",") if (t := v.strip())]
        if i.kind == "search-system" and types:
            needs = [Need(t, "s", "_type") for t in types]  # a system search over named types
        if i.kind in SEARCH_KINDS or i.kind.startswith("search"):
            needs += needs_for_query(ctx.request.query)
        _require(scopes, needs)
        return None

    @hookimpl(trylast=True)
    def fhirplug_response(self, ctx: RequestContext, response: ProxyResponse) -> None:
        if ctx.interaction.kind == "capabilities" and response.status == 200 and response.is_json:
            _advertise_oauth(response, self.issuer)
            return
        scopes = ctx.client.scopes
        if scopes is None or (scopes.allows("*", "r") and scopes.allows("*", "s")):
            return  # sees every type: nothing to filter, and no need to parse the body
        if ctx.interaction.kind == "operation" and ctx.interaction.operation in ROLE_GATED_OPERATIONS:
            return  # the proxy's own answer (a $process-message response message), not stored data
        if not response.is_json or response.status >= 300:
            return
        body = response.resource
        if isinstance(body, dict) and body.get("resourceType") == "Bundle" and _filter(scopes, body):
            response.resource = body


def authorize_entries(ctx: RequestContext, bundle: dict) -> None:
    """Every entry of a transaction or batch needs its own scope (SMART: per interaction)."""
    scopes = ctx.client.scopes
    if scopes is None:
        raise FhirError(500, "No client on a FHIR request: the auth plugin did not run")
    needs: list[Need] = []
    for i, e in enumerate(bundle.get("entry") or []):
        req = e.get("request") or {}
        needs += needs_for_entry(str(req.get("method", "")).upper(), str(req.get("url", "")), i)
    _require(scopes, needs)


def _require(scopes: ScopeSet, needs: list[Need]) -> None:
    missing = first_missing(scopes, needs)
    if missing is not None:
        raise FhirError(
            403,
            f"The access token's scopes do not allow '{missing.perm}' on {missing.resource_type} "
            f"(needs system/{missing.resource_type}.{missing.perm})",
            [missing.where] if missing.where else [],
            code="forbidden",
        )


def _filter(scopes: ScopeSet, bundle: dict) -> bool:
    """Drop entries of types the token may not see; True when anything changed."""
    changed = False
    positional = bundle.get("type") in ("transaction-response", "batch-response")
    kept = []
    for e in bundle.get("entry") or []:
        res = e.get("resource")
        if isinstance(res, dict) and res.get("resourceType") == "Bundle":
            changed |= _filter(scopes, res)  # a search inside a batch: its entries are checked
            kept.append(e)
        elif positional or _visible(scopes, e):
            kept.append(e)  # batch answers keep their places; their requests were scope-checked
        else:
            changed = True
    if changed:
        bundle["entry"] = kept
    return changed


def _visible(scopes: ScopeSet, entry: dict) -> bool:
    res = entry.get("resource")
    if isinstance(res, dict):
        rtype = res.get("resourceType")
        if not isinstance(rtype, str):  # a resource without a type: only a wildcard scope sees it
            return scopes.can_see("*")
        return rtype == "OperationOutcome" or scopes.can_see(rtype)
    url = (entry.get("request") or {}).get("url")
    if url:  # a deleted version in a history bundle: its type is in request.url
        return scopes.can_see(url.split("?", 1)[0].split("/", 1)[0])
    return True  # transaction and batch responses: one entry per request, kept in place


def _advertise_oauth(response, issuer: str) -> None:
    """The CapabilityStatement's security section names the token endpoint (SMART discovery)."""
    cs = response.resource
    if not isinstance(cs, dict) or cs.get("resourceType") != "CapabilityStatement":
        return
    for rest in cs.get("rest") or []:
        if rest.get("mode") != "server":
            continue
        rest["security"] = {
            "cors": False,
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ],
                    "text": "OAuth 2.0 client credentials with a signed JWT (private_key_jwt)",
                }
            ],
            "extension": [
                {
                    "url": OAUTH_URIS,
                    "extension": [{"url": "token", "valueUri": issuer + "/oauth2/token"}],
                }
            ],
            "description": "Every interaction but this CapabilityStatement needs a Bearer access token",
        }
    response.resource = cs
