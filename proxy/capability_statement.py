"""``GET /fhir/metadata`` tells the truth about fhirplug, not about the store behind it.

HAPI's own CapabilityStatement advertises what HAPI does: Turtle, XML Patch, and administrative
operations (``$expunge``, ``$reindex``, ``$meta-add``, HAPI's merges…) that the proxy never lets a
client reach. A client that trusts discovery would call them and be refused. This built-in (always
on, like the bearer check; it cannot be left out of FHIRPLUG_PLUGINS) rewrites the statement the
store answered, before any plugin adds its own operations:

- ``software`` and ``implementation`` name fhirplug (and the store behind it);
- ``format``: FHIR JSON and XML, what the proxy answers (it renders XML from JSON itself);
  ``patchFormat``: JSON Patch and FHIRPath Patch (a ``Parameters`` body), what it accepts;
- operations: of the store's, only those the proxy passes to clients (:data:`STORE_OPERATIONS`);
  fhirplug's own (``$prepare``, ``$process-message``, ``Task/$release``, …) are added by the
  plugins that serve them (``proxy.operations.advertise``), and the OAuth ``security`` section by
  the bearer check.

The statement is asked of the store in JSON whatever the caller wants and rendered as XML here
when XML is asked for, so both formats say the same.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from proxy.context import RequestContext
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.response import ProxyResponse

FORMATS = ["application/fhir+json", "json", "application/fhir+xml", "xml"]
PATCH_FORMATS = ["application/json-patch+json", "application/fhir+json"]
# the store's operations the proxy lets clients reach, by resource type ("*": every type)
STORE_OPERATIONS: dict[str, frozenset[str]] = {
    "*": frozenset({"validate"}),
    "ImplementationGuide": frozenset({"install"}),
}
_JSON = {"json", "application/json", "application/fhir+json"}
_XML = {"xml", "text/xml", "application/xml", "application/fhir+xml"}


def fhirplug_version() -> str:
    try:
        return metadata.version("fhirplug")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0.0.0"


def truthful(cs: dict[str, Any], public_base: str | None) -> dict[str, Any]:
    """The store's CapabilityStatement as fhirplug's: see the module's docstring."""
    store: dict[str, Any] = cs["software"] if isinstance(cs.get("software"), dict) else {}
    behind = " ".join(str(v) for v in (store.get("name"), store.get("version")) if v) or "a FHIR store"
    earlier: dict[str, Any] = cs["implementation"] if isinstance(cs.get("implementation"), dict) else {}
    url = public_base or earlier.get("url")  # the store's, already rewritten to the address asked
    version = fhirplug_version()
    cs["name"] = "fhirplug"
    cs["text"] = {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml">fhirplug {version} in front of {behind}</div>',
    }
    cs["software"] = {"name": "fhirplug", "version": version}
    cs["implementation"] = {
        "description": f"fhirplug {version}: rules, security and partner routing in front of {behind}",
        **({"url": url} if url else {}),
    }
    cs["format"] = list(FORMATS)
    cs["patchFormat"] = list(PATCH_FORMATS)
    for rest in cs.get("rest") or []:
        if not isinstance(rest, dict):
            continue
        _keep_operations(rest, None)
        for resource in rest.get("resource") or []:
            if isinstance(resource, dict):
                _keep_operations(resource, str(resource.get("type")))
    return cs


def _keep_operations(holder: dict[str, Any], resource_type: str | None) -> None:
    if "operation" not in holder:
        return
    open_here = STORE_OPERATIONS["*"] | STORE_OPERATIONS.get(resource_type or "", frozenset())
    if resource_type is None:
        open_here = frozenset()  # the store's system-level operations are all administrative
    kept = [
        op
        for op in holder.get("operation") or []
        if isinstance(op, dict) and str(op.get("name", "")).removeprefix("$") in open_here
    ]
    if kept:
        holder["operation"] = kept
    else:
        del holder["operation"]


class CapabilityStatement:
    """The built-in that asks the store for JSON and rewrites its statement (see above)."""

    def __init__(self, public_base: str | None):
        self.public_base = public_base

    @hookimpl(tryfirst=True)
    def fhirplug_request(self, ctx: RequestContext) -> None:
        if ctx.interaction.kind != "capabilities":
            return None
        fmt = ctx.request.param("_format")
        if fmt is not None:
            want = fmt.split(";", 1)[0].strip().lower()
            if want not in _JSON | _XML:
                raise FhirError(
                    406,
                    "The CapabilityStatement is served as FHIR JSON or XML",
                    ["_format"],
                    code="not-supported",
                )
            xml = want in _XML
        else:
            xml = _prefers_xml(ctx.request.header("accept"))
        ctx.upstream_query_withheld.add("_format")
        ctx.upstream_headers["accept"] = "application/fhir+json"
        if xml:
            ctx.render_as = "xml"
        return None

    @hookimpl(tryfirst=True)  # before the plugins add their own operations to it
    def fhirplug_response(self, ctx: RequestContext, response: ProxyResponse) -> None:
        if ctx.interaction.kind != "capabilities" or response.status != 200 or not response.is_json:
            return
        cs = response.resource
        if isinstance(cs, dict) and cs.get("resourceType") == "CapabilityStatement":
            response.resource = truthful(cs, self.public_base)


def _prefers_xml(accept: str | None) -> bool:
    """Whether ``Accept`` names XML before any JSON (anything else, or nothing: JSON)."""
    for part in (accept or "").split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in _XML:
            return True
        if media in _JSON:
            return False
    return False
