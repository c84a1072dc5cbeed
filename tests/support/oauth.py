"""OAuth for tests: test-fixture key pairs, registered clients, and sessions that carry a token.

Keys are generated per test run into the run's temporary folder (never committed). Tokens come
from the proxy's real token endpoint through the product's own outbound client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import requests
from redis import Redis

from proxy.auth import partner_keys
from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient
from proxy.auth.registry import DEFAULT_SCOPES, ClientRecord, ClientRegistry


@dataclass
class TestClient:
    client_id: str
    ods: str
    role: str
    private_jwk: dict
    public_jwks: dict
    kid: str


def make_client(
    redis_url: str,
    keys_dir: Path,
    client_id: str,
    role: str,
    ods: str = "",
    scopes: str | None = None,
    alg: str = "RS512",
    register: bool = True,
) -> TestClient:
    kid = f"{client_id}-k1"
    # 2048-bit RSA keeps the test run fast; `fhirplug keys generate` makes 4096-bit keys
    private, public = partner_keys.generate(kid, keys_dir / client_id, alg, rsa_bits=2048)
    client = TestClient(
        client_id, ods, role, json.loads(private.read_text()), json.loads(public.read_text()), kid
    )
    if register:
        registry = ClientRegistry(Redis.from_url(redis_url))
        granted = (scopes or DEFAULT_SCOPES[role]).split()
        registry.put(ClientRecord(client_id, ods, role, granted, jwks=client.public_jwks))
    return client


def token_url(fhir_base: str) -> str:
    return fhir_base.removesuffix("/fhir") + "/oauth2/token"


def session_for(fhir_base: str, client: TestClient, scope: str | None = None) -> requests.Session:
    """A requests session whose every request carries a fresh-enough Bearer token."""
    creds = PartnerCredentials(token_url(fhir_base), client.client_id, client.private_jwk, scope)
    oauth = PartnerTokenClient(creds)
    s = requests.Session()
    s.headers["Accept"] = "application/fhir+json"
    s.auth = _Bearer(oauth)
    return s


class _Bearer(requests.auth.AuthBase):
    def __init__(self, oauth: PartnerTokenClient):
        self.oauth = oauth

    def __call__(self, r):
        r.headers["Authorization"] = f"Bearer {self.oauth.token()}"
        return r
