"""Forwarding throughput: 1,000 seed-sized bundles delivered to a loopback partner by 2 workers.

    python -m bench.forwarding --write bench/RESULTS.md     # needs `make up` (Redis); updates its section

The partner is a small HTTP server on loopback with a token endpoint and a FHIR base that
answers 201 at once and records each delivery id it receives, so the run measures fhirplug's
forwarding (queue, workers, signed-JWT token, HTTP) rather than a receiving store. Deliveries
are queued straight onto a Redis database of their own, and two real workers (``python -m
worker``) deliver them. Reported: delivered count, duplicates (the same delivery id twice),
throughput, and enqueue-to-delivered latency p50 and p99.
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from redis import Redis

from bench.__main__ import machine
from bench.report import write_section
from forwarding.delivery import Delivery
from forwarding.queue import enqueue
from ops import stack
from proxy.auth import partner_keys
from proxy.partners import Partner, PartnerDirectory
from tests.support.messages import Case

ROOT = Path(__file__).resolve().parent.parent


class LoopbackPartner(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: dict[str, int] = {}
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        self.queued_at: dict[str, float] = {}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/oauth2/token"):
            body, status = (
                json.dumps({"access_token": "loopback", "token_type": "Bearer", "expires_in": 600}),
                200,
            )
        else:
            delivery = self.headers.get("X-Delivery-ID", "")
            now = time.time()
            with self.server.lock:
                self.server.received[delivery] = self.server.received.get(delivery, 0) + 1
                if delivery in self.server.queued_at and self.server.received[delivery] == 1:
                    self.server.latencies.append(now - self.server.queued_at[delivery])
            body, status = '{"resourceType":"Bundle","type":"transaction-response"}', 201
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--write")
    args = ap.parse_args()
    cfg = stack.StackConfig.from_env()
    url = cfg.effective_redis_url.rsplit("/", 1)[0] + "/3"
    redis = Redis.from_url(url)
    redis.flushdb()
    partner = LoopbackPartner()
    threading.Thread(target=partner.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{partner.server_port}"
    key, _ = partner_keys.generate("bench-forward", tempfile.mkdtemp(), "ES384")
    PartnerDirectory(redis).put(
        Partner("FB001", "hub", base + "/fhir", base + "/oauth2/token", "bench", str(key))
    )
    env = {**os.environ, "REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    env.pop("FHIRPLUG_STORE_URL", None)  # no outbox sweep: these deliveries were queued directly
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
    try:
        time.sleep(2)  # the workers start
        message = Case().load("valid-spoke-to-hub.json")
        t0 = time.time()
        for i in range(args.n):
            body = dict(message, identifier={**message["identifier"], "value": f"bench-{i}"})
            d = Delivery("FB001", "POST", "", body, task_key=f"bench|{i}")
            partner.queued_at[d.id] = d.queued_at
            enqueue(d, redis)
        queued_s = time.time() - t0
        deadline = time.time() + 600
        while len(partner.received) < args.n and time.time() < deadline:
            time.sleep(0.2)
        wall = time.time() - t0
    finally:
        for w in workers:
            os.killpg(w.pid, 15)
        for w in workers:
            w.wait(timeout=30)
        redis.flushdb()
    delivered = len(partner.received)
    duplicates = sum(c - 1 for c in partner.received.values())
    lat = sorted(partner.latencies)
    p50 = statistics.median(lat) if lat else float("nan")
    p99 = lat[int(0.99 * (len(lat) - 1))] if lat else float("nan")
    rate = delivered / wall
    print(
        f"delivered {delivered}/{args.n}, duplicates {duplicates}, {rate:.0f}/s, "
        f"p50 {p50:.2f} s, p99 {p99:.2f} s"
    )
    if args.write:
        lines = [
            "## Forwarding: 1,000 bundles to a loopback partner with 2 workers",
            "",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- Machine: {machine()}",
            f"- Method: `python -m bench.forwarding`: {args.n} seed-sized spoke-to-hub bundles queued as "
            f"deliveries (queuing took {queued_s:.1f} s), delivered by {args.workers} RQ workers "
            "(`python -m worker`) with our signed-JWT client to a loopback partner that answers 201 at "
            "once and counts each delivery id it receives.",
            "",
            "| delivered | duplicates | throughput (deliveries/s) | enqueue-to-delivered p50 s | p99 s |",
            "|---:|---:|---:|---:|---:|",
            f"| {delivered} / {args.n} | {duplicates} | {rate:.0f} | {p50:.2f} | {p99:.2f} |",
            "",
            "Latency counts from each delivery's queuing, and all were queued at once, so it is mostly "
            "time spent waiting behind the others; RQ forks a work-horse process per job, which is what "
            "bounds throughput per worker.",
            "",
        ]
        write_section(Path(args.write), "bench.forwarding", "\n".join(lines))
    return 0 if delivered == args.n and duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
