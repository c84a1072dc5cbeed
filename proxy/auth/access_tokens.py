"""Access tokens: RFC 9068 JWTs signed by this server, and the bearer check on every FHIR call.

A token says who the client is (client_id, ODS code, role) and what it may do (SMART scopes).
Verification is cached per token string until the token expires, so a busy client pays for
one signature check, not one per request; the cached entry still re-checks expiry and whether
the client was disabled since (client status is re-read at most every few seconds).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError

from proxy.auth.registry import ClientRecord, ClientRegistry
from proxy.auth.scopes import ScopeSet
from proxy.auth.signing import ALG, ServerKeys
from proxy.errors import FhirError

TOKEN_TYPE = "at+jwt"  # RFC 9068: a client assertion (typ JWT) can never pass as an access token
LEEWAY_S = 5


@dataclass(frozen=True)
class AccessClaims:
    client_id: str
    ods: str | None
    role: str
    scope: str
    exp: float
    scopes: ScopeSet  # ``scope`` parsed once, when the token is first verified


class BearerError(FhirError):
    """401 with the RFC 6750 challenge, as an OperationOutcome."""

    def __init__(self, description: str, error: str = "invalid_token"):
        challenge = f'Bearer realm="fhirplug", error="{error}", error_description="{description}"'
        if error == "":
            challenge = 'Bearer realm="fhirplug"'
        super().__init__(401, description, code="login", headers={"WWW-Authenticate": challenge})


class TokenService:
    CACHE_SIZE = 10_000
    STATUS_TTL_S = 5.0  # how long a client's enabled flag is trusted before Redis is asked again

    def __init__(self, keys: ServerKeys, registry: ClientRegistry, lifetime_s: int):
        self.keys = keys
        self.registry = registry
        self.lifetime_s = lifetime_s
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()
        self._status: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- issuing

    def issue(self, client: ClientRecord, scope: str, issuer: str) -> tuple[str, int]:
        now = int(time.time())
        key = self.keys.signing_key
        claims = {
            "iss": issuer,
            "sub": client.client_id,
            "aud": issuer + "/fhir",
            "client_id": client.client_id,
            "iat": now,
            "exp": now + self.lifetime_s,
            "jti": secrets.token_urlsafe(16),
            "scope": scope,
            "role": client.role,
            "ods": client.ods,
        }
        header = {"alg": ALG, "kid": key.kid, "typ": TOKEN_TYPE}
        return jwt.encode(header, claims, key, algorithms=[ALG]), self.lifetime_s

    # ---------------------------------------------------------------- checking

    def verify(self, authorization: str | None, issuer: str) -> AccessClaims:
        """The claims of a valid ``Authorization: Bearer`` value, or a BearerError."""
        if not authorization:
            raise BearerError("An access token is required (Authorization: Bearer ...)", error="")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise BearerError("The Authorization header must be: Bearer <access token>", "invalid_request")
        cache_key = issuer + " " + token
        with self._lock:
            claims = self._verified.get(cache_key)
            if claims is not None:
                self._verified.move_to_end(cache_key)
        if claims is None:
            claims = self._verify_signed(token, issuer)
            with self._lock:
                self._verified[cache_key] = claims
                while len(self._verified) > self.CACHE_SIZE:
                    self._verified.popitem(last=False)
        if claims.exp + LEEWAY_S < time.time():
            with self._lock:
                self._verified.pop(cache_key, None)
            raise BearerError("The access token has expired")
        if not self._enabled(claims.client_id):
            raise BearerError("The client of this access token is disabled or removed")
        return claims

    def _verify_signed(self, token: str, issuer: str) -> AccessClaims:
        if len(token) > 8192:
            raise BearerError("The access token is too large")
        try:
            decoded = jwt.decode(token, self.keys.verification_keys(), algorithms=[ALG])
        except (JoseError, ValueError, TypeError, UnicodeError):
            raise BearerError("The access token is not one this server issued") from None
        if str(decoded.header.get("typ", "")).lower() != TOKEN_TYPE:
            raise BearerError("This is not an access token (a client assertion goes to /oauth2/token)")
        c = decoded.claims
        if c.get("iss") != issuer or c.get("aud") != issuer + "/fhir":
            raise BearerError("The access token was issued for another server")
        exp = c.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise BearerError("The access token has no expiry")
        for name in ("client_id", "role", "scope"):
            if not isinstance(c.get(name), str):
                raise BearerError(f"The access token lacks {name}")
        try:
            scopes = ScopeSet.parse(c["scope"])
        except ValueError:
            raise BearerError("The access token carries a scope this server does not understand") from None
        return AccessClaims(c["client_id"], c.get("ods"), c["role"], c["scope"], float(exp), scopes)

    def _enabled(self, client_id: str) -> bool:
        now = time.monotonic()
        cached = self._status.get(client_id)
        if cached and now - cached[0] < self.STATUS_TTL_S:
            return cached[1]
        try:
            rec = self.registry.get(client_id)
        except Exception as exc:  # Redis down: fail closed, but say so
            raise FhirError(
                503, "The client registry is unreachable; retry shortly", headers={"Retry-After": "5"}
            ) from exc
        enabled = rec is not None and rec.enabled
        self._status[client_id] = (now, enabled)
        return enabled
