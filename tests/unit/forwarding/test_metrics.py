"""The pure parts of the delivery metrics (buckets, the cumulative series) and the collector's
families as prometheus_client writes them. What is read from
and written to Redis is tested against the real one in tests/integration/test_queue_cli.py."""

from __future__ import annotations

import math

import pytest

from forwarding import metrics


@pytest.mark.parametrize(
    ("value", "le"),
    [
        (0.0, 0.05),
        (0.05, 0.05),
        (0.0500001, 0.1),
        (0.7, 1),
        (1, 1),
        (299.9, 300),
        (300, 300),
        (301, math.inf),
    ],
)
def test_a_value_falls_in_the_smallest_bucket_whose_bound_it_does_not_exceed(value, le):
    assert metrics.bucket_for(value) == le


def test_bucket_labels_are_written_as_the_official_clients_write_them():
    assert [metrics.bucket_label(b) for b in metrics.BUCKETS] == [
        "0.05",
        "0.1",
        "0.25",
        "0.5",
        "1.0",
        "2.5",
        "5.0",
        "10.0",
        "30.0",
        "60.0",
        "300.0",
        "+Inf",
    ]


def test_stored_bucket_counts_become_cumulative_and_end_with_the_total():
    stored = {"0.05": "2", "1.0": "3", "+Inf": "1", "count": "6", "sum": "500.5"}
    series = dict(metrics.cumulative(stored))
    assert series["0.05"] == 2
    assert series["0.5"] == 2  # nothing between 0.05 and 0.5: the count carries over
    assert series["1.0"] == 5
    assert series["300.0"] == 5
    assert series["+Inf"] == 6
    values = [v for _, v in metrics.cumulative(stored)]
    assert values == sorted(values)


def test_no_observations_give_zero_in_every_bucket():
    assert all(v == 0 for _, v in metrics.cumulative({}))


def test_record_delivered_files_one_observation_in_one_bucket():
    calls = []

    class Pipe:
        def __getattr__(self, name):
            return lambda *a, **k: calls.append((name, a))

    class FakeRedis:
        def pipeline(self, transaction=True):
            return Pipe()

    metrics.record_delivered(FakeRedis(), "FA001", 0.7)
    assert ("hincrby", ("fhirplug:metrics:latency:FA001", "1.0", 1)) in calls
    assert ("hincrbyfloat", ("fhirplug:metrics:latency:FA001", "sum", 0.7)) in calls
    assert ("hincrby", ("fhirplug:metrics:counters:FA001", "delivered", 1)) in calls
    assert [c for c in calls if c[0] == "hincrby" and c[1][0].startswith("fhirplug:metrics:latency")] == [
        ("hincrby", ("fhirplug:metrics:latency:FA001", "1.0", 1)),
        ("hincrby", ("fhirplug:metrics:latency:FA001", "count", 1)),
    ]
    assert calls[-1] == ("execute", ())


class _Redis:
    """Just what the collector reads: the partners set and their two hashes."""

    def __init__(self, hashes):
        self.hashes = hashes

    def smembers(self, key):
        prefix = "fhirplug:metrics:counters:"
        return {k.removeprefix(prefix).encode() for k in self.hashes if k.startswith(prefix)}

    def pipeline(self, transaction=True):
        outer = self

        class Pipe:
            keys: list[str] = []

            def hgetall(self, key):
                self.keys.append(key)

            def execute(self):
                return [outer.hashes.get(k, {}) for k in self.keys]

        return Pipe()


def test_the_collector_writes_counters_and_a_cumulative_histogram_through_prometheus_client(monkeypatch):
    from prometheus_client.parser import text_string_to_metric_families

    monkeypatch.setattr(metrics, "queue_snapshot", lambda redis, name: metrics.QueueSnapshot())
    redis = _Redis(
        {
            "fhirplug:metrics:counters:FA001": {b"queued": b"3", b"delivered": b"2"},
            "fhirplug:metrics:latency:FA001": {b"0.05": b"1", b"1.0": b"1", b"count": b"2", b"sum": b"0.73"},
        }
    )
    families = {f.name: f for f in text_string_to_metric_families(metrics.prometheus_text(redis))}
    assert families["fhirplug_deliveries_queued"].type == "counter"
    (queued,) = families["fhirplug_deliveries_queued"].samples
    assert queued.name == "fhirplug_deliveries_queued_total" and queued.value == 3
    assert queued.labels == {"partner": "FA001"}
    buckets = {
        s.labels["le"]: s.value
        for s in families["fhirplug_delivery_latency_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert buckets["0.05"] == 1 and buckets["0.5"] == 1 and buckets["1.0"] == 2 and buckets["+Inf"] == 2
    assert families["fhirplug_queue_depth"].type == "gauge"
