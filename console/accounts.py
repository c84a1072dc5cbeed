"""People who may sign in to the console: accounts in Redis (like OAuth clients, so `fhirplug users`
takes effect in every proxy process at once), passwords as argon2id hashes, lock-out after
repeated failures.

The lock-out counts failures per user name, known or not, so a locked name and an unknown one
answer alike: the sign-in page never tells which names exist."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from enum import Enum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis import Redis

ROLES = ("validator", "operator", "admin")
KEY = "fhirplug:people"  # one Redis hash: user name -> JSON record
FAILURES = "fhirplug:people:failures:"  # + user name: wrong passwords in a row (expires with the lock)
LOCKED = "fhirplug:people:locked:"  # + user name: present while locked
_NAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{1,127}$")  # e-mail addresses too (an OIDC claim)
EXTERNAL = "external"  # the password "hash" of a person the OIDC provider signs in
MIN_PASSWORD = 12  # NIST SP 800-63B asks at least 8; operators reach patient data

# argon2-cffi's defaults are RFC 9106's second recommendation (argon2id, 64 MiB, 3 passes)
_hasher = PasswordHasher()
# a hash to check against when the name is unknown, so both cost the same time
_DUMMY = _hasher.hash("not a password of anyone's")


@dataclass
class Account:
    username: str
    role: str
    password_hash: str
    enabled: bool = True
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Account:
        return cls(**json.loads(raw))


class SignIn(Enum):
    OK = "ok"
    REFUSED = "refused"  # wrong name or password, or a disabled account: one answer for all
    LOCKED = "locked"


def check_username(username: str) -> None:
    if not _NAME.match(username):
        raise ValueError("a user name is 2-128 of a-z 0-9 . _ @ + -, starting with a letter or digit")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password has at least {MIN_PASSWORD} characters")


class AccountStore:
    def __init__(self, redis: Redis, lockout_failures: int = 5, lockout_s: int = 900) -> None:
        self.redis = redis
        self.lockout_failures = lockout_failures
        self.lockout_s = lockout_s

    def get(self, username: str) -> Account | None:
        raw = self.redis.hget(KEY, username)
        return Account.from_json(raw) if raw else None

    def all(self) -> list[Account]:
        return sorted((Account.from_json(v) for v in self.redis.hvals(KEY)), key=lambda a: a.username)

    def add(self, username: str, role: str, password: str) -> Account:
        check_username(username)
        check_password(password)
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        account = Account(username, role, _hasher.hash(password))
        if not self.redis.hsetnx(KEY, username, account.to_json()):
            raise ValueError(f"{username} exists already (use `fhirplug users reset` for a new password)")
        return account

    def add_external(self, username: str, role: str) -> Account:
        """A person who signs in through the external provider only: no password of ours
        (the stored marker is no argon2 hash, so no password ever matches it)."""
        check_username(username)
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        account = Account(username, role, EXTERNAL)
        if not self.redis.hsetnx(KEY, username, account.to_json()):
            raise ValueError(f"{username} exists already")
        return account

    def set_enabled(self, username: str, enabled: bool) -> bool:
        account = self.get(username)
        if account is None:
            return False
        account.enabled = enabled
        self.redis.hset(KEY, username, account.to_json())
        return True

    def reset(self, username: str, password: str) -> bool:
        """A new password; the lock, if any, is lifted."""
        check_password(password)
        account = self.get(username)
        if account is None:
            return False
        account.password_hash = _hasher.hash(password)
        self.redis.hset(KEY, username, account.to_json())
        self.redis.delete(FAILURES + username, LOCKED + username)
        return True

    def locked(self, username: str) -> bool:
        return bool(self.redis.exists(LOCKED + username[:128]))

    def authenticate(self, username: str, password: str) -> tuple[SignIn, Account | None]:
        """Whether ``password`` signs ``username`` in. The lock is checked first, so a locked
        account refuses even its right password until the lock ends."""
        if self.locked(username):
            return SignIn.LOCKED, None
        account = self.get(username) if _NAME.match(username) else None
        try:
            _hasher.verify(account.password_hash if account else _DUMMY, password)
            good = account is not None and account.enabled
        except (VerificationError, InvalidHashError):
            good = False
        if not good:
            return self._failed(username), None
        assert account is not None
        self.redis.delete(FAILURES + username)
        if _hasher.check_needs_rehash(account.password_hash):  # parameters raised since it was made
            account.password_hash = _hasher.hash(password)
            self.redis.hset(KEY, username, account.to_json())
        return SignIn.OK, account

    def _failed(self, username: str) -> SignIn:
        key = FAILURES + username[:128]
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, self.lockout_s)
        count = int(pipe.execute()[0])
        if count >= self.lockout_failures:
            self.redis.set(LOCKED + username[:128], "1", ex=self.lockout_s)
            self.redis.delete(key)
            return SignIn.LOCKED
        return SignIn.REFUSED
