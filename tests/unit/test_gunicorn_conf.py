"""The gunicorn hooks for the metrics (proxy/gunicorn_conf.py): a clean multiprocess directory of
this proxy's own at start, handed to the workers through the environment."""

from __future__ import annotations

import importlib
import os

from proxy import gunicorn_conf


def test_the_directory_is_per_proxy_port_under_var(monkeypatch, tmp_path):
    monkeypatch.delenv("FHIRPLUG_METRICS_DIR", raising=False)
    monkeypatch.setenv("FHIRPLUG_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("FHIRPLUG_BIND", "127.0.0.1:8123")
    conf = importlib.reload(gunicorn_conf)
    assert conf.metrics_dir() == tmp_path / "metrics" / "proxy-8123"


def test_on_starting_empties_the_directory_and_tells_the_workers(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "unset-by-this-test")  # restored afterwards
    monkeypatch.setenv("FHIRPLUG_METRICS_DIR", str(tmp_path / "m"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "counter_123.db").write_bytes(b"old run")
    (tmp_path / "m" / "keep.txt").write_text("not ours")
    gunicorn_conf.on_starting(server=None)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["keep.txt"]
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "m")


def test_a_dead_workers_live_gauges_are_dropped(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"")
    (tmp_path / "counter_4242.db").write_bytes(b"")

    class Worker:
        pid = 4242

    gunicorn_conf.child_exit(server=None, worker=Worker())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db"]  # counts stay in the sums
