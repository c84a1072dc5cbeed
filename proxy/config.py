"""Settings of the proxy (``Settings``) and of the forwarding worker (``WorkerSettings``), each read
once from the environment when its process starts, then handed to what needs them: no plugin,
domain module or delivery job reads the environment. Every key is documented in the README."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from proxy.store_caller import secret_from_env

# message checks before profile validation: the cheap refusals first, then the store's validator;
# eps_prepare, eps_messaging, eps_release and eps_task before tenancy: they answer $prepare,
# $process-message, Task/$release and a dispenser's return/withdraw Task themselves, which tenancy
# would refuse to prescribers and dispensers; subscriptions before tenancy too: it answers Subscription
# writes, $status and $events itself (tenancy closes operations to tenants); search_aliases before
# tenancy: tenancy judges the search it rewrites (no chain reaches either tenancy line)
DEFAULT_PLUGINS = (
    "request_id",
    "eps_prepare",
    "eps_messaging",
    "eps_release",
    "eps_task",
    "gp_notify",
    "subscriptions",
    "search_aliases",
    "tenancy",
    "patch_resolution",
    "one_copy",
    "profile_checks",
    "validate_operation",
    "delivery_dedup",
    "message_checks",
    "profile_validation",
    "routing",
    "p2p_routing",
    "intake",
    "task_workflow",
    "dispense_return",
    "completion",
    "audit",
    "access_log",
)


PUBLIC_BASE_KEY = "FHIRPLUG_PUBLIC_BASE_URL"
REDIS_URL_KEY = "REDIS_URL"
ODS_KEY = "FHIRPLUG_ODS"
PROXY_CHECKS_KEY = "FHIRPLUG_TENANCY_PROXY_CHECKS"
COMPLETION_KEY = "FHIRPLUG_COMPLETE_ON_DISPENSE"
EPS_TRUST_DIR_KEY = "FHIRPLUG_EPS_TRUST_DIR"
ROUTING_RULES_KEY = "FHIRPLUG_ROUTING_RULES"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"  # the one default: proxy, worker and CLIs read it here


class ConfigError(ValueError):
    """A setting the proxy cannot start without, or cannot make sense of."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def redis_url_from_env() -> str:
    """REDIS_URL, or the default: for every process (proxy, worker, the CLIs) that needs Redis."""
    return _env(REDIS_URL_KEY, DEFAULT_REDIS_URL)


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _secret(name: str) -> str:
    """``NAME`` or the contents of the file ``NAME_FILE`` names (a mounted secret); stripped."""
    path = os.environ.get(name + "_FILE", "").strip()
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return os.environ.get(name, "").strip()


GP_NOTIFY_KEY = "FHIRPLUG_GP_NOTIFY"
# mesh-client's own names for NHS England's MESH endpoints: they come with the right CA bundle
MESH_ENDPOINT_NAMES = {
    "INT": "https://msg.intspineservices.nhs.uk",
    "LIVE": "https://mesh-sync.spineservices.nhs.uk",
    "DEP": "https://msg.dep.spine2.ncrs.nhs.uk",
}


MESH_ROLES = ("", "gp", "pharmacy", "both")  # what a deployment's MESH inbox takes in


@dataclass(frozen=True)
class MeshSettings:
    """Where this deployment's MESH mailbox is and how to sign in to it (GP notifications, issue 14).

    The default is the embedded mesh-sandbox `make up` starts; production sets the URL (or INT/LIVE),
    the client certificate and key, and takes the password and shared key from secrets (``*_FILE``)."""

    url: str = "http://127.0.0.1:8700"
    mailbox: str = ""  # none: this deployment sends and receives no GP notifications
    password: str = field(default="", repr=False)
    shared_key: str = field(default="", repr=False)  # MESH's HMAC key for the NHSMESH auth header
    client_cert: str = ""  # PEM path: MESH authenticates the client by TLS certificate (INT/LIVE)
    client_key: str = ""
    ca_bundle: str = ""  # none: mesh-client's bundled NHS CA for INT/LIVE, the system's otherwise
    verify: bool = True  # off only for a local sandbox on https with a self-signed certificate
    timeout_s: float = 60.0
    # what this deployment's MESH inbox takes in (worker/mesh_inbox.py): "gp" the notifications a
    # practice receives, "pharmacy" the ITK3 acks of what it sent, "both", or "" no inbox loop
    role: str = ""
    poll_seconds: float = 300.0  # MESH asks mailboxes not to poll more often than every few minutes

    @classmethod
    def from_env(cls) -> MeshSettings:
        url = _env("FHIRPLUG_MESH_URL", cls.url).strip()
        role = _env("FHIRPLUG_MESH_ROLE", "").strip().lower()
        if role not in MESH_ROLES:
            raise ConfigError(f"FHIRPLUG_MESH_ROLE={role!r}: one of gp, pharmacy, both, or unset (no inbox)")
        return cls(
            url=MESH_ENDPOINT_NAMES.get(url.upper(), url).rstrip("/"),
            mailbox=_env("FHIRPLUG_MESH_MAILBOX", "").strip().upper(),
            password=_secret("FHIRPLUG_MESH_PASSWORD"),
            shared_key=_secret("FHIRPLUG_MESH_SHARED_KEY"),
            client_cert=_env("FHIRPLUG_MESH_CLIENT_CERT", ""),
            client_key=_env("FHIRPLUG_MESH_CLIENT_KEY", ""),
            ca_bundle=_env("FHIRPLUG_MESH_CA", ""),
            verify=_switch("FHIRPLUG_MESH_VERIFY", _env("FHIRPLUG_MESH_VERIFY", "on")),
            timeout_s=float(_env("FHIRPLUG_MESH_TIMEOUT", "60")),
            role=role,
            poll_seconds=float(_env("FHIRPLUG_MESH_POLL_SECONDS", "300")),
        )

    @property
    def configured(self) -> bool:
        return bool(self.mailbox and self.password and self.shared_key)


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
    redis_url: str = DEFAULT_REDIS_URL
    auth: bool = True  # False only for benchmarks: every caller is then an administrator
    keys_dir: str = "var/keys"
    token_lifetime_s: int = 300
    read_cache_ttl_s: int = 60  # 0: no read cache
    read_cache_max_bytes: int = 64 * 1024
    store_secret: str = field(default="", repr=False)  # signs the caller of each store request
    # this deployment: handed to the plugins at start (``fhirplug_configure``), never read by them
    own_ods: str = ""  # its ODS code: the owner it gives Tasks, the observer of its audit events
    role: str = "both"  # hub, spoke or both; a hub refuses a Task owned by another hub
    tenancy_proxy_checks: bool = True  # False only for the security tests: labels, no proxy checks
    # a completed MedicationDispense that covers its request completes it (dispensing.completion)
    complete_on_dispense: bool = True
    mesh: MeshSettings = field(default_factory=MeshSettings)  # GP notifications' MESH mailbox
    # notify the GP of each notifiable write automatically (only with a MESH mailbox configured);
    # off: only ``$notify-gp`` sends
    gp_notify: bool = True
    # CA certificates prescribers' signing certificates must chain to (EPS $process-message);
    # "": none configured, so no prescription is accepted (never: any signature accepted)
    eps_trust_dir: str = ""
    # point-to-point routing rules this deployment applies (p2p.rules); none by default
    routing_rules: tuple[str, ...] = ()

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
            redis_url=redis_url_from_env(),
            auth=_switch("FHIRPLUG_AUTH", _env("FHIRPLUG_AUTH", "on")),
            keys_dir=_env("FHIRPLUG_KEYS_DIR", cls.keys_dir),
            token_lifetime_s=_lifetime(_env("FHIRPLUG_TOKEN_LIFETIME", "300")),
            read_cache_ttl_s=int(_env("FHIRPLUG_READ_CACHE_TTL", "60")),
            read_cache_max_bytes=int(_env("FHIRPLUG_READ_CACHE_MAX_BYTES", str(64 * 1024))),
            store_secret=secret_from_env(),  # fail closed: no secret, no proxy
            own_ods=_env(ODS_KEY, cls.own_ods),
            role=_env("FHIRPLUG_ROLE", cls.role),
            tenancy_proxy_checks=_switch(PROXY_CHECKS_KEY, _env(PROXY_CHECKS_KEY, "on")),
            complete_on_dispense=_switch(COMPLETION_KEY, _env(COMPLETION_KEY, "on")),
            mesh=MeshSettings.from_env(),
            gp_notify=_switch(GP_NOTIFY_KEY, _env(GP_NOTIFY_KEY, "on")),
            eps_trust_dir=_env(EPS_TRUST_DIR_KEY, "").strip(),
            routing_rules=tuple(_list(_env(ROUTING_RULES_KEY, ""))),
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


@dataclass(frozen=True)
class WorkerSettings:
    """``python -m worker``'s settings: its Redis, the store it records deliveries in and sweeps
    the outbox of, who it is, and how it paces itself."""

    redis_url: str = DEFAULT_REDIS_URL
    store_url: str = ""  # none: no outbox sweep and no record of deliveries
    own_ods: str = ""  # the observer of its "delivered" audit events
    sweep_seconds: float = 15.0
    job_monitoring_interval: int = 10
    maintenance_seconds: int = 30
    partner_concurrency: int = 4  # most deliveries to one partner at once, across all workers
    # a partner slot's lease: longer than one delivery can take (forwarding/policy.py LEASE_TTL_S);
    # a dead holder's slot is free again within it
    lease_seconds: int = 75
    mesh: MeshSettings = field(default_factory=MeshSettings)  # the worker is what sends over MESH
    gp_notify: bool = True  # the repair sweep notifies writes whose trigger was lost (as the proxy's key)

    @classmethod
    def from_env(cls) -> WorkerSettings:
        return cls(
            redis_url=redis_url_from_env(),
            store_url=_env("FHIRPLUG_STORE_URL", cls.store_url),
            own_ods=_env(ODS_KEY, cls.own_ods),
            sweep_seconds=float(_env("FHIRPLUG_SWEEP_SECONDS", str(cls.sweep_seconds))),
            job_monitoring_interval=int(
                _env("FHIRPLUG_JOB_MONITORING_INTERVAL", str(cls.job_monitoring_interval))
            ),
            maintenance_seconds=int(
                _env("FHIRPLUG_WORKER_MAINTENANCE_SECONDS", str(cls.maintenance_seconds))
            ),
            partner_concurrency=int(_env("FHIRPLUG_PARTNER_CONCURRENCY", str(cls.partner_concurrency))),
            lease_seconds=int(_env("FHIRPLUG_LEASE_SECONDS", str(cls.lease_seconds))),
            mesh=MeshSettings.from_env(),
            gp_notify=_switch(GP_NOTIFY_KEY, _env(GP_NOTIFY_KEY, "on")),
        )


def _switch(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("on", "true", "1", "yes"):
        return True
    if v in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{name} must be on or off, not {value!r}")


def _lifetime(value: str) -> int:
    seconds = int(value)
    if not 30 <= seconds <= 600:
        # the NHS pattern: access tokens live at most 10 minutes
        raise ValueError("FHIRPLUG_TOKEN_LIFETIME must be between 30 and 600 seconds")
    return seconds
