"""The JSON shapes of the elements plugins read, checked before any plugin sees a body.

Plugins read ``meta.security``, references (``Task.owner.identifier.value``), identifiers,
``Parameters.parameter[].part[]`` and bundle entries as the FHIR datatypes they are. A caller
who sends another JSON type there (``"subject": "x"``, ``"reference": 5``, ``"meta": [1]``)
would make a plugin fail with a 500; the store itself often accepts such a body silently.
This check refuses them with a 400 whose expression names the element
(``Task.meta.security[0]``). It knows element names, not the whole FHIR model: each rule below
holds for every element of that name in FHIR R4, so it never refuses a valid resource.
"""

from __future__ import annotations

import re
from decimal import Decimal

from proxy import query_checks
from proxy.errors import FhirError
from proxy.json_limits import expression

# Elements that are a Reference (or a BackboneElement holding one) wherever they occur in R4:
# each is an object, or an array of objects.
REFERENCE_NAMES = frozenset(
    {
        "subject",
        "patient",
        "requester",
        "owner",
        "for",
        "focus",
        "basedOn",
        "partOf",
        "encounter",
        "managingOrganization",
        "generalPractitioner",
        "authorizingPrescription",
        "medicationReference",
        "supportingInformation",
        "reasonReference",
        "relevantHistory",
        "priorPrescription",
        "eventHistory",
        "detectedIssue",
        "insurance",
        "sender",
        "receiver",
        "recorder",
        "enterer",
        "responsible",
        "author",
        "performer",
        "actor",
        "who",
        "onBehalfOf",
        "assigner",
        "organization",
        "practitioner",
        "valueReference",
    }
)
# Primitive elements whose JSON type is the same wherever they occur.
STRINGS = frozenset({"resourceType", "id", "status", "fullUrl", "url", "system", "versionId", "lastUpdated"})
_VALUE_STRING = re.compile(
    r"value(String|Code|Uri|Url|Canonical|Id|Oid|Uuid|Markdown|Base64Binary|Instant|Date|DateTime|Time)"
)
_VALUE_INTEGER = re.compile(r"value(Integer|PositiveInt|UnsignedInt|Integer64)")
# Cardinality at the root of the resources the plugins read (FHIR R4): one Reference, or an array.
SINGLE = {
    "Task": {"focus", "for", "encounter", "requester", "owner", "reasonReference"},
    "MedicationRequest": {"subject", "encounter", "requester", "performer", "recorder", "priorPrescription"},
    "MedicationDispense": {"subject", "context", "destination"},
    "MessageHeader": {"sender", "enterer", "author", "responsible"},
    "Organization": {"partOf"},
    "Patient": {"managingOrganization"},
}
MANY = {
    "Task": {"basedOn", "partOf", "insurance", "relevantHistory"},
    "MedicationRequest": {"supportingInformation", "reasonReference", "basedOn", "insurance"},
    "MedicationDispense": {"partOf", "supportingInformation", "authorizingPrescription", "receiver"},
    "Patient": {"generalPractitioner"},
    "MessageHeader": {"focus"},
}
# the only resources whose own identifier is one Identifier, not an array of them
SINGLE_IDENTIFIER = frozenset({"Bundle", "Composition", "QuestionnaireResponse"})
REQUEST_STRINGS = ("method", "url", "ifNoneExist", "ifMatch", "ifNoneMatch", "ifModifiedSince")


class _Shapes:
    def __init__(self, root: str):
        self.root = root

    def fail(self, path, what: str) -> FhirError:
        where = expression(self.root, path)
        return FhirError(400, f"{where} must be {what}", [where], code="structure")

    # -------------------------------------------------------------- generic walk

    def walk(self, node, path) -> None:
        stack = [(node, path)]
        while stack:
            node, path = stack.pop()
            if isinstance(node, dict):
                rtype = node.get("resourceType")
                rtype = rtype if isinstance(rtype, str) else None  # set: node is a resource
                for key, child in node.items():
                    here = (path, key)
                    self.element(key, child, here, rtype)
                    if isinstance(child, dict | list):
                        stack.append((child, here))
            elif isinstance(node, list):
                for i, child in enumerate(node):
                    if isinstance(child, dict | list):
                        stack.append((child, (path, i)))

    def element(self, key: str, value, path, rtype: str | None) -> None:
        if rtype is not None and key in SINGLE.get(rtype, ()) and not isinstance(value, dict):
            raise self.fail(path, "an object (one Reference)")
        if rtype is not None and key in MANY.get(rtype, ()) and not isinstance(value, list):
            raise self.fail(path, "an array of References")
        if rtype is not None and key == "identifier":
            if rtype in SINGLE_IDENTIFIER and not isinstance(value, dict):
                raise self.fail(path, "an Identifier object")
            if rtype not in SINGLE_IDENTIFIER and not isinstance(value, list):
                raise self.fail(path, "an array of Identifiers")
        if key in STRINGS:
            self.string(value, path)
        elif key == "meta":
            self.meta(value, path)
        elif key in REFERENCE_NAMES:
            for item, where in self.objects(value, path, "an object (a Reference) or an array of them"):
                self.reference(item, where)
        elif key == "reference":
            if not isinstance(value, str | dict):
                raise self.fail(path, "a string")
        elif key == "identifier":
            for item, where in self.objects(value, path, "an Identifier object or an array of them"):
                for name in ("system", "value"):
                    if name in item:
                        self.string(item[name], (where, name))
        elif key in ("extension", "modifierExtension", "coding", "parameter", "part", "contained"):
            for item, where in self.array_of_objects(value, path):
                if key in ("parameter", "part") and "name" in item:
                    self.string(item["name"], (where, "name"))
                if key == "coding":
                    self.coding(item, where)
        elif key == "entry":
            for item, where in self.array_of_objects(value, path):
                self.entry(item, where)
        elif _VALUE_STRING.fullmatch(key):
            self.string(value, path)
        elif _VALUE_INTEGER.fullmatch(key):
            if not isinstance(value, int) or isinstance(value, bool):
                raise self.fail(path, "an integer")
        elif key == "valueBoolean":
            if not isinstance(value, bool):
                raise self.fail(path, "true or false")
        elif key == "valueDecimal" and not _is_number(value):
            raise self.fail(path, "a number")

    # -------------------------------------------------------------- datatypes

    def string(self, value, path) -> None:
        if not isinstance(value, str):
            raise self.fail(path, "a string")

    def objects(self, value, path, what: str):
        """A single object or an array of objects, as (object, path) pairs."""
        if isinstance(value, dict):
            return [(value, path)]
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return [(v, (path, i)) for i, v in enumerate(value)]
        bad = (
            next((i for i, v in enumerate(value) if not isinstance(v, dict)), None)
            if isinstance(value, list)
            else None
        )
        raise self.fail(path if bad is None else (path, bad), what if bad is None else "an object")

    def array_of_objects(self, value, path):
        if not isinstance(value, list):
            raise self.fail(path, "an array")
        for i, v in enumerate(value):
            if not isinstance(v, dict):
                raise self.fail((path, i), "an object")
        return [(v, (path, i)) for i, v in enumerate(value)]

    def reference(self, ref: dict, path) -> None:
        if "reference" in ref and not isinstance(ref["reference"], str):
            raise self.fail((path, "reference"), "a string")
        if "identifier" in ref:
            ident = ref["identifier"]
            if not isinstance(ident, dict):
                raise self.fail((path, "identifier"), "an Identifier object")

    def coding(self, coding: dict, path) -> None:
        for name in ("system", "code", "version", "display"):
            if name in coding:
                self.string(coding[name], (path, name))

    def meta(self, meta, path) -> None:
        if not isinstance(meta, dict):
            raise self.fail(path, "an object (Meta)")
        for name in ("security", "tag"):
            if name in meta:
                for item, where in self.array_of_objects(meta[name], (path, name)):
                    self.coding(item, where)
        if "profile" in meta:
            profiles = meta["profile"]
            if not isinstance(profiles, list):
                raise self.fail((path, "profile"), "an array of strings")
            for i, p in enumerate(profiles):
                self.string(p, ((path, "profile"), i))
        if "source" in meta:
            self.string(meta["source"], (path, "source"))

    def entry(self, entry: dict, path) -> None:
        if "resource" in entry and not isinstance(entry["resource"], dict):
            raise self.fail((path, "resource"), "an object (a resource)")
        for name in ("request", "response", "search"):
            if name in entry and not isinstance(entry[name], dict):
                raise self.fail((path, name), "an object")
        request = entry.get("request")
        if isinstance(request, dict):
            for name in REQUEST_STRINGS:
                if name in request:
                    self.string(request[name], ((path, "request"), name))
            if "url" in request:  # a search inside a batch: its parameters as for a search
                query_checks.check_url(request["url"], expression(self.root, ((path, "request"), "url")))


def _is_number(value) -> bool:
    return isinstance(value, int | Decimal | float) and not isinstance(value, bool)


def check(body) -> None:
    """Refuse (400, expression at the element) a body whose elements have the wrong JSON types.

    ``body`` is a parsed resource, or a JSON Patch (an array of operations)."""
    if isinstance(body, list):
        _check_json_patch(body)
        return
    if not isinstance(body, dict):
        return  # not a resource: bodies.py says so with its own message
    root = body.get("resourceType")
    shapes = _Shapes(root if isinstance(root, str) and root.isidentifier() else "$this")
    shapes.walk(body, None)


def _check_json_patch(ops: list) -> None:
    shapes = _Shapes("$this")
    for i, op in enumerate(ops):
        if not isinstance(op, dict):
            raise shapes.fail((None, i), "a JSON Patch operation (an object)")
        for name in ("op", "path", "from"):
            if name in op:
                shapes.string(op[name], ((None, i), name))
