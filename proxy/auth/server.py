"""The authorization server's parts, built once per process from the settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis import Redis

from proxy.auth import client_assertion
from proxy.auth.access_tokens import TokenService
from proxy.auth.errors import OAuthError, invalid_request
from proxy.auth.registry import ClientRegistry
from proxy.auth.replay import ReplayCache
from proxy.auth.scopes import ScopeError, ScopeSet
from proxy.auth.signing import ALG, ServerKeys

log = logging.getLogger("fhirplug.auth")
TOKEN_PATH = "/oauth2/token"
GRANT = "client_credentials"


@dataclass
class AuthServer:
    registry: ClientRegistry
    replay: ReplayCache
    keys: ServerKeys
    tokens: TokenService

    @classmethod
    def build(cls, redis_url: str, keys_dir: str, token_lifetime_s: int, redis=None) -> AuthServer:
        """``redis`` replaces the connection to ``redis_url`` (unit tests pass an in-memory one)."""
        redis = redis or Redis.from_url(redis_url, socket_timeout=3, socket_connect_timeout=3)
        registry = ClientRegistry(redis)
        keys = ServerKeys(keys_dir)
        keys.ensure()
        return cls(registry, ReplayCache(redis), keys, TokenService(keys, registry, token_lifetime_s))

    def token_response(self, form: dict, issuer: str) -> dict:
        """RFC 6749 §4.4 client credentials with an RFC 7523 assertion; raises OAuthError."""
        grant = form.get("grant_type")
        if not grant:
            raise invalid_request("grant_type is missing")
        if grant != GRANT:
            raise OAuthError(400, "unsupported_grant_type", f"grant_type must be {GRANT}")
        token_url = issuer + TOKEN_PATH
        try:
            client = client_assertion.authenticate(form, token_url, self.registry, self.replay)
        except OAuthError as exc:
            log.info(
                "token refused",
                extra={"fields": {"event": "token_refused", "error": exc.error, "reason": exc.description}},
            )
            raise
        try:
            granted = ScopeSet.parse(" ".join(client.scopes)).narrowed_to(form.get("scope"))
        except ScopeError as exc:
            raise OAuthError(400, "invalid_scope", str(exc)) from exc
        if not granted.scopes:
            raise OAuthError(400, "invalid_scope", "This client has no scopes registered")
        scope = str(granted)
        token, lifetime = self.tokens.issue(client, scope, issuer)
        log.info(
            "token issued",
            extra={"fields": {"event": "token_issued", "client_id": client.client_id, "scope": scope}},
        )
        return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": scope}

    def smart_configuration(self, issuer: str) -> dict:
        return {
            "issuer": issuer,
            "jwks_uri": issuer + "/.well-known/jwks.json",
            "token_endpoint": issuer + TOKEN_PATH,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(client_assertion.ALGORITHMS),
            "grant_types_supported": [GRANT],
            "scopes_supported": ["system/*.cruds", "system/*.rs", "system/Task.cruds", "system/*.read"],
            "capabilities": ["client-confidential-asymmetric"],
            "access_token_signing_alg_values_supported": [ALG],
        }
