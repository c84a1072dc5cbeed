"""Delivery metrics, kept in Redis so that every worker and proxy process shares them.

Counters per partner live in one hash (``fhirplug:metrics:counters:<partner>``: queued, delivered,
retried, dead_lettered); the latency of each delivery (enqueue to the partner's 2xx) goes into a
histogram per partner (``fhirplug:metrics:latency:<partner>``: one field per bucket, not
cumulative, plus sum and count). ``DeliveryCollector`` hands them, with gauges read from RQ (queue
depth and the age of the oldest waiting delivery), to prometheus_client, which writes the text
exposition (``prometheus_text``).

Why the counts stay in Redis rather than in prometheus_client's own counters: deliveries are
counted in RQ's work horses, a process forked per job (prometheus_client's multiprocess mode
would leave a file per delivery), on any worker host; Redis makes them one deployment-wide
total that any proxy's metrics listener shows (so aggregate them across proxies with ``max``,
not ``sum``). prometheus_client does the exposition; this module only reads Redis.

The queue snapshot (``queue_snapshot``) is shared with ``fhirplug queue status``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from rq import Queue
from rq.job import Job

from forwarding.delivery import QUEUE

PREFIX = "fhirplug:metrics:"
PARTNERS_KEY = PREFIX + "partners"  # a set: every partner anything was recorded for
COUNTERS = ("queued", "delivered", "retried", "dead_lettered")
BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, math.inf)
_FETCH_CHUNK = 500


def counters_key(partner: str) -> str:
    return f"{PREFIX}counters:{partner}"


def latency_key(partner: str) -> str:
    return f"{PREFIX}latency:{partner}"


# ---- recording -------------------------------------------------------------------------------


def _count(redis: Redis, partner: str, name: str) -> None:
    pipe = redis.pipeline(transaction=False)
    pipe.sadd(PARTNERS_KEY, partner)
    pipe.hincrby(counters_key(partner), name, 1)
    pipe.execute()


def record_queued(redis: Redis, partner: str) -> None:
    _count(redis, partner, "queued")


def record_retried(redis: Redis, partner: str) -> None:
    _count(redis, partner, "retried")


def record_dead(redis: Redis, partner: str) -> None:
    _count(redis, partner, "dead_lettered")


def record_delivered(redis: Redis, partner: str, latency_s: float) -> None:
    latency_s = max(0.0, float(latency_s))  # a clock step between hosts must not make it negative
    pipe = redis.pipeline(transaction=True)  # the histogram's fields move together
    pipe.sadd(PARTNERS_KEY, partner)
    pipe.hincrby(counters_key(partner), "delivered", 1)
    pipe.hincrby(latency_key(partner), bucket_label(bucket_for(latency_s)), 1)
    pipe.hincrby(latency_key(partner), "count", 1)
    pipe.hincrbyfloat(latency_key(partner), "sum", latency_s)
    pipe.execute()


# ---- pure helpers ----------------------------------------------------------------------------


def bucket_for(value: float, buckets: Iterable[float] = BUCKETS) -> float:
    """The smallest bucket bound ``le`` with value <= le (Prometheus bounds are inclusive)."""
    for le in buckets:
        if value <= le:
            return le
    return math.inf


def bucket_label(le: float) -> str:
    """A bucket bound as stored in Redis and written as the ``le`` label: 0.05, 1.0, 2.5, +Inf."""
    return "+Inf" if math.isinf(le) else repr(float(le))


def cumulative(
    per_bucket: Mapping[str, int | str], buckets: Iterable[float] = BUCKETS
) -> list[tuple[str, int]]:
    """Stored per-bucket counts (keyed by ``bucket_label``; as Redis holds them, text) to the
    cumulative ``le`` series."""
    total, out = 0, []
    for le in buckets:
        total += int(per_bucket.get(bucket_label(le), 0))
        out.append((bucket_label(le), total))
    return out


def _text(raw) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _hash(raw: Mapping) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


# ---- the queue, as RQ holds it ---------------------------------------------------------------


@dataclass
class PartnerQueue:
    queued: int = 0  # on the queue, waiting for a worker
    scheduled: int = 0  # waiting for a retry (RQ's scheduled registry)
    deferred: int = 0  # waiting for an earlier delivery about the same Task
    started: int = 0  # a worker has it now
    dead: int = 0  # in the failed-job registry: the dead letters
    oldest_queued_at: float | None = None  # of the waiting (not dead) deliveries

    @property
    def waiting(self) -> int:
        """What the depth gauge counts: queued, scheduled and deferred."""
        return self.queued + self.scheduled + self.deferred

    @property
    def depth(self) -> int:
        """What ``fhirplug queue status`` counts: waiting plus in progress."""
        return self.waiting + self.started

    def oldest_age(self, now: float) -> float:
        return max(0.0, now - self.oldest_queued_at) if self.oldest_queued_at is not None else 0.0


@dataclass
class QueueSnapshot:
    partners: dict[str, PartnerQueue] = field(default_factory=dict)

    def of(self, partner: str) -> PartnerQueue:
        return self.partners.setdefault(partner, PartnerQueue())


def partner_of(job: Job) -> str:
    """The partner ODS code of a delivery job: its Delivery's ``partner``, else the description's
    "<what> to <partner>"."""
    try:
        first = job.args[0] if job.args else None
    except Exception:  # a job whose function data cannot be read (renamed class, corrupt pickle)
        first = None
    if isinstance(first, dict) and first.get("partner"):
        return str(first["partner"])
    desc = job.description or ""
    return desc.rsplit(" to ", 1)[1] if " to " in desc else "unknown"


def queued_at_of(job: Job) -> float | None:
    """When the delivery was first queued (the Delivery's ``queued_at``; RQ's own enqueued_at is
    reset by each retry and replay)."""
    try:
        first = job.args[0] if job.args else None
    except Exception:
        first = None
    if isinstance(first, dict) and isinstance(first.get("queued_at"), int | float):
        return float(first["queued_at"])
    when = job.enqueued_at or job.created_at
    return when.timestamp() if when else None


def fetch_jobs(redis: Redis, ids: list[str]) -> list[Job]:
    jobs: list[Job] = []
    for i in range(0, len(ids), _FETCH_CHUNK):
        jobs.extend(j for j in Job.fetch_many(ids[i : i + _FETCH_CHUNK], connection=redis) if j is not None)
    return jobs


def queue_snapshot(redis: Redis, queue_name: str = QUEUE) -> QueueSnapshot:
    """Count the forwarding queue's jobs per partner: queued, scheduled, deferred, started, dead."""
    queue = Queue(queue_name, connection=redis)
    groups = {
        "queued": queue.get_job_ids(),
        "scheduled": queue.scheduled_job_registry.get_job_ids(),
        "deferred": queue.deferred_job_registry.get_job_ids()
        + queue.ready_job_registry.get_job_ids(cleanup=False),
        "started": queue.started_job_registry.get_job_ids(),
        "dead": queue.failed_job_registry.get_job_ids(),
    }
    snap, seen = QueueSnapshot(), set()
    for state, ids in groups.items():
        ids = [i for i in dict.fromkeys(ids) if i not in seen]  # a job moving between states counts once
        seen.update(ids)
        for job in fetch_jobs(redis, ids):
            pq = snap.of(partner_of(job))
            setattr(pq, state, getattr(pq, state) + 1)
            if state != "dead":
                at = queued_at_of(job)
                if at is not None and (pq.oldest_queued_at is None or at < pq.oldest_queued_at):
                    pq.oldest_queued_at = at
    return snap


# ---- exposition ------------------------------------------------------------------------------

_COUNTERS = (
    ("queued", "fhirplug_deliveries_queued", "Deliveries put on the forwarding queue."),
    ("delivered", "fhirplug_deliveries_delivered", "Deliveries the partner accepted (2xx)."),
    ("retried", "fhirplug_deliveries_retried", "Delivery attempts that failed and were retried."),
    ("dead_lettered", "fhirplug_deliveries_dead_lettered", "Deliveries that failed for good (dead letters)."),
)
_GAUGES = (
    ("fhirplug_queue_depth", "Deliveries waiting: queued, scheduled for a retry or deferred.", "depth"),
    ("fhirplug_queue_oldest_age_seconds", "Age of the oldest waiting delivery (0 when none).", "age"),
    ("fhirplug_queue_dead_letters", "Dead letters kept in the failed-job registry.", "dead"),
)


class DeliveryCollector(Collector):
    """A prometheus_client collector reading the delivery counts from Redis and the queue from RQ
    at each scrape (as RQ's exporters do): nothing is held in the process."""

    def __init__(self, redis: Redis, queue_name: str = QUEUE, now: Callable[[], float] = time.time):
        self.redis = redis
        self.queue_name = queue_name
        self.now = now

    def collect(self) -> Iterator[Metric]:
        recorded = sorted(_text(p) for p in self.redis.smembers(PARTNERS_KEY))
        pipe = self.redis.pipeline(transaction=False)
        for p in recorded:
            pipe.hgetall(counters_key(p))
            pipe.hgetall(latency_key(p))
        raw = pipe.execute() if recorded else []
        counters = {p: _hash(raw[2 * i]) for i, p in enumerate(recorded)}
        latency = {p: _hash(raw[2 * i + 1]) for i, p in enumerate(recorded)}
        snap = queue_snapshot(self.redis, self.queue_name)
        partners = sorted(set(recorded) | set(snap.partners))

        for field_name, name, help_text in _COUNTERS:
            counter = CounterMetricFamily(name, help_text, labels=["partner"])
            for p in recorded:
                counter.add_metric([p], int(counters[p].get(field_name, 0)))
            yield counter

        histogram = HistogramMetricFamily(
            "fhirplug_delivery_latency_seconds",
            "Time from queueing a delivery to the partner's acceptance.",
            labels=["partner"],
        )
        for p in recorded:
            if h := latency[p]:
                histogram.add_metric([p], cumulative(h), float(h.get("sum", 0)))
        yield histogram

        now = self.now()
        for name, help_text, what in _GAUGES:
            gauge = GaugeMetricFamily(name, help_text, labels=["partner"])
            for p in partners:
                pq = snap.partners.get(p, PartnerQueue())
                gauge.add_metric(
                    [p], {"depth": pq.waiting, "age": round(pq.oldest_age(now), 3), "dead": pq.dead}[what]
                )
            yield gauge


def prometheus_text(redis: Redis, queue_name: str = QUEUE, now: float | None = None) -> str:
    """Every delivery metric, in the Prometheus text exposition format (prometheus_client's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeliveryCollector(redis, queue_name, (lambda: now) if now is not None else time.time))
    return generate_latest(registry).decode()
