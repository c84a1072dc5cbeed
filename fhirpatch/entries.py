"""The patch document a write carries: the body of a plain PATCH, or a transaction entry's.

In a transaction a JSON Patch travels inside a ``Binary`` (FHIR has no other way to put a JSON
array in a Bundle entry); a FHIRPath Patch is the entry's ``Parameters`` resource.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from fhirpatch.json_patch import JSON_PATCH
from proxy.context import WriteEntry
from proxy.errors import FhirError


def patch_document(entry: WriteEntry) -> tuple[Any, str]:
    """The patch an entry carries, and its media type: JSON Patch (plain, or in a Binary) or FHIRPath."""
    body = entry.resource
    if entry.index is None:
        return body, entry.content_type or "application/fhir+json"
    if isinstance(body, dict) and body.get("resourceType") == "Binary":
        try:
            return json.loads(base64.b64decode(body.get("data", ""))), JSON_PATCH
        except ValueError as exc:
            raise FhirError(400, "The Binary does not hold a JSON Patch", ["Binary.data"]) from exc
    return body, "application/fhir+json"
