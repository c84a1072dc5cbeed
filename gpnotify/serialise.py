"""STU3 JSON ⇄ FHIR XML, and STU3 structural validation, through ``fhir.resources``' STU3 models.

Why a library: FHIR XML is not a mechanical rendering of the JSON (primitive ``value`` attributes,
extensions on primitives, the XHTML narrative inline, element order from the StructureDefinitions),
and ``fhir.resources.STU3`` carries the STU3 definitions that get every one of those right, both ways.
Validation here is structural (element names, cardinality, types), not profile conformance.
"""

from __future__ import annotations

from typing import Any

from proxy.errors import FhirError


def _bundle_model() -> Any:
    # imported when first needed: the models take a moment to load and most processes never do
    from fhir.resources.STU3.bundle import Bundle

    return Bundle


def validate(bundle: dict[str, Any]) -> None:
    """Raise ``FhirError`` (422) listing every structural problem of an STU3 Bundle; nothing if none."""
    from pydantic import ValidationError

    try:
        _bundle_model().model_validate(bundle)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise FhirError(
            422,
            f"not a valid STU3 Bundle ({len(problems)} problems): " + "; ".join(problems[:20]),
            code="structure",
        ) from None


def to_xml(bundle: dict[str, Any]) -> bytes:
    """An STU3 Bundle (JSON shape) as FHIR XML."""
    xml = _bundle_model().model_validate(bundle).model_dump_xml()
    return xml.encode("utf-8") if isinstance(xml, str) else bytes(xml)


def from_xml(xml: bytes | str) -> dict[str, Any]:
    """A FHIR XML STU3 Bundle in its JSON shape (comments dropped)."""
    model = _bundle_model().model_validate_xml(xml)
    return _without_comments(model.model_dump(mode="json", exclude_none=True, by_alias=True))


def _empty(value: Any) -> bool:
    return value in ({}, None) or (isinstance(value, list) and all(_empty(v) for v in value))


def _without_comments(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _without_comments(v) for k, v in value.items() if k != "fhir_comments"}
        # a primitive's "_element" that held only a comment is left empty: it was never data
        return {k: v for k, v in out.items() if not (k.startswith("_") and _empty(v))}
    if isinstance(value, list):
        return [_without_comments(v) for v in value]
    return value
