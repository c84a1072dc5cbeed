"""Forwarding that loses nothing and duplicates nothing, with real Redis, real RQ workers and a
real receiving deployment over loopback: partner outages, a worker killed mid-delivery, Redis
restarted, the store down, a partner that refuses; each asserting counts."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from forwarding.delivery import Delivery, DeliveryKind
from forwarding.queue import LAST_FOR_TASK
from ops import stack as stackmod
from proxy.direct_store import DirectStore
from proxy.partners import PartnerDirectory
from proxy.read_cache import GENERATION
from tests.support.messages import FHIR_JSON, Case, move
from tests.support.polling import eventually, task_at

pytestmark = pytest.mark.integration
QUEUE = "fhirplug-forward"
FHIRPLUG = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "fhirplug")


def statuses_in_history(deployment, session, task_id) -> list[str]:
    """The Task's statuses, oldest version first: what arrived, in which order, how often."""
    history = session.get(f"{deployment.fhir}/Task/{task_id}/_history", params={"_count": "100"}).json()
    versions = sorted(history.get("entry", []), key=lambda e: int(e["resource"]["meta"]["versionId"]))
    return [e["resource"]["status"] for e in versions]


def submitted(pair) -> tuple[Case, dict, dict]:
    """A message from the spoke that has reached the hub: (case, the hub's Task, the spoke's Task)."""
    case = Case()
    case.submit(pair.spoke.fhir, pair.spoke_system)
    at_hub = eventually(lambda: task_at(pair.hub, pair.hub_system, case))
    assert at_hub is not None, "the message never reached the hub"
    return case, at_hub, task_at(pair.spoke, pair.spoke_system, case)


def jobs_in(redis) -> str:
    """Every delivery job Redis knows, for a failure message."""
    out = []
    for key in redis.scan_iter("rq:job:*"):
        job_id = key.decode().split(":", 2)[2]
        if ":" in job_id:
            continue
        try:
            job = Job.fetch(job_id, connection=redis)
        except Exception as exc:
            out.append(f"{job_id}: {exc}")
            continue
        out.append(f"{job_id} {job.get_status()} left={job.retries_left} {job.description} {job.meta}")
    return "\n".join(out)


def signal_group(cfg, name: str, sig) -> None:
    pid = int((cfg.var_dir / "run" / f"{name}.pid").read_text())
    os.killpg(pid, sig)


def test_partner_down_then_back_gets_every_change_once_in_order(linked):
    pair = linked
    case, at_hub, at_spoke = submitted(pair)
    stackmod.stop(pair.spoke.cfg, "proxy")  # the spoke is away
    try:
        for status in ("accepted", "in-progress", "on-hold", "in-progress"):
            assert move(pair.hub.fhir, pair.hub_system, at_hub["id"], status).status_code == 200
        time.sleep(3)  # deliveries fail and wait for their retries
    finally:
        stackmod.start_proxy(pair.spoke.cfg)
    arrived = eventually(
        lambda: (
            statuses_in_history(pair.spoke, pair.spoke_system, at_spoke["id"])[-1:] == ["in-progress"]
            and len(statuses_in_history(pair.spoke, pair.spoke_system, at_spoke["id"])) == 5
        )
    )
    history = statuses_in_history(pair.spoke, pair.spoke_system, at_spoke["id"])
    assert arrived, history
    assert history == ["requested", "accepted", "in-progress", "on-hold", "in-progress"]


def test_a_worker_killed_mid_delivery_delivers_once(linked, stack):
    pair = linked
    case, at_hub, at_spoke = submitted(pair)
    redis = Redis.from_url(pair.hub.redis_url)
    started = StartedJobRegistry(QUEUE, connection=redis)
    signal_group(pair.spoke.cfg, "proxy", signal.SIGSTOP)  # the spoke accepts connections, answers nothing
    try:
        assert move(pair.hub.fhir, pair.hub_system, at_hub["id"], "accepted").status_code == 200
        assert eventually(lambda: started.count > 0, timeout=30), "the delivery never started"
        signal_group(stack.cfg, "worker", signal.SIGKILL)  # mid-delivery
        stackmod.stop(stack.cfg, "worker")  # reap it and drop its pid file
    finally:
        signal_group(pair.spoke.cfg, "proxy", signal.SIGCONT)
    stackmod.start_worker(stack.cfg)
    # the abandoned job is retried once its heartbeat lapses (about a minute)
    assert eventually(
        lambda: task_at(pair.spoke, pair.spoke_system, case)["status"] == "accepted", timeout=150
    )
    time.sleep(5)  # let any second copy arrive, if one were to
    assert statuses_in_history(pair.spoke, pair.spoke_system, at_spoke["id"]) == ["requested", "accepted"]


def test_redis_restarted_mid_stream_loses_nothing_and_the_sweep_requeues_what_it_lost(linked, stack):
    pair = linked
    case, at_hub, at_spoke = submitted(pair)
    stackmod.stop(pair.spoke.cfg, "proxy")
    try:
        assert move(pair.hub.fhir, pair.hub_system, at_hub["id"], "accepted").status_code == 200
        assert move(pair.hub.fhir, pair.hub_system, at_hub["id"], "in-progress").status_code == 200
        redis = Redis.from_url(pair.hub.redis_url)
        queue = Queue(QUEUE, connection=redis)

        def waiting() -> list[str]:
            """Deliveries at rest in Redis: queued, waiting for a retry, or behind an earlier one."""
            ids = queue.scheduled_job_registry.get_job_ids() + queue.get_job_ids()
            return ids + queue.deferred_job_registry.get_job_ids()

        # the first delivery may be mid-attempt (in the started registry) for a moment: wait until
        # both are at rest, so the restart below catches them in Redis rather than in a worker
        assert eventually(lambda: len(waiting()) >= 2, timeout=30), jobs_in(redis)
        # Redis restarts (its append-only file keeps what it had)...
        stackmod.stop(stack.cfg, "worker")
        stackmod.stop(pair.spoke.cfg, "worker")
        stackmod.stop(stack.cfg, "redis")
        stackmod.start_redis(stack.cfg)
        # ...and, worse, the later delivery is lost from it entirely: only the outbox still knows it
        lost = queue.deferred_job_registry.get_job_ids()
        assert len(lost) == 1, "the second change should wait behind the first"
        Job.fetch(lost[0], connection=Redis.from_url(pair.hub.redis_url)).delete()
        stackmod.start_worker(stack.cfg)
        stackmod.start_worker(pair.spoke.cfg)
    finally:
        stackmod.start_proxy(pair.spoke.cfg)
    assert eventually(
        lambda: task_at(pair.spoke, pair.spoke_system, case)["status"] == "in-progress", timeout=120
    )
    time.sleep(5)
    assert statuses_in_history(pair.spoke, pair.spoke_system, at_spoke["id"]) == [
        "requested",
        "accepted",
        "in-progress",
    ]


def test_the_store_down_when_a_spoke_submits_answers_503_and_leaves_nothing(linked):
    pair = linked
    case = Case()
    queue = Queue(QUEUE, connection=Redis.from_url(pair.spoke.redis_url))
    before = queue.count + len(queue.scheduled_job_registry)
    stackmod.stop(pair.spoke.cfg, "store")
    try:
        t0 = time.monotonic()
        r = pair.spoke_system.post(
            pair.spoke.fhir, json=case.load("valid-spoke-to-hub.json"), headers=FHIR_JSON
        )
        assert r.status_code == 503 and r.headers.get("Retry-After")
        assert time.monotonic() - t0 < 35
        assert queue.count + len(queue.scheduled_job_registry) == before  # nothing queued for the hub
    finally:
        stackmod.start_store(pair.spoke.cfg)
    assert pair.spoke_system.get(f"{pair.spoke.fhir}/Task", params=case.task_query).json()["total"] == 0
    time.sleep(3)
    assert pair.hub_system.get(f"{pair.hub.fhir}/Task", params=case.task_query).json()["total"] == 0
    # the same message sent again once the store is back is taken, and reaches the hub once
    case.submit(pair.spoke.fhir, pair.spoke_system)
    assert eventually(lambda: task_at(pair.hub, pair.hub_system, case))
    assert pair.hub_system.get(f"{pair.hub.fhir}/Task", params=case.task_query).json()["total"] == 1


def test_a_partner_answering_400_is_dead_lettered_once_and_replay_delivers_after_the_fix(linked):
    pair = linked
    spoke_redis = Redis.from_url(pair.spoke.redis_url)
    directory = PartnerDirectory(spoke_redis)
    good = directory.get("FA565")
    broken = good.__class__(
        **{**good.__dict__, "base_url": good.base_url + "/Task"}
    )  # posts a Bundle to /Task
    directory.put(broken)
    case = Case()
    try:
        case.submit(pair.spoke.fhir, pair.spoke_system)
        dead = FailedJobRegistry(QUEUE, connection=spoke_redis)
        found = eventually(
            lambda: [j for j in dead.get_job_ids() if case.message in str(Job.fetch(j, spoke_redis).args)]
        )
        assert len(found) == 1, jobs_in(spoke_redis)
        job = Job.fetch(found[0], connection=spoke_redis)
        assert job.meta["dead_letter_reason"].startswith("400")
        assert "Bundle" in job.meta["dead_letter_reason"]
        time.sleep(3)
        assert (
            len([j for j in dead.get_job_ids() if case.message in str(Job.fetch(j, spoke_redis).args)]) == 1
        )
        assert pair.hub_system.get(f"{pair.hub.fhir}/Task", params=case.task_query).json()["total"] == 0
    finally:
        directory.put(good)  # the partner is fixed
    env = {**os.environ, "REDIS_URL": pair.spoke.redis_url}
    replay = subprocess.run([FHIRPLUG, "queue", "replay", found[0]], env=env, capture_output=True, text=True)
    assert replay.returncode == 0, replay.stderr
    assert eventually(lambda: task_at(pair.hub, pair.hub_system, case))
    assert pair.hub_system.get(f"{pair.hub.fhir}/Task", params=case.task_query).json()["total"] == 1


def test_metrics_count_deliveries_per_partner_for_administrators(linked, stack, http, anon):
    pair = linked
    submitted(pair)  # at least one delivery from the spoke to the hub, one from each side's flow
    r = http.get(f"{stack.proxy}/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE fhirplug_deliveries_delivered_total counter" in r.text
    assert "fhirplug_delivery_latency_seconds_bucket" in r.text
    spoke_side = pair.spoke_system.get(pair.spoke.fhir.removesuffix("/fhir") + "/metrics")
    assert spoke_side.status_code == 403  # a spoke system's token is not an operator's
    assert anon.get(f"{stack.proxy}/metrics").status_code == 401


def delivered_records(http, fhir: str, task_identifier: str) -> int:
    """The "delivered" hand-off AuditEvents about a Task, searched through the proxy (cacheable)."""
    query = {"subtype": "delivered", "entity-name": task_identifier}
    r = http.get(f"{fhir}/AuditEvent", params=query)
    assert r.status_code == 200, r.text
    return r.json()["total"]


def test_a_cached_audit_event_search_sees_the_delivery_record_once_the_delivery_is_done(linked, http):
    pair = linked
    case, at_hub, at_spoke = submitted(pair)
    redis = Redis.from_url(pair.hub.redis_url)
    stackmod.stop(pair.spoke.cfg, "proxy")  # the hub's delivery waits for its retries meanwhile
    try:
        assert move(pair.hub.fhir, pair.hub_system, at_hub["id"], "accepted").status_code == 200
        queued = eventually(lambda: redis.get(LAST_FOR_TASK + case.task_query["identifier"]), timeout=30)
        assert queued, jobs_in(redis)
        # the administrator's search, asked twice with no write between: kept in the read cache
        assert delivered_records(http, pair.hub.fhir, case.task_identifier) == 0
        assert delivered_records(http, pair.hub.fhir, case.task_identifier) == 0
    finally:
        stackmod.start_proxy(pair.spoke.cfg)
    job = Job.fetch(queued.decode(), connection=redis)
    assert eventually(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=150), jobs_in(redis)
    assert delivered_records(http, pair.hub.fhir, case.task_identifier) == 1  # at once, not after the TTL


def test_the_workers_audit_event_is_fenced_so_a_cached_search_sees_it_at_once(stack, http):
    """``record_delivery`` alone (without the outbox clean-up that follows it in a delivery)."""
    from worker.delivery import record_delivery

    name = str(uuid.uuid4())
    redis = Redis.from_url(stack.redis_url)
    assert delivered_records(http, stack.fhir, name) == 0  # kept in the read cache...
    assert delivered_records(http, stack.fhir, name) == 0
    before = int(redis.get(GENERATION) or 0)
    d = Delivery(
        "VNE51",
        "PATCH",
        "Task/1",
        [],
        task_key=f"urn:ietf:rfc:3986|{name}",
        kind=DeliveryKind.TASK_CHANGE,
        task_status="accepted",
    )
    with DirectStore(stack.store_url, redis) as store:
        record_delivery(d, SimpleNamespace(client_id="hub-fa565"), store, own_ods="FA565")
    assert int(redis.get(GENERATION) or 0) > before, "the audit event was written without the fence"
    assert delivered_records(http, stack.fhir, name) == 1  # ...and not served stale after the write
