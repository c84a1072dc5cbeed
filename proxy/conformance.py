"""Conformance resources (profiles, value sets, code systems) read from a folder or a FHIR NPM
package and turned into one transaction of conditional updates, so that loading is all or
nothing and loading the same content twice changes nothing.

Each resource is written with ``PUT <Type>?url=<canonical>&version=<version>``: the canonical URL
and version identify it, whatever id it had in the package. HAPI answers an update that changes
nothing without making a new version.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from redis import Redis

from proxy.errors import FhirError

CONFORMANCE_TYPES = frozenset(
    {
        "StructureDefinition",
        "ValueSet",
        "CodeSystem",
        "ImplementationGuide",
        "NamingSystem",
        "ConceptMap",
        "SearchParameter",
        "OperationDefinition",
        "CompartmentDefinition",
        "StructureMap",
        "CapabilityStatement",
    }
)
# what a package may bring in: resources validation uses, nothing that changes server behaviour
LOADABLE_TYPES = frozenset({"StructureDefinition", "ValueSet", "CodeSystem", "NamingSystem", "ConceptMap"})
FHIR_VERSION = "4.0.1"
GENERATION_KEY = "fhirplug:conformance:generation"  # bumped by every change to conformance content
MAX_PACKAGE_FILES = 5000


def refuse(file: str, problem: str) -> FhirError:
    return FhirError(400, f"{file}: {problem}", code="invalid")


def check_resource(name: str, resource: object) -> dict | None:
    """The resource if it is one to load, None if it is of another type; refuses a broken one."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise refuse(name, "not a FHIR resource (no resourceType)")
    if resource["resourceType"] not in LOADABLE_TYPES:
        return None
    if not isinstance(resource.get("url"), str) or not resource["url"]:
        raise refuse(name, f"a {resource['resourceType']} needs a canonical url")
    fv = resource.get("fhirVersion")
    if fv is not None and not str(fv).startswith("4.0"):
        raise refuse(name, f"fhirVersion {fv} is not FHIR R4 ({FHIR_VERSION})")
    return resource


RESOURCE_SUFFIXES = (".json", ".xml")


def resource_files(folder: str | Path) -> list[Path]:
    """The FHIR files below ``folder``: JSON and XML (a package's manifests and hidden files left out)."""
    return [
        p
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
        and p.suffix.lower() in RESOURCE_SUFFIXES
        and p.name not in ("package.json", ".index.json")
        and not p.name.startswith(".")
    ]


@dataclass
class FolderContent:
    """What a folder holds: the resources to load (with their files), and what was passed over."""

    resources: list[tuple[str, dict]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, resourceType) of other types
    json_files: int = 0
    xml_files: int = 0


def read_folder(
    folder: str | Path,
    on_file: Callable[[], object] | None = None,
    from_xml: Callable[[bytes], dict] | None = None,
) -> FolderContent:
    """Every loadable resource in the JSON and XML files below ``folder``, with the file it came
    from; ``on_file`` is called after each file (a progress bar). ``from_xml`` reads a FHIR XML
    file (the store's HAPI parser: ``proxy.xml_convert``) and raises FhirError where it cannot;
    without one, an XML file is refused, never passed over."""
    root = Path(folder)
    out = FolderContent()
    for path in resource_files(root):
        name = str(path.relative_to(root))
        if path.suffix.lower() == ".xml":
            out.xml_files += 1
            if from_xml is None:
                raise refuse(name, "FHIR XML, and nothing here reads XML")
            try:
                doc: object = from_xml(path.read_bytes())
            except FhirError as exc:
                where = " ".join(exc.location + exc.expression)
                raise refuse(name, f"{exc.diagnostics}" + (f" ({where})" if where else "")) from exc
        else:
            out.json_files += 1
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeError) as exc:
                raise refuse(name, f"does not parse as JSON ({exc})") from exc
        if on_file:
            on_file()
        if (res := check_resource(name, doc)) is not None:
            out.resources.append((name, res))
        else:
            out.skipped.append((name, str(doc.get("resourceType") if isinstance(doc, dict) else "")))
    return out


def resources_from_folder(
    folder: str | Path,
    on_file: Callable[[], object] | None = None,
    from_xml: Callable[[bytes], dict] | None = None,
) -> list[tuple[str, dict]]:
    """The loadable resources of :func:`read_folder`."""
    return read_folder(folder, on_file, from_xml).resources


def resources_from_package(data: bytes) -> list[tuple[str, dict]]:
    """The loadable resources of a FHIR NPM package (.tgz), or a 400 naming the file at fault."""
    if data[:2] != b"\x1f\x8b":
        raise refuse("package", "not a gzip-compressed tar archive (.tgz)")
    files = _read_tgz(data)
    manifest = files.get("package/package.json")
    if manifest is None:
        raise refuse("package/package.json", "missing: a FHIR package has its manifest there")
    try:
        meta = json.loads(manifest.decode("utf-8"))
    except (ValueError, UnicodeError) as exc:
        raise refuse("package/package.json", f"does not parse as JSON ({exc})") from exc
    versions = meta.get("fhirVersions") or meta.get("fhir-version-list") or []
    if isinstance(versions, str):
        versions = [versions]
    if not any(str(v).startswith("4.0") for v in versions):
        raise refuse("package/package.json", f"fhirVersions {versions or 'missing'}: this server is FHIR R4")
    out = []
    for name in sorted(files):
        # resources live directly in package/; examples and other folders below it are not loaded
        if not name.startswith("package/") or "/" in name[len("package/") :] or not name.endswith(".json"):
            continue
        if name in ("package/package.json", "package/.index.json"):
            continue
        try:
            doc = json.loads(files[name].decode("utf-8"))
        except (ValueError, UnicodeError) as exc:
            raise refuse(name, f"does not parse as JSON ({exc})") from exc
        if (res := check_resource(name, doc)) is not None:
            out.append((name, res))
    if not out:
        raise refuse("package", f"holds none of {', '.join(sorted(LOADABLE_TYPES))}")
    return out


def _read_tgz(data: bytes) -> dict[str, bytes]:
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            if len(members) > MAX_PACKAGE_FILES:
                raise refuse("package", f"more than {MAX_PACKAGE_FILES} files")
            files = {}
            for m in members:
                content = archive.extractfile(m)
                assert content is not None  # extractfile answers None only for what is not a regular file
                files[m.name.removeprefix("./")] = content.read()
            return files
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise refuse("package", f"not a readable .tgz ({exc})") from exc


def load_bundle(resources: list[tuple[str, dict]]) -> dict:
    """One transaction of conditional updates by canonical url and version."""
    entries = []
    for _, res in resources:
        body = {k: v for k, v in res.items() if k not in ("id", "meta", "text")}
        criteria = f"url={quote(res['url'], safe=':/')}"
        if res.get("version"):
            criteria += f"&version={quote(str(res['version']), safe='')}"
        entries.append(
            {"resource": body, "request": {"method": "PUT", "url": f"{res['resourceType']}?{criteria}"}}
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def install_body(raw: bytes, content_type: str | None) -> dict:
    """``POST ImplementationGuide/$install``: a .tgz body, or a Parameters with ``npmContent``."""
    import base64

    mt = (content_type or "").split(";", 1)[0].strip().lower()
    if mt in ("application/fhir+json", "application/json"):
        try:
            params = json.loads(raw)
            value = next(
                p["valueBase64Binary"]
                for p in params.get("parameter") or []
                if p.get("name") == "npmContent" and "valueBase64Binary" in p
            )
            data = base64.b64decode(value, validate=True)
        except (ValueError, StopIteration, TypeError, AttributeError) as exc:
            raise FhirError(
                400,
                "Send the package as the body (application/gzip) or as Parameters.npmContent",
                ["Parameters"],
            ) from exc
    elif mt in ("application/gzip", "application/x-gzip", "application/octet-stream", "application/x-tar"):
        data = raw
    else:
        raise FhirError(415, f"Send the package as application/gzip, not {mt or 'no Content-Type'}")
    return load_bundle(resources_from_package(data))


def bump_generation(redis: Redis) -> None:
    """Tell every process that conformance content changed: cached validation results are stale."""
    redis.incr(GENERATION_KEY)
