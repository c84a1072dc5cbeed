"""The ``fhirplug`` command."""

from __future__ import annotations

import argparse
import sys

from ops import stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fhirplug", description="fhirplug operator tool")
    sub = parser.add_subparsers(dest="group", required=True)
    st = sub.add_parser("stack", help="start, stop or inspect the local stack")
    st.add_argument("action", choices=["up", "down", "status", "build-store"])
    args = parser.parse_args(argv)

    cfg = stack.StackConfig.from_env()
    try:
        if args.action == "up":
            stack.up(cfg)
        elif args.action == "down":
            stack.down(cfg)
        elif args.action == "build-store":
            stack.build_store()
        else:
            states = stack.status(cfg)
            for name, ok in states.items():
                print(f"{name:8} {'up' if ok else 'down'}")
            return 0 if all(states.values()) else 1
    except stack.StackError as exc:
        print(f"fhirplug: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
