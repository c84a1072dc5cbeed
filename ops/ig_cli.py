"""``fhirplug ig build``: the implementation guide as a FHIR NPM package (.tgz).

The package holds ig/package.json, every conformance resource in profiles/ (the England Bundle
profiles and the UK Core resources they use, so it installs on its own) with the package's
``.index.json``, and the examples under ``package/example/``. The archive is built the same way
each time (sorted names, fixed times and owners), so the same sources give the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile
from pathlib import Path

from proxy import conformance
from proxy.errors import FhirError

ROOT = Path(__file__).resolve().parent.parent
IG = ROOT / "ig"


def build(out_dir: Path | None = None) -> Path:
    manifest = json.loads((IG / "package.json").read_text())
    resources = conformance.resources_from_folder(ROOT / "profiles")
    files: dict[str, bytes] = {"package/package.json": (IG / "package.json").read_bytes()}
    index = []
    for name, res in resources:
        filename = Path(name).name
        files[f"package/{filename}"] = json.dumps(res, indent=2, ensure_ascii=False).encode() + b"\n"
        index.append(
            {
                "filename": filename,
                "resourceType": res["resourceType"],
                "id": res.get("id"),
                "url": res.get("url"),
                "version": res.get("version"),
                **{k: res[k] for k in ("kind", "type") if k in res},
            }
        )
    files["package/.index.json"] = json.dumps({"index-version": 1, "files": index}, indent=2).encode()
    for example in sorted((IG / "examples").glob("*.json")):
        files[f"package/example/{example.name}"] = example.read_bytes()
    out = out_dir or IG / "dist"
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{manifest['name']}-{manifest['version']}.tgz"
    target.write_bytes(_tgz(files))
    return target


def _tgz(files: dict[str, bytes]) -> bytes:
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(tar_bytes.getvalue(), mtime=0)


def add_parser(sub) -> None:
    p = sub.add_parser("ig", help="build the implementation guide package")
    p.add_argument("action", choices=["build"])
    p.add_argument("--out", help="folder for the .tgz (default ig/dist)")


def run(args) -> int:
    try:
        target = build(Path(args.out) if args.out else None)
    except FhirError as exc:
        print(f"fhirplug: {exc.diagnostics}", file=sys.stderr)
        return 1
    print(f"wrote {target}")
    return 0
