"""What the store's tenancy line costs: the same tenant's reads, searches and creates against two
fresh embedded stores, one with the line (TenancyInterceptor) and one started with
``--fhirplug.store.tenancy=off``, rounds interleaved in one run.

    python -m bench.store_line --write bench/RESULTS.md     # updates its own section

Both sides get the requests a proxy sends for a spoke: the signed caller assertion, the tenant's
``_security`` narrowing on searches, the tenant label on what is created (the store without the
line ignores the header). Both stores run with the launcher's flags on in-memory H2, started by
this command on free ports and stopped at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from urllib.parse import quote

from bench.__main__ import SCENARIOS, Side, machine, seed, wrk_round
from bench.auth import free_port
from bench.report import write_section
from ops import stack
from proxy.store_caller import CallerSigner, secret_from_env

TENANT = "https://fhirplug.org/fhir/CodeSystem/tenant"
ODS = "FBENCH1"
KINDS = ("read", "search", "create")


def start(name: str, var: Path, args: list[str]) -> stack.StackConfig:
    cfg = stack.StackConfig(
        var_dir=var / name,
        store_port=free_port(),
        h2_url=f"jdbc:h2:mem:bench-{name};DB_CLOSE_DELAY=-1",
        store_args=args,
    )
    stack.start_store(cfg)
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4, help="counted rounds per side (plus one warm-up)")
    ap.add_argument("--seconds", type=float, default=4, help="length of one round")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--write", help="update this Markdown report's store-line section")
    ap.add_argument("--kinds", default=",".join(KINDS), help="which of read,search,create")
    ap.add_argument(
        "--as-admin",
        action="store_true",
        help="send as the proxy's admin identity (the line checks the assertion, restricts nothing): "
        "separates the cost of the hooks being there from the cost of the tenant rules",
    )
    args = ap.parse_args()
    labels = [{"system": TENANT, "code": ODS}]
    extra = "&_security=" + quote(f"{TENANT}|{ODS}", safe="")
    with tempfile.TemporaryDirectory() as tmp:
        cfgs: dict[str, stack.StackConfig] = {}
        stack.store_secret(stack.StackConfig(var_dir=Path(tmp)))  # one secret for both stores

        def boot(label: str, store_args: list[str]) -> None:
            cfgs[label] = start(label.split()[0], Path(tmp), store_args)

        threads = [
            threading.Thread(target=boot, args=("line", [])),
            threading.Thread(target=boot, args=("off", ["--fhirplug.store.tenancy=off"])),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            if set(cfgs) != {"line", "off"}:
                print("a store did not start; see the logs under", tmp, file=sys.stderr)
                return 1
            rows = run(args, {k: c.store_url for k, c in cfgs.items()}, labels, extra, tmp)
        finally:
            for c in cfgs.values():
                stack.stop_all(c)
    if args.write:
        write_report(Path(args.write), args, rows)
    return 0


def run(args, bases: dict[str, str], labels, extra: str, tmp: str) -> list[tuple]:
    signer = CallerSigner(secret_from_env())
    tag = f"Bench{uuid.uuid4().hex[:8]}"
    ids = {k: seed(b, tag, labels=labels) for k, b in bases.items()}
    rows = []
    for name, kind in SCENARIOS.items():
        if kind not in args.kinds.split(","):
            continue
        for conc in (int(c) for c in args.concurrency.split(",")):
            sides = {k: Side() for k in bases}
            for rnd in range(args.rounds + 1):
                order = list(bases)[rnd % 2 :] + list(bases)[: rnd % 2]
                for k in order:
                    # the same bytes to both sides
                    caller = signer.header("admin") if args.as_admin else signer.header("spoke", ODS)
                    r = wrk_round(
                        bases[k], kind, ids[k], tag, conc, args.seconds, tmp, "", caller, extra, labels
                    )
                    if rnd:
                        sides[k].rounds.append(r)
            on, off = sides["line"], sides["off"]
            ratio = on.median_ms() / off.median_ms()
            rows.append((name, conc, on, off, ratio))
            print(
                f"{name:14} c={conc}  line {on.median_ms():7.2f} ms p95 {on.p95_ms():7.2f} {on.rps():7.1f}/s"
                f" | off {off.median_ms():7.2f} ms p95 {off.p95_ms():7.2f} {off.rps():7.1f}/s"
                f" | ratio {ratio:.3f}  errors {on.errors}/{off.errors}",
                flush=True,
            )
    return rows


def write_report(path: Path, args, rows) -> None:
    from datetime import UTC, datetime

    lines = [
        "## The store's tenancy line: with it vs without it",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; machine: {machine()}",
        "- Method: `python -m bench.store_line`: two fresh embedded stores (in-memory H2, the launcher's "
        "JVM flags), one with `TenancyInterceptor`, one with `--fhirplug.store.tenancy=off`; a spoke's "
        f"requests as the proxy sends them; {args.rounds} counted rounds of {args.seconds:g} s per side "
        "after a warm-up, sides interleaved; wrk as the load generator. Target: ratio ≤ 1.05.",
        "",
        "| scenario | c | with line p50 ms | p95 ms | req/s | without p50 ms | p95 ms | req/s | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, conc, on, off, ratio in rows:
        lines.append(
            f"| {name} | {conc} | {on.median_ms():.2f} | {on.p95_ms():.2f} | {on.rps():.0f} | "
            f"{off.median_ms():.2f} | {off.p95_ms():.2f} | {off.rps():.0f} | **{ratio:.3f}** |"
        )
    errors = sum(on.errors + off.errors for _, _, on, off, _ in rows)
    lines += ["", f"Errors: {errors}."]
    write_section(path, "store-line", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
