"""``python -m worker`` starts the MESH inbox loop beside the outbox sweep when the deployment has a
MESH role and mailbox, and not otherwise."""

from __future__ import annotations

import threading

import pytest

import worker.__main__ as entry


class FakeWorker:
    def __init__(self, *args, **kwargs):
        pass

    def work(self, **kwargs):
        return None


@pytest.fixture
def started(monkeypatch):
    calls: list[str] = []
    done = threading.Event()

    def record(name):
        def run(*args, **kwargs):
            calls.append(name)
            if name == "inbox":
                done.set()

        return run

    monkeypatch.setattr(entry, "InProcessWorker", FakeWorker)
    monkeypatch.setattr(entry, "Queue", lambda *a, **k: None)
    monkeypatch.setattr(entry.Redis, "from_url", classmethod(lambda cls, *a, **k: object()))
    monkeypatch.setattr(entry, "sweep_forever", record("sweep"))
    monkeypatch.setattr(entry.mesh_inbox, "poll_forever", record("inbox"))
    monkeypatch.setattr(entry, "repair_forever", record("repair"))
    monkeypatch.setattr(entry.notifications, "tick_forever", record("tick"))
    monkeypatch.setattr(entry, "configure_logging", lambda: None)
    monkeypatch.setattr(entry.delivery, "configure", lambda settings: None)
    monkeypatch.setenv("FHIRPLUG_STORE_URL", "http://store.invalid/fhir")
    monkeypatch.setenv("FHIRPLUG_STORE_SECRET", "s" * 40)
    for key in ("MAILBOX", "PASSWORD", "SHARED_KEY", "ROLE"):
        monkeypatch.delenv(f"FHIRPLUG_MESH_{key}", raising=False)
    return monkeypatch, calls, done


def test_a_gp_deployment_polls_its_inbox(started):
    env, calls, done = started
    env.setenv("FHIRPLUG_MESH_MAILBOX", "A83627OT001")
    env.setenv("FHIRPLUG_MESH_PASSWORD", "password")
    env.setenv("FHIRPLUG_MESH_SHARED_KEY", "TestKey")
    env.setenv("FHIRPLUG_MESH_ROLE", "gp")
    entry.main()
    assert done.wait(5)
    assert "inbox" in calls


def test_without_a_role_there_is_no_inbox_thread(started):
    env, _, _ = started
    names: list[str] = []
    real = threading.Thread

    def thread(*args, **kwargs):
        names.append(kwargs.get("name", ""))
        return real(*args, **kwargs)

    env.setattr(entry.threading, "Thread", thread)
    env.setenv("FHIRPLUG_MESH_MAILBOX", "FA565OT001")
    env.setenv("FHIRPLUG_MESH_PASSWORD", "password")
    env.setenv("FHIRPLUG_MESH_SHARED_KEY", "TestKey")
    entry.main()
    assert "mesh-inbox" not in names and "outbox-sweep" in names
    # a mailbox alone makes a sender: its repair sweep runs (FHIRPLUG_GP_NOTIFY on by default)
    assert "gp-notify-repair" in names


def test_the_worker_outlives_a_redis_outage_and_stops_when_told():
    from redis.exceptions import ConnectionError as RedisConnectionError

    runs: list[str] = []
    waits: list[float] = []

    class Flaky:
        def work(self, **kwargs):
            runs.append("run")
            if len(runs) <= 3:
                raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")
            return True  # stopped cleanly (SIGTERM)

    entry.work_through_outages(Flaky, sleep=waits.append, max_wait_s=3)
    assert runs == ["run"] * 4  # a new worker after each outage, until a clean stop
    assert waits == [1.0, 2.0, 3.0]


def test_anything_but_a_lost_redis_still_ends_the_worker():
    class Broken:
        def work(self, **kwargs):
            raise ValueError("a bug")

    with pytest.raises(ValueError):
        entry.work_through_outages(Broken, sleep=lambda s: None)
