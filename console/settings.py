"""The console's configuration keys (FHIRPLUG_CONSOLE_*), read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass


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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ConsoleSettings:
        env = dict(os.environ) if env is None else env
        switch = env.get("FHIRPLUG_CONSOLE", "on").strip().lower()
        if switch not in ("on", "off"):
            raise ValueError(f"FHIRPLUG_CONSOLE must be on or off, not {switch!r}")
        return cls(
            enabled=switch == "on",
            idle_s=_int(env, "FHIRPLUG_CONSOLE_IDLE_SECONDS", cls.idle_s, 60, 24 * 3600),
            max_s=_int(env, "FHIRPLUG_CONSOLE_MAX_SECONDS", cls.max_s, 300, 7 * 24 * 3600),
            lockout_failures=_int(env, "FHIRPLUG_CONSOLE_LOCKOUT_FAILURES", cls.lockout_failures, 1, 100),
            lockout_s=_int(env, "FHIRPLUG_CONSOLE_LOCKOUT_SECONDS", cls.lockout_s, 10, 7 * 24 * 3600),
        )
