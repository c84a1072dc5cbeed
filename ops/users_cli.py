"""`fhirplug users`: the people who may sign in to the web console (add, disable, enable, reset,
list). Accounts live in the proxy's Redis, so a change holds in every proxy process at once;
disabling ends the next page a person asks for (each page re-reads the account)."""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime

from redis import Redis

from console.accounts import ROLES, AccountStore
from console.settings import ConsoleSettings
from proxy.config import redis_url_from_env


def add_parser(sub) -> None:
    us = sub.add_parser("users", help="people who may sign in to the web console").add_subparsers(
        dest="action", required=True
    )
    add = us.add_parser("add", help="add a person (the password is asked for, or read from stdin)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    add.add_argument(
        "--external", action="store_true", help="signs in through the OIDC provider only: no password here"
    )
    reset = us.add_parser("reset", help="a new password; lifts a lock-out")
    reset.add_argument("username")
    reset.add_argument("--password-stdin", action="store_true")
    for name in ("disable", "enable"):
        us.add_parser(name, help=f"{name} a person's sign-in").add_argument("username")
    us.add_parser("list", help="list people, their roles and states")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def run(args, redis: Redis | None = None) -> int:
    settings = ConsoleSettings.from_env()
    store = AccountStore(
        redis or Redis.from_url(redis_url_from_env()), settings.lockout_failures, settings.lockout_s
    )
    try:
        if args.action == "add":
            if args.external:
                account = store.add_external(args.username, args.role)
            else:
                account = store.add(args.username, args.role, _password(args.password_stdin))
            print(f"added {account.username} ({account.role})")
        elif args.action == "reset":
            if not store.reset(args.username, _password(args.password_stdin)):
                return _unknown(args.username)
            print(f"new password for {args.username}; any lock-out is lifted")
        elif args.action in ("disable", "enable"):
            if not store.set_enabled(args.username, args.action == "enable"):
                return _unknown(args.username)
            print(f"{args.action}d {args.username}")
        else:
            for a in store.all():
                made = datetime.fromtimestamp(a.created_at, UTC).strftime("%Y-%m-%d %H:%M")
                state = "enabled" if a.enabled else "disabled"
                locked = " locked" if store.locked(a.username) else ""
                print(f"{a.username:24} {a.role:10} {state}{locked}  added {made} UTC")
    except ValueError as exc:
        print(f"fhirplug: {exc}", file=sys.stderr)
        return 2
    return 0


def _unknown(username: str) -> int:
    print(f"fhirplug: no such user {username}", file=sys.stderr)
    return 1
