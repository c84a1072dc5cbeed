"""The metrics listener of the running test proxy (two gunicorn workers): scraped without a
token as Prometheus does, parsed by prometheus_client's own parser; the request metrics add up
every worker's requests; the forwarding families keep their names; the sample scrape config and
the Grafana dashboard name only what is scraped."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from proxy import request_metrics

pytestmark = pytest.mark.integration
MONITORING = Path(__file__).resolve().parents[2] / "ops" / "monitoring"


def scrape(url: str) -> dict[str, list]:
    r = requests.get(url, timeout=10)  # no Authorization header: none is needed
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def total(families: dict[str, list], sample_name: str, **labels: str) -> float:
    family = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_bucket")
    return sum(
        s.value
        for s in families.get(family, [])
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_requests_are_counted_by_interaction_type_and_status_across_workers(stack, http):
    before = scrape(stack.metrics)
    missing = f"metrics-{uuid.uuid4().hex[:12]}"
    n = 12  # on new connections each, so both workers take some
    for _ in range(n):
        r = http.get(f"{stack.fhir}/Patient/{missing}", headers={"Connection": "close"})
        assert r.status_code == 404
    assert http.get(f"{stack.fhir}/Patient", params={"_count": "1"}).status_code == 200

    after = scrape(stack.metrics)
    read_404 = {"interaction": "read", "resource_type": "Patient", "status": "404"}
    assert total(after, "fhirplug_requests_total", **read_404) - total(
        before, "fhirplug_requests_total", **read_404
    ) == pytest.approx(n)
    search = {"interaction": "search-type", "resource_type": "Patient", "status": "200"}
    assert total(after, "fhirplug_requests_total", **search) > total(
        before, "fhirplug_requests_total", **search
    )
    timed = {"interaction": "read", "resource_type": "Patient"}
    assert total(after, "fhirplug_request_duration_seconds_count", **timed) >= n
    # the id is in no series: labels are bounded
    assert not any(missing in json.dumps(s.labels) for samples in after.values() for s in samples)
    assert total(after, "fhirplug_store_request_duration_seconds_count", method="GET") > 0


def test_the_forwarding_families_keep_their_names(stack):
    families = scrape(stack.metrics)
    for name in (
        "fhirplug_deliveries_queued",
        "fhirplug_deliveries_delivered",
        "fhirplug_deliveries_retried",
        "fhirplug_deliveries_dead_lettered",
        "fhirplug_delivery_latency_seconds",
        "fhirplug_queue_depth",
        "fhirplug_queue_oldest_age_seconds",
        "fhirplug_queue_dead_letters",
    ):
        assert name in families, name


def test_the_fhir_port_still_wants_an_administrator_for_metrics(stack, anon, http):
    assert anon.get(f"{stack.proxy}/metrics").status_code == 401
    r = http.get(f"{stack.proxy}/metrics")
    assert r.status_code == 200 and "fhirplug_requests_total" in r.text


def test_the_listener_serves_nothing_but_metrics(stack):
    base = stack.metrics.removesuffix("/metrics")
    assert requests.get(f"{base}/fhir/Patient", timeout=5).status_code == 404


def test_the_sample_scrape_config_and_the_dashboard_name_what_the_proxy_serves(stack):
    config = (MONITORING / "prometheus.yml").read_text()
    assert re.search(r"metrics_path:\s*/metrics", config)
    [target] = re.findall(r'targets:\s*\["([^"]+)"\]', config)
    assert target == "127.0.0.1:9464"  # the listener's default address
    families = scrape(stack.metrics)
    served = {s.name for samples in families.values() for s in samples} | set(families)
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    used = {m for e in exprs for m in re.findall(r"\b(fhirplug_[a-z_]+)\b", e)}
    # every family served, with its sample names; and the request families, which a fresh proxy
    # serves only once something was observed (prometheus_client's multiprocess mode)
    declared = {m._name for m in (request_metrics.ERRORS, request_metrics.CACHE_LOOKUPS)}
    names = served | {f"{n}{suffix}" for n in set(families) | declared for suffix in ("_total", "_bucket")}
    assert used <= names, used - names
