"""``fhirplug queue`` and the delivery metrics on the test stack's real Redis, in a database of
their own (5) that each test starts and leaves empty. Jobs are put on the queue with RQ as
``forwarding.queue.enqueue`` does; no worker runs, except where a real dead letter is made."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from redis import Redis
from rq import Queue, Retry, SimpleWorker
from rq.job import Job, JobStatus
from rq.results import Result

from forwarding import metrics
from forwarding.delivery import QUEUE, Delivery, DeliveryKind
from forwarding.outbox import record
from forwarding.policy import MAX_RETRIES
from proxy.store_caller import store_auth

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# ``python -m ops.queue_cli`` runs the same add_parser/run as ``fhirplug queue``
CLI = [str(Path(sys.prefix) / "bin" / "fhirplug"), "queue"]


@pytest.fixture
def redis_url(stack) -> str:
    parts = urlsplit(stack.redis_url)
    url = urlunsplit(parts._replace(path="/5"))
    conn = Redis.from_url(url)
    conn.flushdb()
    yield url
    conn.flushdb()
    conn.close()


@pytest.fixture
def redis(redis_url) -> Redis:
    conn = Redis.from_url(redis_url)
    yield conn
    conn.close()


@pytest.fixture
def queue(redis) -> Queue:
    return Queue(QUEUE, connection=redis)


def cli(redis_url: str, *args: str, stdin: str = "", store: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FHIRPLUG_STORE_URL"}
    env["REDIS_URL"] = redis_url
    if store:
        env["FHIRPLUG_STORE_URL"] = store
    return subprocess.run(
        [*CLI, *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def put(
    queue: Queue,
    partner: str,
    kind: DeliveryKind = DeliveryKind.MESSAGE,
    age_s: float = 0.0,
    task_status: str | None = None,
    **options,
) -> Job:
    """A delivery job as ``forwarding.queue.enqueue`` makes it (without running it)."""
    body = {"resourceType": "Bundle"}
    d = Delivery(partner, "POST", "", body, kind=kind, task_status=task_status, queued_at=time.time() - age_s)
    kwargs = {
        "job_id": d.id,
        "retry": Retry(max=MAX_RETRIES, interval=[1] * MAX_RETRIES),
        "failure_ttl": 30 * 24 * 3600,
        "description": f"{d.label} to {d.partner}",
        **options,
    }
    scheduled_in = kwargs.pop("scheduled_in", None)
    if scheduled_in is not None:
        return queue.enqueue_in(scheduled_in, "worker.delivery.deliver", d.to_dict(), **kwargs)
    return queue.enqueue("worker.delivery.deliver", d.to_dict(), **kwargs)


def kill(queue: Queue, job: Job, reason: str | None = None, exc: str = "") -> Job:
    """Make ``job`` a dead letter as the worker does after ``_final``: no retries left, the
    reason in its meta, FAILED, in the failed-job registry with the exception."""
    job = Job.fetch(job.id, connection=queue.connection)
    job.retries_left = 0
    job.ended_at = datetime.now(UTC)
    if reason is not None:
        job.meta["dead_letter_reason"] = reason
        job.save_meta()
    with queue.connection.pipeline() as pipe:
        queue.remove(job, pipeline=pipe)
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        queue.failed_job_registry.add(job, ttl=job.failure_ttl, exc_string=exc, pipeline=pipe)
        Result.create_failure(job, job.failure_ttl, exc_string=exc, pipeline=pipe)
        pipe.execute()
    return job


def outbox(stack, job: Job) -> str:
    """Store the outbox record of a queued delivery, as the proxy does before queueing it."""
    task = {"resourceType": "Task", "status": "requested", "intent": "order"}
    r = requests.post(f"{stack.store_url}/Task", json=task, timeout=30, auth=store_auth())
    assert r.status_code == 201, r.text  # the store checks that the record's subject exists
    basic = record(Delivery.from_dict(job.args[0]), f"Task/{r.json()['id']}")
    url = f"{stack.store_url}/Basic/{job.id}"
    r = requests.put(
        url, json=basic, headers={"Content-Type": "application/fhir+json"}, timeout=30, auth=store_auth()
    )
    assert r.status_code in (200, 201), r.text
    return url


def table(stdout: str) -> dict[str, dict[str, str]]:
    """The status table as {partner: {column: cell}}."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    header = lines[0].split()
    return {row.split()[0]: dict(zip(header, row.split(), strict=True)) for row in lines[1:]}


# ---- status ----------------------------------------------------------------------------------


def test_status_counts_what_waits_per_partner(redis_url, queue):
    put(queue, "FA001", age_s=120)
    first = put(queue, "FA001")
    put(queue, "FA001", depends_on=first.id)  # deferred behind the one before
    put(queue, "FA002")
    put(queue, "FA002", scheduled_in=timedelta(minutes=5))  # waiting for a retry
    assert queue.count == 3 and queue.deferred_job_registry.count == 1
    assert queue.scheduled_job_registry.count == 1

    r = cli(redis_url, "status")
    assert r.returncode == 0, r.stderr
    rows = table(r.stdout)
    assert rows["FA001"]["DEPTH"] == "3"
    assert rows["FA001"]["QUEUED"] == "2" and rows["FA001"]["DEFERRED"] == "1"
    assert rows["FA002"]["DEPTH"] == "2"
    assert rows["FA002"]["QUEUED"] == "1" and rows["FA002"]["RETRYING"] == "1"
    assert 120 <= int(rows["FA001"]["OLDEST_S"]) < 180
    assert int(rows["FA002"]["OLDEST_S"]) < 60
    assert rows["TOTAL"]["DEPTH"] == "5" and rows["TOTAL"]["DEAD"] == "0"
    assert int(rows["TOTAL"]["OLDEST_S"]) >= 120


def test_status_of_an_empty_queue_is_a_zero_total(redis_url):
    r = cli(redis_url, "status")
    assert r.returncode == 0, r.stderr
    rows = table(r.stdout)
    assert list(rows) == ["TOTAL"] and rows["TOTAL"]["DEPTH"] == "0"


# ---- dead letters ----------------------------------------------------------------------------


def test_dead_lists_reason_or_last_exception_line(redis_url, queue):
    task_change = put(queue, "FA003", DeliveryKind.TASK_CHANGE, task_status="completed")
    refused = kill(queue, task_change, reason="422: the Task is not in progress")
    crashed = kill(
        queue,
        put(queue, "FA004"),
        exc='Traceback (most recent call last):\n  File "x.py", line 1\nRetryableFailure: 503: busy\n',
    )
    put(queue, "FA003")  # still waiting: not a dead letter

    r = cli(redis_url, "dead")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    assert refused.id in lines and crashed.id in lines
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert re.search(
        rf"FA003\s+Task completed\s+{today}T\S+Z\s+\?\s+422: the Task is not in progress$", lines[refused.id]
    )
    # ran out of retries (no reason of its own): every attempt was made
    attempts = MAX_RETRIES + 1
    assert re.search(
        rf"FA004\s+message\s+{today}T\S+Z\s+{attempts}\s+RetryableFailure: 503: busy$", lines[crashed.id]
    )
    assert "Traceback" not in r.stdout
    assert "2 dead letters" in r.stdout

    rows = table(cli(redis_url, "status").stdout)
    assert rows["FA003"]["DEAD"] == "1" and rows["FA003"]["DEPTH"] == "1"
    assert rows["FA004"]["DEAD"] == "1" and rows["FA004"]["DEPTH"] == "0"

    only = cli(redis_url, "dead", "--partner", "FA004").stdout
    assert crashed.id in only and refused.id not in only


def test_a_real_dead_letter_from_the_worker_is_listed_and_replayed(redis_url, redis, queue, monkeypatch):
    """``deliver`` for a partner missing from the directory fails for good at once (``_final``)."""
    from forwarding.queue import enqueue
    from proxy.config import WorkerSettings
    from worker import delivery

    monkeypatch.setattr(delivery, "_process", delivery._Process())  # this test's worker process:
    delivery.configure(WorkerSettings(redis_url=redis_url))  # deliver() finds the partner directory here
    dispense = Delivery("FA404", "POST", "", {"resourceType": "Bundle"}, kind=DeliveryKind.HUB_TO_SPOKE)
    job_id = enqueue(dispense, redis)
    SimpleWorker([queue], connection=redis).work(burst=True)
    assert job_id in queue.failed_job_registry

    r = cli(redis_url, "dead")
    assert r.returncode == 0, r.stderr
    assert re.search(
        rf"{job_id}\s+FA404\s+hub-to-spoke dispense\s+\S+Z\s+\S+\s+no partner FA404 in the directory",
        r.stdout,
    )

    r = cli(redis_url, "replay", job_id)
    assert r.returncode == 0, r.stderr
    assert f"replayed {job_id}" in r.stdout
    assert job_id not in queue.failed_job_registry
    assert queue.get_job_ids() == [job_id]
    job = Job.fetch(job_id, connection=redis)
    assert job.get_status() == JobStatus.QUEUED
    assert job.retries_left == MAX_RETRIES  # its whole retry policy again
    assert "dead_letter_reason" not in job.meta
    assert job.meta["last_dead_letter_reason"] == "no partner FA404 in the directory"
    assert job.meta["replays"] == 1
    assert redis.ttl(job.key) == -1  # no longer expiring with the failed-job TTL
    rows = table(cli(redis_url, "status").stdout)
    assert rows["FA404"]["DEPTH"] == "1" and rows["FA404"]["DEAD"] == "0"


def test_replay_of_an_unknown_id_fails(redis_url, queue):
    waiting = put(queue, "FA001")  # on the queue, but not a dead letter
    for unknown in (uuid.uuid4().hex, waiting.id):
        r = cli(redis_url, "replay", unknown)
        assert r.returncode == 1
        assert f"no dead letter {unknown}" in r.stderr
    assert queue.get_job_ids() == [waiting.id]


def test_replay_all_puts_every_dead_letter_back(redis_url, queue):
    dead = [kill(queue, put(queue, p), reason="400: bad") for p in ("FA001", "FA002", "FA002")]
    r = cli(redis_url, "replay", "--all", "--partner", "FA002")
    assert r.returncode == 0, r.stderr
    assert sorted(queue.get_job_ids()) == sorted(j.id for j in dead[1:])
    assert queue.failed_job_registry.get_job_ids() == [dead[0].id]

    r = cli(redis_url, "replay", "--all")
    assert r.returncode == 0, r.stderr
    assert f"replayed {dead[0].id}" in r.stdout
    assert queue.count == 3 and queue.failed_job_registry.count == 0


# ---- purge -----------------------------------------------------------------------------------


def test_purge_asks_first_and_does_nothing_without_a_yes(redis_url, queue):
    put(queue, "FA001")
    r = cli(redis_url, "purge", stdin="n\n")
    assert r.returncode == 1
    assert "Delete 1 deliveries" in r.stdout
    assert queue.count == 1


def test_purge_dead_only_keeps_the_waiting_ones_but_not_those_waiting_on_the_dead(
    stack, redis_url, redis, queue
):
    waiting = put(queue, "FA001")
    dead = kill(queue, put(queue, "FA001"), reason="400: bad")
    behind = put(queue, "FA001", depends_on=dead.id)  # a completion after a dead acceptance
    after_behind = put(queue, "FA001", depends_on=behind.id)
    assert behind.get_status() == JobStatus.DEFERRED
    records = {j.id: outbox(stack, j) for j in (waiting, dead, behind, after_behind)}

    r = cli(redis_url, "purge", "--dead-only", "--yes", store=stack.store_url)
    assert r.returncode == 0, r.stderr
    assert "purged 3 deliveries" in r.stdout
    assert queue.failed_job_registry.count == 0 and queue.deferred_job_registry.count == 0
    assert queue.get_job_ids() == [waiting.id]
    assert not any(Job.exists(j.id, connection=redis) for j in (dead, behind, after_behind))
    # their outbox records go too, or the sweep would queue them again; the waiting one's stays
    assert requests.get(records[waiting.id], timeout=30, auth=store_auth()).status_code == 200
    for job in (dead, behind, after_behind):
        assert requests.get(records[job.id], timeout=30, auth=store_auth()).status_code in (404, 410)


def test_purge_without_a_store_warns_that_the_outbox_sweep_may_queue_them_again(redis_url, queue):
    put(queue, "FA001")
    r = cli(redis_url, "purge", "--yes")
    assert r.returncode == 0 and queue.count == 0
    assert "outbox" in r.stderr


def test_purge_yes_empties_queue_retries_deferred_and_dead(redis_url, redis, queue):
    jobs = [put(queue, "FA001"), put(queue, "FA002", scheduled_in=timedelta(minutes=5))]
    jobs.append(put(queue, "FA001", depends_on=jobs[0].id))
    jobs.append(kill(queue, put(queue, "FA003"), reason="400: bad"))

    r = cli(redis_url, "purge", "--yes")
    assert r.returncode == 0, r.stderr
    assert "purged 4 deliveries" in r.stdout
    assert queue.count == 0
    for registry in (queue.scheduled_job_registry, queue.deferred_job_registry, queue.failed_job_registry):
        assert registry.count == 0
    assert not any(Job.exists(j.id, connection=redis) for j in jobs)
    assert table(cli(redis_url, "status").stdout)["TOTAL"]["DEPTH"] == "0"
    assert cli(redis_url, "purge", "--yes").stdout.strip() == "nothing to purge"


# ---- metrics ---------------------------------------------------------------------------------


def samples(text: str) -> dict[str, float]:
    """Each sample's value by its series (prometheus_client writes numbers as floats: 3.0)."""
    pairs = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {series: float(value) for series, value in pairs}


def test_metrics_of_an_empty_redis_are_help_and_type_only(redis):
    text = metrics.prometheus_text(redis)
    assert text.endswith("\n")
    assert samples(text) == {}
    for name, kind in (
        ("fhirplug_deliveries_queued_total", "counter"),
        ("fhirplug_deliveries_delivered_total", "counter"),
        ("fhirplug_deliveries_retried_total", "counter"),
        ("fhirplug_deliveries_dead_lettered_total", "counter"),
        ("fhirplug_delivery_latency_seconds", "histogram"),
        ("fhirplug_queue_depth", "gauge"),
        ("fhirplug_queue_oldest_age_seconds", "gauge"),
    ):
        assert f"# TYPE {name} {kind}\n" in text
        assert f"# HELP {name} " in text


def test_recorded_deliveries_become_counters_and_a_cumulative_histogram(redis):
    for _ in range(3):
        metrics.record_queued(redis, "FA001")
    metrics.record_retried(redis, "FA001")
    metrics.record_dead(redis, "FA001")
    for latency in (0.03, 0.7, 0.7, 400):
        metrics.record_delivered(redis, "FA001", latency)
    metrics.record_queued(redis, "FA002")

    s = samples(metrics.prometheus_text(redis))
    assert s['fhirplug_deliveries_queued_total{partner="FA001"}'] == 3
    assert s['fhirplug_deliveries_queued_total{partner="FA002"}'] == 1
    assert s['fhirplug_deliveries_delivered_total{partner="FA001"}'] == 4
    assert s['fhirplug_deliveries_delivered_total{partner="FA002"}'] == 0
    assert s['fhirplug_deliveries_retried_total{partner="FA001"}'] == 1
    assert s['fhirplug_deliveries_dead_lettered_total{partner="FA001"}'] == 1
    bucket = 'fhirplug_delivery_latency_seconds_bucket{le="%s",partner="FA001"}'  # le first, as written
    expected = {"0.05": 1, "0.1": 1, "0.5": 1, "1.0": 3, "2.5": 3, "60.0": 3, "300.0": 3, "+Inf": 4}
    for le, count in expected.items():
        assert s[bucket % le] == count, le
    assert s['fhirplug_delivery_latency_seconds_sum{partner="FA001"}'] == pytest.approx(401.43)
    assert s['fhirplug_delivery_latency_seconds_count{partner="FA001"}'] == 4
    assert not any(k.startswith("fhirplug_delivery_latency_seconds") and "FA002" in k for k in s)
    assert s['fhirplug_queue_depth{partner="FA001"}'] == 0  # known, nothing waiting


def test_queue_gauges_count_what_waits_and_the_oldest_age(redis, queue):
    first = put(queue, "FA001", age_s=90)
    put(queue, "FA001", depends_on=first.id)
    put(queue, "FA001", scheduled_in=timedelta(minutes=1))
    kill(queue, put(queue, "FA001"), reason="400: bad")  # dead: not in the depth
    put(queue, "FA002", age_s=5)

    now = time.time()
    s = samples(metrics.prometheus_text(redis, now=now))
    assert s['fhirplug_queue_depth{partner="FA001"}'] == 3
    assert s['fhirplug_queue_depth{partner="FA002"}'] == 1
    assert 90 <= s['fhirplug_queue_oldest_age_seconds{partner="FA001"}'] < 100
    assert 5 <= s['fhirplug_queue_oldest_age_seconds{partner="FA002"}'] < 15
    assert s['fhirplug_queue_dead_letters{partner="FA001"}'] == 1


def test_partner_label_values_are_escaped(redis):
    metrics.record_queued(redis, 'odd"\\\nname')
    text = metrics.prometheus_text(redis)
    assert 'fhirplug_deliveries_queued_total{partner="odd\\"\\\\\\nname"} 1.0\n' in text
