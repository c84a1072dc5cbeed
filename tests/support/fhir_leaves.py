"""Every value a FHIR document holds, as (path, value) pairs, read from its XML or its JSON by
Python's own parsers: a check of two documents' sameness that shares no code with HAPI.

Paths are element names joined by dots without indices (``Patient.name.given``); a resource inside
an element (``entry.resource``, ``contained``) adds no step of its own; element ``id`` and extension
``url`` attributes are leaves like any other; a narrative is its text, whitespace folded.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from decimal import Decimal

import simplejson

FHIR = "{http://hl7.org/fhir}"
XHTML = "{http://www.w3.org/1999/xhtml}"


def _fold(text: str) -> str:
    return " ".join(text.split())


def from_xml(data: bytes, drop: tuple[str, ...] = ()) -> Counter:
    root = ET.fromstring(data)
    out: Counter = Counter()

    def walk(el, path: str) -> None:
        for key, value in el.attrib.items():
            if key in ("id", "url", "value"):
                out[(path if key == "value" else f"{path}.{key}", value)] += 1
        for child in el:
            if child.tag == f"{XHTML}div":
                out[(f"{path}.div", _fold("".join(child.itertext())))] += 1
                continue
            name = child.tag.removeprefix(FHIR)
            if name[:1].isupper():  # a resource inside an element: its members are that element's
                walk(child, path)
                continue
            if path.count(".") == 0 and name in drop:
                continue
            walk(child, f"{path}.{name}")

    walk(root, root.tag.removeprefix(FHIR))
    return _without_root_id(out, root.tag.removeprefix(FHIR))


def from_json(data: bytes | dict, drop: tuple[str, ...] = ()) -> Counter:
    doc = data if isinstance(data, dict) else simplejson.loads(data, use_decimal=True)
    out: Counter = Counter()

    def leaf(path: str, value) -> None:
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, Decimal)):
            text = str(value)
        else:
            text = value
        out[(path, text)] += 1

    def walk(obj: dict, path: str) -> None:
        for key, value in obj.items():
            if key == "resourceType":
                continue
            name = key[1:] if key.startswith("_") else key
            if path.count(".") == 0 and name in drop:
                continue
            here = f"{path}.{name}"
            for item in value if isinstance(value, list) else [value]:
                if item is None:
                    continue
                if name == "div" and isinstance(item, str):
                    out[(here, _fold("".join(ET.fromstring(item).itertext())))] += 1
                elif isinstance(item, dict):
                    walk(item, here)
                elif key.startswith("_"):
                    continue
                elif name in ("id", "url") and not isinstance(value, list):
                    out[(here, item)] += 1
                else:
                    leaf(here, item)

    walk(doc, doc["resourceType"])
    return _without_root_id(out, doc["resourceType"])


def _without_root_id(leaves: Counter, root: str) -> Counter:
    """The server assigns the id of what it stores: a stored copy keeps everything else."""
    return Counter({k: n for k, n in leaves.items() if k[0] != f"{root}.id"})
