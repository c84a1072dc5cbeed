"""Server-side sessions for signed-in people, and the CSRF token each one carries.

The cookie holds only a random id; what it stands for lives in Redis under the id's SHA-256
(a leaked Redis dump holds no usable cookie). A session ends after ``idle_s`` without use and in
any case ``max_s`` after sign-in; sign-out deletes it. Every sign-in makes a new id (no session
fixation). Cookies are ``__Host-`` prefixed, ``HttpOnly; Secure; SameSite=Lax; Path=/``: the
prefix makes a browser refuse them without Secure, or with a Domain, so no sibling host can plant
one. Browsers treat http://127.0.0.1 and http://localhost as secure for cookies, which is how the
browser tests run on plain HTTP; anywhere else the console must be served over HTTPS.

CSRF: each session holds a random token; every form carries it and every POST is refused
without the same value (synchroniser token, compared in constant time). SameSite=Lax already
keeps the cookie off cross-site POSTs; the token is the second line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass

from redis import Redis

SESSION_COOKIE = "__Host-fhirplug-console"
PREFIX = "fhirplug:console:"


def cookie_options(max_age: int | None) -> dict:
    """What every console cookie is set with (Flask's ``set_cookie`` keywords)."""
    return {"max_age": max_age, "path": "/", "secure": True, "httponly": True, "samesite": "Lax"}


def _key(kind: str, token: str) -> str:
    return PREFIX + kind + ":" + hashlib.sha256(token.encode()).hexdigest()


class Records:
    """Short-lived JSON records named by a random token (sign-in attempts, sessions)."""

    def __init__(self, redis: Redis, kind: str) -> None:
        self.redis = redis
        self.kind = kind

    def new(self, data: dict, ttl_s: int) -> str:
        token = secrets.token_urlsafe(32)
        self.redis.set(_key(self.kind, token), json.dumps(data), ex=ttl_s)
        return token

    def get(self, token: str | None) -> dict | None:
        if not token or len(token) > 128:
            return None
        raw = self.redis.get(_key(self.kind, token))
        return json.loads(raw) if raw else None

    def put(self, token: str, data: dict, ttl_s: int) -> None:
        self.redis.set(_key(self.kind, token), json.dumps(data), ex=max(1, ttl_s))

    def take(self, token: str | None) -> dict | None:
        """The record, deleted as it is read: it serves once."""
        if not token or len(token) > 128:
            return None
        raw = self.redis.getdel(_key(self.kind, token))
        return json.loads(raw) if raw else None

    def delete(self, token: str | None) -> None:
        if token and len(token) <= 128:
            self.redis.delete(_key(self.kind, token))


@dataclass
class Session:
    username: str
    role: str
    created: float
    seen: float
    csrf: str

    def csrf_ok(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf.encode(), str(sent).encode())


class Sessions:
    def __init__(self, redis: Redis, idle_s: int, max_s: int) -> None:
        self.records = Records(redis, "session")
        self.idle_s = idle_s
        self.max_s = max_s

    def start(self, username: str, role: str) -> tuple[str, Session]:
        """A new session (a new id: never one the browser brought along)."""
        now = time.time()
        session = Session(username, role, now, now, secrets.token_urlsafe(32))
        return self.records.new(asdict(session), self.idle_s), session

    def resume(self, token: str | None, now: float | None = None) -> Session | None:
        """The live session the cookie names, its idle clock restarted; None when there is none,
        or it has been idle or alive too long."""
        data = self.records.get(token)
        if data is None or token is None:
            return None
        session = Session(**data)
        now = time.time() if now is None else now
        if now - session.seen > self.idle_s or now - session.created > self.max_s:
            self.records.delete(token)
            return None
        session.seen = now
        left = min(self.idle_s, int(session.created + self.max_s - now))
        self.records.put(token, asdict(session), left)
        return session

    def end(self, token: str | None) -> None:
        self.records.delete(token)
