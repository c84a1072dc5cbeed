"""Intake of the seed's spoke-to-hub message through fhirplug (token check, message checks,
profile validation, tenant labels, exactly-once claim, store, audit, queueing the delivery)
against what HAPI alone does with it ($validate, then the transaction), in one run.

    python -m bench.intake --write bench/RESULTS.md     # needs `make up`; updates its section

A proxy for the run is started on the `make up` store as a spoke deployment (VNE51) whose
messages go to a hub partner (FA565), on its own Redis database with no worker, so each message
is queued for delivery (and measured) but never sent; that database is emptied at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
from tests.support.messages import Case

PROFILE = "https://fhir.nhs.uk/England/StructureDefinition/England-Bundle-PharmacySpokeToHub"
JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def message() -> dict:
    """A new spoke-to-hub message. Its conditional creates are dropped in both paths: in a store
    that has kept every earlier run's Patients they would match many (HAPI: 412), and the
    comparison must give HAPI alone and fhirplug the same work."""
    bundle = Case().load("valid-spoke-to-hub.json")
    for e in bundle["entry"]:
        e["request"].pop("ifNoneExist", None)
    return bundle


def timed(fn, n: int, conc: int) -> tuple[list[float], float, set]:
    latencies, statuses = [], set()

    def one(_):
        t0 = time.perf_counter()
        status = fn()
        return (time.perf_counter() - t0) * 1000, status

    t0 = time.perf_counter()
    with ThreadPoolExecutor(conc) as pool:
        for ms, status in pool.map(one, range(n)):
            latencies.append(ms)
            statuses.add(status)
    return latencies, n / (time.perf_counter() - t0), statuses


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=60)
    ap.add_argument("--write")
    args = ap.parse_args()
    cfg = stack.StackConfig.from_env()
    bench_redis = cfg.effective_redis_url.rsplit("/", 1)[0] + "/2"
    redis = Redis.from_url(bench_redis)
    redis.flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="fhirplug-bench-intake-"))
    system_key, system_jwks = partner_keys.generate("bench-spoke-system", tmp, "RS512", rsa_bits=2048)
    hub_key, _ = partner_keys.generate("bench-hub", tmp, "RS512", rsa_bits=2048)
    scopes = "system/Task.cruds system/MedicationRequest.cruds system/Patient.cruds system/Organization.cruds"
    ClientRegistry(redis).put(
        ClientRecord(
            "bench-spoke-system", "VNE51", "spoke", scopes.split(), jwks=json.loads(system_jwks.read_text())
        )
    )
    PartnerDirectory(redis).put(
        Partner(
            "FA565", "hub", "http://127.0.0.1:9/fhir", "http://127.0.0.1:9/oauth2/token", "x", str(hub_key)
        )
    )
    env = {
        "REDIS_URL": bench_redis,
        "FHIRPLUG_ODS": "VNE51",
        "FHIRPLUG_ROLE": "spoke",
        "FHIRPLUG_KEYS_DIR": str(tmp / "server-keys"),
    }
    proxy = stack.start_proxy(cfg, name="bench-intake", port=free_port(), env=env)
    try:
        creds = PartnerCredentials(
            proxy + "/oauth2/token", "bench-spoke-system", json.loads(system_key.read_text())
        )
        auth = {**JSON, "Authorization": f"Bearer {PartnerTokenClient(creds).token()}"}
        session = requests.Session()

        def direct():
            bundle = message()
            v = session.post(
                f"{cfg.store_url}/Bundle/$validate", params={"profile": PROFILE}, json=bundle, headers=JSON
            )
            if v.status_code != 200 or any(i["severity"] in ("error", "fatal") for i in v.json()["issue"]):
                return v.status_code
            return session.post(cfg.store_url, json=bundle, headers=JSON).status_code

        def through_fhirplug():
            return session.post(
                proxy + "/fhir", json=Case().load("valid-spoke-to-hub.json"), headers=auth
            ).status_code

        for _ in range(15):  # warm both paths (HAPI's validator speeds up over its first runs)
            direct()
            through_fhirplug()
        rows = []
        for conc in (1, 4):
            d_lat, d_rate, d_st = timed(direct, args.n, conc)
            p_lat, p_rate, p_st = timed(through_fhirplug, args.n, conc)
            ratio = statistics.median(p_lat) / statistics.median(d_lat)
            rows.append((conc, d_lat, d_rate, d_st, p_lat, p_rate, p_st, ratio))
            print(
                f"c={conc}: HAPI {statistics.median(d_lat):.1f} ms {d_st}, "
                f"fhirplug {statistics.median(p_lat):.1f} ms {p_st}, ratio {ratio:.2f}",
                flush=True,
            )
        queued = Redis.from_url(bench_redis).llen("rq:queue:fhirplug-forward")
    finally:
        stack.stop(cfg, "bench-intake")
        redis.flushdb()
    if args.write:
        lines = [
            "## Intake: the seed's spoke-to-hub message, fhirplug against HAPI alone",
            "",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- Machine: {machine()}",
            "- Method: `python -m bench.intake` on the `make up` store. HAPI alone: "
            "`Bundle/$validate` against the England profile, then the transaction. fhirplug: one "
            "POST to a spoke deployment's proxy (token, message checks, profile validation, tenant "
            "labels, exactly-once claim, store, audit event, delivery queued). Each message is new "
            f"(fresh identifiers: nothing is cached); 15 warm-up messages each way; {args.n} per row.",
            "- Target: fhirplug ≤ 1.5 × HAPI's own time.",
            "",
            "| concurrency | HAPI alone: median ms | p95 ms | msgs/s "
            "| fhirplug: median ms | p95 ms | msgs/s | ratio |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for conc, d_lat, d_rate, _, p_lat, p_rate, _, ratio in rows:
            p95 = lambda xs: sorted(xs)[int(0.95 * (len(xs) - 1))]  # noqa: E731
            lines.append(
                f"| {conc} | {statistics.median(d_lat):.1f} | {p95(d_lat):.1f} | {d_rate:.1f} "
                f"| {statistics.median(p_lat):.1f} | {p95(p_lat):.1f} | {p_rate:.1f} | **{ratio:.2f}** |"
            )
        lines += [
            "",
            f"Deliveries queued during the run: {queued} "
            "(one per message sent through fhirplug, warm-up included).",
            "",
        ]
        write_section(Path(args.write), "bench.intake", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
