"""Who may ask for tokens: client records in Redis, so a change made by the ``fhirplug clients``
command takes effect at once in every proxy process, without a restart."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import requests
from joserfc.jwk import KeySet
from redis import Redis

from proxy.auth.scopes import ScopeSet

if TYPE_CHECKING:  # joserfc's typed dict of a JWK set: only the type checker needs it
    from joserfc.jwk import KeySetSerialization

log = logging.getLogger("fhirplug.auth")

ROLES = ("spoke", "hub", "validator", "reader", "admin", "prescriber", "dispenser")
# roles that act for one organisation: they need its ODS code, and see only what is labelled with it
TENANT_ROLES = ("spoke", "hub", "prescriber", "dispenser")
# EPS signs prescriptions per application with one of these (EPS's own names); RS256 unless a
# client was registered with another (`fhirplug clients add --eps-algorithm RS1`)
EPS_SIGNING_ALGORITHMS = ("RS256", "RS1")
DEFAULT_EPS_SIGNING_ALGORITHM = "RS256"
KEY = "fhirplug:clients"  # one Redis hash: client_id -> JSON record
_EPS = "Task MedicationRequest MedicationDispense Bundle Patient Practitioner PractitionerRole Organization"
_EPS += " Provenance"
_HUB_SPOKE = "Task MedicationRequest MedicationDispense Patient Organization Provenance AuditEvent"
# What each role gets when `fhirplug clients add` is given no --scopes.
DEFAULT_SCOPES = {
    "spoke": " ".join(f"system/{t}.cruds" for t in _HUB_SPOKE.split()),
    "hub": " ".join(f"system/{t}.cruds" for t in _HUB_SPOKE.split()),
    "validator": " ".join(
        f"system/{t}.cruds" for t in ("StructureDefinition", "ValueSet", "CodeSystem", "ImplementationGuide")
    ),
    "reader": "system/*.rs",
    "admin": "system/*.cruds",
    # EPS prescribing and dispensing systems: they change prescriptions only through EPS's
    # operations ($prepare, $process-message, Task/$release), whose role is their gate; through
    # plain REST they read and search what is labelled with their organisation (the tracker)
    "prescriber": " ".join(f"system/{t}.rs" for t in _EPS.split()),
    # EPS's return and withdraw are Task creations (POST [base]/Task); the eps_task plugin serves
    # every Task a dispenser posts, so none reaches the store as a plain Task
    "dispenser": " ".join(f"system/{t}.{'crs' if t == 'Task' else 'rs'}" for t in _EPS.split()),
}
# hub-and-spoke tenants may subscribe to event notifications about what they may read
# (plugins/subscriptions.py); EPS systems keep REST reads only: grant it with --scopes
for _role in ("spoke", "hub"):
    DEFAULT_SCOPES[_role] += " system/Subscription.cruds"


@dataclass
class ClientRecord:
    client_id: str
    ods: str
    role: str
    scopes: list[str]
    jwks: KeySetSerialization | None = None  # an inline JWK set (public keys)
    jwks_uri: str | None = None
    enabled: bool = True
    created_at: float = field(default_factory=time.time)
    # what EPS's $prepare answers this client with (records made before it existed load as RS256)
    eps_signing_algorithm: str = DEFAULT_EPS_SIGNING_ALGORITHM

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> ClientRecord:
        return cls(**json.loads(raw))


class ClientRegistry:
    """Client records, with their public keys, read fresh for every token request."""

    JWKS_TIMEOUT = 5.0
    JWKS_REFRESH_MIN_INTERVAL = 60.0  # an unknown kid triggers at most one refetch a minute

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._jwks_cache: dict[str, tuple[float, KeySetSerialization]] = {}
        self._lock = threading.Lock()

    # -- records
    def get(self, client_id: str) -> ClientRecord | None:
        raw = self.redis.hget(KEY, client_id)
        return ClientRecord.from_json(raw) if raw else None

    def put(self, record: ClientRecord) -> None:
        if record.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not (record.jwks or record.jwks_uri):
            raise ValueError("a client needs --jwks or --jwks-uri")
        if record.role in TENANT_ROLES and not record.ods:
            raise ValueError(f"a {record.role} client needs its organisation's ODS code (--ods)")
        if record.eps_signing_algorithm not in EPS_SIGNING_ALGORITHMS:
            raise ValueError(f"--eps-algorithm must be one of {', '.join(EPS_SIGNING_ALGORITHMS)}")
        ScopeSet.parse(" ".join(record.scopes))  # refuse a scope the server would not understand
        if record.jwks_uri and not record.jwks_uri.startswith(("https://", "http://")):
            raise ValueError("--jwks-uri must be an http(s) URL")
        if record.jwks:
            KeySet.import_key_set(record.jwks)  # refuse a malformed key set now, not at first use
        self.redis.hset(KEY, record.client_id, record.to_json())

    def all(self) -> list[ClientRecord]:
        return sorted((ClientRecord.from_json(v) for v in self.redis.hvals(KEY)), key=lambda c: c.client_id)

    def remove(self, client_id: str) -> bool:
        return bool(self.redis.hdel(KEY, client_id))

    def set_enabled(self, client_id: str, enabled: bool) -> bool:
        rec = self.get(client_id)
        if rec is None:
            return False
        rec.enabled = enabled
        self.redis.hset(KEY, client_id, rec.to_json())
        return True

    # -- keys
    def key_set(self, record: ClientRecord, kid: str) -> KeySet | None:
        """The client's public keys, holding ``kid``; None when no registered key has that kid."""
        if record.jwks:
            ks = KeySet.import_key_set(record.jwks)
            return ks if _has_kid(ks, kid) else None
        uri = record.jwks_uri
        if uri is None:  # neither keys nor a URI: put() refuses such a record, so it has no key
            return None
        now = time.monotonic()
        cached = self._jwks_cache.get(uri)
        if cached:
            fetched_at, doc = cached
            ks = KeySet.import_key_set(doc)
            if _has_kid(ks, kid) or now - fetched_at < self.JWKS_REFRESH_MIN_INTERVAL:
                return ks if _has_kid(ks, kid) else None
        fetched = self._fetch(uri)
        if fetched is None:
            return None
        self._jwks_cache[uri] = (now, fetched)
        ks = KeySet.import_key_set(fetched)
        return ks if _has_kid(ks, kid) else None

    def _fetch(self, uri: str) -> KeySetSerialization | None:
        with self._lock:
            try:
                r = requests.get(uri, timeout=self.JWKS_TIMEOUT, allow_redirects=False)
                r.raise_for_status()
                doc = r.json()
                KeySet.import_key_set(doc)
                return doc
            except Exception as exc:  # an unreachable or broken JWKS is the client's problem
                log.warning("could not fetch JWKS %s: %s", uri, exc)
                return None


def _has_kid(ks: KeySet, kid: str) -> bool:
    return any(k.kid == kid for k in ks.keys)
