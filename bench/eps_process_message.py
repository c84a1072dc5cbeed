"""EPS ``$process-message`` (prescription-order) through the proxy against HAPI's own transaction of
the same resources: median latency and throughput at concurrency 1 and 8.

    FHIRPLUG_STORE_SECRET=... python -m bench.eps_process_message \
        --proxy http://127.0.0.1:8080/fhir --store http://127.0.0.1:8090/fhir --write bench/RESULTS.md

Every message must be new (a resend is answered from the first copy, which would measure the
idempotency path instead), so each request carries a fresh message id and a fresh prescription
(short-form id with a valid MOD 37-2 check character, long-form id, line item ids), signed with
the TEST ONLY prescriber key; the proxy must trust that key's CA (``FHIRPLUG_EPS_TRUST_DIR`` =
tests/fixtures/eps/trust). All messages are made and signed before the clock starts.

The reference is what the proxy itself sends the store for one message: the prescription's
transaction (message Bundle, its parts, the tracking Task, the audit event), built by the same
code, POSTed straight to HAPI with the proxy's own store credentials. Both sides are driven the
same way (Python threads, one HTTP session each), so the client's cost is the same on both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests
from redis import Redis

from bench.__main__ import machine
from bench.report import write_section
from eps import order
from eps.certificates import load_trust_anchors
from eps.events import Sender
from proxy.auth import partner_keys
from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient
from proxy.auth.registry import ClientRecord, ClientRegistry
from proxy.config import redis_url_from_env
from proxy.store_caller import store_auth
from tests.support import eps_messages

TARGET_RATIO = 1.5
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def prescriber(redis_url: str, origin: str) -> PartnerCredentials:
    """A prescriber client of the example's organisation for this run, registered in Redis."""
    tmp = Path(tempfile.mkdtemp(prefix="fhirplug-bench-msg-"))
    cid = f"bench-msg-{uuid.uuid4().hex[:6]}"
    private, public = partner_keys.generate(f"{cid}-k1", tmp, "RS512", rsa_bits=2048)
    record = ClientRecord(
        cid,
        eps_messages.PRESCRIBER_ODS,
        "prescriber",
        ["system/Task.rs"],
        jwks=json.loads(public.read_text()),
    )
    ClientRegistry(Redis.from_url(redis_url)).put(record)
    return PartnerCredentials(origin + "/oauth2/token", cid, json.loads(private.read_text()))


def drive(send, bodies: list[bytes], concurrency: int) -> tuple[list[float], float, int]:
    """Send every body, ``concurrency`` at a time: per-request ms, wall seconds, errors."""
    local = threading.local()
    errors = 0
    lock = threading.Lock()

    def one(body: bytes) -> float:
        nonlocal errors
        if not hasattr(local, "session"):
            local.session = requests.Session()
        t0 = time.perf_counter()
        status = send(local.session, body)
        ms = (time.perf_counter() - t0) * 1000
        if status >= 300:
            with lock:
                errors += 1
        return ms

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        times = list(pool.map(one, bodies))
    return times, time.perf_counter() - t0, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", required=True, help="the proxy's FHIR base")
    ap.add_argument("--store", required=True, help="the store's FHIR base (HAPI, direct)")
    ap.add_argument("--redis", help="the proxy's Redis (default: REDIS_URL or its default)")
    ap.add_argument("--messages", type=int, default=120, help="messages per side and concurrency")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--write", help="update this Markdown report's section")
    args = ap.parse_args()

    tokens = PartnerTokenClient(
        prescriber(args.redis or redis_url_from_env(), args.proxy.removesuffix("/fhir"))
    )
    sender = Sender("bench", "prescriber", eps_messages.PRESCRIBER_ODS)
    anchors = load_trust_anchors(eps_messages.TRUST_DIR)
    auth = store_auth()

    def via_proxy(session: requests.Session, body: bytes) -> int:
        headers = {**FHIR_JSON, "Authorization": f"Bearer {tokens.token()}"}
        return session.post(
            f"{args.proxy}/$process-message", data=body, headers=headers, timeout=60
        ).status_code

    def direct(session: requests.Session, body: bytes) -> int:
        return session.post(args.store, data=body, headers=FHIR_JSON, auth=auth, timeout=60).status_code

    def messages(n: int) -> tuple[list[bytes], list[bytes]]:
        proxied, transactions = [], []
        now = datetime.now(UTC)
        for _ in range(n):
            message = eps_messages.fresh()
            proxied.append(json.dumps(message, default=str).encode())
            other = eps_messages.fresh()  # HAPI gets prescriptions of its own (ids are unique)
            checked = order.check(other, sender, now, anchors)
            transactions.append(
                json.dumps(order.transaction(other, sender, checked, now), default=str).encode()
            )
        return proxied, transactions

    tokens.token()
    warm_p, warm_t = messages(10)
    drive(via_proxy, warm_p, 2)
    drive(direct, warm_t, 2)
    rows = []
    for conc in (int(c) for c in args.concurrency.split(",")):
        proxied, transactions = messages(args.messages)
        # the two sides take turns, a slice at a time, so the store's growth and any drift of the
        # machine fall on both alike
        slices = max(1, args.messages // max(10, 4 * conc))
        step = -(-args.messages // slices)
        times: dict[str, list[float]] = {"proxy": [], "hapi": []}
        walls = {"proxy": 0.0, "hapi": 0.0}
        errors = {"proxy": 0, "hapi": 0}
        for start in range(0, args.messages, step):
            for name, send, bodies in (("proxy", via_proxy, proxied), ("hapi", direct, transactions)):
                took, wall, failed = drive(send, bodies[start : start + step], conc)
                times[name] += took
                walls[name] += wall
                errors[name] += failed
        result = {
            name: (statistics.median(times[name]), len(times[name]) / walls[name], errors[name])
            for name in ("proxy", "hapi")
        }
        ratio = result["proxy"][0] / result["hapi"][0]
        rows.append((conc, result, ratio))
        print(
            f"c={conc}: $process-message {result['proxy'][0]:.1f} ms {result['proxy'][1]:.0f}/s "
            f"(errors {result['proxy'][2]}); HAPI transaction {result['hapi'][0]:.1f} ms "
            f"{result['hapi'][1]:.0f}/s (errors {result['hapi'][2]}); ratio {ratio:.2f}",
            flush=True,
        )
    if args.write:
        write_report(Path(args.write), args, rows)
    return 0


def write_report(path: Path, args, rows) -> None:
    lines = [
        "## EPS $process-message (prescription-order) against HAPI's own transaction",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {machine()}",
        "- Method: `python -m bench.eps_process_message`: the shared primary-care prescription (4 line "
        "items), each request a new message and prescription signed with the TEST ONLY key, "
        f"{args.messages} per side and concurrency after a warm-up, the two sides taking turns a "
        "slice at a time (so the store's growth falls on both alike), Python threads with one session "
        "each. Proxy: `POST /fhir/$process-message` as a registered prescriber (token check, envelope, "
        "Redis claim, EPS checks, fragments and signature verification, duplicate search, one "
        "transaction acting as the prescriber, the response message). HAPI: the same prescription's "
        "transaction, as the proxy builds it, POSTed to the store directly.",
        f"- Target: $process-message at most {TARGET_RATIO}× HAPI's transaction time (median).",
        "",
        "| concurrency | $process-message median ms | req/s | HAPI transaction median ms | req/s | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for conc, result, ratio in rows:
        proxy, hapi = result["proxy"], result["hapi"]
        cells = [f"c={conc}", f"**{proxy[0]:.1f}**", f"{proxy[1]:.0f}", f"{hapi[0]:.1f}", f"{hapi[1]:.0f}"]
        lines.append("| " + " | ".join([*cells, f"**{ratio:.2f}×**"]) + " |")
    errors = sum(r["proxy"][2] + r["hapi"][2] for _, r, _ in rows)
    lines += ["", f"Errors: {errors}.", ""]
    write_section(path, "bench.eps_process_message", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
