"""What a FHIRPath Patch must know of an element beyond its JSON: does it repeat, is it a choice.

A patch adds ``name`` to an element: whether the result is ``"name": [v]`` or ``"name": v``
depends on the element's cardinality, and a choice element (``value[x]``) takes its JSON name from
the value's type (``valueReference``). Neither is visible in the JSON, so both are read from the
field's own models: the typed R4B models of ``fhir.resources`` (R4B differs from R4 in a handful
of medication-definition resources, none of which fhirplug patches; a type it does not know falls
back to the members that repeat everywhere). Answers are cached per element path.
"""

from __future__ import annotations

import types
import typing
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

#: Child names that repeat wherever they appear (Element/DomainResource and datatype members).
REPEATING_ANYWHERE = frozenset({"extension", "modifierExtension", "contained", "coding"})


def _model(name: str) -> Any | None:
    try:
        return get_fhir_model_class(name)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None


def _field_type(annotation: Any) -> tuple[bool, Any]:
    """(repeats, the item type) of a field's annotation such as Optional[List[HumanNameType]]."""
    repeats = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Union or origin is types.UnionType:
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        elif origin is list:
            repeats, annotation = True, typing.get_args(annotation)[0]
        else:
            return repeats, annotation


def _model_of_type(item_type: Any) -> Any | None:
    """The model class behind a field type: fhir.resources names them ``<Model>Type``."""
    name = getattr(item_type, "__name__", "")
    if name.endswith("Type") and name[:-4]:
        return _model(name[:-4])
    return None


@lru_cache(maxsize=4096)
def _element(element_path: str) -> tuple[Any, str, Any] | None:
    """(the model holding the last step, that step's name, the model of its type), or None."""
    steps = element_path.split(".")
    model = _model(steps[0])
    for i, name in enumerate(steps[1:], start=1):
        if model is None:
            return None
        fields = model.model_fields
        field = fields.get(name)
        if field is None:
            return (model, name, None) if i == len(steps) - 1 else None
        _, item = _field_type(field.annotation)
        if i == len(steps) - 1:
            return model, name, _model_of_type(item)
        model = _model_of_type(item)
    return None


@lru_cache(maxsize=4096)
def repeats(element_path: str) -> bool:
    """Whether ``Patient.name`` (an element path, no indexes) may hold more than one value."""
    if element_path.rsplit(".", 1)[-1] in REPEATING_ANYWHERE:
        return True
    found = _element(element_path)
    if found is None:
        return False
    model, name, _ = found
    field = model.model_fields.get(name)
    return field is not None and _field_type(field.annotation)[0]


@lru_cache(maxsize=4096)
def is_choice(element_path: str) -> bool:
    """Whether ``Task.output.value`` is a choice element (``value[x]``)."""
    parent, _, name = element_path.rpartition(".")
    if name == "value" and parent.rsplit(".", 1)[-1] in ("extension", "modifierExtension"):
        return True
    if not parent:
        return False
    found = _element(element_path)
    if found is None:
        return False
    model, name, _ = found
    if name in model.model_fields:
        return False
    return any(
        f.json_schema_extra.get("one_of_many") == name
        for f in model.model_fields.values()
        if isinstance(f.json_schema_extra, dict)
    )
