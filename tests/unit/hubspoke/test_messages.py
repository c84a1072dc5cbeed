"""What a hub-and-spoke message is: its digest, its Task entry and how its entries read."""

import base64
import json
from decimal import Decimal

from hubspoke.messages import digest, entry_type, is_task_patch, json_patch_of, task_entry


def test_the_digest_ignores_key_order_and_keeps_decimals_exact():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"v": Decimal("1.50")}) != digest({"v": Decimal("1.5")})
    assert len(digest({})) == 64


def test_task_entry_is_the_first_entry_carrying_a_task():
    task = {"resource": {"resourceType": "Task", "id": "t"}}
    bundle = {
        "entry": [{"resource": {"resourceType": "Patient"}}, task, {"resource": {"resourceType": "Task"}}]
    }
    assert task_entry(bundle) is task
    assert task_entry({"entry": [{"request": {"method": "PATCH", "url": "Task/1"}}]}) is None
    assert task_entry({}) is None


def test_a_patch_entry_has_no_resource_type_of_its_own():
    patch = {
        "resource": {"resourceType": "Parameters"},
        "request": {"method": "PATCH", "url": "Task?identifier=x"},
    }
    assert entry_type(patch) is None and is_task_patch(patch)
    assert entry_type({"resource": {"resourceType": "Task"}, "request": {"method": "POST"}}) == "Task"


def test_json_patch_of_reads_a_binary():
    ops = [{"op": "replace", "path": "/status", "value": "completed"}]
    data = base64.b64encode(json.dumps(ops).encode()).decode()
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data}
    assert json_patch_of({"resource": binary}) == ops
    assert json_patch_of({"resource": {**binary, "contentType": "text/plain"}}) is None
    assert json_patch_of({"resource": {**binary, "data": "!!"}}) is None
