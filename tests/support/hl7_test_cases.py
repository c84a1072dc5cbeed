"""HL7's official test cases (github.com/FHIR/fhir-test-cases), as HL7 publishes them on Maven Central.

Nothing of the suite is copied into this repository: the released jar
``org.hl7.fhir.testcases:fhir-test-cases`` is fetched into the local Maven repository once (Maven,
which ``make test`` installs to build the store, does the download and caches it) and read in place.
Cases written in XML are read into FHIR JSON by fhir.resources' R4B models.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

from fhirpatch.json_values import prune

GROUP, ARTIFACT, VERSION = "org.hl7.fhir.testcases", "fhir-test-cases", "1.7.69"
M2 = Path.home() / ".m2" / "repository"
JAR = M2 / Path(*GROUP.split(".")) / ARTIFACT / VERSION / f"{ARTIFACT}-{VERSION}.jar"
_PREFIX = "org/hl7/fhir/testcases/"


@cache
def test_cases_jar() -> Path:
    """The released suite's jar, fetched by Maven on first use."""
    if not JAR.exists():
        if shutil.which("mvn") is None:
            from ops.stack import build_store

            build_store()  # installs Java and Maven the way `make test` does
        artifact = f"-Dartifact={GROUP}:{ARTIFACT}:{VERSION}"
        subprocess.run(["mvn", "-B", "-q", "dependency:get", artifact, "-Dtransitive=false"], check=True)
    return JAR


def read(member: str) -> bytes:
    """One file of the suite, by its path in the fhir-test-cases repository (``r4/patch/...``)."""
    with zipfile.ZipFile(test_cases_jar()) as jar:
        return jar.read(_PREFIX + member)


def resource_from_xml(element: Any) -> dict:
    """The FHIR JSON of an XML resource element, read by fhir.resources' R4B model of its type."""
    from fhir.resources.R4B import get_fhir_model_class

    rtype = etree.QName(element).localname
    model = get_fhir_model_class(rtype).model_validate_xml(etree.tostring(element))
    # an element that held only a comment is left empty: FHIR JSON has no empty objects
    doc = prune(_without_comments(json.loads(model.model_dump_json(exclude_none=True))))
    div = (doc.get("text") or {}).get("div")
    if isinstance(div, str):
        # the reader keeps the text after </div> (the XML's indentation) in the narrative; it is
        # whitespace of the file, not of the resource
        doc["text"]["div"] = div.strip()
    return doc


def _without_comments(value: Any) -> Any:
    """The reader keeps XML comments as ``fhir_comments`` (a DSTU2 JSON member R4 has not): drop them."""
    if isinstance(value, dict):
        return {k: _without_comments(v) for k, v in value.items() if k != "fhir_comments"}
    if isinstance(value, list):
        return [_without_comments(v) for v in value]
    return value


@dataclass(frozen=True)
class PatchCase:
    name: str
    input: dict
    patch: dict
    output: dict | None  # None: the case expects an error
    error: str | None


def fhirpath_patch_cases() -> list[PatchCase]:
    """``r4/patch/fhir-patch-tests.xml``: input, FHIRPath Patch and output (or error) per case."""
    root = etree.fromstring(read("r4/patch/fhir-patch-tests.xml"))

    def only_child(node: Any) -> Any:
        return next(c for c in node if isinstance(c.tag, str))

    cases = []
    for case in root.iter("case"):
        output, error = case.find("output"), case.find("error")
        cases.append(
            PatchCase(
                name=case.get("name"),
                input=resource_from_xml(only_child(case.find("input"))),
                patch=resource_from_xml(only_child(case.find("diff"))),
                output=None if output is None else resource_from_xml(only_child(output)),
                error=None if error is None else error.get("msg"),
            )
        )
    return cases
