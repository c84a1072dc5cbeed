"""What authentication costs: the token endpoint's throughput, and the latency the bearer check
adds to a read, measured in one run against the same read on a proxy with FHIRPLUG_AUTH=off.

    python -m bench.auth --write bench/RESULTS.md     # needs `make up` (Redis, store); updates its section

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
from bench.report import write_section
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


def check_cpu_us(cfg, token: str, issuer: str, n: int = 20000) -> float:
    """CPU per request of the bearer check itself, in-process, with the token's verification cached:
    the figure wrk's latencies on a shared 2-core machine can only bracket."""
    from proxy.auth.enforcement import AuthEnforcer
    from proxy.auth.server import AuthServer
    from proxy.context import Interaction, RequestContext, make_request_view

    server = AuthServer.build(cfg.effective_redis_url, str(cfg.var_dir / "keys"), 300)
    enforcer = AuthEnforcer(server.tokens, issuer)
    headers = {"Authorization": f"Bearer {token}"}

    def one():
        view = make_request_view("GET", "/fhir/Patient/1", "Patient/1", [], headers, None, "127.0.0.1")
        ctx = RequestContext(
            view, Interaction("read", "GET", "Patient", "1"), public_base=cfg.proxy_url + "/fhir"
        )
        enforcer.fhirplug_request(ctx)

    one()  # the first call verifies the signature; the rest hit the cache, as a busy client does
    t0 = time.process_time()
    for _ in range(n):
        one()
    return (time.process_time() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--tokens", type=int, default=300, help="token requests for the throughput figure")
    ap.add_argument("--write", help="write a Markdown report to this file")
    args = ap.parse_args()

    cfg = stack.StackConfig.from_env()
    # three fresh proxies on the same store, alike but for FHIRPLUG_AUTH: the two without auth are
    # an A/A control that shows how far two identical proxies differ on this machine
    names = {"auth": {}, "off-1": {"FHIRPLUG_AUTH": "off"}, "off-2": {"FHIRPLUG_AUTH": "off"}}
    bases = {
        k: stack.start_proxy(cfg, name=f"bench-{k}", port=free_port(), env=env) + "/fhir"
        for k, env in names.items()
    }
    creds = bench_credentials(cfg.effective_redis_url, bases["auth"].removesuffix("/fhir"))
    token = PartnerTokenClient(creds).token()
    try:
        tag = f"Bench{uuid.uuid4().hex[:8]}"
        ids = seed(cfg.store_url, tag)
        rows = []
        with tempfile.TemporaryDirectory() as scripts:
            for conc in (1, 8):
                sides = {k: Side() for k in names}
                for rnd in range(args.rounds + 1):
                    order = list(names)[rnd % 3 :] + list(names)[: rnd % 3]  # rotate who goes first
                    for label in order:
                        tok = token if label == "auth" else ""
                        r = wrk_round(bases[label], "read", ids, tag, conc, args.seconds, scripts, tok)
                        if rnd:
                            sides[label].rounds.append(r)
                a, o1, o2 = sides["auth"], sides["off-1"], sides["off-2"]
                base = (o1.median_ms() + o2.median_ms()) / 2
                rows.append((conc, a, o1, o2, a.median_ms() - base, abs(o1.median_ms() - o2.median_ms())))
                print(
                    f"read c={conc}: with token {a.median_ms():.2f} ms, without {o1.median_ms():.2f} / "
                    f"{o2.median_ms():.2f} ms; added {rows[-1][4]:+.2f} ms, A/A spread {rows[-1][5]:.2f} ms",
                    flush=True,
                )
        cpu_us = check_cpu_us(cfg, token, bases["auth"].removesuffix("/fhir"))
        print(f"bearer check, in-process: {cpu_us:.1f} us CPU per request", flush=True)
        rate, median, failures = token_endpoint(creds, args.tokens, 8)
        print(f"token endpoint: {rate:.0f} tokens/s at c=8, median {median:.1f} ms, {failures} failed")
    finally:
        for k in names:
            stack.stop(cfg, f"bench-{k}")
    if args.write:
        lines = [
            "## Authentication: what the bearer check and the token endpoint cost",
            "",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- Machine: {machine()}",
            "- Method: `python -m bench.auth`: three fresh proxies on the `make up` store, alike but for "
            "authentication: one checks a Bearer token, two run `FHIRPLUG_AUTH=off` (an A/A control: how "
            "far two identical proxies differ here). wrk read-by-id rounds rotate between them; one "
            f"warm-up round, {args.rounds} counted rounds of {args.seconds:.0f} s; "
            "median of each round's p50.",
            "- Target: at most 0.5 ms added to a read's median latency.",
            "",
            "| read | with token: median ms | p95 ms | req/s | no auth A: median ms | no auth B: median ms "
            "| added ms (token − mean of A, B) | A/A spread ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for conc, a, o1, o2, added, spread in rows:
            lines.append(
                f"| c={conc} | {a.median_ms():.2f} | {a.p95_ms():.2f} | {a.rps():.0f} | {o1.median_ms():.2f} "
                f"| {o2.median_ms():.2f} | **{added:+.2f}** | {spread:.2f} |"
            )
        lines += [
            "",
            f"Bearer check measured in-process (token verification cached, as for any client that "
            f"sends more than one request per token): **{cpu_us:.1f} µs of CPU per request** "
            f"({cpu_us / 1000:.3f} ms).",
            "",
            f"Token endpoint: **{rate:.0f} tokens/s** at concurrency 8 ({args.tokens} requests, each with a "
            f"fresh RS512 assertion and jti), median {median:.1f} ms, {failures} failed.",
            "",
        ]
        lines += [
            "Reading it: the c=1 row is the figure against the target; at c=8 three proxies, HAPI and wrk",
            "share 2 cores, and the A/A spread (two identical proxies) is larger than anything the check",
            "could add, so that row only bounds it. The in-process figure is the check's own cost.",
            "",
        ]
        write_section(Path(args.write), "bench.auth", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
