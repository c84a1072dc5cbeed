"""ctx.store: look-ups and a plugin's own writes, as the proxy or as a tenant."""

from __future__ import annotations

from proxy.store_caller import CALLER_KEY
from proxy.store_reader import StoreReader
from tests.support.fake_store import FakeStore


def test_the_proxys_own_look_ups_name_no_caller_so_they_act_as_admin():
    store = FakeStore()
    StoreReader(store).read("Task", "1")
    assert CALLER_KEY not in store.calls[0]["headers"]


def test_a_callers_view_acts_for_that_tenant():
    store = FakeStore()
    StoreReader(store).as_caller("dispenser", "FA565").read("Task", "1")
    assert store.calls[0]["headers"][CALLER_KEY] == "dispenser;FA565"


def test_a_transaction_goes_to_the_base_and_returns_the_stores_answer():
    store = FakeStore(status=200, body={"resourceType": "Bundle", "type": "transaction-response"})
    status, body = StoreReader(store).transaction({"resourceType": "Bundle", "type": "transaction"})
    assert (store.calls[0]["method"], store.calls[0]["path"]) == ("POST", "")
    assert status == 200 and body["type"] == "transaction-response"


def test_an_update_with_if_match_is_a_compare_and_set():
    store = FakeStore(status=412, body={"resourceType": "OperationOutcome", "issue": []})
    status, _ = StoreReader(store).update(
        {"resourceType": "Task", "id": "7", "status": "accepted"}, if_match="3"
    )
    call = store.calls[0]
    assert (call["method"], call["path"], call["headers"]["if-match"]) == ("PUT", "Task/7", 'W/"3"')
    assert status == 412


def test_a_search_takes_its_own_page_size_not_the_callers():
    store = FakeStore(body={"resourceType": "Bundle", "entry": []})
    StoreReader(store).search("Task", [("status", "requested"), ("_count", "5000")], count=25)
    assert store.calls[0]["query"] == [("status", "requested"), ("_count", "25")]
