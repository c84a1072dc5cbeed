"""Settings, read once from the environment. Every key is documented in the README."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@dataclass(frozen=True)
class Settings:
    store_url: str = "http://127.0.0.1:8090/fhir"
    public_base_url: str = ""  # empty: derived from each request's Host
    plugins: list[str] = field(default_factory=lambda: ["request_id", "access_log"])
    max_body_bytes: int = 10 * 1024 * 1024
    store_connect_timeout: float = 3.0
    store_read_timeout: float = 30.0
    store_pool_size: int = 32
    gzip_min_bytes: int = 1024
    redis_url: str = "redis://127.0.0.1:6379/0"

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            store_url=_env("FHIRPLUG_STORE_URL", cls.store_url).rstrip("/"),
            public_base_url=_env("FHIRPLUG_PUBLIC_BASE_URL", "").rstrip("/"),
            plugins=_list(_env("FHIRPLUG_PLUGINS", "request_id,access_log")),
            max_body_bytes=int(_env("FHIRPLUG_MAX_BODY_BYTES", str(cls.max_body_bytes))),
            store_connect_timeout=float(_env("FHIRPLUG_STORE_CONNECT_TIMEOUT", "3")),
            store_read_timeout=float(_env("FHIRPLUG_STORE_READ_TIMEOUT", "30")),
            store_pool_size=int(_env("FHIRPLUG_STORE_POOL_SIZE", "32")),
            gzip_min_bytes=int(_env("FHIRPLUG_GZIP_MIN_BYTES", "1024")),
            redis_url=_env("REDIS_URL", cls.redis_url),
        )
