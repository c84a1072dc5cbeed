"""Forwarding throughput and latency: a burst of deliveries queued at once, then a steady
arrival rate, to a loopback partner, delivered by real ``python -m worker`` processes.

One command runs both (the lead runs it on a quiet machine; it needs only a Redis, whose
database it empties and uses for the run):

    python -m bench.forwarding --redis-url redis://127.0.0.1:6379/3 --write bench/RESULTS.md

    --burst N        deliveries queued at once before the workers start (default 10000): a
                     morning surge after a partner outage. Reported: drain rate from the first
                     delivery to the last (target >= 200/s with 2 workers), lost, duplicates.
    --rate R --seconds S   then R deliveries/s for S seconds (default 100/s for 60 s) to the
                     running workers. Reported: enqueue-to-delivered p50/p99 (target p99 < 2 s).
    --workers W      (default 2)
    --burst 0 or --seconds 0 skips that part; a smoke: --burst 500 --seconds 5.

The partner is a small HTTP server on loopback with a token endpoint and a FHIR base that
answers 201 at once and counts each delivery id and each token request, so the run measures
fhirplug's forwarding (queue, workers, token, HTTP) rather than a receiving store. Deliveries
are seed-sized spoke-to-hub bundles, queued straight onto RQ (``forwarding.queue.enqueue``,
what routing calls). Token requests are reported per 1,000 deliveries (the access token lives
600 s: one request per partner per run is expected). Exit status 0 only when nothing was lost
or duplicated. Only partner bundles are covered: EPS async responses, MESH notifications and
subscription notifications are not in this bench yet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from redis import Redis

from bench.__main__ import machine
from bench.report import write_section
from forwarding.delivery import Delivery, DeliveryKind
from forwarding.queue import enqueue
from proxy.auth import partner_keys
from proxy.partners import Partner, PartnerDirectory
from tests.support.messages import Case

ROOT = Path(__file__).resolve().parent.parent
PARTNER = "FB001"


class LoopbackPartner(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.received: dict[str, int] = {}  # delivery id -> times received
        self.arrived: dict[str, float] = {}  # delivery id -> first arrival
        self.token_requests = 0


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackPartner
    protocol_version = "HTTP/1.1"  # keep-alive: the workers pool their connections
    # headers and body go out as two writes: without this, Nagle's algorithm holds the body back
    # for the client's delayed ACK (~40 ms a delivery on a kept-alive connection)
    disable_nagle_algorithm = True

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        srv = self.server
        if self.path.endswith("/oauth2/token"):
            with srv.lock:
                srv.token_requests += 1
            body = json.dumps({"access_token": "loopback", "token_type": "Bearer", "expires_in": 600})
            status = 200
        else:
            delivery, now = self.headers.get("X-Delivery-ID", ""), time.time()
            with srv.lock:
                srv.received[delivery] = srv.received.get(delivery, 0) + 1
                srv.arrived.setdefault(delivery, now)
            body, status = '{"resourceType":"Bundle","type":"transaction-response"}', 201
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@dataclass
class Part:
    name: str
    queued: int
    delivered: int
    duplicates: int
    seconds: float  # first delivery to last
    p50: float
    p99: float

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else float("nan")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[int(q * (len(values) - 1))] if values else float("nan")


class Run:
    def __init__(self, redis_url: str, workers: int):
        self.redis = Redis.from_url(redis_url)
        self.redis.flushdb()
        self.partner = LoopbackPartner()
        threading.Thread(target=self.partner.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{self.partner.server_port}"
        key, _ = partner_keys.generate("bench-forward", tempfile.mkdtemp(), "ES384")
        PartnerDirectory(self.redis).put(
            Partner(PARTNER, "hub", base + "/fhir", base + "/oauth2/token", "bench", str(key))
        )
        self.env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT), "FHIRPLUG_STORE_URL": ""}
        self.n_workers = workers
        self.workers: list[subprocess.Popen] = []
        self.message = Case().load("valid-spoke-to-hub.json")
        self.queued_at: dict[str, float] = {}

    def start_workers(self) -> None:
        self.workers = [
            subprocess.Popen(
                [sys.executable, "-m", "worker"],
                env=self.env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for _ in range(self.n_workers)
        ]

    def stop(self) -> None:
        for w in self.workers:
            os.killpg(w.pid, 15)
        for w in self.workers:
            w.wait(timeout=60)
        self.redis.flushdb()

    def queue(self, tag: str, i: int) -> str:
        body = dict(self.message, identifier={**self.message["identifier"], "value": f"bench-{tag}-{i}"})
        d = Delivery(PARTNER, "POST", "", body, task_key=f"bench|{tag}-{i}", kind=DeliveryKind.SPOKE_TO_HUB)
        self.queued_at[d.id] = d.queued_at
        return enqueue(d, self.redis)

    def wait_for(self, ids: list[str], timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.partner.lock:
                if all(i in self.partner.received for i in ids):
                    return
            time.sleep(0.1)

    def part(self, name: str, ids: list[str]) -> Part:
        with self.partner.lock:
            arrived = [self.partner.arrived[i] for i in ids if i in self.partner.arrived]
            duplicates = sum(self.partner.received.get(i, 0) - 1 for i in ids if i in self.partner.received)
        latencies = [self.partner.arrived[i] - self.queued_at[i] for i in ids if i in self.partner.arrived]
        seconds = max(arrived) - min(arrived) if len(arrived) > 1 else 0.0
        return Part(
            name,
            len(ids),
            len(arrived),
            duplicates,
            seconds,
            statistics.median(latencies) if latencies else float("nan"),
            percentile(latencies, 0.99),
        )

    def burst(self, n: int) -> Part:
        ids = [self.queue("burst", i) for i in range(n)]  # all waiting before a worker starts
        self.start_workers()
        self.wait_for(ids, timeout=max(600, n / 20))
        return self.part(f"burst of {n:,} queued at once", ids)

    def steady(self, rate: float, seconds: float) -> Part:
        if not self.workers:
            self.start_workers()
            time.sleep(3)
        ids, t0, n = [], time.time(), int(rate * seconds)
        for i in range(n):
            pause = t0 + i / rate - time.time()
            if pause > 0:
                time.sleep(pause)
            ids.append(self.queue("steady", i))
        self.wait_for(ids, timeout=300)
        return self.part(f"steady {rate:g}/s for {seconds:g} s", ids)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3"))
    ap.add_argument("--burst", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--write", help="the RESULTS.md whose bench.forwarding section to rewrite")
    args = ap.parse_args(argv)
    run = Run(args.redis_url, args.workers)
    parts: list[Part] = []
    try:
        if args.burst:
            parts.append(run.burst(args.burst))
        if args.seconds and args.rate:
            parts.append(run.steady(args.rate, args.seconds))
    finally:
        run.stop()
    delivered = sum(p.delivered for p in parts)
    tokens = run.partner.token_requests
    per_1000 = tokens * 1000 / delivered if delivered else float("nan")
    for p in parts:
        print(
            f"{p.name}: delivered {p.delivered}/{p.queued}, lost {p.queued - p.delivered}, "
            f"duplicates {p.duplicates}, {p.rate:.0f}/s, enqueue-to-delivered p50 {p.p50:.2f} s, "
            f"p99 {p.p99:.2f} s"
        )
    print(f"token requests: {tokens} for {delivered} deliveries ({per_1000:.2f} per 1,000)")
    if args.write:
        lines = [
            f"## Forwarding: deliveries to a loopback partner with {args.workers} workers",
            "",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- Machine: {machine()}",
            "- Method: `python -m bench.forwarding` (see its docstring): seed-sized spoke-to-hub bundles "
            f"queued onto RQ, delivered by {args.workers} `python -m worker` processes with our "
            "signed-JWT client to a loopback partner that answers 201 at once and counts each delivery "
            "id and token request. Rate: first delivery to last.",
            "",
            "| part | delivered | lost | duplicates | deliveries/s | enqueue-to-delivered p50 s | p99 s |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {p.name} | {p.delivered} / {p.queued} | {p.queued - p.delivered} | {p.duplicates} | "
                f"{p.rate:.0f} | {p.p50:.2f} | {p.p99:.2f} |"
                for p in parts
            ),
            "",
            f"Token requests: {tokens} for {delivered} deliveries ({per_1000:.2f} per 1,000).",
            "",
        ]
        write_section(Path(args.write), "bench.forwarding", "\n".join(lines))
    ok = all(p.delivered == p.queued and p.duplicates == 0 for p in parts)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
