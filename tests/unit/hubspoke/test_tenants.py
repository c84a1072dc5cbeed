"""Tenant labels, visibility, narrowing and the ODS code of a reference."""

import pytest

from hubspoke.identifiers import ODS_SYSTEM, TENANT_SYSTEM
from hubspoke.tenants import (
    label,
    narrow_url,
    narrowing,
    ods_of_organization,
    ods_of_reference,
    refuse_meta_patch,
    task_tenants,
    tenants_of,
    visible_to,
)
from proxy.context import WriteEntry
from proxy.errors import FhirError


class Orgs:
    """A store that holds Organizations by id."""

    def __init__(self, **ods_by_id):
        self.orgs = {
            i: {"resourceType": "Organization", "identifier": [{"system": ODS_SYSTEM, "value": o}]}
            for i, o in ods_by_id.items()
        }
        self.reads = []

    def read(self, resource_type, resource_id):
        self.reads.append((resource_type, resource_id))
        return self.orgs.get(resource_id)


def labelled(*ods, other=()):
    security = [{"system": "https://x/other", "code": c} for c in other]
    security += [{"system": TENANT_SYSTEM, "code": o} for o in ods]
    return {"resourceType": "Task", "meta": {"security": security}}


def test_tenants_of_reads_only_tenant_labels():
    assert tenants_of(labelled("A1", "B2", other=["X"])) == {"A1", "B2"}
    assert tenants_of({"resourceType": "Task"}) == set()


def test_visible_to_its_tenants_and_everyone_for_conformance_and_outcomes():
    assert visible_to(labelled("A1"), "A1")
    assert not visible_to(labelled("A1"), "B2")
    assert visible_to({"resourceType": "StructureDefinition"}, "B2")
    assert visible_to({"resourceType": "OperationOutcome"}, "B2")


def test_label_replaces_the_callers_tenant_labels_and_keeps_others():
    resource = labelled("EVIL", other=["X"])
    label(resource, {"B2", "A1"})
    assert resource["meta"]["security"] == [
        {"system": "https://x/other", "code": "X"},
        {"system": TENANT_SYSTEM, "code": "A1"},
        {"system": TENANT_SYSTEM, "code": "B2"},
    ]


def test_narrowing_and_narrow_url():
    assert narrowing("A1") == ("_security", f"{TENANT_SYSTEM}|A1")
    assert (
        narrow_url("Task", "A1")
        == "Task?_security=https%3A%2F%2Ffhirplug.org%2Ffhir%2FCodeSystem%2Ftenant%7CA1"
    )
    assert narrow_url("Task?status=requested", "A1").startswith("Task?status=requested&_security=")


def test_ods_of_organization():
    assert ods_of_organization(Orgs(o1="A1").orgs["o1"]) == "A1"
    assert ods_of_organization({"identifier": [{"system": "https://x", "value": "A1"}]}) is None
    assert ods_of_organization(None) is None


def test_ods_of_reference_by_identifier_bundle_fullurl_and_store():
    store = Orgs(o1="C3")
    by_identifier = {"identifier": {"system": ODS_SYSTEM, "value": "A1"}}
    assert ods_of_reference(by_identifier, None, store) == "A1"
    bundle = {"entry": [{"fullUrl": "urn:uuid:1", "resource": Orgs(x="B2").orgs["x"]}]}
    assert ods_of_reference({"reference": "urn:uuid:1"}, bundle, store) == "B2"
    assert ods_of_reference({"reference": "Organization/o1"}, None, store) == "C3"
    assert ods_of_reference({"reference": "https://h/fhir/Organization/o1/_history/2"}, None, store) == "C3"
    assert store.reads == [("Organization", "o1"), ("Organization", "o1")]
    assert ods_of_reference({"reference": "Patient/p1"}, None, store) is None
    assert ods_of_reference({"reference": "Organization/o1"}, None, None) is None
    assert ods_of_reference("Organization/o1", None, store) is None


def test_task_tenants_are_its_requester_and_owner():
    task = {
        "requester": {"identifier": {"system": ODS_SYSTEM, "value": "A1"}},
        "owner": {"reference": "Organization/o1"},
    }
    assert task_tenants(task, None, Orgs(o1="B2")) == {"A1", "B2"}
    assert task_tenants({"owner": {"reference": "Organization/none"}}, None, Orgs()) == set()


@pytest.mark.parametrize(
    "patch",
    [
        [{"op": "add", "path": "/meta/security/-", "value": {}}],
        [{"op": "copy", "from": "/meta", "path": "/note"}],
        {
            "parameter": [
                {"name": "operation", "part": [{"name": "path", "valueString": "Task.meta.security"}]}
            ]
        },
        {"parameter": [{"name": "operation", "part": [{"name": "name", "valueString": "meta"}]}]},
    ],
)
def test_a_patch_may_not_touch_meta(patch):
    with pytest.raises(FhirError) as caught:
        refuse_meta_patch(WriteEntry("PATCH", "Task/1", patch))
    assert caught.value.status == 403


@pytest.mark.parametrize(
    "patch",
    [
        [{"op": "replace", "path": "/status", "value": "accepted"}],
        {"parameter": [{"name": "operation", "part": [{"name": "path", "valueString": "Task.metadata"}]}]},
    ],
)
def test_a_patch_of_other_elements_passes(patch):
    assert refuse_meta_patch(WriteEntry("PATCH", "Task/1", patch)) is None


def test_a_tenant_label_without_a_code_names_nobody():
    from hubspoke.identifiers import TENANT_SYSTEM
    from hubspoke.tenants import tenants_of

    res = {"meta": {"security": [{"system": TENANT_SYSTEM}, {"system": TENANT_SYSTEM, "code": "FA1"}]}}
    assert tenants_of(res) == {"FA1"}
