"""The pure parts of the delivery metrics (buckets, escaping, number format). What is read from
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


def test_label_values_escape_backslash_quote_and_newline():
    assert metrics.escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert metrics.labels(partner='X"1', le="+Inf") == '{partner="X\\"1",le="+Inf"}'


def test_help_text_escapes_backslash_and_newline_but_not_quotes():
    assert metrics.escape_help('say "hi"\\\nnow') == 'say "hi"\\\\\\nnow'


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3"), (3.0, "3"), (0.25, "0.25"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN")],
)
def test_sample_values(value, text):
    assert metrics.format_value(value) == text


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
