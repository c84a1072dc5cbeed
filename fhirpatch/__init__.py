"""The two PATCH formats a FHIR server accepts, as pure functions on JSON resources.

``json_patch`` (RFC 6902) and ``fhirpath_patch`` (FHIRPath Patch) each apply one format to a copy
of a resource; ``json_values`` is what both share. :func:`apply_patch` picks the engine by the
request's media type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhirpatch.fhirpath_patch import apply_fhirpath_patch
from fhirpatch.json_patch import JSON_PATCH, apply_json_patch


def apply_patch(resource: Mapping[str, Any], patch: Any, content_type: str) -> dict:
    """A new resource: ``resource`` (left untouched) with ``patch`` applied.

    ``content_type`` ``application/json-patch+json`` (parameters ignored) means an RFC 6902
    JSON Patch (a list of operations); anything else a FHIRPath Patch ``Parameters`` resource.
    400 when the patch is not a patch document at all; 422 naming the operation that is
    malformed, unsupported or cannot be applied.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        return apply_json_patch(resource, patch)
    return apply_fhirpath_patch(resource, patch)
