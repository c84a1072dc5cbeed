"""Event notifications: notifications/s from writes to a loopback subscriber with 2 workers,
write-to-notification latency p50/p99, and what matching costs a create with 100 active
subscriptions against none.

    python -m bench.subscriptions --proxy http://127.0.0.1:8080/fhir --redis redis://127.0.0.1:6379/0 \
        --write bench/RESULTS.md

Needs a running stack (``make up``) whose proxy has the ``subscriptions`` plugin (the default).
It starts its own ``--workers`` RQ workers (``python -m worker``) on the proxy's Redis: stop the
stack's own worker first for a clean "2 workers" figure (``fhirplug stack`` leaves it running).
It registers an admin client of its own, subscribes a loopback HTTP server (this process), and:

1. overhead: ``--creates`` sequential MedicationRequest creates with no subscriptions, then with
   ``--subscriptions`` active ones on the same topic whose filters do not match (the usual case:
   many subscribers, each about its own patients), then with none again; the ratio of medians;
2. throughput: one subscription matching every request of a bench patient, ``--events`` creates
   from ``--concurrency`` threads; notifications/s from the first write to the last notification,
   latency from each write's start to its notification's arrival, and the check that the event
   numbers arrived once each, in order, without gaps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from redis import Redis

from bench.__main__ import machine
from bench.client import bench_token
from bench.report import write_section
from proxy.auth.outbound import TokenRequestError
from proxy.config import redis_url_from_env

ROOT = Path(__file__).resolve().parent.parent
IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
TOPIC = "https://fhirplug.org/fhir/SubscriptionTopic/medication-request-active"
SECRET = uuid.uuid4().hex


class Subscriber(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.arrived: dict[str, float] = {}  # MedicationRequest id -> first notification's arrival
        self.numbers: dict[str, list[int]] = {}  # subscription id -> event numbers, as they came


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        now = time.time()
        status = body["entry"][0]["resource"]
        params = {p["name"]: p for p in status["parameter"]}
        if params["type"]["valueCode"] == "event-notification":
            sid = params["subscription"]["valueReference"]["reference"].rsplit("/", 1)[-1]
            event = params["notification-event"]["part"]
            parts = {p["name"]: p for p in event}
            with self.server.lock:
                self.server.numbers.setdefault(sid, []).append(int(parts["event-number"]["valueString"]))
                focus = parts["focus"]["valueReference"]["reference"].rsplit("/", 1)[-1]
                self.server.arrived.setdefault(focus, now)
        self.send_response(200 if self.headers.get("Authorization") == f"Bearer {SECRET}" else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def subscription(endpoint: str, patient: str) -> dict:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "bench",
        "criteria": TOPIC,
        "_criteria": {
            "extension": [
                {
                    "url": IG + "backport-filter-criteria",
                    "valueString": f"MedicationRequest?subject=Patient/{patient}",
                }
            ]
        },
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": IG + "backport-payload-content", "valueCode": "id-only"}]},
            "header": [f"Authorization: Bearer {SECRET}"],
        },
    }


def request(patient: str) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "paracetamol 500mg tablets"},
        "subject": {"reference": f"Patient/{patient}"},
    }


class Bench:
    def __init__(self, fhir: str, session: requests.Session, endpoint: str):
        self.fhir, self.session, self.endpoint = fhir, session, endpoint

    def post(self, rtype: str, body: dict) -> tuple[str, float]:
        t0 = time.time()
        r = self.session.post(f"{self.fhir}/{rtype}", json=body, timeout=60)
        r.raise_for_status()
        return r.json()["id"], t0

    def subscribe(self, patient: str) -> str:
        return self.post("Subscription", subscription(self.endpoint, patient))[0]

    def wait_active(self, ids: list[str], timeout: float = 300) -> None:
        deadline = time.time() + timeout
        for sid in ids:
            while self._status(sid) != "active":
                if time.time() > deadline:
                    raise SystemExit(f"Subscription/{sid} did not become active: are workers running?")
                time.sleep(0.2)

    def _status(self, sid: str) -> str:
        """From ``$status`` (the status fhirplug runs by), not the stored copy the worker updates."""
        found = self.session.get(f"{self.fhir}/Subscription/{sid}/$status", timeout=30).json()
        params = found["entry"][0]["resource"]["parameter"]
        return next(p["valueCode"] for p in params if p["name"] == "status")

    def creates(self, patient: str, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.post("MedicationRequest", request(patient))
            out.append((time.perf_counter() - t0) * 1000)
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default="http://127.0.0.1:8080/fhir", help="the proxy's FHIR base")
    ap.add_argument("--redis", default=redis_url_from_env(), help="the proxy's Redis")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--subscriptions", type=int, default=100)
    ap.add_argument("--creates", type=int, default=200, help="creates per overhead phase")
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--write")
    args = ap.parse_args()
    fhir = args.proxy.rstrip("/")
    session = requests.Session()
    session.headers.update({"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})
    try:
        session.headers["Authorization"] = f"Bearer {bench_token(args.redis, fhir)}"
    except TokenRequestError as exc:
        if "switched off" not in str(exc):  # FHIRPLUG_AUTH=off: every caller is an administrator
            raise
    subscriber = Subscriber()
    threading.Thread(target=subscriber.serve_forever, daemon=True).start()
    bench = Bench(fhir, session, f"http://127.0.0.1:{subscriber.server_port}/notify")
    if Redis.from_url(args.redis).hlen("fhirplug:subs"):
        print("note: the stack already has subscriptions; they are counted in every phase")
    env = {**os.environ, "REDIS_URL": args.redis, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "worker"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(args.workers)
    ]
    made: list[str] = []
    try:
        time.sleep(2)
        patient = bench.post("Patient", {"resourceType": "Patient"})[0]
        bench.creates(patient, 20)  # warm-up
        none_before = bench.creates(patient, args.creates)
        made = [bench.subscribe(f"nobody-{i}") for i in range(args.subscriptions)]
        bench.wait_active(made)
        with_subs = bench.creates(patient, args.creates)
        for sid in made:
            session.delete(f"{fhir}/Subscription/{sid}", timeout=30)
        made = []
        none_after = bench.creates(patient, args.creates)

        target = bench.post("Patient", {"resourceType": "Patient"})[0]
        sid = bench.subscribe(target)
        made = [sid]
        bench.wait_active(made)
        started: dict[str, float] = {}
        t0 = time.time()
        with ThreadPoolExecutor(args.concurrency) as pool:
            for mr, at in pool.map(
                lambda _: bench.post("MedicationRequest", request(target)), range(args.events)
            ):
                started[mr] = at
        deadline = time.time() + 600
        while len(subscriber.numbers.get(sid, [])) < args.events and time.time() < deadline:
            time.sleep(0.1)
        last = max((subscriber.arrived[m] for m in started if m in subscriber.arrived), default=time.time())
    finally:
        for sid in made:
            session.delete(f"{fhir}/Subscription/{sid}", timeout=30)
        for w in workers:
            os.killpg(w.pid, 15)
        for w in workers:
            w.wait(timeout=30)
    numbers = subscriber.numbers.get(made[0] if made else "", [])
    in_order = numbers == list(range(1, args.events + 1))
    lat = sorted(subscriber.arrived[m] - started[m] for m in started if m in subscriber.arrived)
    p50 = statistics.median(lat) if lat else float("nan")
    p99 = lat[int(0.99 * (len(lat) - 1))] if lat else float("nan")
    rate = len(lat) / (last - t0) if lat else 0.0
    base = statistics.median(none_before + none_after)
    loaded = statistics.median(with_subs)
    overhead = (loaded / base - 1) * 100
    print(
        f"notifications {len(lat)}/{args.events} ({'in order, no gaps' if in_order else 'OUT OF ORDER'}), "
        f"{rate:.0f}/s, p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; create p50 {base:.1f} ms with no "
        f"subscriptions, {loaded:.1f} ms with {args.subscriptions}: {overhead:+.1f}%"
    )
    if args.write:
        lines = [
            f"## Event notifications: {args.events} events to a loopback subscriber, {args.workers} workers",
            "",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- Machine: {machine()}",
            "- Method: `python -m bench.subscriptions` (see its docstring): creates through the proxy, "
            "notifications delivered by the RQ workers to a loopback subscriber in this process.",
            "",
            "| notifications | in order, no gaps | notifications/s | write-to-notification p50 ms | p99 ms |",
            "|---:|:---:|---:|---:|---:|",
            f"| {len(lat)} / {args.events} | {'yes' if in_order else 'no'} | {rate:.0f} | "
            f"{p50 * 1000:.0f} | {p99 * 1000:.0f} |",
            "",
            f"| create p50, no subscriptions (ms) | with {args.subscriptions} active (ms) | overhead "
            "| target |",
            "|---:|---:|---:|---:|",
            f"| {base:.1f} | {loaded:.1f} | {overhead:+.1f}% | ≤ 10% |",
            "",
        ]
        write_section(Path(args.write), "bench.subscriptions", "\n".join(lines))
    return 0 if in_order and len(lat) == args.events else 1


if __name__ == "__main__":
    sys.exit(main())
