"""The repair sweep reads as the pharmacy would: another tenant's resources are not there."""

from __future__ import annotations

from hubspoke.identifiers import TENANT_SYSTEM
from worker.gp_repair import _AsTenant, tenants_of


class Response:
    def __init__(self, status_code: int, body: dict):
        self.status_code, self._body = status_code, body

    def json(self) -> dict:
        return self._body


class Store:
    def __init__(self, resources: dict[str, dict]):
        self.resources = resources

    def get(self, path, params=None, timeout=10.0):
        if "/" in path:
            found = self.resources.get(path)
            return Response(200, found) if found else Response(404, {})
        hits = [r for k, r in self.resources.items() if k.startswith(path + "/")]
        return Response(200, {"entry": [{"resource": r} for r in hits]})


def labelled(rtype: str, rid: str, *ods: str) -> dict:
    return {
        "resourceType": rtype,
        "id": rid,
        "meta": {"security": [{"system": TENANT_SYSTEM, "code": o} for o in ods]},
    }


def test_only_the_pharmacy_s_own_and_unlabelled_resources_are_read():
    store = Store(
        {
            "Patient/mine": labelled("Patient", "mine", "FA565"),
            "Patient/theirs": labelled("Patient", "theirs", "FX999"),
            "Patient/shared": {"resourceType": "Patient", "id": "shared"},
        }
    )
    reader = _AsTenant(store, "FA565")  # type: ignore[arg-type]
    assert reader.read("Patient", "mine") is not None
    assert reader.read("Patient", "theirs") is None
    assert reader.read("Patient", "shared") is not None
    assert sorted(r["id"] for r in reader.search("Patient", [])) == ["mine", "shared"]


def test_the_tenant_of_a_write_is_its_one_label():
    assert tenants_of(labelled("Immunization", "1", "FA565")) == {"FA565"}
    assert tenants_of(labelled("MedicationDispense", "1", "FA565", "VNE51")) == {"FA565", "VNE51"}
    assert tenants_of({"resourceType": "Immunization", "id": "1"}) == set()
