"""Our side as an OAuth client of a partner: a signed-JWT assertion for each token request,
the access token cached until shortly before it expires, one refresh on a 401.

Given a Redis client, the token is also shared by every process that talks to the same partner
with the same credentials (the forwarding worker forks a process per job, which would otherwise
ask for a token on every delivery): one process asks, under a short Redis lock, and the others
take its token from Redis. Redis holds the access token only until 30 s before it expires, never
a key; when Redis does not answer, each process keeps its own token as before.

authlib's ``PrivateKeyJWT`` is not used here on purpose: it signs with a one-hour ``exp`` by
default and reuses claims given to it, while the NHS pattern needs a fresh ``jti`` and an
``exp`` at most five minutes ahead on every request. Signing is joserfc (authlib's own JOSE
layer); the HTTP is requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from joserfc import jwt
from joserfc.jwk import import_key
from redis import Redis
from redis.exceptions import RedisError

from proxy.auth.client_assertion import ASSERTION_TYPE

ASSERTION_LIFETIME_S = 300
REFRESH_MARGIN_S = 30  # renew this long before the partner's token expires
SHARED_PREFIX = "fhirplug:partner-token:"  # + a digest of the credentials: {"token", "expires_at"}
SHARED_POLL_S = 0.05
log = logging.getLogger("fhirplug.outbound")


class TokenRequestError(RuntimeError):
    """The partner's token endpoint refused us or could not be reached."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass(frozen=True)
class PartnerCredentials:
    token_url: str
    client_id: str
    private_jwk: dict  # includes kid and alg
    scope: str | None = None

    @classmethod
    def from_files(cls, token_url: str, client_id: str, key_file: str | Path, scope: str | None = None):
        return cls(token_url, client_id, json.loads(Path(key_file).read_text()), scope)


def sign_assertion(creds: PartnerCredentials, now: float | None = None) -> str:
    """A fresh client assertion: new jti, exp five minutes ahead, aud the token URL."""
    now = int(now if now is not None else time.time())
    key = import_key(creds.private_jwk)
    alg = creds.private_jwk.get("alg") or ("RS512" if key.key_type == "RSA" else "ES384")
    header = {"alg": alg, "typ": "JWT", "kid": key.kid}
    claims = {
        "iss": creds.client_id,
        "sub": creds.client_id,
        "aud": creds.token_url,
        "jti": secrets.token_urlsafe(24),
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_S,
    }
    return jwt.encode(header, claims, key, algorithms=[alg])


class PartnerTokenClient:
    """Thread-safe: one per partner per process; ``token()`` is cheap while the cache is warm.
    With ``redis``, the cache is shared across processes (see the module's docstring)."""

    def __init__(
        self,
        creds: PartnerCredentials,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        redis: Redis | None = None,
    ):
        self.creds = creds
        self.timeout = timeout
        self.session = session or requests.Session()
        self.redis = redis
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.requested = 0  # token requests this client made (tests and benches count them)

    @property
    def shared_key(self) -> str:
        c = self.creds
        raw = f"{c.token_url}\n{c.client_id}\n{c.scope or ''}\n{c.private_jwk.get('kid', '')}"
        return SHARED_PREFIX + hashlib.sha256(raw.encode()).hexdigest()

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.time() >= self._expires_at - REFRESH_MARGIN_S:
                self._token, self._expires_at = self._shared() or self._fetch()
            return self._token

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (after a 401), unless it was already replaced; the shared
        copy too, if it is still that token."""
        with self._lock:
            if token is None or token == self._token:
                self._token = None
        if self.redis is not None and token is not None:
            try:
                shared = self._shared()
                if shared is not None and shared[0] == token:
                    self.redis.delete(self.shared_key)
            except RedisError:
                pass

    def _shared(self) -> tuple[str, float] | None:
        """The token another process fetched, while it has more than the margin to live."""
        if self.redis is None:
            return None
        try:
            raw = self.redis.get(self.shared_key)
            doc = json.loads(raw) if raw else None
        except (RedisError, ValueError):
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("token"), str):
            return None
        expires_at = float(doc.get("expires_at", 0))
        return (doc["token"], expires_at) if time.time() < expires_at - REFRESH_MARGIN_S else None

    def _fetch(self) -> tuple[str, float]:
        """A new token from the partner; with Redis, one process at a time asks (the others wait
        for its answer up to ``timeout``, then ask themselves) and the answer is shared."""
        if self.redis is None:
            return self._fetch_own()
        lock = self.shared_key + ":lock"
        try:
            holder = bool(self.redis.set(lock, b"1", nx=True, ex=max(1, int(self.timeout) + 1)))
        except RedisError:
            return self._fetch_own()
        if not holder:
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                time.sleep(SHARED_POLL_S)
                if (shared := self._shared()) is not None:
                    return shared
        try:
            token, expires_at = self._fetch_own()
            ttl = int(expires_at - time.time() - REFRESH_MARGIN_S)
            if ttl > 0:
                doc = json.dumps({"token": token, "expires_at": expires_at})
                try:
                    self.redis.set(self.shared_key, doc, ex=ttl)
                except RedisError:
                    log.warning("could not share a partner token; each worker asks for its own")
            return token, expires_at
        finally:
            if holder:
                with contextlib.suppress(RedisError):  # else it expires by itself
                    self.redis.delete(lock)

    def _fetch_own(self) -> tuple[str, float]:
        token, lifetime = self._request_token()
        return token, time.time() + lifetime

    def request(self, method: str, url: str, headers: dict | None = None, **kwargs) -> requests.Response:
        """Send with our Bearer token; on a 401, fetch a new token once and send again."""
        headers = dict(headers or {})
        for attempt in (1, 2):
            token = self.token()
            sent = {**headers, "Authorization": f"Bearer {token}"}
            resp = self.session.request(method, url, headers=sent, timeout=self.timeout, **kwargs)
            if resp.status_code != 401 or attempt == 2:
                return resp
            self.invalidate(token)  # revoked or expired early: one new token, one more try
        raise AssertionError("unreachable")

    def _request_token(self) -> tuple[str, int]:
        self.requested += 1
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": sign_assertion(self.creds),
        }
        if self.creds.scope:
            form["scope"] = self.creds.scope
        try:
            resp = self.session.post(self.creds.token_url, data=form, timeout=self.timeout)
        except requests.RequestException as exc:
            raise TokenRequestError(f"token endpoint unreachable: {exc}", retryable=True) from exc
        if resp.status_code != 200:
            raise TokenRequestError(
                f"token endpoint answered {resp.status_code}: {resp.text[:300]}",
                resp.status_code,
                retryable=resp.status_code == 429 or resp.status_code >= 500,
            )
        try:
            doc = resp.json()
            return doc["access_token"], int(doc.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenRequestError(f"token endpoint answered no access token: {exc}") from exc
