"""make demo's pure parts (ops/demo.py): the spoke beside the make up stack, and the message."""

from __future__ import annotations

from pathlib import Path

from ops import demo
from ops import stack as stackmod


def test_the_spoke_runs_beside_the_hub_on_the_next_ports_in_its_own_redis_database(tmp_path, monkeypatch):
    monkeypatch.delenv("FHIRPLUG_DEMO_PORT", raising=False)
    monkeypatch.delenv("FHIRPLUG_DEMO_STORE_PORT", raising=False)
    hub = stackmod.StackConfig(var_dir=tmp_path, proxy_port=8080, store_port=8090, redis_port=6379)
    spoke = demo.spoke_config(hub)
    assert (spoke.proxy_port, spoke.store_port, spoke.metrics_port) == (8081, 8091, 9465)
    assert spoke.effective_redis_url == "redis://127.0.0.1:6379/1"
    assert spoke.var_dir == tmp_path / "demo" and spoke.proxy_env["FHIRPLUG_ODS"] == demo.SPOKE_ODS
    assert spoke.public_base() == "http://127.0.0.1:8081/fhir"


def test_the_message_names_this_hub_and_is_new_each_time():
    first, task_1 = demo.message("FLOCAL")
    second, task_2 = demo.message("FLOCAL")
    assert "FA565" not in str(first) and "FLOCAL" in str(first)
    assert task_1 != task_2 and first["identifier"]["value"] != second["identifier"]["value"]
    [task] = [e["resource"] for e in first["entry"] if e["resource"]["resourceType"] == "Task"]
    assert task["owner"]["identifier"]["value"] == "FLOCAL"
    assert task["identifier"] == [{"system": demo.RFC4122, "value": task_1}]
    assert Path(demo.EXAMPLE).exists()
