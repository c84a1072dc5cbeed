"""The console's configuration keys (FHIRPLUG_CONSOLE_*), read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from console.oidc import OidcSettings


def _int(env: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of seconds or a count, not {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")
    return value


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = True
    idle_s: int = 900  # a session unused this long is over (OWASP: 15-30 min for sensitive data)
    max_s: int = 8 * 3600  # and none lives longer than a working day, however busy
    lockout_failures: int = 5  # wrong passwords in a row before an account is locked
    lockout_s: int = 900  # how long the lock lasts (an administrator's `users reset` lifts it sooner)
    # an external OpenID Connect provider instead of passwords (console.oidc); None: passwords
    oidc: OidcSettings | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ConsoleSettings:
        env = dict(os.environ) if env is None else env
        switch = env.get("FHIRPLUG_CONSOLE", "on").strip().lower()
        if switch not in ("on", "off"):
            raise ValueError(f"FHIRPLUG_CONSOLE must be on or off, not {switch!r}")
        return cls(
            oidc=_oidc(env),
            enabled=switch == "on",
            idle_s=_int(env, "FHIRPLUG_CONSOLE_IDLE_SECONDS", cls.idle_s, 60, 24 * 3600),
            max_s=_int(env, "FHIRPLUG_CONSOLE_MAX_SECONDS", cls.max_s, 300, 7 * 24 * 3600),
            lockout_failures=_int(env, "FHIRPLUG_CONSOLE_LOCKOUT_FAILURES", cls.lockout_failures, 1, 100),
            lockout_s=_int(env, "FHIRPLUG_CONSOLE_LOCKOUT_SECONDS", cls.lockout_s, 10, 7 * 24 * 3600),
        )


def _oidc(env: dict[str, str]) -> OidcSettings | None:
    issuer = env.get("FHIRPLUG_CONSOLE_OIDC_ISSUER", "").strip()
    if not issuer:
        return None
    if not issuer.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise ValueError("FHIRPLUG_CONSOLE_OIDC_ISSUER must be an https URL (http only on this machine)")
    client_id = env.get("FHIRPLUG_CONSOLE_OIDC_CLIENT_ID", "").strip()
    secret = env.get("FHIRPLUG_CONSOLE_OIDC_CLIENT_SECRET", "")
    if not secret and env.get("FHIRPLUG_CONSOLE_OIDC_CLIENT_SECRET_FILE"):
        secret = Path(env["FHIRPLUG_CONSOLE_OIDC_CLIENT_SECRET_FILE"]).read_text().strip()
    if not client_id or not secret:
        raise ValueError(
            "FHIRPLUG_CONSOLE_OIDC_ISSUER needs FHIRPLUG_CONSOLE_OIDC_CLIENT_ID and a client secret"
        )
    claim = env.get("FHIRPLUG_CONSOLE_OIDC_USER_CLAIM", "sub").strip() or "sub"
    return OidcSettings(issuer, client_id, secret, claim)
