"""EPS ``Task/$release`` through the proxy against HAPI's own transaction of the same writes.

    python -m bench.eps_release --proxy http://127.0.0.1:8080/fhir --store http://127.0.0.1:8090/fhir \
        --write bench/RESULTS.md

A release changes what it releases, so every request needs fresh work: before each round the
benchmark stores new prescriptions (as the prescriber, the way tests/support/eps.py does, and
``$process-message`` will), then drives the round with ``concurrency`` threads (one keep-alive
session each; ``requests``, not wrk, because each request names different work):

- **patient**: ``group-identifier`` releases of prescriptions nominated to no pharmacy, so each
  one moves the Task, labels the message and its MedicationRequests and writes the audit event;
- **nominated**: each thread is one pharmacy releasing its queue in batches of ``--batch``.

The reference is HAPI's own transaction of the same resources, sent straight to the store as the
proxy's identity: for a patient release, the Task moved (``ifMatch``), the relabelled message and
MedicationRequests, the AuditEvent; for a nominated batch, the moved Tasks and their AuditEvents.
Latency is per request (median and p95 of all counted requests); throughput is requests per
second of wall time over the round. Needs FHIRPLUG_STORE_SECRET (or var/store-secret) to sign
store requests, as every direct store client does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
from redis import Redis

from bench.__main__ import machine
from bench.report import write_section
from eps import release as rules
from eps.records import PRESCRIPTION_ID_SYSTEM, tenant_labels, with_tenant
from hubspoke.identifiers import ODS_SYSTEM
from proxy.auth.outbound import PartnerTokenClient
from proxy.config import redis_url_from_env
from proxy.direct_store import DirectStore
from tests.support import oauth
from tests.support.eps import Seeder, SignedAs, authored, example

AGENT = next(
    p["resource"]
    for p in example("spec__dispense__Nominated-Pharmacy-Request-Release-200_OK.json")["parameter"]
    if p["name"] == "agent"
)
TARGET_RATIO = 1.5
SLICES = 3  # turns each side takes per concurrency
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@dataclass
class Sample:
    times_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    errors: int = 0
    prescriptions: int = 0

    def median(self) -> float:
        return statistics.median(self.times_ms) if self.times_ms else float("nan")

    def p95(self) -> float:
        if len(self.times_ms) < 2:
            return self.median()
        return statistics.quantiles(self.times_ms, n=20)[18]

    def rate(self) -> float:
        return len(self.times_ms) / self.wall_s if self.wall_s else 0.0

    def add(self, other: Sample) -> None:
        self.times_ms += other.times_ms
        self.wall_s += other.wall_s
        self.errors += other.errors
        self.prescriptions += other.prescriptions


def pharmacy() -> str:
    # 16 million codes: with 3 hex digits (4096) two queues of one round shared a code now and
    # then (about 7 % of rounds of 24), and one release then took both queues, the other none
    return "FB" + uuid.uuid4().hex[:6].upper()


def parameters(ods: str, short_id: str | None) -> dict:
    chosen = (
        {"name": "group-identifier", "valueIdentifier": {"system": PRESCRIPTION_ID_SYSTEM, "value": short_id}}
        if short_id
        else {"name": "owner", "valueIdentifier": {"system": ODS_SYSTEM, "value": ods}}
    )
    return {
        "resourceType": "Parameters",
        "parameter": [
            chosen,
            {"name": "status", "valueCode": "accepted"},
            {"name": "agent", "resource": AGENT},
        ],
    }


def drive(jobs: list, concurrency: int, work) -> Sample:
    """Run ``work(job, worker)`` for every job on ``concurrency`` threads; time each."""
    sample = Sample()
    lock = threading.Lock()
    per_worker = [jobs[i::concurrency] for i in range(concurrency)]

    def run(n: int) -> None:
        for job in per_worker[n]:
            t0 = time.perf_counter()
            ok, count = work(job, n)
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                sample.times_ms.append(ms)
                sample.errors += 0 if ok else 1
                sample.prescriptions += count

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(run, range(concurrency)))
    sample.wall_s = time.perf_counter() - t0
    return sample


class Bench:
    def __init__(self, proxy: str, store: str, redis_url: str, keys: Path):
        self.proxy, self.store_url, self.redis_url, self.keys = (
            proxy.rstrip("/"),
            store.rstrip("/"),
            redis_url,
            keys,
        )
        self.seeder = Seeder(store, redis_url)
        self.admin = DirectStore(store, Redis.from_url(redis_url), auth=SignedAs("admin", ""))
        self.sessions: dict[str, requests.Session] = {}

    def session(self, ods: str) -> requests.Session:
        if ods not in self.sessions:
            client = oauth.make_client(self.redis_url, self.keys, f"bench-till-{ods}", "dispenser", ods)
            creds = oauth.PartnerCredentials(
                oauth.token_url(self.proxy), client.client_id, client.private_jwk
            )
            s = requests.Session()
            s.headers.update({**FHIR_JSON, "Authorization": f"Bearer {PartnerTokenClient(creds).token()}"})
            self.sessions[ods] = s
        return self.sessions[ods]

    # -- the proxy's $release

    def patient_round(self, n: int, concurrency: int) -> Sample:
        walk_ins = [pharmacy() for _ in range(concurrency)]
        for ods in walk_ins:
            self.session(ods)
        ids = [self.seeder.seed(None, authored(60)) for _ in range(n)]

        def work(short_id: str, worker: int) -> tuple[bool, int]:
            ods = walk_ins[worker]
            r = self.session(ods).post(
                f"{self.proxy}/Task/$release", json=parameters(ods, short_id), timeout=60
            )
            return r.status_code == 200 and r.json().get("total") == 1, 1

        return drive(ids, concurrency, work)

    def nominated_round(self, releases_each: int, batch: int, concurrency: int) -> Sample:
        """Each release empties a queue of ``batch`` (at most 25): one fresh pharmacy per release."""
        queues = [pharmacy() for _ in range(releases_each * concurrency)]
        for ods in queues:
            self.session(ods)
            self.seeder.seed_many(ods, batch)

        def work(ods: str, worker: int) -> tuple[bool, int]:
            r = self.session(ods).post(f"{self.proxy}/Task/$release", json=parameters(ods, None), timeout=60)
            return r.status_code == 200 and r.json().get("total") == batch, batch

        return drive(queues, concurrency, work)

    # -- HAPI's own transaction of the same writes

    def _task(self, short_id: str) -> dict:
        r = self.admin.get("Task", params={"group-identifier": short_id})
        return r.json()["entry"][0]["resource"]

    def reference_patient_round(self, n: int, concurrency: int) -> Sample:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        bundles = []
        for _ in range(n):
            short_id = self.seeder.seed(None, authored(60))
            ods = pharmacy()
            task = self._task(short_id)
            request = rules.ReleaseRequest(rules.Kind.PATIENT, ods, AGENT, short_id)
            moved = rules.released_task(task, request, now)
            message = self.admin.get(task["focus"]["reference"]).json()
            mrs = [self.admin.get(i["valueReference"]["reference"]).json() for i in task["input"]]
            entries = [rules.cas_entry(task, moved)]
            for r in [message, *mrs]:
                labelled = with_tenant(r, ods)
                entries.append(
                    {
                        "resource": labelled,
                        "request": {
                            "method": "PUT",
                            "url": f"{r['resourceType']}/{r['id']}",
                            "ifMatch": f'W/"{r["meta"]["versionId"]}"',
                        },
                    }
                )
            entries.append(rules.audit_entry(moved, request, now, "bench"))
            bundles.append({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        return drive(bundles, concurrency, self._send)

    def reference_nominated_round(self, releases_each: int, batch: int, concurrency: int) -> Sample:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        bundles = []
        for _ in range(releases_each * concurrency):
            ods = pharmacy()
            ids = self.seeder.seed_many(ods, batch)
            request = rules.ReleaseRequest(rules.Kind.NOMINATED, ods, AGENT)
            tasks = [self._task(i) for i in ids]
            moves = [rules.released_task(t, request, now) for t in tasks]
            entries = [rules.cas_entry(t, m) for t, m in zip(tasks, moves, strict=True)]
            event = rules.audit_event(moves, request, now, "bench", tenant_labels(ods))
            entries.append({"resource": event, "request": {"method": "POST", "url": "AuditEvent"}})
            # and the read of the messages it hands out, as the proxy's own transaction has it
            messages = ",".join(t["focus"]["reference"].split("/")[1] for t in tasks)
            entries.append({"request": {"method": "GET", "url": f"Bundle?_id={messages}&_count={batch}"}})
            bundles.append({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        return drive(bundles, concurrency, self._send)

    def _send(self, bundle: dict, worker: int) -> tuple[bool, int]:
        r = self.admin.post("", bundle, timeout=60)
        return r.status_code == 200, 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", required=True, help="the proxy's FHIR base")
    ap.add_argument("--store", required=True, help="the store's FHIR base (for seeding and the reference)")
    ap.add_argument("--redis", help="the proxy's Redis (default: REDIS_URL or its default)")
    ap.add_argument("--patient", type=int, default=40, help="patient releases per concurrency")
    ap.add_argument("--releases-each", type=int, default=2, help="nominated releases per thread")
    ap.add_argument("--batch", type=int, default=10, help="prescriptions per nominated release (at most 25)")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--write", help="update this Markdown report's Task/$release section")
    args = ap.parse_args()
    if not 1 <= args.batch <= rules.MAX_NOMINATED:
        print(f"--batch is 1 to {rules.MAX_NOMINATED}: a release takes all it can", file=sys.stderr)
        return 2
    redis_url = args.redis or redis_url_from_env()

    bench = Bench(args.proxy, args.store, redis_url, Path(tempfile.mkdtemp(prefix="fhirplug-bench-release-")))
    bench.patient_round(4, 1)  # warm-up: connections, tokens, HAPI's caches
    bench.reference_patient_round(4, 1)
    bench.nominated_round(1, args.batch, 1)
    bench.reference_nominated_round(1, args.batch, 1)
    rows = []
    for conc in (int(c) for c in args.concurrency.split(",")):
        n = max(args.patient, conc * 4)
        measured: dict[str, tuple[Sample, Sample]] = {
            "patient": (Sample(), Sample()),
            "nominated": (Sample(), Sample()),
        }
        # the two sides take turns a slice at a time, so the store's growth (every round adds
        # prescriptions) and whatever else the machine does fall on both alike
        for _ in range(SLICES):
            measured["patient"][0].add(bench.patient_round(n // SLICES, conc))
            measured["patient"][1].add(bench.reference_patient_round(n // SLICES, conc))
            each = max(1, args.releases_each // SLICES)
            measured["nominated"][0].add(bench.nominated_round(each, args.batch, conc))
            measured["nominated"][1].add(bench.reference_nominated_round(each, args.batch, conc))
        for kind, (ours, ref) in measured.items():
            rows.append((kind, conc, ours, ref))
            print(
                f"$release {kind} c={conc}: median {ours.median():.1f} ms ({ours.rate():.1f}/s, "
                f"{ours.errors} errors) vs HAPI transaction {ref.median():.1f} ms ({ref.rate():.1f}/s): "
                f"{ours.median() / ref.median():.2f}x",
                flush=True,
            )
    if args.write:
        write_section(Path(args.write), "bench.eps_release", report(rows, args))
    return 0


def report(rows: list, args) -> str:
    lines = [
        "## EPS Task/$release through the proxy, against HAPI's own transaction",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        "- Method: `python -m bench.eps_release`: the proxy's rounds and the reference's take turns, "
        f"{SLICES} slices each per concurrency, after a warm-up of both kinds; "
        "fresh prescriptions stored before each round (as the "
        "prescriber); threads with one keep-alive session each post `Task/$release`; "
        f"**patient**: {args.patient} releases by `group-identifier` per concurrency (prescriptions "
        "nominated to no pharmacy, so each also relabels the message and its 4 MedicationRequests and "
        "writes an AuditEvent, in one transaction); **nominated**: each thread makes "
        f"{args.releases_each} releases, each emptying a fresh pharmacy's queue of {args.batch} (the "
        "queue search, then one transaction of the compare-and-sets, the AuditEvent and the read of the "
        "messages). Reference: the same transaction sent straight to the store (patient: Task with "
        "ifMatch, message, MedicationRequests, AuditEvent; nominated: the Tasks with ifMatch, one "
        "AuditEvent, the read of the messages).",
        f"- Target: $release median at most {TARGET_RATIO}x HAPI's transaction.",
        "",
        "| release | c | median ms | p95 ms | req/s | prescriptions/s | errors "
        "| HAPI tx median ms | HAPI tx/s | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, conc, ours, ref in rows:
        ratio = ours.median() / ref.median()
        lines.append(
            f"| {kind} | {conc} | **{ours.median():.1f}** | {ours.p95():.1f} | {ours.rate():.1f} | "
            f"{ours.prescriptions / ours.wall_s:.1f} | {ours.errors} | "
            f"{ref.median():.1f} | {ref.rate():.1f} | "
            f"**{ratio:.2f}x** |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
