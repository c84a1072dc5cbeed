"""A hub's day, driven at a fixed arrival rate: fhirplug against the same store work sent to HAPI alone.

    python -m bench.hub_day --rate 2 --seconds 60 --write bench/RESULTS.md   # needs `make up`

Each *journey* is one prescription through the hub, as the seed describes it, for a patient of
its own (a random valid NHS Number): a spoke (one of ``--spokes``, 20 by default) posts its
spoke-to-hub message; the hub's system polls its queue
(a Task search) and reads the Task; it accepts the Task (PATCH), reads it again, starts it
(PATCH to in-progress with a business status) and sends the dispense back (the hub-to-spoke
message, which completes the Task and the prescription). Journeys start at ``--rate`` per
second whatever the answers' speed (an open loop: a slow side queues, as a real hub would), each
one's steps run in order, and every step's latency is recorded by its kind.

The two sides take turns in slices of ``--slice`` seconds so that the store's growth and the
machine's drift fall on both alike:

- **fhirplug**: a hub deployment's proxy (its ODS code, like the spokes', made up anew each run)
  on the `make up` store, started for the run on a
  Redis database of its own with no worker, every spoke and the hub a registered client with its
  own signed-JWT token, every spoke a registered partner (so the hub's moves and dispense
  returns are queued for it, as at a real hub; no worker sends them): tenancy, message checks,
  profile rules, the exactly-once claim, the Task state machine, audit events, routing with its
  outbox records and the read cache all do their work.
- **HAPI alone**: the same requests straight to the store as its administrator: the message as
  a transaction, the search, the reads, the two JSON Patches and the dispense return as a
  transaction (its conditional PATCH of the Task included) — the same business outcome without
  any rule.

Reported: journeys and requests per second, p50/p95/p99 per step kind on each side, errors, and
the ratio of the medians (per kind, and of a whole journey's time: the figure issue 19 sets at
≤ 1.3×). The messages' conditional creates (``ifNoneExist``) are dropped on both sides, as in
``bench.intake``: in a store holding every earlier run's Patients and Organizations they match
many (412), and concurrent journeys creating the same one collide in HAPI's unique index (409).
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
from redis import Redis

from bench.__main__ import machine
from bench.auth import free_port
from bench.report import write_section
from ops import stack
from proxy.auth import partner_keys
from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient
from proxy.auth.registry import ClientRecord, ClientRegistry
from proxy.partners import Partner, PartnerDirectory
from proxy.store_caller import store_auth
from tests.support.messages import RFC4122, Case

EXAMPLE_HUB, EXAMPLE_SPOKE, EXAMPLE_NHS_NUMBER = "FA565", "VNE51", "9449304130"
# this run's organisations: fresh codes, so that the conditional creates fhirplug makes of each
# message's Organization and Patient (hubspoke.business_identifiers) meet no copies an earlier run
# or test left in a long-lived store
RUN = secrets.token_hex(2).upper()
HUB = f"H{RUN}"
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json", "Accept": "application/fhir+json"}
STEPS = ("message", "poll", "read", "accept", "reread", "start", "dispense")
SCOPES = "system/*.cruds"


def spoke_codes(n: int) -> list[str]:
    """Made-up ODS codes of the example's shape, new each run."""
    return [f"S{RUN[:2]}{i:02d}" for i in range(n)]


def nhs_number() -> str:
    """A random NHS Number that passes the Modulus 11 check (every journey its own patient)."""
    while True:
        digits = [secrets.randbelow(10) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check == 11:
            check = 0
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def _as(text: str, spoke: str, patient: str) -> dict:
    return json.loads(
        text.replace(EXAMPLE_SPOKE, spoke).replace(EXAMPLE_HUB, HUB).replace(EXAMPLE_NHS_NUMBER, patient)
    )


def messages_for(spoke: str) -> tuple[dict, dict, str]:
    """One journey's spoke-to-hub and hub-to-spoke messages (fresh identities), for ``spoke``."""
    case, patient = Case(), nhs_number()
    outbound = _as(json.dumps(case.load("valid-spoke-to-hub.json")), spoke, patient)
    back = _as(json.dumps(case.load("valid-hub-to-spoke.json")), spoke, patient)
    for e in outbound["entry"] + back["entry"]:
        e["request"].pop("ifNoneExist", None)
    return outbound, back, case.task_identifier


@dataclass
class Side:
    """Where one side sends each step, and with which credentials."""

    name: str
    base: str
    spoke_session: dict[str, requests.Session]
    hub_session: requests.Session
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    journeys: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, step: str, send) -> requests.Response | None:
        t0 = time.perf_counter()
        try:
            r = send()
        except requests.RequestException as exc:
            with self.lock:
                self.errors.append(f"{step}: {exc}")
            return None
        ms = (time.perf_counter() - t0) * 1000
        with self.lock:
            self.latencies[step].append(ms)
            if r.status_code >= 300:
                self.errors.append(f"{step}: {r.status_code} {r.text[:200]}")
        return r if r.status_code < 300 else None

    def journey(self, spoke: str) -> None:
        outbound, back, task_identifier = messages_for(spoke)
        spoke_s, hub = self.spoke_session[spoke], self.hub_session
        t0 = time.perf_counter()
        r = self.timed("message", lambda: spoke_s.post(self.base, json=outbound, headers=FHIR_JSON))
        if r is None:
            return
        task_id = next(
            e["response"]["location"].split("/")[1]
            for e in r.json()["entry"]
            if e["response"].get("location", "").startswith("Task/")
        )
        query = {"status": "requested", "identifier": f"{RFC4122}|{task_identifier}"}
        if self.timed("poll", lambda: hub.get(f"{self.base}/Task", params=query)) is None:
            return
        url = f"{self.base}/Task/{task_id}"
        steps = [
            ("read", lambda: hub.get(url)),
            ("accept", lambda: hub.patch(url, json=[_replace("status", "accepted")], headers=JSON_PATCH)),
            ("reread", lambda: hub.get(url)),
            (
                "start",
                lambda: hub.patch(
                    url,
                    json=[_replace("status", "in-progress"), _add("businessStatus", {"text": "assembling"})],
                    headers=JSON_PATCH,
                ),
            ),
            ("dispense", lambda: hub.post(self.base, json=back, headers=FHIR_JSON)),
        ]
        for step, send in steps:
            if self.timed(step, send) is None:
                return
        with self.lock:
            self.journeys.append((time.perf_counter() - t0) * 1000)


def _replace(element: str, value) -> dict:
    return {"op": "replace", "path": f"/{element}", "value": value}


def _add(element: str, value) -> dict:
    return {"op": "add", "path": f"/{element}", "value": value}


def drive(side: Side, spokes: list[str], rate: float, seconds: float, pool: ThreadPoolExecutor) -> int:
    """Start journeys at ``rate`` per second for ``seconds`` (open loop); wait for them all."""
    started, futures, t0 = 0, [], time.perf_counter()
    while (due := t0 + started / rate) < t0 + seconds:
        time.sleep(max(0.0, due - time.perf_counter()))
        futures.append(pool.submit(side.journey, spokes[started % len(spokes)]))
        started += 1
    for f in futures:
        f.result()
    return started


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def session(token: str | None = None, auth=None) -> requests.Session:
    s = requests.Session()
    s.headers["Accept"] = "application/fhir+json"
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    if auth is not None:
        s.auth = auth
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
    s.mount("http://", adapter)
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=2.0, help="journeys started per second")
    ap.add_argument("--seconds", type=float, default=60.0, help="driven time per side")
    ap.add_argument("--slice", type=float, default=15.0, help="seconds before the sides change turns")
    ap.add_argument("--spokes", type=int, default=20)
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds of journeys per side, not counted")
    ap.add_argument("--write")
    args = ap.parse_args()
    cfg = stack.StackConfig.from_env()
    bench_redis = cfg.effective_redis_url.rsplit("/", 1)[0] + "/4"
    redis = Redis.from_url(bench_redis)
    redis.flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="fhirplug-bench-hub-day-"))
    spokes = spoke_codes(args.spokes)
    registry, partners = ClientRegistry(redis), PartnerDirectory(redis)
    keys = {}
    for code in [*spokes, HUB]:
        client_id = f"bench-day-{code.lower()}"
        key, jwks = partner_keys.generate(client_id, tmp, "RS512", rsa_bits=2048)
        role = "hub" if code == HUB else "spoke"
        registry.put(ClientRecord(client_id, code, role, SCOPES.split(), jwks=json.loads(jwks.read_text())))
        keys[code] = (client_id, key)
        if code != HUB:  # each spoke is a deployment of its own: the hub's moves are sent to it
            partners.put(
                Partner(
                    code, "spoke", "http://127.0.0.1:9/fhir", "http://127.0.0.1:9/oauth2/token", "x", str(key)
                )
            )
    env = {
        "REDIS_URL": bench_redis,
        "FHIRPLUG_ODS": HUB,
        "FHIRPLUG_ROLE": "hub",
        "FHIRPLUG_KEYS_DIR": str(tmp / "server-keys"),
    }
    proxy = stack.start_proxy(cfg, name="bench-hub-day", port=free_port(), env=env)
    try:

        def token(code: str) -> str:
            client_id, key = keys[code]
            creds = PartnerCredentials(proxy + "/oauth2/token", client_id, json.loads(key.read_text()))
            return PartnerTokenClient(creds).token()

        direct_admin = session(auth=store_auth())
        sides = [
            Side(
                "fhirplug",
                proxy + "/fhir",
                {code: session(token(code)) for code in spokes},
                session(token(HUB)),
            ),
            Side("HAPI alone", cfg.store_url, dict.fromkeys(spokes, direct_admin), direct_admin),
        ]
        workers = max(16, int(args.rate * 20))
        with ThreadPoolExecutor(workers) as pool:
            for side in sides:  # warm-up: JIT, caches, connections; not counted
                drive(side, spokes, args.rate, args.warmup, pool)
                side.latencies.clear()
                side.journeys.clear()
                side.errors.clear()
            driven = {side.name: 0.0 for side in sides}
            counts = {side.name: 0 for side in sides}
            while min(driven.values()) < args.seconds:
                for side in sides:
                    part = min(args.slice, args.seconds - driven[side.name])
                    if part <= 0:
                        continue
                    counts[side.name] += drive(side, spokes, args.rate, part, pool)
                    driven[side.name] += part
                    print(
                        f"{side.name}: {driven[side.name]:.0f}/{args.seconds:.0f} s, "
                        f"{len(side.journeys)} journeys done, {len(side.errors)} errors",
                        flush=True,
                    )
        queued = redis.llen("rq:queue:fhirplug-forward")
    finally:
        stack.stop(cfg, "bench-hub-day")
        redis.flushdb()
    report(args, sides, counts, queued)
    return 0 if not any(side.errors for side in sides) else 1


def report(args, sides: list[Side], counts: dict[str, int], queued: int) -> None:
    ours, hapi = sides
    lines = [
        "## A hub's day: the mixed workload at a fixed arrival rate, fhirplug against HAPI alone",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {machine()}",
        f"- Method: `python -m bench.hub_day --rate {args.rate:g} --seconds {args.seconds:g} "
        f"--spokes {args.spokes}` on the `make up` store (see the module's docstring): "
        f"{args.rate:g} journeys/s, {args.spokes} spokes and one hub, each journey 7 requests "
        f"(message, poll, read, accept, re-read, start, dispense return); sides in turns of "
        f"{args.slice:g} s; {args.warmup:g} s of warm-up per side not counted.",
        "- Target (issue 19): a whole journey ≤ 1.3 × HAPI alone, errors 0.",
        "",
        "| step | HAPI alone p50 ms | p95 | p99 | fhirplug p50 ms | p95 | p99 | ratio of p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in STEPS:
        h, o = hapi.latencies.get(step, []), ours.latencies.get(step, [])
        if not h or not o:
            continue
        ratio = statistics.median(o) / statistics.median(h)
        lines.append(
            f"| {step} | {statistics.median(h):.1f} | {pct(h, 0.95):.1f} | {pct(h, 0.99):.1f} "
            f"| {statistics.median(o):.1f} | {pct(o, 0.95):.1f} | {pct(o, 0.99):.1f} | {ratio:.2f} |"
        )
    if hapi.journeys and ours.journeys:
        ratio = statistics.median(ours.journeys) / statistics.median(hapi.journeys)
        lines.append(
            f"| **whole journey** | {statistics.median(hapi.journeys):.1f} | {pct(hapi.journeys, 0.95):.1f} "
            f"| {pct(hapi.journeys, 0.99):.1f} | {statistics.median(ours.journeys):.1f} "
            f"| {pct(ours.journeys, 0.95):.1f} | {pct(ours.journeys, 0.99):.1f} | **{ratio:.2f}** |"
        )
    lines += [
        "",
        f"Journeys started: fhirplug {counts[ours.name]}, HAPI alone {counts[hapi.name]}; completed: "
        f"fhirplug {len(ours.journeys)}, HAPI alone {len(hapi.journeys)}. Errors: fhirplug "
        f"{len(ours.errors)}, HAPI alone {len(hapi.errors)}. Deliveries queued at the hub for the "
        f"spokes (never sent: no worker), warm-up included: {queued}.",
        "",
    ]
    for side in sides:
        for e in side.errors[:5]:
            lines.append(f"- {side.name} error: `{e}`")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(Path(args.write), "bench.hub_day", text)


if __name__ == "__main__":
    sys.exit(main())
