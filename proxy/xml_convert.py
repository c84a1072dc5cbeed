"""FHIR XML read by HAPI: the client of the store's conversion endpoint.

The proxy's plugins read JSON. An XML body is turned into JSON by the store's own parsers
(``store/.../syntax``, ``POST [store]/$fhirplug-convert``), not by a mapping of ours: HAPI's XML
parser is the reference reading of FHIR XML, and a second one here would be a second place for
the two syntaxes to disagree. One round trip on the store client's pooled connections, signed as
the proxy (admin), like every request the proxy makes of the store.

The store refuses what cannot be converted without loss: 400 for a body that is not well-formed
(or not FHIR XML), 422 for well-formed XML holding what FHIR cannot hold (an unknown element, a
value of the wrong type). Both reach the caller as 400 with each problem's FHIRPath
(``expression``) and line and column (``location``), as R4 says for a body that fails to parse.
"""

from __future__ import annotations

import logging

from proxy.errors import FhirError
from proxy.response import loads
from proxy.store_caller import CALLER_KEY

log = logging.getLogger("fhirplug.xml_convert")
CONVERT_PATH = "$fhirplug-convert"
FHIR_JSON = "application/fhir+json; charset=utf-8"


class XmlRefused(FhirError):
    """An XML body the store could not convert. ``lossy``: well-formed FHIR XML whose content the
    FHIR model cannot hold (422 from the store), as opposed to a body that is not XML at all."""

    lossy: bool = False


class XmlConverter:
    """Converts through ``store`` (a ``proxy.upstream.StoreClient``, or anything with its ``send``)."""

    def __init__(self, store):
        self.store = store

    def to_json(self, xml: bytes, content_type: str | None) -> bytes:
        """The JSON of a FHIR XML document (as HAPI reads it); raises XmlRefused (400)."""
        return self._convert(xml, content_type or "application/fhir+xml", "application/fhir+json")

    def to_xml(self, json: bytes) -> bytes:
        """The XML of a FHIR JSON document (as HAPI writes it); raises XmlRefused (400)."""
        return self._convert(json, FHIR_JSON, "application/fhir+xml")

    def _convert(self, data: bytes, content_type: str, accept: str) -> bytes:
        headers = {"content-type": content_type, "accept": accept, CALLER_KEY: "admin;"}
        try:
            answer = self.store.send("POST", CONVERT_PATH, [], headers, data)
        except FhirError as exc:
            if exc.status != 503:
                raise
            # the store's usual words ("a write may have been applied") would mislead: nothing was
            # written, the body was only being read
            raise FhirError.unavailable(
                "The FHIR store did not read the XML body in time; nothing was stored, retry shortly"
            ) from exc
        try:
            body = answer.read()
        finally:
            answer.release_conn()
        if answer.status == 200:
            return body
        if answer.status in (400, 413, 415, 422):
            raise refusal(answer.status, body)
        log.error("the store's conversion endpoint answered %s: %s", answer.status, body[:300])
        if answer.status in (404, 405) or (answer.status == 400 and b"$fhirplug-convert" in body):
            raise FhirError(
                415,
                "This server's store cannot read FHIR XML (its SyntaxConversionInterceptor is not "
                "loaded); send application/fhir+json",
                code="not-supported",
            )
        raise FhirError.unavailable("The FHIR store could not convert the XML body; retry shortly")


def refusal(status: int, body: bytes) -> XmlRefused:
    """The store's OperationOutcome as the proxy's 400 (413 stays 413), every issue kept."""
    try:
        outcome = loads(body)
        issues = [i for i in outcome.get("issue") or [] if isinstance(i, dict)]
    except (ValueError, AttributeError):
        issues = []
    if not issues:
        issues = [{"code": "structure", "diagnostics": "The XML body could not be read"}]
    first, rest = issues[0], issues[1:]
    err = XmlRefused(
        413 if status == 413 else 400,
        str(first.get("diagnostics") or "The XML body could not be read"),
        [str(e) for e in first.get("expression") or []],
        code=str(first.get("code") or "structure"),
        more=[
            {
                "code": str(i.get("code") or "structure"),
                "diagnostics": str(i.get("diagnostics") or ""),
                "expression": [str(e) for e in i.get("expression") or []],
                "location": [str(loc) for loc in i.get("location") or []],
            }
            for i in rest
        ],
        location=[str(loc) for loc in first.get("location") or []],
    )
    err.lossy = status == 422
    return err
