"""EPS ``$prepare`` through the proxy: median latency and throughput at concurrency 1 and 8.

    python -m bench.eps_prepare --proxy http://127.0.0.1:8080/fhir --write bench/RESULTS.md

Registers a prescriber client for the run in the proxy's Redis (REDIS_URL, or --redis), gets its
token from the proxy's own token endpoint, and drives ``POST /fhir/$prepare`` with wrk (C, epoll,
as the other benchmarks) with one EPS example message (by default the primary-care acute
prescription from ../shared/examples/eps). One warm-up round per concurrency, then counted rounds;
latency is the median of the rounds' p50 (and p95). ``prepare()`` itself is also timed in-process,
so the table says how much of the latency is the domain's work and how much the proxy's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from redis import Redis

from bench.__main__ import WRK_DONE, Round, Side, machine
from bench.report import write_section
from proxy.auth import partner_keys
from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient
from proxy.auth.registry import ClientRecord, ClientRegistry
from proxy.config import redis_url_from_env

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MESSAGE = (
    ROOT.parent
    / "shared/examples/eps"
    / "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Prepare-Request-200_OK.json"
)
TARGET_MS = 10.0

# the body in a level-2 long bracket: a JSON message may hold "]]" but never "]==]"
WRK_SCRIPT = (
    r"""
local body = [==[%(body)s]==]
local path = "%(path)s"
local headers = {["Content-Type"] = "application/fhir+json", ["Accept"] = "application/fhir+json",
  ["Accept-Encoding"] = "identity", ["Authorization"] = "Bearer %(token)s"}
request = function()
  return wrk.format("POST", path, headers, body)
end
"""
    + WRK_DONE
)


def prescriber_credentials(redis_url: str, origin: str, algorithm: str) -> PartnerCredentials:
    """A prescriber client for this run (2048-bit test-fixture key), registered in Redis."""
    tmp = Path(tempfile.mkdtemp(prefix="fhirplug-bench-eps-"))
    cid = f"bench-eps-{uuid.uuid4().hex[:6]}"
    private, public = partner_keys.generate(f"{cid}-k1", tmp, "RS512", rsa_bits=2048)
    ClientRegistry(Redis.from_url(redis_url)).put(
        ClientRecord(
            cid,
            "A83008",
            "prescriber",
            ["system/MedicationRequest.c"],
            jwks=json.loads(public.read_text()),
            eps_signing_algorithm=algorithm,
        )
    )
    return PartnerCredentials(origin + "/oauth2/token", cid, json.loads(private.read_text()))


def wrk_round(base: str, body: str, token: str, concurrency: int, seconds: float, script_dir: str) -> Round:
    url = urlsplit(base)
    script = Path(script_dir) / "prepare.lua"
    script.write_text(WRK_SCRIPT % {"body": body, "path": url.path.rstrip("/") + "/$prepare", "token": token})
    out = subprocess.run(
        [
            "wrk",
            f"-t{min(concurrency, 2)}",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            f"{url.scheme}://{url.netloc}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    d = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])
    return Round(d["requests"], d["duration_us"] / 1e6, d["p50_us"] / 1000, d["p95_us"] / 1000, d["errors"])


def in_process_ms(bundle: dict, algorithm: str, n: int = 200) -> float:
    """Median wall time of ``eps.prepare.prepare`` on this message, in this process."""
    from eps.prepare import HashAlgorithm, prepare

    alg = HashAlgorithm(algorithm)
    prepare(bundle, alg)  # warm-up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        prepare(bundle, alg)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", required=True, help="the proxy's FHIR base, e.g. http://127.0.0.1:8080/fhir")
    ap.add_argument("--redis", help="the proxy's Redis (default: REDIS_URL or its default)")
    ap.add_argument("--message", default=str(DEFAULT_MESSAGE), help="the prescription-order message (JSON)")
    ap.add_argument("--algorithm", choices=["RS256", "RS1"], default="RS256")
    ap.add_argument("--rounds", type=int, default=4, help="counted rounds per concurrency (plus one warm-up)")
    ap.add_argument("--seconds", type=float, default=4, help="length of one round")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--note", default="", help="a line added to the report (e.g. what prepare() was)")
    ap.add_argument("--write", help="update this Markdown report's $prepare section")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("bench needs wrk (Debian package wrk): apt-get install wrk", file=sys.stderr)
        return 2

    message = Path(args.message)
    body = json.dumps(json.loads(message.read_text()))  # one line: wrk sends it as is
    creds = prescriber_credentials(
        args.redis or redis_url_from_env(), args.proxy.removesuffix("/fhir"), args.algorithm
    )
    tokens = PartnerTokenClient(creds)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for conc in (int(c) for c in args.concurrency.split(",")):
            side = Side()
            for rnd in range(args.rounds + 1):
                r = wrk_round(args.proxy, body, tokens.token(), conc, args.seconds, tmp)
                if rnd:  # round 0 warms up
                    side.rounds.append(r)
            rows.append((conc, side))
            print(
                f"$prepare c={conc}: median {side.median_ms():.2f} ms, p95 {side.p95_ms():.2f} ms, "
                f"{side.rps():.0f}/s, errors {side.errors}",
                flush=True,
            )
    domain_ms = in_process_ms(json.loads(body), args.algorithm)
    print(f"prepare() in-process: median {domain_ms:.2f} ms", flush=True)
    if args.write:
        write_report(Path(args.write), args, message, rows, domain_ms)
    return 0


def write_report(path: Path, args, message: Path, rows, domain_ms: float) -> None:
    lines = [
        "## EPS $prepare through the proxy",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {machine()}",
        f"- Method: `python -m bench.eps_prepare`: wrk posts `{message.name}` "
        f"({message.stat().st_size:,} bytes) to `POST /fhir/$prepare` as a registered prescriber "
        f"({args.algorithm}); one warm-up round, {args.rounds} counted rounds of {args.seconds:.0f} s "
        "per concurrency; median of each round's p50 and p95.",
        f"- Target: at most {TARGET_MS:.0f} ms median at c=1.",
    ]
    if args.note:
        lines.append(f"- Note: {args.note}")
    lines += [
        "",
        "| $prepare | median ms | p95 ms | req/s | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for conc, side in rows:
        median, p95, rps = side.median_ms(), side.p95_ms(), side.rps()
        lines.append(f"| c={conc} | **{median:.2f}** | {p95:.2f} | {rps:.0f} | {side.errors} |")
    lines += [
        "",
        f"`prepare()` alone, in-process on the same message: median **{domain_ms:.2f} ms**; the rest of "
        "the c=1 median is the proxy's (token check, body parse and shape check, the client's record "
        "from Redis, the response) and the loopback HTTP round trip.",
        "",
    ]
    write_section(path, "bench.eps_prepare", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
