"""The partner directory: the organisations this deployment forwards to, and how to reach them.

A partner is known by its ODS code and has: its role (hub or spoke), its FHIR base URL, its token
URL, the client id we have there and the file of the private key we sign our assertions with
(the key stays on disk where the workers run; Redis holds only its path). Kept in Redis, so
``fhirplug partners add|list|remove`` reaches every proxy and worker at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

KEY = "fhirplug:partners"  # one Redis hash: ODS code -> JSON record
# hub-and-spoke deployments, and EPS systems that take asynchronous $process-message responses
ROLES = ("hub", "spoke", "prescriber", "dispenser")
DEPLOYMENT_ROLES = ("hub", "spoke")  # partners hub-and-spoke messages and Task changes go to


@dataclass(frozen=True)
class Partner:
    ods: str
    role: str  # one of ROLES
    base_url: str  # their FHIR base, e.g. https://hub.example/fhir
    token_url: str
    client_id: str  # the client id we use at their authorization server
    key_file: str  # our private JWK for them (from `fhirplug keys generate`)
    scope: str | None = None
    their_client_id: str | None = None  # the client id they use here (`fhirplug clients add`)

    def private_jwk(self) -> dict:
        return json.loads(Path(self.key_file).read_text())


class PartnerDirectory:
    def __init__(self, redis):
        self.redis = redis

    def get(self, ods: str | None) -> Partner | None:
        raw = self.redis.hget(KEY, ods) if ods else None
        return Partner(**json.loads(raw)) if raw else None

    def deployment(self, ods: str | None) -> Partner | None:
        """The partner deployment (hub or spoke) with this ODS code: where hub-and-spoke routing
        may send; an EPS system registered only for its $process-message answers is not one."""
        partner = self.get(ods)
        return partner if partner is not None and partner.role in DEPLOYMENT_ROLES else None

    def put(self, partner: Partner) -> None:
        if partner.role not in ROLES:
            raise ValueError(f"a partner's role is one of {', '.join(ROLES)}")
        for name in ("base_url", "token_url"):
            if not getattr(partner, name).startswith(("https://", "http://")):
                raise ValueError(f"--{name.replace('_', '-')} must be an http(s) URL")
        jwk = partner.private_jwk()  # refuse a key that cannot sign now, not at the first delivery
        if "d" not in jwk or "kid" not in jwk:
            raise ValueError(f"{partner.key_file} is not a private JWK with a kid")
        self.redis.hset(KEY, partner.ods, json.dumps(asdict(partner)))

    def remove(self, ods: str) -> bool:
        return bool(self.redis.hdel(KEY, ods))

    def all(self) -> list[Partner]:
        return sorted((Partner(**json.loads(v)) for v in self.redis.hvals(KEY)), key=lambda p: p.ods)
