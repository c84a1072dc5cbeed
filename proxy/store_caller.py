"""The caller assertion the proxy signs onto every request it sends the store.

The store enforces tenancy itself, as a second line behind the proxy (store/, TenancyInterceptor),
and needs to know whom each request is for. The proxy tells it in one header,
``X-Fhirplug-Caller: v1;<role>;<ods>;<unix seconds>;<signature>``, signed with HMAC-SHA256 under
a secret only the proxy, its workers and the store hold (``FHIRPLUG_STORE_SECRET``). A caller of
the proxy can never set it: the proxy sends the store an allow-list of headers, and this one is
always its own. Without a valid assertion the store answers nothing but its capability statement.

The proxy's own reads and writes (ownership checks, outbox records, audit events, profile loads)
go as ``admin``; a relayed request goes as the client the proxy authenticated.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import time
from pathlib import Path

import requests

HEADER = "X-Fhirplug-Caller"
# a rule-driven change the proxy grants one request (a MedicationRequest its dispense completes):
# "v1;complete;<Type/id,...>;<unix seconds>;<signature>", signed like the caller assertion
GRANT_HEADER = "X-Fhirplug-Grant"
# how the pass-through tells the store client which resources to grant ("Type/id,Type/id")
GRANT_KEY = "x-fhirplug-grant"
_TARGET = re.compile(r"[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}")
# how the pass-through tells the store client whom a relayed request is for ("role;ods");
# the client replaces it with the signed header and never sends it as it is
CALLER_KEY = "x-fhirplug-caller"
SECRET_ENV = "FHIRPLUG_STORE_SECRET"
SECRET_FILE_ENV = "FHIRPLUG_STORE_SECRET_FILE"
DEFAULT_SECRET_FILE = "var/store-secret"  # where `make up` keeps the one it made
MIN_SECRET_LENGTH = 32
_WORD = re.compile(r"[A-Za-z0-9_-]{0,64}")


class StoreSecretMissing(RuntimeError):
    pass


def secret_from_env(environ: dict[str, str] | None = None) -> str:
    """FHIRPLUG_STORE_SECRET, or the contents of the file FHIRPLUG_STORE_SECRET_FILE names
    (default var/store-secret, which `make up` writes)."""
    env = os.environ if environ is None else environ
    secret = env.get(SECRET_ENV, "").strip()
    if not secret:
        path = Path(env.get(SECRET_FILE_ENV) or DEFAULT_SECRET_FILE)
        try:
            secret = path.read_text().strip()
        except FileNotFoundError:
            secret = ""
        except OSError as exc:
            raise StoreSecretMissing(f"{path} (the store secret) cannot be read: {exc}") from exc
    if len(secret) < MIN_SECRET_LENGTH:
        raise StoreSecretMissing(
            f"{SECRET_ENV} (or {SECRET_FILE_ENV}) must hold the secret shared with the FHIR store, "
            f"at least {MIN_SECRET_LENGTH} characters: the store answers only requests signed with it"
        )
    return secret


class CallerSigner:
    """Signs caller assertions; one per process, safe to share between threads."""

    def __init__(self, secret: str):
        if len(secret) < MIN_SECRET_LENGTH:
            raise StoreSecretMissing(f"the store secret must be at least {MIN_SECRET_LENGTH} characters")
        self._key = secret.encode()

    @classmethod
    def from_env(cls) -> CallerSigner:
        return cls(secret_from_env())

    def header(self, role: str, ods: str = "", now: float | None = None) -> str:
        if not (_WORD.fullmatch(role) and _WORD.fullmatch(ods)):
            raise ValueError(f"cannot assert caller role {role!r} ODS {ods!r}")
        signed = f"v1;{role};{ods};{int(time.time() if now is None else now)}"
        mac = hmac.new(self._key, signed.encode(), hashlib.sha256).digest()
        return signed + ";" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def grant(self, targets: list[str], now: float | None = None) -> str:
        """The grant header letting one request complete ``targets`` (``Type/id``), at most 50."""
        if not targets or len(targets) > 50 or not all(_TARGET.fullmatch(t) for t in targets):
            raise ValueError(f"cannot grant {targets!r}")
        signed = f"v1;complete;{','.join(targets)};{int(time.time() if now is None else now)}"
        mac = hmac.new(self._key, signed.encode(), hashlib.sha256).digest()
        return signed + ";" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def admin(self) -> dict[str, str]:
        return {HEADER: self.header("admin")}


def caller_of(role: str | None, ods: str | None) -> str:
    """The value the pass-through puts under CALLER_KEY for a relayed request."""
    return f"{role or ''};{ods or ''}"


@functools.lru_cache(maxsize=1)
def store_auth() -> StoreAuth:
    """The process's auth for direct store requests, made on first use."""
    return StoreAuth()


class StoreAuth(requests.auth.AuthBase):
    """``requests`` auth for the proxy's own direct requests to the store (workers, CLI): admin."""

    def __init__(self, signer: CallerSigner | None = None):
        self.signer = signer or CallerSigner.from_env()

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers[HEADER] = self.signer.header("admin")
        return r
