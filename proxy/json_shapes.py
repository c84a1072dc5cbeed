"""The JSON shapes of the elements plugins read, checked before any plugin sees a body.

Plugins read ``meta.security``, references (``Task.owner.identifier.value``), identifiers,
``Parameters.parameter[].part[]`` and bundle entries as the FHIR datatypes they are. A caller
who sends another JSON type there (``"subject": "x"``, ``"reference": 5``, ``"meta": [1]``)
would make a plugin fail with a 500; the store itself often accepts such a body silently.
This check refuses them with a 400 whose expression names the element
(``Task.meta.security[0]``). It knows element names, not the whole FHIR model: each generic rule
holds for every element of that name in FHIR R4 (checked against R4's StructureDefinitions), and
the per-type rules hold where they are written, so it never refuses a valid resource.
"""

from __future__ import annotations

import re
from decimal import Decimal

from proxy import query_checks
from proxy.errors import FhirError
from proxy.json_limits import expression

# Element names that are an object (a Reference, or a complex type or BackboneElement holding
# one) or an array of objects wherever they occur in R4. Checked against the R4 StructureDefinitions:
# names that are a primitive somewhere (partOf, receiver, responsible, supportingInformation) are
# checked only where the tables below say.
REFERENCE_NAMES = frozenset(
    {
        "subject",
        "patient",
        "requester",
        "owner",
        "for",
        "focus",
        "basedOn",
        "encounter",
        "managingOrganization",
        "generalPractitioner",
        "authorizingPrescription",
        "medicationReference",
        "reasonReference",
        "relevantHistory",
        "priorPrescription",
        "eventHistory",
        "detectedIssue",
        "insurance",
        "sender",
        "recorder",
        "enterer",
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
# Primitive elements that are a JSON string wherever they occur in R4.
STRINGS = frozenset({"resourceType", "id", "fullUrl", "url", "versionId", "lastUpdated"})
# status is a code at the root of every resource but these two (a CodeableConcept there)
STATUS_NOT_A_CODE = frozenset({"MedicinalProductAuthorization", "SubstanceSpecification"})
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
# the resources whose own identifier is one Identifier, not an array of them
SINGLE_IDENTIFIER = frozenset(
    {
        "AdverseEvent",
        "Bundle",
        "Composition",
        "ConceptMap",
        "MedicinalProductIngredient",
        "QuestionnaireResponse",
        "SpecimenDefinition",
        "SubstanceSpecification",
        "TestReport",
        "TestScript",
    }
)
JSON_PATCH = "application/json-patch+json"
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
                if rtype is not None:
                    self.string(rtype, (path, "resourceType"))
                    self.resource(rtype, node, path)
                for key, child in node.items():
                    here = (path, key)
                    self.element(key, child, here)
                    if isinstance(child, dict | list):
                        stack.append((child, here))
            elif isinstance(node, list):
                for i, child in enumerate(node):
                    if isinstance(child, dict | list):
                        stack.append((child, (path, i)))

    def resource(self, rtype: str, res: dict, path) -> None:
        """Rules for the elements at the root of a resource of type ``rtype``."""
        for key in SINGLE.get(rtype, ()):
            if key in res and not isinstance(res[key], dict):
                raise self.fail((path, key), "an object (one Reference)")
            if key in res:
                self.reference(res[key], (path, key))
        for key in MANY.get(rtype, ()):
            if key in res:
                for item, where in self.array_of_objects(res[key], (path, key)):
                    self.reference(item, where)
        if "identifier" in res:
            single = rtype in SINGLE_IDENTIFIER
            if not isinstance(res["identifier"], dict if single else list):
                raise self.fail((path, "identifier"), "an Identifier object" if single else "an array")
        if "status" in res and rtype not in STATUS_NOT_A_CODE:
            self.string(res["status"], (path, "status"))
        if rtype == "Parameters" and "parameter" in res:
            self.parameters(res["parameter"], (path, "parameter"))
        if rtype == "Bundle" and "entry" in res:
            for item, where in self.array_of_objects(res["entry"], (path, "entry")):
                self.entry(item, where)

    def element(self, key: str, value, path) -> None:
        """Rules for an element of this name wherever it is."""
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
            if isinstance(value, str):
                return  # ValueSet.expansion.identifier and MessageHeader.response.identifier
            for item, where in self.objects(value, path, "an Identifier object or an array of them"):
                for name in ("system", "value"):
                    if name in item:
                        self.string(item[name], (where, name))
        elif key in ("extension", "modifierExtension", "coding", "contained"):
            for item, where in self.array_of_objects(value, path):
                if key == "coding":
                    self.coding(item, where)
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

    def parameters(self, value, path) -> None:
        """Parameters.parameter, and each one's part, at any depth: objects with a string name."""
        stack = [(value, path)]
        while stack:
            value, path = stack.pop()
            for item, where in self.array_of_objects(value, path):
                if "name" in item:
                    self.string(item["name"], (where, "name"))
                if "part" in item:
                    stack.append((item["part"], (where, "part")))

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


def check(body, media_type: str = "application/fhir+json") -> None:
    """Refuse (400, expression at the element) a body whose elements have the wrong JSON types.

    ``body`` is a parsed resource, or with ``media_type`` application/json-patch+json a JSON
    Patch (an array of operations)."""
    if isinstance(body, list):
        if media_type == JSON_PATCH:
            _check_json_patch(body)
        return  # not a resource: bodies.py says so with its own message
    if not isinstance(body, dict):
        return  # not a resource: bodies.py says so with its own message
    root = body.get("resourceType")
    if not isinstance(root, str):
        return  # not a resource: bodies.py says so with its own message
    shapes = _Shapes(root if root.isidentifier() else "$this")
    shapes.walk(body, None)


def _check_json_patch(ops: list) -> None:
    shapes = _Shapes("$this")
    for i, op in enumerate(ops):
        if not isinstance(op, dict):
            raise shapes.fail((None, i), "a JSON Patch operation (an object)")
        for name in ("op", "path", "from"):
            if name in op:
                shapes.string(op[name], ((None, i), name))
