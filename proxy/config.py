"""Settings, read once from the environment. Every key is documented in the README."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from proxy.store_caller import secret_from_env

# message checks before profile validation: the cheap refusals first, then the store's validator
DEFAULT_PLUGINS = (
    "request_id",
    "tenancy",
    "delivery_dedup",
    "message_checks",
    "profile_validation",
    "routing",
    "intake",
    "task_workflow",
    "dispense_return",
    "audit",
    "access_log",
)


PUBLIC_BASE_KEY = "FHIRPLUG_PUBLIC_BASE_URL"


class ConfigError(ValueError):
    """A setting the proxy cannot start without, or cannot make sense of."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@dataclass(frozen=True)
class Settings:
    store_url: str = "http://127.0.0.1:8090/fhir"
    # who we are: the FHIR base clients call, e.g. https://fhir.example.org/fhir. Required: the
    # proxy refuses to start without it (``create_app``); never derived from a request's Host
    public_base_url: str = ""
    plugins: list[str] = field(default_factory=lambda: list(DEFAULT_PLUGINS))
    max_body_bytes: int = 10 * 1024 * 1024
    store_connect_timeout: float = 3.0
    store_read_timeout: float = 30.0
    store_pool_size: int = 32
    store_max_idle_s: float = 20.0
    gzip_min_bytes: int = 1024
    redis_url: str = "redis://127.0.0.1:6379/0"
    auth: bool = True  # False only for benchmarks: every caller is then an administrator
    keys_dir: str = "var/keys"
    token_lifetime_s: int = 300
    read_cache_ttl_s: int = 60  # 0: no read cache
    read_cache_max_bytes: int = 64 * 1024
    store_secret: str = field(default="", repr=False)  # signs the caller of each store request

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            store_url=_env("FHIRPLUG_STORE_URL", cls.store_url).rstrip("/"),
            public_base_url=_env(PUBLIC_BASE_KEY, "").strip().rstrip("/"),
            plugins=_list(_env("FHIRPLUG_PLUGINS", ",".join(DEFAULT_PLUGINS))),
            max_body_bytes=int(_env("FHIRPLUG_MAX_BODY_BYTES", str(cls.max_body_bytes))),
            store_connect_timeout=float(_env("FHIRPLUG_STORE_CONNECT_TIMEOUT", "3")),
            store_read_timeout=float(_env("FHIRPLUG_STORE_READ_TIMEOUT", "30")),
            store_pool_size=int(_env("FHIRPLUG_STORE_POOL_SIZE", "32")),
            store_max_idle_s=float(_env("FHIRPLUG_STORE_IDLE_SECONDS", "20")),
            gzip_min_bytes=int(_env("FHIRPLUG_GZIP_MIN_BYTES", "1024")),
            redis_url=_env("REDIS_URL", cls.redis_url),
            auth=_auth_switch(_env("FHIRPLUG_AUTH", "on")),
            keys_dir=_env("FHIRPLUG_KEYS_DIR", cls.keys_dir),
            token_lifetime_s=_lifetime(_env("FHIRPLUG_TOKEN_LIFETIME", "300")),
            read_cache_ttl_s=int(_env("FHIRPLUG_READ_CACHE_TTL", "60")),
            read_cache_max_bytes=int(_env("FHIRPLUG_READ_CACHE_MAX_BYTES", str(64 * 1024))),
            store_secret=secret_from_env(),  # fail closed: no secret, no proxy
        )

    @property
    def issuer(self) -> str:
        """This server's OAuth issuer: the public base without its /fhir."""
        return self.public_base_url.removesuffix("/fhir")

    def check_public_base(self) -> None:
        """Refuse to run without a usable public base: it is the token endpoint's audience, the
        issuer of our tokens and every absolute URL we write, so it must never come from a request."""
        value = self.public_base_url
        if not value:
            raise ConfigError(
                f"{PUBLIC_BASE_KEY} is not set: set it to this proxy's public FHIR base, as clients "
                "call it (e.g. https://fhir.example.org/fhir). It is the token endpoint's audience and "
                "the issuer of our access tokens; the proxy never takes it from a request's Host header"
            )
        parts = urlsplit(value)
        try:
            port_ok = parts.port is None or parts.port > 0  # a port that is not a number raises
        except ValueError:
            port_ok = False
        if not (
            port_ok
            and parts.scheme in ("http", "https")
            and parts.hostname
            and "@" not in parts.netloc
            and not {"?", "#", " "} & set(value)
            and parts.path.endswith("/fhir")
        ):
            raise ConfigError(
                f"{PUBLIC_BASE_KEY}={value!r} is not a public FHIR base: it must be an http(s) URL "
                "ending in /fhir, without a query, fragment or credentials (e.g. https://fhir.example.org/fhir)"
            )


def _auth_switch(value: str) -> bool:
    v = value.strip().lower()
    if v in ("on", "true", "1", "yes"):
        return True
    if v in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"FHIRPLUG_AUTH must be on or off, not {value!r}")


def _lifetime(value: str) -> int:
    seconds = int(value)
    if not 30 <= seconds <= 600:
        # the NHS pattern: access tokens live at most 10 minutes
        raise ValueError("FHIRPLUG_TOKEN_LIFETIME must be between 30 and 600 seconds")
    return seconds
