"""Task workflow: a Task update is judged against the state machine before it is written."""

import pytest

from hubspoke.identifiers import ODS_SYSTEM
from plugins.task_workflow import TaskWorkflow
from proxy.context import Client, WriteEntry
from proxy.errors import FhirError
from tests.support.plugin_context import ScriptedStore, request_context, searchset

HUB = Client("hub-system", "FA565", "hub")
SPOKE = Client("spoke-system", "FS1A1", "spoke")
JSON_PATCH = "application/json-patch+json"


def stored(status: str = "requested") -> dict:
    return {
        "resourceType": "Task",
        "id": "1",
        "meta": {"versionId": "4"},
        "status": status,
        "intent": "order",
        "requester": {"identifier": {"system": ODS_SYSTEM, "value": "FS1A1"}},
        "owner": {"identifier": {"system": ODS_SYSTEM, "value": "FA565"}},
    }


def patch_status(status: str) -> WriteEntry:
    return WriteEntry(
        "PATCH", "Task/1", [{"op": "replace", "path": "/status", "value": status}], content_type=JSON_PATCH
    )


def judged(entry: WriteEntry, client: Client, current: dict | None = None):
    store = ScriptedStore({("GET", "Task/1"): current or stored()})
    ctx = request_context("patch", entry.method, "Task", "1", client=client, store=store)
    return TaskWorkflow().fhirplug_before_storage(ctx=ctx, entry=entry)


def test_an_allowed_status_move_passes():
    assert judged(patch_status("accepted"), HUB) is None


def test_a_judged_patch_is_written_as_an_update_of_the_version_it_was_judged_on():
    entry = patch_status("accepted")
    judged(entry, HUB)
    assert (entry.method, entry.url, entry.if_match) == ("PUT", "Task/1", 'W/"4"')
    assert entry.resource["status"] == "accepted"


def test_a_move_by_the_wrong_party_is_forbidden():
    with pytest.raises(FhirError) as raised:
        judged(patch_status("accepted"), SPOKE)
    assert raised.value.status == 403


def test_a_move_the_state_machine_does_not_have_is_a_conflict():
    with pytest.raises(FhirError) as raised:
        judged(patch_status("completed"), HUB)
    assert raised.value.status == 409


def test_a_task_in_a_final_status_does_not_move():
    with pytest.raises(FhirError) as raised:
        judged(patch_status("in-progress"), HUB, stored("completed"))
    assert raised.value.status == 409


def test_the_requester_may_cancel():
    assert judged(patch_status("cancelled"), SPOKE) is None


def test_an_unknown_status_is_unprocessable():
    with pytest.raises(FhirError) as raised:
        judged(patch_status("done"), HUB)
    assert raised.value.status == 422


def test_a_change_of_an_element_the_actor_may_not_touch_is_forbidden():
    entry = WriteEntry(
        "PATCH", "Task/1", [{"op": "replace", "path": "/intent", "value": "plan"}], content_type=JSON_PATCH
    )
    with pytest.raises(FhirError) as raised:
        judged(entry, HUB)
    assert raised.value.status == 403


def test_a_patch_may_not_change_meta():
    entry = WriteEntry(
        "PATCH",
        "Task/1",
        [{"op": "replace", "path": "/meta/versionId", "value": "9"}],
        content_type=JSON_PATCH,
    )
    with pytest.raises(FhirError) as raised:
        judged(entry, HUB)
    assert raised.value.status == 403


def test_a_client_that_is_neither_party_is_forbidden():
    with pytest.raises(FhirError) as raised:
        judged(patch_status("accepted"), Client("x", "OTHER", "hub"))
    assert raised.value.status == 403


def test_an_update_of_a_stored_task_is_judged_too():
    with pytest.raises(FhirError) as raised:
        judged(WriteEntry("PUT", "Task/1", stored("in-progress")), SPOKE, stored("accepted"))
    assert raised.value.status == 403


def test_a_patch_of_an_unknown_task_is_not_found():
    ctx = request_context("patch", "PATCH", "Task", "9", client=HUB)
    entry = WriteEntry("PATCH", "Task/9", [], content_type=JSON_PATCH)
    with pytest.raises(FhirError) as raised:
        TaskWorkflow().fhirplug_before_storage(ctx=ctx, entry=entry)
    assert raised.value.status == 404


def test_an_update_that_creates_a_task_is_not_judged():
    ctx = request_context("update", "PUT", "Task", "9", client=HUB)
    assert (
        TaskWorkflow().fhirplug_before_storage(ctx=ctx, entry=WriteEntry("PUT", "Task/9", stored())) is None
    )


def test_a_conditional_patch_that_matches_several_tasks_is_refused():
    store = ScriptedStore({("GET", "Task"): searchset(stored(), {**stored(), "id": "2"})})
    ctx = request_context("patch", "PATCH", "Task", client=HUB, store=store)
    entry = WriteEntry("PATCH", "Task?identifier=x", [], content_type=JSON_PATCH)
    with pytest.raises(FhirError) as raised:
        TaskWorkflow().fhirplug_before_storage(ctx=ctx, entry=entry)
    assert raised.value.status == 412


def test_a_tenants_conditional_patch_searches_its_own_tasks_only():
    store = ScriptedStore({("GET", "Task"): searchset(stored())})
    ctx = request_context("patch", "PATCH", "Task", client=HUB, store=store)
    TaskWorkflow().fhirplug_before_storage(
        ctx=ctx, entry=WriteEntry("PATCH", "Task?identifier=x", [], content_type=JSON_PATCH)
    )
    assert ("_security", "https://fhirplug.org/fhir/CodeSystem/tenant|FA565") in store.calls[0]["query"]


def test_writes_of_other_resources_pass_untouched():
    ctx = request_context("update", "PUT", "Patient", "1", client=HUB)
    entry = WriteEntry("PUT", "Patient/1", {"resourceType": "Patient", "id": "1"})
    assert TaskWorkflow().fhirplug_before_storage(ctx=ctx, entry=entry) is None
    assert entry.method == "PUT" and entry.if_match is None
