"""GP notifications through the whole chain: immunisations stored at the pharmacy's proxy, each
built from the stored data, recorded, queued and sent by 2 workers to a mesh-sandbox.

    python -m bench.gp_notify -n 200 --write bench/RESULTS.md

Starts a private stack on free ports (Redis, the embedded store, a mesh-sandbox, the proxy with a
MESH mailbox, two ``python -m worker``), so it runs beside `make up` and the tests and measures
nothing else's load but the machine's. A pharmacy client stores the JackDawkins immunisation
fixture (a transaction of 9 resources, the notifying write among them) ``-n`` times, ``-c`` at a
time. Reported: notifications accepted by MESH per second (first store request to the last MESH
acceptance), the pharmacy's write latency (the trigger's reads, records and queueing included;
and the same writes at a second proxy with the trigger off), and store-to-MESH-accepted latency
p50/p99: from the start of the store request to the Communication's ``sent`` (written when MESH
accepted it).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from bench.__main__ import machine
from bench.report import write_section
from gpnotify.itk import message_id_for
from gpnotify.tracking import communication_id
from ops import stack
from ops.processes import spawn, stop_process
from tests.support import gp_data, oauth

FIXTURE = "immunisation-JackDawkins.r4.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SCOPES = "system/*.cruds"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("-c", type=int, default=4, help="store requests at once")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--write")
    args = ap.parse_args()
    var = Path(tempfile.mkdtemp(prefix="bench-gp-"))
    cfg = stack.StackConfig(
        var_dir=var,
        proxy_port=free_port(),
        store_port=free_port(),
        redis_port=free_port(),
        mesh_port=free_port(),
        h2_url="jdbc:h2:mem:bench-gp;DB_CLOSE_DELAY=-1",
        proxy_env={"FHIRPLUG_ODS": "FA565", "FHIRPLUG_WORKERS": "2"},
    )
    try:
        stack.start_redis(cfg)
        stack.start_store(cfg)
        stack.load_profiles(cfg)
        stack.start_mesh(cfg)
        stack.start_proxy(cfg)
        for i in range(args.workers):
            pidfile = cfg.path("run", f"worker-{i}.pid")
            spawn(
                [sys.executable, "-m", "worker"],
                cfg.path("log", f"worker-{i}.log"),
                pidfile,
                stack.proxy_env(cfg),
            )
        client = oauth.make_client(
            cfg.effective_redis_url, var / "keys-bench", "bench-pharmacy", "dispenser", "FA565", SCOPES
        )
        fhir = cfg.public_base()
        http = oauth.session_for(fhir, client)
        http.post(fhir, json=gp_data.transaction(FIXTURE, "A83627")).raise_for_status()  # warm: token, caches
        time.sleep(3)

        def one(_: int) -> tuple[float, float, str]:
            t0 = time.time()
            resp = http.post(fhir, json=gp_data.transaction(FIXTURE, "A83627"))
            took = time.time() - t0
            resp.raise_for_status()
            imm = next(x for x in gp_data.locations(resp.json()) if x.startswith("Immunization/"))
            focus = {"resourceType": "Immunization", "id": imm.split("/")[1], "meta": {"versionId": "1"}}
            return t0, took, communication_id(message_id_for("FA565", focus))

        start = time.time()
        with ThreadPoolExecutor(args.c) as pool:
            sent = list(pool.map(one, range(args.n)))
        stored_s = time.time() - start
        accepted: dict[str, float] = {}
        deadline = time.time() + 600
        while len(accepted) < len(sent) and time.time() < deadline:
            for _, _, comm in sent:
                if comm in accepted:
                    continue
                r = http.get(f"{fhir}/Communication/{comm}")
                if r.status_code == 200 and r.json().get("sent"):
                    accepted[comm] = datetime.fromisoformat(
                        r.json()["sent"].replace("Z", "+00:00")
                    ).timestamp()
            time.sleep(0.5)
        # the same writes at a proxy of the same stack with the trigger off: what the trigger costs
        off = stack.start_proxy(cfg, name="proxy-off", port=free_port(), env={"FHIRPLUG_GP_NOTIFY": "off"})
        off_http = oauth.session_for(off + "/fhir", client)
        off_http.post(off + "/fhir", json=gp_data.transaction(FIXTURE, "A83627")).raise_for_status()

        def plain(_: int) -> float:
            t0 = time.time()
            off_http.post(off + "/fhir", json=gp_data.transaction(FIXTURE, "A83627")).raise_for_status()
            return time.time() - t0

        with ThreadPoolExecutor(args.c) as pool:
            baseline = list(pool.map(plain, range(args.n)))
    finally:
        for i in range(args.workers):
            stop_process(f"worker-{i}", cfg.path("run", f"worker-{i}.pid"))
        stack.stop_all(cfg)
    latencies = [accepted[c] - t0 for t0, _, c in sent if c in accepted]
    writes = [took for _, took, _ in sent]
    wall = max(accepted.values()) - start if accepted else float("nan")
    rate = len(accepted) / wall
    p50, p99 = statistics.median(latencies), pct(latencies, 0.99)
    w50, w99 = statistics.median(writes), pct(writes, 0.99)
    b50, b99 = statistics.median(baseline), pct(baseline, 0.99)
    print(
        f"accepted {len(accepted)}/{args.n} in {wall:.1f} s ({rate:.1f}/s; stored in {stored_s:.1f} s), "
        f"write p50 {w50:.3f} s p99 {w99:.3f} s (trigger off: {b50:.3f} s, {b99:.3f} s), "
        f"store-to-MESH-accepted p50 {p50:.2f} s p99 {p99:.2f} s"
    )
    if args.write:
        lines = [
            f"## GP notifications: {args.n} immunisations stored, built and sent over MESH, "
            f"{args.workers} workers",
            "",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- Machine: {machine()}",
            f"- Method: `python -m bench.gp_notify -n {args.n} -c {args.c}`: a private stack (Redis, the "
            "embedded store on in-memory H2, mesh-sandbox 1.0.137, the proxy, "
            f"{args.workers} `python -m worker`); a pharmacy client stores the JackDawkins immunisation "
            f"fixture (a transaction of 9 resources) {args.n} times, {args.c} at a time; each write triggers "
            "the notification (built from the stored data, recorded, queued) and the workers send it to "
            "the practice's mailbox (cached lookup, tracking check by localID, send, Communication update).",
            "",
            "| accepted by MESH | notifications/s | write p50 s | write p99 s | trigger off: write p50 s "
            "| p99 s | store-to-MESH-accepted p50 s | p99 s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {len(accepted)} / {args.n} | {rate:.1f} | {w50:.3f} | {w99:.3f} | {b50:.3f} | {b99:.3f} "
            f"| {p50:.2f} | {p99:.2f} |",
            "",
            "Throughput counts from the first store request to the last MESH acceptance. The write latency "
            "is the pharmacy's whole transaction, the trigger's store reads, records transaction and "
            'queueing included; "trigger off" is the same writes afterwards at a second proxy of the same '
            "stack with `FHIRPLUG_GP_NOTIFY=off` (the store then holds more). Store-to-accepted runs "
            "from the start of the store request to the "
            "Communication's `sent` (set when MESH accepted): with every write queued at once it is "
            "mostly waiting behind the others; each MESH send is three sandbox requests (tracking, send, "
            "and the lookup once per practice) and RQ forks a work-horse per job.",
            "",
        ]
        write_section(Path(args.write), "bench.gp_notify", "\n".join(lines))
    return 0 if len(accepted) == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
