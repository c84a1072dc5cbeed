"""The ``fhirplug`` command."""

from __future__ import annotations

import argparse
import os
import sys

from ops import clients_cli, stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fhirplug", description="fhirplug operator tool")
    sub = parser.add_subparsers(dest="group", required=True)
    st = sub.add_parser("stack", help="start, stop or inspect the local stack")
    st.add_argument("action", choices=["up", "down", "status", "build-store", "init-store", "demo"])
    clients_cli.add_parsers(sub)
    tok = sub.add_parser("token", help="get an access token from a token endpoint (ours or a partner's)")
    tok.add_argument("--token-url", required=True, help="e.g. http://127.0.0.1:8080/oauth2/token")
    tok.add_argument("--client-id", required=True)
    tok.add_argument("--key", required=True, help="the private JWK file from `fhirplug keys generate`")
    tok.add_argument("--scope", help="ask for fewer scopes than registered")
    from ops import (
        backup_cli,
        eps_cli,
        ig_cli,
        partners_cli,
        profiles_cli,
        queue_cli,
        users_cli,
        validate_cli,
    )

    validate_cli.add_parser(sub)
    profiles_cli.add_parser(sub)
    ig_cli.add_parser(sub)
    partners_cli.add_parser(sub)
    queue_cli.add_parser(sub)
    eps_cli.add_parser(sub)
    users_cli.add_parser(sub)
    backup_cli.add_parsers(sub)
    args = parser.parse_args(argv)

    commands = {
        "validate": validate_cli.run,
        "profiles": profiles_cli.run,
        "ig": ig_cli.run,
        "partners": partners_cli.run,
        "queue": queue_cli.run,
        "eps": eps_cli.run,
        "users": users_cli.run,
        "clients": clients_cli.run_clients,
        "keys": clients_cli.run_keys,
        "token": _token,
        "backup": backup_cli.run_backup,
        "restore": backup_cli.run_restore,
    }
    if args.group in commands:
        return commands[args.group](args)

    cfg = stack.StackConfig.from_env()
    try:
        if args.action == "up":
            stack.up(cfg)
        elif args.action == "down":
            from ops import demo

            demo.stop(cfg)  # the demo's spoke (make demo), if one runs
            stack.down(cfg)
        elif args.action == "demo":  # a message forwarded between two local deployments
            from ops import demo

            demo.run(cfg)
        elif args.action == "build-store":
            stack.build_store()
        elif args.action == "init-store":  # a running store (FHIRPLUG_STORE_URL): profiles, search parameters
            store_url = os.environ.get("FHIRPLUG_STORE_URL") or cfg.store_url
            print(f"fhirplug: {stack.init_store(store_url, cfg.effective_redis_url)}")
        else:
            states = stack.status(cfg)
            for name, ok in states.items():
                print(f"{name:8} {'up' if ok else 'down'}")
            return 0 if all(states.values()) else 1
    except stack.StackError as exc:
        print(f"fhirplug: {exc}", file=sys.stderr)
        return 1
    return 0


def _token(args) -> int:
    from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient, TokenRequestError

    creds = PartnerCredentials.from_files(args.token_url, args.client_id, args.key, args.scope)
    try:
        print(PartnerTokenClient(creds).token())
    except TokenRequestError as exc:
        print(f"fhirplug: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
