"""A benchmark's own OAuth client: registered in Redis with a fresh key, and its token."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

from redis import Redis

from proxy.auth import partner_keys
from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient
from proxy.auth.registry import ClientRecord, ClientRegistry


def bench_credentials(redis_url: str, origin: str) -> PartnerCredentials:
    """Register an admin client for this run (2048-bit test-fixture key) and return its credentials."""
    tmp = Path(tempfile.mkdtemp(prefix="fhirplug-bench-"))
    cid = f"bench-{uuid.uuid4().hex[:6]}"
    private, public = partner_keys.generate(f"{cid}-k1", tmp, "RS512", rsa_bits=2048)
    ClientRegistry(Redis.from_url(redis_url)).put(
        ClientRecord(cid, "", "admin", ["system/*.cruds"], jwks=json.loads(public.read_text()))
    )
    return PartnerCredentials(origin + "/oauth2/token", cid, json.loads(private.read_text()))


def bench_token(redis_url: str, fhir_base: str) -> str:
    return PartnerTokenClient(bench_credentials(redis_url, fhir_base.removesuffix("/fhir"))).token()
