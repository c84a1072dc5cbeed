"""``fhirplug partners add|list|remove``: the organisations this deployment forwards to."""

from __future__ import annotations

import os
import sys

from redis import Redis

from proxy.config import redis_url_from_env
from proxy.partners import ROLES, Partner, PartnerDirectory


def add_parser(sub) -> None:
    p = sub.add_parser("partners", help="the partner directory: where Task updates and bundles are forwarded")
    ps = p.add_subparsers(dest="action", required=True)
    add = ps.add_parser("add", help="add or replace a partner")
    add.add_argument("--ods", required=True, help="the partner's ODS code")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument(
        "--base-url", required=True, help="the partner's FHIR base, e.g. https://hub.example/fhir"
    )
    add.add_argument(
        "--token-url", help="the partner's token endpoint (default: base without /fhir + /oauth2/token)"
    )
    add.add_argument("--client-id", required=True, help="the client id we are registered with there")
    add.add_argument("--key", required=True, help="our private JWK file for them (`fhirplug keys generate`)")
    add.add_argument("--scope", help="ask their token endpoint for these scopes only")
    add.add_argument("--their-client-id", help="the client id they use here (see `fhirplug clients add`)")
    ps.add_parser("list", help="list partners")
    rm = ps.add_parser("remove", help="remove a partner")
    rm.add_argument("ods")


def run(args) -> int:
    directory = PartnerDirectory(Redis.from_url(redis_url_from_env()))
    if args.action == "add":
        token_url = args.token_url or args.base_url.rstrip("/").removesuffix("/fhir") + "/oauth2/token"
        partner = Partner(
            args.ods,
            args.role,
            args.base_url.rstrip("/"),
            token_url,
            args.client_id,
            os.path.abspath(args.key),
            args.scope,
            args.their_client_id,
        )
        try:
            directory.put(partner)
        except (ValueError, OSError) as exc:
            print(f"fhirplug: {exc}", file=sys.stderr)
            return 2
        print(f"partner {partner.ods} ({partner.role}) at {partner.base_url}, token {partner.token_url}")
        return 0
    if args.action == "list":
        for p in directory.all():
            print(f"{p.ods:8} {p.role:6} {p.base_url:40} client {p.client_id}  key {p.key_file}")
        return 0
    if not directory.remove(args.ods):
        print(f"fhirplug: no partner {args.ods}", file=sys.stderr)
        return 1
    print(f"partner {args.ods} removed")
    return 0
