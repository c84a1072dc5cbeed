"""A subscriber hears of a write when its topic fires, its filters hold and it may read the
resource (its tenant label or a care relationship's reader label)."""

from subscriptions.filters import parse
from subscriptions.matching import event_for, matches
from subscriptions.resource import Spec

TOPIC = "https://fhirplug.org/fhir/SubscriptionTopic/medication-request-active"
TENANT = "https://fhirplug.org/fhir/CodeSystem/tenant"
READER = "https://fhirplug.org/fhir/CodeSystem/reader"


def request(*labels, status="active"):
    return {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "meta": {"versionId": "1", "security": [{"system": s, "code": c} for s, c in labels]},
        "status": status,
        "subject": {"reference": "Patient/p1"},
    }


def spec(owner="FA001", content="id-only"):
    return Spec(id="s1", topic=TOPIC, endpoint="https://x.example/hook", owner=owner, content=content)


def test_the_owner_hears_of_its_own_resource():
    assert matches(spec(), [], request((TENANT, "FA001")), None)


def test_another_tenant_never_hears_of_it():
    assert not matches(spec("FB002"), [], request((TENANT, "FA001")), None)


def test_a_reader_by_care_relationship_hears_of_it():
    assert matches(spec("FD001"), [], request((TENANT, "FA001"), (READER, "FD001")), None)


def test_an_administrators_subscription_hears_of_everything():
    assert matches(spec(""), [], request((TENANT, "FA001")), None)


def test_filters_and_the_trigger_must_both_hold():
    mine = request((TENANT, "FA001"))
    assert not matches(spec(), [parse("subject=Patient/p2", "MedicationRequest")], mine, None)
    assert not matches(spec(), [], mine, {"status": "active"})  # already active: no new event
    assert not matches(spec(), [], request((TENANT, "FA001"), status="draft"), None)


def test_an_event_keeps_the_resource_only_for_full_resource():
    current = request((TENANT, "FA001"))
    assert "resource" not in event_for(spec(), current, True)
    full = event_for(spec(content="full-resource"), current, False)
    assert (
        full["resource"] == current and full["method"] == "PUT" and full["focus"] == "MedicationRequest/mr1"
    )
