"""This checkout's proxy against another checkout's, on one store, in interleaved rounds.

    python -m bench.versus --other /path/to/older/checkout [--write bench/RESULTS.md]

Answers "did a change make the proxy dearer?" without trusting figures from another day or
another machine: both proxies (read cache off, as the uncached rows of `python -m bench`) run
against the same store in the same minutes, and direct HAPI is measured in the same rounds. The
store runs with ``--fhirplug.store.tenancy=off`` so that an older proxy, which does not sign its
requests to the store, is served too; the store line's own cost is `python -m bench.store_line`.
The other checkout needs its own virtualenv (``make unit`` there).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.__main__ import Side, machine, seed, wrk_round
from bench.auth import free_port
from bench.client import bench_token
from bench.report import write_section
from ops import stack

KINDS = ("read", "search", "create", "transaction")
START_OTHER = """
import sys
from pathlib import Path
from ops import stack
cfg = stack.StackConfig(var_dir=Path(sys.argv[1]), store_port=int(sys.argv[2]), proxy_port=int(sys.argv[3]),
                        redis_url=sys.argv[4])
env = {"FHIRPLUG_READ_CACHE_TTL": "0"}
print(stack.start_proxy(cfg, name="versus-other", port=int(sys.argv[3]), env=env))
"""
# each checkout registers its bench client itself: client records may differ between versions
TOKEN_OTHER = """
import sys
from bench.client import bench_token
print(bench_token(sys.argv[1], sys.argv[2]))
"""
STOP_OTHER = """
import sys
from pathlib import Path
from ops import stack
stack.stop(stack.StackConfig(var_dir=Path(sys.argv[1])), "versus-other")
"""


def git_label(path: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(path), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    return out.stdout.strip()[:90] or str(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", required=True, type=Path, help="the other checkout (with its own .venv)")
    ap.add_argument("--rounds", type=int, default=4, help="counted rounds per side (plus one warm-up)")
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--write", type=Path, help="update this report's bench.versus section")
    args = ap.parse_args()
    other_python = args.other / ".venv" / "bin" / "python"
    if not other_python.exists():
        print(f"{other_python} is missing: run `make unit` in {args.other}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fhirplug-versus-") as tmp:
        cfg = stack.StackConfig(
            var_dir=Path(tmp) / "this",
            store_port=free_port(),
            proxy_port=free_port(),
            redis_port=free_port(),
            h2_url="jdbc:h2:mem:versus;DB_CLOSE_DELAY=-1",
            store_args=["--fhirplug.store.tenancy=off"],
        )
        other_var, other_port = Path(tmp) / "other", free_port()
        try:
            stack.start_redis(cfg)
            stack.start_store(cfg)
            this = stack.start_proxy(cfg, name="versus-this", env={"FHIRPLUG_READ_CACHE_TTL": "0"})
            subprocess.run(
                [str(other_python), "-c", START_OTHER, str(other_var), str(cfg.store_port), str(other_port),
                 cfg.effective_redis_url],
                cwd=args.other, check=True, capture_output=True,
            )  # fmt: skip
            bases = {
                "this": this + "/fhir",
                "other": f"http://{cfg.host}:{other_port}/fhir",
                "direct": cfg.store_url,
            }
            redis_url = cfg.effective_redis_url

            def other_token() -> str:
                out = subprocess.run(
                    [str(other_python), "-c", TOKEN_OTHER, redis_url, bases["other"]],
                    cwd=args.other, check=True, capture_output=True, text=True,
                )  # fmt: skip
                return out.stdout.strip().splitlines()[-1]

            tokens = {
                "this": lambda: bench_token(redis_url, bases["this"]),
                "other": other_token,
                "direct": lambda: "",
            }
            rows = run(args, bases, tokens, tmp)
        finally:
            subprocess.run([str(other_python), "-c", STOP_OTHER, str(other_var)], cwd=args.other, check=False)
            stack.stop_all(cfg)
    for row in rows:
        print(" | ".join(str(x) for x in row))
    if args.write:
        write_report(args, rows)
    return 0


def run(args, bases: dict[str, str], tokens: dict[str, Callable[[], str]], tmp: str) -> list[tuple]:
    tag = "Versus" + datetime.now(UTC).strftime("%H%M%S")
    ids = seed(bases["direct"], tag)
    rows = []
    for kind in args.kinds.split(","):
        for conc in (int(c) for c in args.concurrency.split(",")):
            sides = {k: Side() for k in bases}
            for rnd in range(args.rounds + 1):
                order = list(bases)[rnd % 3 :] + list(bases)[: rnd % 3]
                for k in order:
                    # a fresh token each round: a run outlasts one token's lifetime
                    r = wrk_round(bases[k], kind, ids, tag, conc, args.seconds, tmp, tokens[k]())
                    if rnd:
                        sides[k].rounds.append(r)
            d = sides["direct"].median_ms()
            this, other = sides["this"].median_ms(), sides["other"].median_ms()
            errors = sum(s.errors for s in sides.values())
            rows.append((kind, conc, f"{this:.2f}", f"{other:.2f}", f"{d:.2f}", f"{this / d:.2f}",
                         f"{other / d:.2f}", f"**{this / other:.2f}**", errors))  # fmt: skip
    return rows


def write_report(args, rows: list[tuple]) -> None:
    lines = [
        "## This proxy against an earlier one, same store, same minutes",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine()}",
        f"- This: `{git_label(Path.cwd())}` · other: `{git_label(args.other)}`",
        f"- Method: `python -m bench.versus --other <checkout>`: one store (tenancy line off, so the older "
        f"proxy is served), both proxies with the read cache off, direct HAPI in the same rounds; "
        f"{args.rounds} counted rounds of {args.seconds:g} s per side after a warm-up, sides taking turns; "
        "median of each round's p50. A ratio this/other above 1 means this checkout's proxy is slower.",
        "",
        "| interaction | conc. | this median ms | other median ms | direct median ms | this/direct | "
        "other/direct | this/other | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *("| " + " | ".join(str(x) for x in row) + " |" for row in rows),
    ]
    write_section(args.write, "bench.versus", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
