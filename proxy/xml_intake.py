"""FHIR XML requests, as a built-in plugin: the body is JSON before any configured plugin sees it.

Right after authentication (an unauthenticated caller's XML is never parsed), an XML body
(``application/fhir+xml``, ``application/xml``, ``text/xml``, any charset) of a write, a
transaction or batch, a ``PATCH`` (FHIRPath Patch ``Parameters``) or an operation (``$validate``,
``ImplementationGuide/$install``, the plugins' own) is converted by the store's HAPI parsers
(``proxy.xml_convert``), and the request then reads as if the caller had sent that JSON: its
body and its Content-Type. What the caller sent is kept (``ctx.sent_body``): ``$validate`` sends
it to the store as it came, so that each issue's line and column point into the caller's own
document.

The answer comes in the format asked for: ``_format``, else ``Accept``, else (R4 http.html) the
request's own format, XML. The store is asked for JSON, which the plugins judge; the proxy
renders the XML (``proxy.xml_render``), its own refusals included. A body that cannot be
converted without loss is refused 400 with the element and its line and column; except that
``$validate`` of well-formed XML holding what FHIR cannot hold goes to the store's validator as
it came, which reports that, and every other problem, itself.
"""

from __future__ import annotations

from proxy import bodies
from proxy.context import RequestContext
from proxy.hookspecs import hookimpl
from proxy.xml_convert import FHIR_JSON, XmlConverter, XmlRefused

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
NOT_FHIR = frozenset({"health", "oauth", "unknown"})
_JSON = frozenset({"json", "application/json", "application/fhir+json"})
_XML = frozenset({"xml", "text/xml", "application/xml", "application/fhir+xml"})


class XmlIntake:
    def __init__(self, converter: XmlConverter):
        self.converter = converter

    @hookimpl(tryfirst=True)  # registered after authentication, which runs first
    def fhirplug_request(self, ctx: RequestContext) -> None:
        req = ctx.request
        if ctx.interaction.kind in NOT_FHIR or req.method not in BODY_METHODS:
            return None
        if bodies.media_type(req.content_type) not in bodies.XML_TYPES:
            return None
        if answer_format(req.param("_format"), req.header("accept"), "xml") == "xml":
            # set first: a refusal of the body is answered in XML too
            ctx.render_as = "xml"
            ctx.upstream_headers["accept"] = "application/fhir+json"
            ctx.upstream_query_withheld.add("_format")
        raw = ctx.request_body()
        if not raw.strip():
            return None  # the interaction's own check says what was missing
        try:
            data = self.converter.to_json(raw, req.content_type)
        except XmlRefused as refused:
            if refused.lossy and ctx.interaction.operation == "$validate":
                return None
            raise
        ctx.replace_body(data, FHIR_JSON)
        return None


def answer_format(fmt: str | None, accept: str | None, default: str) -> str | None:
    """``json`` or ``xml`` as ``_format`` (first) or ``Accept`` asks; ``default`` when neither names
    one (no Accept, ``*/*``); None for another syntax asked by ``_format`` (left to the store)."""
    if fmt is not None:
        media = fmt.split(";", 1)[0].strip().lower()
        return "json" if media in _JSON else "xml" if media in _XML else None
    for part in (accept or "").split(","):
        media, *params = [p.strip().lower() for p in part.split(";")]
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        if media in _JSON:
            return "json"
        if media in _XML:
            return "xml"
    return default
