"""Proxy vs direct HAPI: read-by-id, search, create and a 10-entry transaction.

    python -m bench --proxy http://127.0.0.1:8080/fhir --direct http://127.0.0.1:8090/fhir

Each scenario runs at concurrency 1 and 8. Load comes from wrk (C, epoll) so that the load
generator is not what limits either side on a small machine; a Python client was (it measured
mostly itself). Rounds alternate proxy and direct so that drift on the machine (JIT warm-up,
GC, the other core's load) falls on both alike; the first round of each is a warm-up and is
not counted. Latency figures are the median over rounds of each round's p50 and p95. Both
sides are asked for identity encoding, so the ratio measures the proxy's work, not gzip.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests

from proxy.config import redis_url_from_env
from proxy.store_caller import store_auth

HEADERS = {"Accept": "application/fhir+json", "Accept-Encoding": "identity"}
JSON = {**HEADERS, "Content-Type": "application/fhir+json"}


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    errors: int = 0

    def add(self, other: Sample) -> None:
        self.latencies += other.latencies
        self.wall += other.wall
        self.errors += other.errors

    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    def p95_ms(self) -> float:
        return statistics.quantiles(self.latencies, n=20)[18] * 1000

    def rps(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0


# wrk's summary as one JSON line (a %-template: "%%d" is "%d" once filled in); every bench's
# wrk script ends with it, so that one parser reads them all
WRK_DONE = r"""done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p95_us":%%d,"errors":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""

WRK_SCRIPT = (
    r"""
local ids = {%(ids)s}
local kind = "%(kind)s"
local body = [[%(body)s]]
local prefix = "%(prefix)s"
local tag = "%(tag)s"
local token = "%(token)s"
local caller = "%(caller)s"
local search_extra = "%(search_extra)s"
request = function()
  local h = {["Accept"] = "application/fhir+json", ["Accept-Encoding"] = "identity"}
  if token ~= "" then h["Authorization"] = "Bearer " .. token end
  if caller ~= "" then h["X-Fhirplug-Caller"] = caller end
  if kind == "read" then
    return wrk.format("GET", prefix .. "/Patient/" .. ids[math.random(#ids)], h)
  elseif kind == "search" then
    return wrk.format("GET", prefix .. "/Patient?family=" .. tag .. "&_count=10" .. search_extra, h)
  end
  h["Content-Type"] = "application/fhir+json"
  if kind == "create" then
    return wrk.format("POST", prefix .. "/Patient", h, body)
  end
  return wrk.format("POST", prefix, h, body)
end
"""
    + WRK_DONE
)


@dataclass
class Round:
    requests: int
    duration_s: float
    p50_ms: float
    p95_ms: float
    errors: int


@dataclass
class Side:
    rounds: list[Round] = field(default_factory=list)

    def median_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.rounds)

    def p95_ms(self) -> float:
        return statistics.median(r.p95_ms for r in self.rounds)

    def rps(self) -> float:
        return sum(r.requests for r in self.rounds) / sum(r.duration_s for r in self.rounds)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)


def seed(base: str, tag: str, n: int = 50, labels: list[dict] | None = None) -> list[str]:
    """``n`` Patients of family ``tag`` straight into a store (as its administrator)."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"family": tag, "given": [f"G{i}"]}],
                    "birthDate": "1970-01-01",
                    "gender": "female",
                    **({"meta": {"security": labels}} if labels else {}),
                },
                "request": {"method": "POST", "url": "Patient"},
            }
            for i in range(n)
        ],
    }
    r = requests.post(base, json=bundle, headers=JSON, timeout=120, auth=store_auth())
    r.raise_for_status()
    return [e["response"]["location"].split("/")[1] for e in r.json()["entry"]]


def transaction_bundle(tag: str) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {"resourceType": "Patient", "name": [{"family": tag}]},
                "request": {"method": "POST", "url": "Patient"},
            }
            for _ in range(10)
        ],
    }


SCENARIOS = {
    "read": "read",
    "search": "search",
    "create": "create",
    "transaction (10 entries)": "transaction",
}


def wrk_round(
    base: str,
    kind: str,
    ids: list[str],
    tag: str,
    concurrency: int,
    seconds: float,
    script_dir: str,
    token: str = "",
    caller: str = "",
    search_extra: str = "",
    labels: list[dict] | None = None,
) -> Round:
    """One wrk run; ``search_extra`` is appended to the search's query, ``labels`` go into the
    meta.security of what ``create`` posts."""
    url = urlsplit(base)
    if kind == "create":
        created = {"resourceType": "Patient", "name": [{"family": f"{tag}-new"}]}
        body = json.dumps({**created, "meta": {"security": labels}} if labels else created)
    elif kind == "transaction":
        body = json.dumps(transaction_bundle(f"{tag}-tx"))
    else:
        body = ""
    script = os.path.join(script_dir, f"{kind}.lua")
    with open(script, "w") as f:
        f.write(
            WRK_SCRIPT
            % {
                "ids": ",".join(f'"{i}"' for i in ids),
                "kind": kind,
                "body": body,
                "prefix": url.path.rstrip("/"),
                "tag": tag,
                "token": token,
                "caller": caller,
                "search_extra": search_extra,
            }
        )
    threads = min(concurrency, 2)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            script,
            f"{url.scheme}://{url.netloc}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    d = json.loads(line[7:])
    return Round(d["requests"], d["duration_us"] / 1e6, d["p50_us"] / 1000, d["p95_us"] / 1000, d["errors"])


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((x.split(":", 1)[1].strip() for x in f if x.startswith("model name")), cpu)
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", required=True, help="the proxy's FHIR base")
    ap.add_argument("--direct", required=True, help="HAPI's FHIR base")
    ap.add_argument("--rounds", type=int, default=4, help="counted rounds per side (plus one warm-up)")
    ap.add_argument("--seconds", type=float, default=4, help="length of one round")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--write", help="write a Markdown report to this file")
    ap.add_argument("--token", help="Bearer token for the proxy (default: register a bench client)")
    ap.add_argument(
        "--uncached",
        action="store_true",
        help="also measure read and search on a second proxy with the read cache off "
        "(started on the `make up` stack for the run): what relaying every read costs",
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("bench needs wrk (Debian package wrk): apt-get install wrk", file=sys.stderr)
        return 2
    uncached = start_uncached_proxy() if args.uncached else None
    tokens = {"proxy": token_source(args.token, args.proxy), "direct": lambda: ""}
    if uncached:
        tokens["proxy, read cache off"] = token_source(None, uncached)  # its own issuer

    tag = f"Bench{uuid.uuid4().hex[:8]}"
    ids = seed(args.direct, tag)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, kind in SCENARIOS.items():
                proxies = {"proxy": args.proxy}
                if uncached and kind in ("read", "search"):
                    proxies["proxy, read cache off"] = uncached
                for conc in (int(c) for c in args.concurrency.split(",")):
                    bases = {**proxies, "direct": args.direct}
                    sides = {label: Side() for label in bases}
                    for rnd in range(args.rounds + 1):
                        order = list(bases)[rnd % len(bases) :] + list(bases)[: rnd % len(bases)]
                        for label in order:
                            token = tokens[label]()
                            # the store answers only callers the proxy signs for: the bench is the admin
                            caller = store_auth().signer.header("admin") if label == "direct" else ""
                            r = wrk_round(
                                bases[label], kind, ids, tag, conc, args.seconds, tmp, token, caller
                            )
                            if rnd:  # round 0 warms every side up
                                sides[label].rounds.append(r)
                    d = sides["direct"]
                    for label in proxies:
                        p = sides[label]
                        shown = name if label == "proxy" else f"{name} ({label[7:]})"
                        row = (shown, conc, p, d, p.median_ms() / d.median_ms())
                        rows.append(row)
                        print(
                            f"{shown:26} c={conc}  proxy median {p.median_ms():7.2f} ms p95 "
                            f"{p.p95_ms():7.2f} {p.rps():7.1f}/s | direct median {d.median_ms():7.2f} ms "
                            f"p95 {d.p95_ms():7.2f} {d.rps():7.1f}/s | ratio {row[4]:.2f}  "
                            f"errors {p.errors}/{d.errors}",
                            flush=True,
                        )
    finally:
        if uncached:
            from ops import stack

            stack.stop(stack.StackConfig.from_env(), UNCACHED)
    if args.write:
        write_report(args, rows)
    return 0


NOTES = "## Analysis"


def token_source(given: str | None, fhir_base: str):
    """The token to send with each round: the one given, or else one from the product's own
    client, which renews it before it expires (the whole run outlasts one token's lifetime)."""
    if given is not None:
        return lambda: given
    from bench.client import bench_credentials
    from proxy.auth.outbound import PartnerTokenClient

    redis_url = redis_url_from_env()
    return PartnerTokenClient(bench_credentials(redis_url, fhir_base.removesuffix("/fhir"))).token


UNCACHED = "bench-uncached"


def start_uncached_proxy() -> str:
    """A proxy like `make up`'s, on the same store and Redis, with FHIRPLUG_READ_CACHE_TTL=0."""
    import socket

    from ops import stack

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = stack.StackConfig.from_env()
    return stack.start_proxy(cfg, name=UNCACHED, port=port, env={"FHIRPLUG_READ_CACHE_TTL": "0"}) + "/fhir"


def write_report(args, rows) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark: fhirplug proxy vs direct HAPI",
        "",
        f"- Date: {now}",
        f"- Machine: {machine()}",
        f"- Proxy: `{args.proxy}` · direct HAPI: `{args.direct}` (embedded HAPI 8.8.0 on H2, same machine)",
        f"- Method: `python -m bench` (wrk as the load generator, see `bench/__main__.py`); "
        f"{args.rounds} counted rounds of {args.seconds:g} s per side after one warm-up round, the sides "
        "taking turns; latency = median over rounds of each round's p50/p95; identity encoding. "
        "Rows marked *read cache off* are a second proxy, alike but for `FHIRPLUG_READ_CACHE_TTL=0`, "
        "measured in the same rounds against the same direct figures.",
        "- Target for this step: proxy/direct median ratio ≤ 1.25 for read and search at concurrency 8.",
        "",
        "| interaction | conc. | proxy median ms | proxy p95 ms | proxy req/s | direct median ms "
        "| direct p95 ms | direct req/s | median ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, conc, p, d, ratio in rows:
        lines.append(
            f"| {name} | {conc} | {p.median_ms():.2f} | {p.p95_ms():.2f} | {p.rps():.0f} "
            f"| {d.median_ms():.2f} | {d.p95_ms():.2f} | {d.rps():.0f} | **{ratio:.2f}** |"
        )
    errors = sum(p.errors + d.errors for _, _, p, d, _ in rows)
    lines += ["", f"Failed requests during the run: {errors}.", ""]
    notes = ""
    if os.path.exists(args.write):  # the hand-written analysis below the table survives a re-run
        with open(args.write) as f:
            old = f.read()
        if NOTES in old:
            notes = old[old.index(NOTES) :]
    with open(args.write, "w") as f:
        f.write("\n".join(lines) + ("\n" + notes if notes else ""))


if __name__ == "__main__":
    raise SystemExit(main())
