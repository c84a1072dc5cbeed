"""``fhirplug clients`` and ``fhirplug keys``: who may ask this server for tokens, and key pairs.

Client records live in Redis (REDIS_URL), so a change here reaches every proxy process at once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from redis import Redis

from proxy.auth import partner_keys
from proxy.auth.registry import (
    DEFAULT_EPS_SIGNING_ALGORITHM,
    DEFAULT_SCOPES,
    EPS_SIGNING_ALGORITHMS,
    ROLES,
    ClientRecord,
    ClientRegistry,
)
from proxy.auth.signing import ServerKeys
from proxy.config import redis_url_from_env


def add_parsers(sub) -> None:
    cl = sub.add_parser("clients", help="register, list, disable or remove OAuth clients")
    cs = cl.add_subparsers(dest="action", required=True)
    add = cs.add_parser("add", help="register a client (or replace its record)")
    add.add_argument("--client-id", required=True)
    add.add_argument("--ods", help="the client's organisation ODS code (its tenant); spoke and hub need it")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--scopes", help="SMART system scopes, space separated (default: the role's)")
    add.add_argument(
        "--eps-algorithm",
        default=DEFAULT_EPS_SIGNING_ALGORITHM,
        choices=EPS_SIGNING_ALGORITHMS,
        help="what EPS $prepare answers this client with: RS256 (SHA-256, the default) or RS1 (SHA-1)",
    )
    keys = add.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks", help="a file holding the client's public JWK set")
    keys.add_argument("--jwks-uri", help="where the client publishes its public JWK set")
    cs.add_parser("list", help="list registered clients")
    for name in ("disable", "enable", "remove"):
        p = cs.add_parser(name, help=f"{name} a client")
        p.add_argument("client_id")

    ky = sub.add_parser("keys", help="key pairs for partners, and this server's signing keys")
    ks = ky.add_subparsers(dest="action", required=True)
    gen = ks.add_parser("generate", help="write a private JWK and its public JWK set")
    gen.add_argument("--kid", required=True)
    gen.add_argument("--out", required=True, help="folder for KID.private.jwk.json and KID.jwks.json")
    gen.add_argument("--alg", default="RS512", choices=["RS512", "RS384", "ES384"])
    rot = ks.add_parser("rotate", help="add a new server signing key (old ones keep verifying)")
    rot.add_argument("--keys-dir", default=os.environ.get("FHIRPLUG_KEYS_DIR", "var/keys"))
    prune = ks.add_parser("prune", help="remove server keys older than --older-than seconds (not the newest)")
    prune.add_argument("--keys-dir", default=os.environ.get("FHIRPLUG_KEYS_DIR", "var/keys"))
    prune.add_argument("--older-than", type=float, default=3600.0)


def _registry() -> ClientRegistry:
    url = redis_url_from_env()
    return ClientRegistry(Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5))


def run_clients(args) -> int:
    reg = _registry()
    if args.action == "add":
        jwks = json.loads(Path(args.jwks).read_text()) if args.jwks else None
        scopes = (args.scopes or DEFAULT_SCOPES[args.role]).split()
        rec = ClientRecord(
            args.client_id,
            args.ods or "",
            args.role,
            scopes,
            jwks=jwks,
            jwks_uri=args.jwks_uri,
            eps_signing_algorithm=args.eps_algorithm,
        )
        try:
            reg.put(rec)
        except ValueError as exc:
            print(f"fhirplug: {exc}", file=sys.stderr)
            return 2
        print(f"client {rec.client_id} registered: role {rec.role}, ODS {rec.ods or '-'}")
        print(f"  scopes: {' '.join(scopes)}")
        print(f"  EPS signing algorithm: {rec.eps_signing_algorithm}")
        return 0
    if args.action == "list":
        rows = reg.all()
        print(f"{'client_id':24} {'role':10} {'ods':8} {'enabled':7} {'eps':5} keys / scopes")
        for c in rows:
            inline = len((c.jwks or {}).get("keys", []))
            keys = f"jwks_uri {c.jwks_uri}" if c.jwks_uri else f"{inline} inline key(s)"
            print(
                f"{c.client_id:24} {c.role:10} {c.ods or '-':8} {'yes' if c.enabled else 'no':7} "
                f"{c.eps_signing_algorithm:5} {keys}"
            )
            print(f"{'':58} {' '.join(c.scopes)}")
        return 0
    done = {
        "disable": lambda: reg.set_enabled(args.client_id, False),
        "enable": lambda: reg.set_enabled(args.client_id, True),
        "remove": lambda: reg.remove(args.client_id),
    }[args.action]()
    if not done:
        print(f"fhirplug: no client {args.client_id}", file=sys.stderr)
        return 1
    print(f"client {args.client_id}: {args.action}d")
    return 0


def run_keys(args) -> int:
    if args.action == "generate":
        try:
            private, public = partner_keys.generate(args.kid, args.out, args.alg)
        except (ValueError, FileExistsError) as exc:
            print(f"fhirplug: {exc}", file=sys.stderr)
            return 2
        print(f"private key (keep secret): {private}\npublic JWK set (register it): {public}")
        return 0
    keys = ServerKeys(args.keys_dir)
    if args.action == "rotate":
        print(f"new signing key {keys.rotate()} in {args.keys_dir}")
        return 0
    removed = keys.prune(args.older_than)
    print(f"removed {len(removed)} key(s): {' '.join(removed) or '-'}")
    return 0
