"""The store's request is serialised from the plan's entries as the storage hooks left them."""

from __future__ import annotations

import json

from proxy.context import WriteEntry
from proxy.write_plan import WritePlan, outgoing


def bundle_plan(*urls: str) -> WritePlan:
    body = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": u}} for u in urls
        ]
        + [{"request": {"method": "GET", "url": "Patient?name=x"}}],
    }
    entries = [WriteEntry("PUT", u, body["entry"][i]["resource"], index=i) for i, u in enumerate(urls)]
    return WritePlan("transaction", json.dumps(body).encode(), True, "application/fhir+json", body, entries)


def test_an_untouched_plan_sends_the_callers_request():
    plan = WritePlan("create", b"{}", True, "application/fhir+json", {"resourceType": "Patient"})
    out = outgoing(plan, "POST", "Patient", [("_pretty", "true")])
    assert (out.method, out.path, out.query) == ("POST", "Patient", [("_pretty", "true")])
    assert json.loads(out.data) == {"resourceType": "Patient"}


def test_judged_is_what_the_entries_were_when_planned():
    plan = bundle_plan("Patient/1")
    plan.entries[0].url = "Patient/2"
    assert plan.judged == [("PUT", "Patient/1")]


def test_a_narrowed_bundle_entry_is_sent_without_changing_the_callers_body():
    plan = bundle_plan("Patient/1", "Patient?identifier=x|1")
    plan.entries[1].url = "Patient?identifier=x|1&_security=t|A1"
    plan.entries[1].if_none_exist = "identifier=x|1"
    sent = json.loads(outgoing(plan, "POST", "", []).data)
    assert sent["entry"][1]["request"] == {
        "method": "PUT",
        "url": "Patient?identifier=x|1&_security=t|A1",
        "ifNoneExist": "identifier=x|1",
    }
    assert sent["entry"][0] == plan.body["entry"][0]
    assert sent["entry"][2] == {"request": {"method": "GET", "url": "Patient?name=x"}}  # not a write
    assert plan.body["entry"][1]["request"]["url"] == "Patient?identifier=x|1"


def test_a_bundle_entry_turned_into_a_put_carries_its_new_resource():
    plan = bundle_plan("Task/1")
    plan.body["entry"][0]["request"]["method"] = plan.entries[0].method = "PATCH"
    plan.judged = [("PATCH", "Task/1")]
    plan.entries[0].method, plan.entries[0].resource = "PUT", {"resourceType": "Task", "id": "1"}
    sent = json.loads(outgoing(plan, "POST", "", []).data)
    assert sent["entry"][0]["resource"] == {"resourceType": "Task", "id": "1"}
    assert sent["entry"][0]["request"]["method"] == "PUT"


def test_a_package_upload_is_sent_as_a_transaction_to_the_base():
    plan = bundle_plan("StructureDefinition/x")
    plan.install = True
    out = outgoing(plan, "POST", "ImplementationGuide/$install", [("x", "1")])
    assert (out.method, out.path, out.query) == ("POST", "", [])


def test_a_narrowed_conditional_write_moves_its_criteria_to_the_query():
    entry = WriteEntry("DELETE", "Patient?identifier=x|1", None)
    plan = WritePlan("delete", b"", False, "", None, [entry])
    entry.url = "Patient?identifier=x|1&_security=t|A1"
    out = outgoing(plan, "DELETE", "Patient", [("identifier", "x|1")])
    assert (out.path, out.query, out.data) == (
        "Patient",
        [("identifier", "x|1"), ("_security", "t|A1")],
        None,
    )


def test_a_body_that_is_not_json_is_sent_as_it_came():
    plan = WritePlan("search-type", b"name=x", True, "application/x-www-form-urlencoded")
    assert outgoing(plan, "POST", "Patient/_search", []).data == b"name=x"
