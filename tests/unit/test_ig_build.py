"""The implementation guide package: what it holds, and that it builds the same bytes twice."""

import io
import json
import tarfile

from ops import ig_cli
from proxy import conformance


def test_the_package_holds_manifest_index_profiles_and_examples(tmp_path):
    target = ig_cli.build(tmp_path)
    with tarfile.open(target, "r:gz") as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("package/.index.json"))
    assert "package/package.json" in names
    assert "package/StructureDefinition-England-Bundle-PharmacySpokeToHub.json" in names
    assert "package/example/valid-spoke-to-hub.json" in names
    listed = {f"package/{f['filename']}" for f in index["files"]}
    assert listed <= names and len(listed) == 61


def test_the_package_passes_the_install_checks(tmp_path):
    target = ig_cli.build(tmp_path)
    loaded = conformance.resources_from_package(target.read_bytes())
    urls = {r["url"] for _, r in loaded}
    assert "https://fhir.nhs.uk/England/StructureDefinition/England-Bundle-PharmacyHubToSpoke" in urls
    # examples live below package/example/ and are not loaded as conformance content
    assert not any(name.startswith("package/example/") for name, _ in loaded)


def test_building_twice_gives_the_same_bytes(tmp_path):
    a = ig_cli.build(tmp_path / "a").read_bytes()
    b = ig_cli.build(tmp_path / "b").read_bytes()
    assert a == b
    with tarfile.open(fileobj=io.BytesIO(a), mode="r:gz") as tar:
        assert {m.mtime for m in tar.getmembers()} == {0}
