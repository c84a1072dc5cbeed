"""A Subscription is checked as the Backport IG shapes it; each refusal names the element."""

import copy

import pytest

from proxy.errors import FhirError
from subscriptions.resource import FILTER_CRITERIA, IG, PROFILE, Spec, parse, stored_form

TOPIC = "https://fhirplug.org/fhir/SubscriptionTopic/medication-request-active"
GOOD = {
    "resourceType": "Subscription",
    "status": "requested",
    "criteria": TOPIC,
    "_criteria": {
        "extension": [{"url": FILTER_CRITERIA, "valueString": "MedicationRequest?subject=Patient/1"}]
    },
    "channel": {
        "type": "rest-hook",
        "endpoint": "https://pharmacy.example/hook",
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": IG + "backport-payload-content", "valueCode": "full-resource"}]},
        "header": ["Authorization: Bearer abc"],
        "extension": [{"url": IG + "backport-heartbeat-period", "valueUnsignedInt": 60}],
    },
}


def no_partner(_endpoint):
    return None


def test_a_good_subscription_is_read_whole():
    spec = parse(copy.deepcopy(GOOD), "s1", "FA001", no_partner, "https://fhir.example/fhir")
    assert spec.topic == TOPIC and spec.content == "full-resource" and spec.heartbeat_s == 60
    assert spec.filters == ["MedicationRequest?subject=Patient/1"] and spec.status == "requested"
    assert spec.owner == "FA001" and spec.partner == "" and spec.base == "https://fhir.example/fhir"
    assert Spec.from_json(spec.to_json()) == spec


def test_a_partner_endpoint_needs_no_header_secret():
    body = copy.deepcopy(GOOD)
    body["channel"]["endpoint"] = "https://hub.example/fhir"
    del body["channel"]["header"]
    assert parse(body, "s1", "FA001", lambda e: "FH001").partner == "FH001"


def test_http_is_for_loopback_only():
    body = copy.deepcopy(GOOD)
    body["channel"]["endpoint"] = "http://127.0.0.1:9999/hook"
    assert parse(body, "s1", "", no_partner).endpoint == "http://127.0.0.1:9999/hook"


def _set(path, value):
    def change(body):
        holder = body
        for name in path[:-1]:
            holder = holder[name]
        if value is None:
            holder.pop(path[-1])
        else:
            holder[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (_set(["criteria"], "MedicationRequest?status=active"), "Subscription.criteria"),
        (_set(["channel", "type"], "email"), "Subscription.channel.type"),
        (_set(["channel", "endpoint"], "http://example.org/hook"), "Subscription.channel.endpoint"),
        (_set(["channel", "endpoint"], "https://user:pw@example.org/hook"), "Subscription.channel.endpoint"),
        (_set(["channel", "header"], None), "Subscription.channel.header"),
        (_set(["channel", "header"], ["Content-Type: text/plain"]), "Subscription.channel.header[0]"),
        (_set(["channel", "payload"], "application/xml"), "Subscription.channel.payload"),
        (
            _set(["_criteria"], {"extension": [{"url": FILTER_CRITERIA, "valueString": "Task?status=x"}]}),
            "Subscription.criteria.extension[0].value",
        ),
        (
            _set(
                ["channel", "_payload"],
                {"extension": [{"url": IG + "backport-payload-content", "valueCode": "all"}]},
            ),
            "Subscription.channel.payload.extension[0].value",
        ),
        (
            _set(
                ["channel", "extension"], [{"url": IG + "backport-heartbeat-period", "valueUnsignedInt": -1}]
            ),
            "Subscription.channel.extension[0].value",
        ),
    ],
)
def test_what_cannot_run_is_refused_naming_the_element(change, expression):
    body = copy.deepcopy(GOOD)
    change(body)
    with pytest.raises(FhirError) as err:
        parse(body, "s1", "FA001", no_partner)
    assert err.value.expression == [expression]
    assert err.value.status in (400, 422)


def test_the_stored_form_carries_our_status_labels_profile_and_a_filter():
    body = copy.deepcopy(GOOD)
    del body["_criteria"]
    body["meta"] = {"security": [{"system": "x", "code": "forged"}], "versionId": "9"}
    spec = parse(body, "s1", "FA001", no_partner)
    spec.status = "active"
    labels = [{"system": "https://fhirplug.org/fhir/CodeSystem/tenant", "code": "FA001"}]
    out = stored_form(body, spec, labels)
    assert out["id"] == "s1" and out["status"] == "active"
    assert out["meta"]["security"] == labels and PROFILE in out["meta"]["profile"]
    assert "versionId" not in out["meta"]
    assert out["_criteria"]["extension"] == [{"url": FILTER_CRITERIA, "valueString": "MedicationRequest?"}]


def test_filters_are_stored_as_the_searches_they_run():
    body = copy.deepcopy(GOOD)
    body["_criteria"]["extension"][0]["valueString"] = "subject=Patient/1"
    out = stored_form(body, parse(body, "s1", "FA001", no_partner), [])
    assert out["_criteria"]["extension"] == [
        {"url": FILTER_CRITERIA, "valueString": "MedicationRequest?subject=Patient/1"}
    ]
