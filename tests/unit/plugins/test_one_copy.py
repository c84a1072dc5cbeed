"""Writes of a conformance resource are sent so that the store keeps one copy per canonical."""

from plugins.one_copy import OneCopy
from proxy.context import WriteEntry
from tests.support.plugin_context import ScriptedStore, request_context, searchset

SD = "StructureDefinition"
URL = "https://example.org/StructureDefinition/p"


def profile(version: str | None = "1.0.0", id_: str | None = None) -> dict:
    r: dict = {"resourceType": SD, "url": URL, "status": "draft"}
    if version:
        r["version"] = version
    if id_:
        r["id"] = id_
    return r


def judge(entry: WriteEntry, store: ScriptedStore | None = None) -> WriteEntry:
    ctx = request_context("create", entry.method, SD, store=store)
    assert OneCopy().fhirplug_before_storage(ctx=ctx, entry=entry) is None
    return entry


def test_a_post_becomes_a_conditional_update_by_url_and_version_without_the_id():
    entry = judge(WriteEntry("POST", SD, profile(id_="mine")))
    assert (entry.method, entry.url) == ("PUT", f"{SD}?url={URL}&version=1.0.0")
    assert "id" not in entry.resource


def test_a_put_to_another_id_updates_the_stored_copy():
    store = ScriptedStore({("GET", SD): searchset(profile(id_="a"))})
    entry = judge(WriteEntry("PUT", f"{SD}/b", profile(id_="b")), store)
    assert (entry.method, entry.url, entry.resource["id"]) == ("PUT", f"{SD}/a", "a")


def test_a_transaction_entry_is_sent_the_same_way():
    entry = judge(WriteEntry("POST", SD, profile(), index=3))
    assert (entry.method, entry.url, entry.index) == ("PUT", f"{SD}?url={URL}&version=1.0.0", 3)


def test_an_unversioned_post_updates_the_unversioned_copy_only():
    store = ScriptedStore({("GET", SD): searchset(profile("2.0", "v2"), profile(None, "plain"))})
    entry = judge(WriteEntry("POST", SD, profile(None)), store)
    assert (entry.method, entry.url, entry.resource["id"]) == ("PUT", f"{SD}/plain", "plain")


def test_other_resources_and_callers_conditional_creates_go_as_sent():
    patient = judge(WriteEntry("POST", "Patient", {"resourceType": "Patient", "url": URL}))
    assert (patient.method, patient.url) == ("POST", "Patient")
    chosen = judge(WriteEntry("POST", SD, profile(), if_none_exist=f"url={URL}"))
    assert (chosen.method, chosen.url) == ("POST", SD)
