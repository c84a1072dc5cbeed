"""Tenant scoping: labels on writes, refusals by role, narrowed searches, filtered answers."""

from urllib.parse import quote

import pytest

from hubspoke.identifiers import ODS_SYSTEM, READER_SYSTEM, TENANT_SYSTEM
from plugins.tenancy import Tenancy
from proxy.context import Client, WriteEntry
from proxy.errors import FhirError
from proxy.response import ProxyResponse
from tests.support.plugin_context import ScriptedStore, request_context

SPOKE = Client("spoke-system", "FS1A1", "spoke")
HUB_ODS = "FA565"


def org(ods: str) -> dict:
    return {"identifier": {"system": ODS_SYSTEM, "value": ods}}


def labelled(resource: dict, *tenants: str) -> dict:
    return {**resource, "meta": {"security": [{"system": TENANT_SYSTEM, "code": t} for t in tenants]}}


def labels(resource: dict) -> list[str]:
    return [s["code"] for s in resource["meta"]["security"] if s["system"] == TENANT_SYSTEM]


def test_a_tenants_write_is_labelled_with_its_ods():
    ctx = request_context("create", "POST", "Patient", client=SPOKE)
    entry = WriteEntry("POST", "Patient", {"resourceType": "Patient"})
    assert Tenancy(proxy_checks=True).fhirplug_before_storage(ctx=ctx, entry=entry) is None
    assert labels(entry.resource) == ["FS1A1"]


def test_a_task_is_labelled_with_its_requester_and_owner():
    ctx = request_context("create", "POST", "Task", client=SPOKE)
    task = {"resourceType": "Task", "requester": org("FS1A1"), "owner": org(HUB_ODS)}
    entry = WriteEntry("POST", "Task", task)
    Tenancy(proxy_checks=True).fhirplug_before_storage(ctx=ctx, entry=entry)
    assert labels(entry.resource) == [HUB_ODS, "FS1A1"]


def test_a_callers_own_tenant_labels_are_replaced():
    ctx = request_context("create", "POST", "Patient", client=SPOKE)
    entry = WriteEntry("POST", "Patient", labelled({"resourceType": "Patient"}, "OTHER"))
    Tenancy(proxy_checks=True).fhirplug_before_storage(ctx=ctx, entry=entry)
    assert labels(entry.resource) == ["FS1A1"]


def test_a_task_that_names_neither_party_as_the_caller_is_refused():
    ctx = request_context("create", "POST", "Task", client=SPOKE)
    task = {"resourceType": "Task", "requester": org("OTHER"), "owner": org(HUB_ODS)}
    with pytest.raises(FhirError) as raised:
        Tenancy(proxy_checks=True).fhirplug_before_storage(ctx=ctx, entry=WriteEntry("POST", "Task", task))
    assert raised.value.status == 403


def test_writing_shared_conformance_content_is_refused():
    ctx = request_context("create", "POST", "StructureDefinition", client=SPOKE)
    with pytest.raises(FhirError) as raised:
        Tenancy(proxy_checks=True).fhirplug_request(ctx=ctx)
    assert raised.value.status == 403


def test_a_reader_cannot_write():
    ctx = request_context("create", "POST", "Patient", client=Client("r", None, "reader"))
    with pytest.raises(FhirError) as raised:
        Tenancy(proxy_checks=True).fhirplug_request(ctx=ctx)
    assert raised.value.status == 403


def test_a_client_without_a_tenant_is_refused():
    ctx = request_context("read", "GET", "Patient", "1", client=Client("x", None, "spoke"))
    with pytest.raises(FhirError) as raised:
        Tenancy(proxy_checks=True).fhirplug_request(ctx=ctx)
    assert raised.value.status == 403


def test_a_tenants_search_is_narrowed_to_its_own_resources():
    ctx = request_context("search-type", "GET", "Task", client=SPOKE)
    assert Tenancy(proxy_checks=True).fhirplug_request(ctx=ctx) is None
    assert ctx.upstream_query == [("_security", f"{TENANT_SYSTEM}|FS1A1,{READER_SYSTEM}|FS1A1")]


def test_a_search_of_conformance_content_is_not_narrowed():
    ctx = request_context("search-type", "GET", "StructureDefinition", client=SPOKE)
    Tenancy(proxy_checks=True).fhirplug_request(ctx=ctx)
    assert ctx.upstream_query == []


def test_an_admins_search_is_not_narrowed():
    ctx = request_context("search-type", "GET", "Task", client=Client("a", None, "admin"))
    Tenancy(proxy_checks=True).fhirplug_request(ctx=ctx)
    assert ctx.upstream_query == []


def test_a_search_by_has_is_refused():
    ctx = request_context("search-type", "GET", "Patient", client=SPOKE, query=[("_has", "x")])
    with pytest.raises(FhirError):
        Tenancy(proxy_checks=True).fhirplug_request(ctx=ctx)


def test_another_tenants_resource_is_hidden_in_a_response_bundle():
    ctx = request_context("search-type", "GET", "Patient", client=SPOKE)
    mine = labelled({"resourceType": "Patient", "id": "1"}, "FS1A1")
    theirs = labelled({"resourceType": "Patient", "id": "2"}, "OTHER")
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": mine}, {"resource": theirs}],
    }
    response = ProxyResponse.from_resource(200, bundle)
    Tenancy(proxy_checks=True).fhirplug_response(ctx=ctx, response=response)
    assert [e["resource"]["id"] for e in response.resource["entry"]] == ["1"]


def test_a_read_of_another_tenants_resource_answers_not_found():
    ctx = request_context("read", "GET", "Patient", "2", client=SPOKE)
    response = ProxyResponse.from_resource(200, labelled({"resourceType": "Patient", "id": "2"}, "OTHER"))
    Tenancy(proxy_checks=True).fhirplug_response(ctx=ctx, response=response)
    assert response.status == 404
    assert response.resource["resourceType"] == "OperationOutcome"


def test_a_read_of_the_tenants_own_resource_is_untouched():
    ctx = request_context("read", "GET", "Patient", "1", client=SPOKE)
    mine = labelled({"resourceType": "Patient", "id": "1"}, "FS1A1")
    response = ProxyResponse.from_resource(200, mine)
    Tenancy(proxy_checks=True).fhirplug_response(ctx=ctx, response=response)
    assert response.status == 200 and response.resource == mine


def test_the_same_unlabelled_answer_from_the_store_is_hidden():
    ctx = request_context("read", "GET", "Parameters", "1", client=SPOKE)
    response = ProxyResponse.from_resource(200, {"resourceType": "Parameters", "id": "1"})
    Tenancy(proxy_checks=True).fhirplug_response(ctx=ctx, response=response)
    assert response.status == 404


def test_an_update_of_another_tenants_resource_is_refused():
    store = ScriptedStore({("GET", "Patient/2"): labelled({"resourceType": "Patient", "id": "2"}, "OTHER")})
    ctx = request_context("update", "PUT", "Patient", "2", client=SPOKE, store=store)
    entry = WriteEntry("PUT", "Patient/2", {"resourceType": "Patient", "id": "2"})
    with pytest.raises(FhirError) as raised:
        Tenancy(proxy_checks=True).judge_before_storage(ctx=ctx, entry=entry)
    assert raised.value.status == 405


def test_a_conditional_write_is_narrowed_to_the_callers_own():
    ctx = request_context("update", "PUT", "Patient", client=SPOKE)
    entry = WriteEntry("PUT", "Patient?identifier=x", {"resourceType": "Patient"})
    Tenancy(proxy_checks=True).judge_before_storage(ctx=ctx, entry=entry)
    assert entry.url == "Patient?identifier=x&_security=" + quote(f"{TENANT_SYSTEM}|FS1A1", safe="")


def test_a_bundles_resources_travel_with_its_task():
    task = {"resourceType": "Task", "requester": org("FS1A1"), "owner": org(HUB_ODS)}
    patient = {"resourceType": "Patient"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": task, "request": {"method": "POST", "url": "Task"}},
            {"resource": patient, "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    ctx = request_context("transaction", "POST", client=SPOKE, body=bundle)
    tenancy = Tenancy(proxy_checks=True)
    assert tenancy.fhirplug_before_bundle(ctx=ctx, bundle=bundle) is None
    entry = WriteEntry("POST", "Patient", patient, index=1)
    tenancy.fhirplug_before_storage(ctx=ctx, entry=entry)
    assert labels(patient) == [HUB_ODS, "FS1A1"]


def test_without_proxy_checks_a_search_is_left_to_the_store():
    ctx = request_context("search-type", "GET", "Task", client=SPOKE)
    Tenancy(proxy_checks=False).fhirplug_request(ctx=ctx)
    assert ctx.upstream_query == []


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("$prepare", {"resourceType": "Parameters", "parameter": [{"name": "digest", "valueString": "x"}]}),
        (
            "$process-message",
            {
                "resourceType": "Bundle",
                "type": "message",
                "entry": [{"resource": {"resourceType": "MessageHeader"}}],
            },
        ),
    ],
)
def test_answers_the_proxy_builds_from_the_callers_message_are_not_narrowed(operation, body):
    from dataclasses import replace

    ctx = request_context("operation", "POST", client=Client("gp", "A83008", "prescriber"))
    ctx.interaction = replace(ctx.interaction, operation=operation)
    response = ProxyResponse.from_resource(200, body)
    Tenancy().fhirplug_response(ctx=ctx, response=response)
    assert response.status == 200 and response.resource == body


def test_other_operations_answers_are_still_narrowed():
    from dataclasses import replace

    ctx = request_context("operation", "POST", "Task", client=Client("pharmacy", "FA565", "dispenser"))
    ctx.interaction = replace(ctx.interaction, operation="$release")
    someone_elses = labelled({"resourceType": "Task", "id": "1"}, "FH542")
    response = ProxyResponse.from_resource(
        200, {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": someone_elses}]}
    )
    Tenancy().fhirplug_response(ctx=ctx, response=response)
    assert response.resource["entry"] == []


# ---------------------------------------------------------------- care relationships (reader labels)


def readers(resource: dict) -> list[str]:
    return sorted(s["code"] for s in resource["meta"].get("security", []) if s["system"] == READER_SYSTEM)


def test_the_pharmacy_a_request_names_as_performer_gets_a_reader_label():
    ctx = request_context("create", "POST", "MedicationRequest", client=SPOKE)
    mr = {"resourceType": "MedicationRequest", "dispenseRequest": {"performer": org("FD001")}}
    entry = WriteEntry("POST", "MedicationRequest", mr)
    Tenancy(proxy_checks=True).fhirplug_before_storage(ctx=ctx, entry=entry)
    assert labels(entry.resource) == ["FS1A1"] and readers(entry.resource) == ["FD001"]


def test_reader_labels_a_caller_sends_are_replaced():
    ctx = request_context("create", "POST", "Patient", client=SPOKE)
    patient = {"resourceType": "Patient", "meta": {"security": [{"system": READER_SYSTEM, "code": "FX999"}]}}
    entry = WriteEntry("POST", "Patient", patient)
    Tenancy(proxy_checks=True).fhirplug_before_storage(ctx=ctx, entry=entry)
    assert readers(entry.resource) == []


def test_a_stored_patient_the_writer_owns_is_shared_in_the_same_transaction():
    stored = labelled({"resourceType": "Patient", "id": "9"}, "FS1A1")
    stored["meta"]["versionId"] = "2"
    ctx = request_context(
        "create",
        "POST",
        "MedicationRequest",
        client=SPOKE,
        store=ScriptedStore({("GET", "Patient/9"): stored}),
    )
    mr = {
        "resourceType": "MedicationRequest",
        "subject": {"reference": "Patient/9"},
        "dispenseRequest": {"performer": org("FD001")},
    }
    Tenancy(proxy_checks=True).fhirplug_before_storage(
        ctx=ctx, entry=WriteEntry("POST", "MedicationRequest", mr)
    )
    (put,) = ctx.companion_writes
    assert put["request"] == {"method": "PUT", "url": "Patient/9", "ifMatch": 'W/"2"'}
    assert readers(put["resource"]) == ["FD001"] and labels(put["resource"]) == ["FS1A1"]


def test_a_stored_patient_of_another_owner_is_not_shared():
    stored = labelled({"resourceType": "Patient", "id": "9"}, "OTHER")
    ctx = request_context(
        "create",
        "POST",
        "MedicationRequest",
        client=SPOKE,
        store=ScriptedStore({("GET", "Patient/9"): stored}),
    )
    mr = {
        "resourceType": "MedicationRequest",
        "subject": {"reference": "Patient/9"},
        "dispenseRequest": {"performer": org("FD001")},
    }
    Tenancy(proxy_checks=True).fhirplug_before_storage(
        ctx=ctx, entry=WriteEntry("POST", "MedicationRequest", mr)
    )
    assert ctx.companion_writes == []


def test_the_prescriber_of_the_authorising_request_reads_the_dispense():
    request = labelled({"resourceType": "MedicationRequest", "id": "5"}, "FP001")
    request["meta"]["security"].append({"system": READER_SYSTEM, "code": "FS1A1"})
    ctx = request_context(
        "create",
        "POST",
        "MedicationDispense",
        client=SPOKE,
        store=ScriptedStore({("GET", "MedicationRequest/5"): request}),
    )
    md = {
        "resourceType": "MedicationDispense",
        "authorizingPrescription": [{"reference": "MedicationRequest/5"}],
    }
    entry = WriteEntry("POST", "MedicationDispense", md)
    Tenancy(proxy_checks=True).fhirplug_before_storage(ctx=ctx, entry=entry)
    assert labels(entry.resource) == ["FS1A1"] and readers(entry.resource) == ["FP001"]
