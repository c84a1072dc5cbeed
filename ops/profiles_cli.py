"""``fhirplug profiles load PATH``: load conformance resources (a folder, or a FHIR package .tgz)
into the store in one transaction, idempotently by canonical url and version.

``make up`` runs it on ``profiles/`` before the proxy starts, so the first ``$validate`` already
sees the England profiles.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from redis import Redis
from redis.exceptions import RedisError

from proxy import conformance
from proxy.config import redis_url_from_env
from proxy.direct_store import DirectStore
from proxy.errors import FhirError


@dataclass
class LoadSummary:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    seconds: float = 0.0
    json_files: int = 0
    xml_files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, resourceType) not loaded

    def line(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged "
            f"in {self.seconds:.1f} s"
        )

    def files_line(self) -> str:
        """What was read: every file counted, in its syntax, and what was passed over and why."""
        loaded = len(self.created) + len(self.updated) + len(self.unchanged)
        out = f"{self.json_files} JSON and {self.xml_files} XML files read: {loaded} conformance resources"
        if self.skipped:
            kinds = sorted({t or "no resourceType" for _, t in self.skipped})
            out += (
                f", {len(self.skipped)} other files passed over ({', '.join(kinds)}: "
                f"only {', '.join(sorted(conformance.LOADABLE_TYPES))} are loaded)"
            )
        return out


class NothingToLoad(Exception):
    """A path that holds no conformance resource: loading it would do nothing, which is an error."""


def xml_reader(store_url: str):
    """FHIR XML read by the store's HAPI parser (``proxy.xml_convert``): bytes to a resource (dict)."""
    from proxy.response import loads
    from proxy.store_caller import CallerSigner
    from proxy.upstream import StoreClient
    from proxy.xml_convert import XmlConverter

    converter = XmlConverter(StoreClient(store_url, 10.0, 120.0, 1, signer=CallerSigner.from_env()))

    def read_xml(data: bytes) -> dict:
        return loads(converter.to_json(data, "application/fhir+xml"))

    return read_xml


def read(path: str | Path, on_file=None, store_url: str | None = None) -> conformance.FolderContent:
    """What ``path`` (a folder of JSON and XML files, or a package) holds to load; XML files are
    read by the store at ``store_url``."""
    p = Path(path)
    if p.is_dir():
        return conformance.read_folder(p, on_file, xml_reader(store_url) if store_url else None)
    if p.is_file():
        return conformance.FolderContent(resources=conformance.resources_from_package(p.read_bytes()))
    raise FileNotFoundError(f"{p}: no such folder or package")


def load(
    path: str | Path, store_url: str, redis_url: str | None = None, progress: bool = False
) -> LoadSummary:
    """Load every conformance resource under ``path`` into the store; raises FhirError on refusal
    (nothing is loaded then) and NothingToLoad when ``path`` holds none."""
    redis = Redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3) if redis_url else None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        p = Path(path)
        files = len(conformance.resource_files(p)) if p.is_dir() else 1
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()) as bar:
            checking = bar.add_task("checking files", total=files)
            content = read(path, lambda: bar.advance(checking), store_url)
            bar.update(checking, completed=files)
            _require_some(path, content)
            loading = bar.add_task(f"loading {len(content.resources)} resources (one transaction)", total=1)
            summary = _post(content.resources, store_url, redis)
            bar.advance(loading)
    else:
        content = read(path, None, store_url)
        _require_some(path, content)
        summary = _post(content.resources, store_url, redis)
    summary.json_files, summary.xml_files, summary.skipped = (
        content.json_files,
        content.xml_files,
        content.skipped,
    )
    if redis is not None:
        try:  # cached validations were made against the old content
            conformance.bump_generation(redis)
        except RedisError as exc:
            print(f"fhirplug: warning: could not clear cached validations ({exc})", file=sys.stderr)
    return summary


def _require_some(path: str | Path, content: conformance.FolderContent) -> None:
    if not content.resources:
        read_files = content.json_files + content.xml_files
        raise NothingToLoad(
            f"{path}: no conformance resource to load ({read_files} JSON or XML files read, "
            f"{len(content.skipped)} of other types)"
        )


def _post(resources: list[tuple[str, dict]], store_url: str, redis: Redis | None) -> LoadSummary:
    bundle = conformance.load_bundle(resources)
    # the proxies' read caches must not outlive the load (without Redis there are none to tell)
    with DirectStore(store_url, redis, marker_ttl_s=660) as store:
        before = _versions(bundle, store)
        t0 = time.monotonic()
        resp = store.write("POST", "", bundle, timeout=600)
    if resp.status_code != 200:
        try:
            why = "; ".join(i.get("diagnostics", "") for i in resp.json().get("issue", []))
        except ValueError:
            why = resp.text[:500]
        raise FhirError(resp.status_code, f"the store refused the load, nothing was loaded: {why}")
    summary = LoadSummary(seconds=time.monotonic() - t0)
    for (name, _), old, e in zip(resources, before, resp.json().get("entry", []), strict=True):
        r = e.get("response") or {}
        if str(r.get("status", "")).startswith("201"):
            summary.created.append(name)
        elif old is not None and _version_of(r.get("etag")) == old:
            summary.unchanged.append(name)  # the store saw no change and made no new version
        else:
            summary.updated.append(name)
    return summary


def _versions(load: dict, store: DirectStore) -> list[str | None]:
    """The current version of each resource the load names (None: not there yet), in one batch."""
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": e["request"]["url"]}} for e in load["entry"]],
    }
    resp = store.read_batch(batch, timeout=120)
    resp.raise_for_status()
    out = []
    for e in resp.json().get("entry", []):
        found = (e.get("resource") or {}).get("entry") or []
        out.append(found[0]["resource"].get("meta", {}).get("versionId") if len(found) == 1 else None)
    return out


def _version_of(etag: str | None) -> str | None:
    return etag.removeprefix("W/").strip('"') if etag else None


def add_parser(sub) -> None:
    p = sub.add_parser(
        "profiles", help="load conformance resources (a folder or a .tgz package) into the store"
    )
    p.add_argument(
        "action",
        choices=["load", "dedupe"],
        help="load: PATH into the store; dedupe: keep one copy (the newest) of each url and version",
    )
    p.add_argument(
        "path", nargs="?", help="load: a folder of JSON and XML resources, or a FHIR NPM package (.tgz)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="dedupe: report what would be deleted, delete nothing"
    )
    p.add_argument(
        "--store",
        default=os.environ.get("FHIRPLUG_STORE_URL", "http://127.0.0.1:8090/fhir"),
        help="the store's FHIR base (internal address; default FHIRPLUG_STORE_URL)",
    )


def run(args) -> int:
    if args.action == "dedupe":
        return _dedupe(args)
    if not args.path:
        print("fhirplug: profiles load needs a PATH", file=sys.stderr)
        return 2
    try:
        summary = load(args.path, args.store, redis_url_from_env(), sys.stderr.isatty())
    except FileNotFoundError as exc:
        print(f"fhirplug: {exc}", file=sys.stderr)
        return 2
    except NothingToLoad as exc:
        print(f"fhirplug: {exc}", file=sys.stderr)
        return 1
    except FhirError as exc:
        print(f"fhirplug: {exc.diagnostics}", file=sys.stderr)
        return 1
    except requests.RequestException as exc:
        print(f"fhirplug: the store did not answer: {exc}", file=sys.stderr)
        return 1
    print(f"{args.path}: {summary.files_line()}")
    print(f"{args.path}: {summary.line()}")
    for name in summary.created + summary.updated:
        print(f"  {'created' if name in summary.created else 'updated'}  {name}")
    return 0


def _dedupe(args) -> int:
    from ops.profiles_dedupe import dedupe, report

    try:
        found = dedupe(args.store, redis_url_from_env(), args.dry_run)
    except FhirError as exc:
        print(f"fhirplug: {exc.diagnostics}", file=sys.stderr)
        return 1
    except requests.RequestException as exc:
        print(f"fhirplug: the store did not answer: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report(found, args.dry_run)))
    return 0


def load_search_parameters(folder: str | Path, store_url: str, redis_url: str | None = None) -> list[str]:
    """The store's own SearchParameters in ``folder`` (the EPS prescription tracker's), each PUT
    under its id; the ids loaded. They change what the store indexes, so they come only from this
    repository, never from an uploaded package (which loads validation content only). HAPI indexes
    what is written after they load; data stored before needs ``$reindex``."""
    redis = Redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3) if redis_url else None
    loaded = []
    with DirectStore(store_url, redis) as store:
        for path in sorted(Path(folder).glob("SearchParameter-*.json")):
            resource = json.loads(path.read_text(encoding="utf-8"))
            r = store.put(f"SearchParameter/{resource['id']}", resource, timeout=60)
            if r.status_code >= 300:
                raise FhirError(503, f"{path.name}: the store refused it ({r.status_code}): {r.text[:300]}")
            loaded.append(resource["id"])
    return loaded
