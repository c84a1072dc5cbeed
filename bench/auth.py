"""What authentication costs: the token endpoint's throughput, and the latency the bearer check
adds to a read, measured in one run against the same read on a proxy with FHIRPLUG_AUTH=off.

    python -m bench.auth --write bench/RESULTS-auth.md     # needs `make up` (Redis, store, proxy)

It registers a benchmark client (fresh RS512 key, test-fixture strength), starts a second proxy
with authentication off on the same store, and alternates wrk rounds between the two.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.__main__ import Side, machine, seed, wrk_round
from bench.client import bench_credentials
from ops import stack
from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient, sign_assertion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token_endpoint(creds: PartnerCredentials, n: int, concurrency: int) -> tuple[float, float, int]:
    """Throughput (tokens/s) and median latency (ms) of n token requests, each with a fresh assertion."""
    assertions = [sign_assertion(creds) for _ in range(n)]  # signed up front: we time the server
    session = requests.Session()
    latencies: list[float] = []
    failures = 0

    def one(a: str):
        t0 = time.perf_counter()
        r = session.post(
            creds.token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": a,
            },
            timeout=30,
        )
        return time.perf_counter() - t0, r.status_code

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for dt, status in pool.map(one, assertions):
            latencies.append(dt * 1000)
            failures += status != 200
    wall = time.perf_counter() - t0
    return n / wall, statistics.median(latencies), failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--tokens", type=int, default=300, help="token requests for the throughput figure")
    ap.add_argument("--write", help="write a Markdown report to this file")
    args = ap.parse_args()

    cfg = stack.StackConfig.from_env()
    proxy = cfg.proxy_url + "/fhir"
    creds = bench_credentials(cfg.effective_redis_url, cfg.proxy_url)
    token = PartnerTokenClient(creds).token()
    port = free_port()
    noauth = stack.start_proxy(cfg, name="bench-noauth", port=port, env={"FHIRPLUG_AUTH": "off"}) + "/fhir"
    try:
        tag = f"Bench{uuid.uuid4().hex[:8]}"
        ids = seed(cfg.store_url, tag)
        rows = []
        with tempfile.TemporaryDirectory() as scripts:
            for conc in (1, 8):
                sides = {"auth": Side(), "noauth": Side()}
                for rnd in range(args.rounds + 1):
                    order = [("auth", proxy, token), ("noauth", noauth, "")]
                    for label, base, tok in order if rnd % 2 == 0 else reversed(order):
                        r = wrk_round(base, "read", ids, tag, conc, args.seconds, scripts, tok)
                        if rnd:
                            sides[label].rounds.append(r)
                a, n = sides["auth"], sides["noauth"]
                rows.append((conc, a, n))
                print(
                    f"read c={conc}: with token {a.median_ms():.2f} ms, without {n.median_ms():.2f} ms, "
                    f"added {a.median_ms() - n.median_ms():+.2f} ms; errors {a.errors}/{n.errors}",
                    flush=True,
                )
        rate, median, failures = token_endpoint(creds, args.tokens, 8)
        print(
            f"token endpoint: {rate:.0f} tokens/s at concurrency 8, median {median:.1f} ms, {failures} failed"
        )
    finally:
        stack.stop(cfg, "bench-noauth")
    if args.write:
        lines = [
            "# Benchmark: what authentication costs",
            "",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- Machine: {machine()}",
            "- Method: `python -m bench.auth`: wrk read-by-id rounds alternating between the proxy with a "
            "Bearer token and a second proxy with `FHIRPLUG_AUTH=off` on the same store; one warm-up "
            f"round, {args.rounds} counted rounds of {args.seconds:.0f} s; median of each round's p50.",
            "- Target: at most 0.5 ms added to a read's median latency.",
            "",
            "| read | token: median ms | p95 ms | req/s | no auth: median ms | p95 ms | req/s | added ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for conc, a, n in rows:
            lines.append(
                f"| c={conc} | {a.median_ms():.2f} | {a.p95_ms():.2f} | {a.rps():.0f} "
                f"| {n.median_ms():.2f} | {n.p95_ms():.2f} | {n.rps():.0f} "
                f"| **{a.median_ms() - n.median_ms():+.2f}** |"
            )
        lines += [
            "",
            f"Token endpoint: **{rate:.0f} tokens/s** at concurrency 8 ({args.tokens} requests, each with a "
            f"fresh RS512 assertion and jti), median {median:.1f} ms, {failures} failed.",
            "",
        ]
        Path(args.write).write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
