"""Starts and stops the local stack: Redis, the FHIR store, the proxy and the forwarding worker.

One code path picks how the store runs: when a Docker engine answers, docker compose runs the
production images; otherwise the embedded HAPI launcher in store/ runs as a local Java process.
Every start is idempotent: what already answers is left alone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ops import mesh_sandbox
from ops.processes import (
    StackError,
    http_ok,
    read_pid,
    say,
    spawn,
    stop_process,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
STORE_DIR = ROOT / "store"
STORE_JAR = STORE_DIR / "target" / "fhirplug-store.jar"


@dataclass
class StackConfig:
    var_dir: Path = ROOT / "var"
    host: str = "127.0.0.1"
    proxy_port: int = 8080
    metrics_port: int = 9464  # the main proxy's metrics listener (FHIRPLUG_METRICS_LISTEN), on host
    store_port: int = 8090
    redis_port: int = 6379
    redis_url: str | None = None  # set: use that Redis, start none
    mesh_port: int = 8700  # the embedded MESH (mesh-sandbox)
    mesh_url: str | None = None  # FHIRPLUG_MESH_URL set: a real MESH (INT/LIVE), start no sandbox
    h2_url: str | None = None  # None: H2 files under var/h2
    store_heap: str = "1g"
    store_profile: str = "quick"  # FHIRPLUG_STORE_PROFILE: quick | production (store_jvm_flags)
    store_boot_timeout: float = 300.0
    proxy_env: dict[str, str] = field(default_factory=dict)
    store_args: list[str] = field(default_factory=list)  # more --key=value for the launcher
    # the main proxy's FHIRPLUG_PUBLIC_BASE_URL; None: its local address (see public_base)
    public_base_url: str | None = None

    @classmethod
    def from_env(cls) -> StackConfig:
        return cls(
            var_dir=Path(os.environ.get("FHIRPLUG_VAR_DIR", ROOT / "var")),
            proxy_port=int(os.environ.get("FHIRPLUG_PORT", "8080")),
            metrics_port=int(os.environ.get("FHIRPLUG_METRICS_PORT", "9464")),
            store_port=int(os.environ.get("FHIRPLUG_STORE_PORT", "8090")),
            redis_port=int(os.environ.get("FHIRPLUG_REDIS_PORT", "6379")),
            redis_url=os.environ.get("REDIS_URL") or None,
            mesh_port=int(os.environ.get("FHIRPLUG_MESH_SANDBOX_PORT", "8700")),
            mesh_url=os.environ.get("FHIRPLUG_MESH_URL") or None,
            store_heap=os.environ.get("FHIRPLUG_STORE_HEAP", "1g"),
            store_profile=os.environ.get("FHIRPLUG_STORE_PROFILE", "quick"),
            public_base_url=os.environ.get("FHIRPLUG_PUBLIC_BASE_URL") or None,
        )

    @property
    def store_url(self) -> str:
        return f"http://{self.host}:{self.store_port}/fhir"

    @property
    def proxy_url(self) -> str:
        return f"http://{self.host}:{self.proxy_port}"

    @property
    def metrics_url(self) -> str:
        """What Prometheus scrapes for the main proxy (no token: the listener is loopback-only)."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def public_base(self, port: int | None = None) -> str:
        """The FHIRPLUG_PUBLIC_BASE_URL of a proxy of this stack listening on ``port`` (default:
        the main one): what the operator set for the main proxy, else the local address. The
        proxy refuses to start without one; it never takes its identity from a request's Host."""
        port = port or self.proxy_port
        if self.public_base_url and port == self.proxy_port:
            return self.public_base_url.rstrip("/")
        return f"http://{self.host}:{port}/fhir"

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"redis://{self.host}:{self.redis_port}/0"

    @property
    def effective_mesh_url(self) -> str:
        return self.mesh_url or mesh_sandbox.url(self.host, self.mesh_port)

    def path(self, *parts: str) -> Path:
        p = self.var_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


# ---------------------------------------------------------------- processes


def _apt_install(*packages: str) -> None:
    if shutil.which("apt-get") is None:
        raise StackError(f"{', '.join(packages)} missing and no apt-get to install it; install it first")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    say(f"installing {' '.join(packages)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        sudo + ["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, stdout=subprocess.DEVNULL
    )


# ---------------------------------------------------------------- Docker


def docker_engine_answers() -> bool:
    """True when a Docker engine answers; then the production compose file runs the store."""
    if os.environ.get("FHIRPLUG_STORE_MODE") == "embedded":
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


# ---------------------------------------------------------------- Redis


def start_redis(cfg: StackConfig) -> str:
    if cfg.redis_url:
        say(f"Redis: using REDIS_URL {cfg.redis_url}")
        return cfg.redis_url
    if _redis_ping(cfg.host, cfg.redis_port):
        return cfg.effective_redis_url
    if shutil.which("redis-server") is None:
        _apt_install("redis-server")
        # Debian's package starts a system Redis on 6379; ours is separate and under var/
        subprocess.run(["service", "redis-server", "stop"], capture_output=True)
        if _redis_ping(cfg.host, cfg.redis_port):
            return cfg.effective_redis_url
    data = cfg.path("redis", "x").parent
    log, pidfile = cfg.path("log", "redis.log"), cfg.path("run", "redis.pid")
    proc = spawn(
        [
            "redis-server",
            "--port",
            str(cfg.redis_port),
            "--bind",
            cfg.host,
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ],
        log,
        pidfile,
    )
    wait_for("Redis", lambda: _redis_ping(cfg.host, cfg.redis_port), 30, proc.pid, log)
    return cfg.effective_redis_url


def _redis_ping(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# ---------------------------------------------------------------- MESH


def start_mesh(cfg: StackConfig) -> str:
    """The embedded MESH (ops/mesh_sandbox.py), unless FHIRPLUG_MESH_URL names a real one."""
    if cfg.mesh_url:
        say(f"MESH: using FHIRPLUG_MESH_URL {cfg.mesh_url}")
        return cfg.mesh_url
    return mesh_sandbox.start(
        cfg.host,
        cfg.mesh_port,
        cfg.var_dir / "mesh",
        cfg.path("log", "mesh-sandbox.log"),
        cfg.path("run", "mesh-sandbox.pid"),
        mesh_sandbox.LOCAL_SHARED_KEY,
    )


def mesh_env(cfg: StackConfig) -> dict[str, str]:
    """What the proxy and worker are told about the embedded MESH; an operator's own keys win."""
    if cfg.mesh_url:
        return {}
    return {
        "FHIRPLUG_MESH_URL": cfg.effective_mesh_url,
        "FHIRPLUG_MESH_SHARED_KEY": mesh_sandbox.LOCAL_SHARED_KEY,
        "FHIRPLUG_MESH_PASSWORD": mesh_sandbox.LOCAL_PASSWORD,
        "FHIRPLUG_MESH_MAILBOX": os.environ.get("FHIRPLUG_MESH_MAILBOX", mesh_sandbox.LOCAL_MAILBOX),
    }


# ---------------------------------------------------------------- the embedded store


def _newest_source_mtime() -> float:
    files = [STORE_DIR / "pom.xml", *STORE_DIR.joinpath("src").rglob("*")]
    return max(f.stat().st_mtime for f in files if f.is_file())


def build_store(force: bool = False) -> Path:
    """Build the launcher jar when it is missing or older than its sources."""
    if not force and STORE_JAR.exists() and STORE_JAR.stat().st_mtime >= _newest_source_mtime():
        return STORE_JAR
    if shutil.which("java") is None:
        _apt_install("openjdk-17-jre-headless")
    if shutil.which("mvn") is None:
        _apt_install("maven")
    say("building the embedded store launcher (first build downloads HAPI from Maven Central)")
    t0 = time.monotonic()
    result = subprocess.run(["mvn", "-B", "-q", "-DskipTests", "package"], cwd=STORE_DIR)
    if result.returncode != 0 or not STORE_JAR.exists():
        raise StackError("building store/ failed; run `cd store && mvn -B package` to see why")
    STORE_JAR.touch()
    say(f"store launcher built in {time.monotonic() - t0:.0f} s")
    return STORE_JAR


def store_secret(cfg: StackConfig) -> str:
    """The secret the proxy signs each store request's caller with (FHIRPLUG_STORE_SECRET).

    Taken from the environment when set; otherwise made once and kept in var/store-secret
    (mode 600). Put into this process's environment too, so that every process started from here,
    and this process's own direct store requests (the profile load), use it."""
    from proxy.store_caller import SECRET_ENV

    secret = os.environ.get(SECRET_ENV, "").strip()
    if not secret:
        path = cfg.path("store-secret")
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        secret = path.read_text().strip()
        os.environ[SECRET_ENV] = secret
    return secret


STORE_PROFILES = ("quick", "production")


def store_jvm_flags(profile: str, heap: str) -> list[str]:
    """The store's JVM flags. ``quick`` (the default): the C1 compiler only and the serial GC, so
    HAPI boots in 30-90 s on 2 cores and a test run starts fast, at the cost of throughput.
    ``production``: the full JIT (C2), G1 and a heap fixed at its size, as a production HAPI runs
    (the bench's fair reference: a proxy compared with a slowed-down HAPI looks cheaper than it is)."""
    if profile == "production":
        return [f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:+AlwaysPreTouch"]
    if profile == "quick":
        return [f"-Xmx{heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
    raise StackError(f"FHIRPLUG_STORE_PROFILE={profile!r}: choose one of {', '.join(STORE_PROFILES)}")


def install_packages(*packages: str) -> None:
    """Debian packages a target needs (``make bench``: wrk), installed if a command is missing."""
    missing = [p for p in packages if shutil.which(p) is None]
    if missing:
        _apt_install(*missing)


def start_store(cfg: StackConfig) -> str:
    store_secret(cfg)
    if http_ok(cfg.store_url + "/metadata?_summary=true", timeout=5):
        return cfg.store_url
    jar = build_store()
    log, pidfile = cfg.path("log", "store.log"), cfg.path("run", "store.pid")
    h2 = cfg.h2_url or f"jdbc:h2:file:{cfg.path('h2', 'fhirplug')};DB_CLOSE_ON_EXIT=FALSE"
    cmd = [
        "java",
        *store_jvm_flags(cfg.store_profile, cfg.store_heap),
        "-jar",
        str(jar),
        f"--server.port={cfg.store_port}",
        f"--server.address={cfg.host}",
        f"--spring.datasource.url={h2}",
        *cfg.store_args,
    ]
    say(f"starting the embedded FHIR store on {cfg.store_url} (log: {log})")
    t0 = time.monotonic()
    proc = spawn(cmd, log, pidfile, cwd=cfg.var_dir)
    wait_for(
        "the FHIR store",
        lambda: http_ok(cfg.store_url + "/metadata?_summary=true", 5),
        cfg.store_boot_timeout,
        proc.pid,
        log,
    )
    say(f"FHIR store ready in {time.monotonic() - t0:.0f} s")
    return cfg.store_url


# ---------------------------------------------------------------- proxy and worker


def proxy_env(cfg: StackConfig) -> dict[str, str]:
    store_secret(cfg)
    return {
        "FHIRPLUG_BIND": f"{cfg.host}:{cfg.proxy_port}",
        "FHIRPLUG_STORE_URL": cfg.store_url,
        "REDIS_URL": cfg.effective_redis_url,
        "FHIRPLUG_KEYS_DIR": str(cfg.var_dir / "keys"),
        **mesh_env(cfg),
        **cfg.proxy_env,
    }


def start_proxy(
    cfg: StackConfig, name: str = "proxy", port: int | None = None, env: dict[str, str] | None = None
) -> str:
    """Start a proxy under gunicorn; ``name``/``port``/``env`` let tests run extra ones."""
    port = port or cfg.proxy_port
    url = f"http://{cfg.host}:{port}"
    if http_ok(url + "/healthz"):
        return url
    # the proxy writes its JSON lines to <name>.log itself (rotated by size); what reaches its
    # standard error before logging is set up (an interpreter crash) goes to <name>.stderr.log
    log, pidfile = cfg.path("log", f"{name}.log"), cfg.path("run", f"{name}.pid")
    stderr_log = cfg.path("log", f"{name}.stderr.log")
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "proxy" / "gunicorn_conf.py"), "proxy.wsgi:app"]
    # each proxy its own metrics listener and multiprocess directory (each cleans it at start);
    # an extra proxy's listener takes a free port unless its env names one
    metrics_port = cfg.metrics_port if port == cfg.proxy_port else _free_port(cfg.host)
    full_env = {
        **proxy_env(cfg),
        "FHIRPLUG_BIND": f"{cfg.host}:{port}",
        "FHIRPLUG_PUBLIC_BASE_URL": cfg.public_base(port),  # each proxy its own, by its port
        "FHIRPLUG_METRICS_LISTEN": f"{cfg.host}:{metrics_port}",
        "FHIRPLUG_METRICS_DIR": str(cfg.var_dir / "metrics" / name),
        "FHIRPLUG_LOG_FILE": str(log),
        **(env or {}),
    }
    proc = spawn(cmd, stderr_log, pidfile, env=full_env)
    wait_for(f"the proxy {name}", lambda: http_ok(url + "/healthz"), 60, proc.pid, [log, stderr_log])
    return url


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stop(cfg: StackConfig, name: str) -> None:
    stop_process(name, cfg.path("run", f"{name}.pid"))


def stop_all(cfg: StackConfig) -> None:
    """Stop every process this stack's var dir has a pid file for, workers and proxies first."""
    pidfiles = sorted(
        cfg.path("run", "x").parent.glob("*.pid"),
        key=lambda p: (
            ["mesh-sandbox", "redis", "store"].index(p.stem)
            if p.stem in ("mesh-sandbox", "redis", "store")
            else -1
        ),
    )
    for pidfile in pidfiles:
        stop_process(pidfile.stem, pidfile)


def start_worker(cfg: StackConfig) -> None:
    pidfile = cfg.path("run", "worker.pid")
    if read_pid(pidfile) is not None:
        return
    log = cfg.path("log", "worker.log")
    # supervised (restarted on exit, with backoff, logged), as compose's restart policy does; its
    # log as JSON lines, rotated by size
    env = {**proxy_env(cfg), "FHIRPLUG_LOG_FILE": str(log)}
    supervised = [sys.executable, "-m", "ops.supervisor", "worker", "--", sys.executable, "-m", "worker"]
    spawn(supervised, cfg.path("log", "worker.stderr.log"), pidfile, env=env)


# ---------------------------------------------------------------- the whole stack


PROFILES_DIR = ROOT / "profiles"


def load_profiles(cfg: StackConfig) -> str:
    """The England and UK Core profiles into the store, before any proxy answers a $validate."""
    return init_store(cfg.store_url, cfg.effective_redis_url)


def init_store(store_url: str, redis_url: str | None) -> str:
    """What the store needs before the proxy serves: the profiles and the EPS prescription
    tracker's search parameters (before any prescription is stored: HAPI indexes only what is
    written after a SearchParameter). ``make up`` runs it; in compose, the one-shot ``store-init``
    service does (``fhirplug stack init-store``)."""
    from ops import profiles_cli

    summary = profiles_cli.load(PROFILES_DIR, store_url, redis_url)
    params = profiles_cli.load_search_parameters(PROFILES_DIR / "fhirplug", store_url, redis_url)
    from ops.profiles_dedupe import startup_warning

    if warning := startup_warning(store_url):
        print(f"fhirplug: warning: {warning}", file=sys.stderr)
    return f"{summary.line()}; {len(params)} search parameters"


LOCAL_ODS = "FLOCAL"  # not an ODS code the NHS issues: a local stack's identity until one is set


def local_identity(cfg: StackConfig) -> str:
    """This deployment's ODS code for ``make up``: FHIRPLUG_ODS when set; otherwise the one kept in
    ``var/identity.env``, which the first run writes with :data:`LOCAL_ODS` (edit it, or set
    FHIRPLUG_ODS, to be a real organisation). Without an identity nothing is ever forwarded:
    routing acts for the callers of this deployment's own organisation."""
    if ods := (cfg.proxy_env.get("FHIRPLUG_ODS") or os.environ.get("FHIRPLUG_ODS", "")).strip():
        return ods
    path = cfg.path("identity.env")
    if not path.exists():
        path.write_text(
            "# This deployment's identity, written by the first `make up` (a local default).\n"
            "# Set your organisation's ODS code here, or FHIRPLUG_ODS in the environment.\n"
            f"FHIRPLUG_ODS={LOCAL_ODS}\n"
        )
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "FHIRPLUG_ODS" and value.strip():
            return value.strip()
    raise StackError(f"{path} names no FHIRPLUG_ODS: set one there or in the environment")


def up(cfg: StackConfig) -> None:
    if docker_engine_answers():
        say("a Docker engine answers: starting the production stack with docker compose")
        public = cfg.public_base_url or "http://127.0.0.1:8080/fhir"  # compose publishes 8080
        env = {**os.environ, "FHIRPLUG_PUBLIC_BASE_URL": public}
        subprocess.run(["docker", "compose", "up", "-d", "--wait"], cwd=ROOT, check=True, env=env)
        say(f"proxy on {public} (see docker-compose.yml)")
        return
    ods = local_identity(cfg)
    cfg.proxy_env.setdefault("FHIRPLUG_ODS", ods)  # the proxy and the worker act as it
    redis = start_redis(cfg)
    mesh = start_mesh(cfg)
    store = start_store(cfg)
    say(f"profiles: {load_profiles(cfg)}")
    proxy = start_proxy(cfg)
    start_worker(cfg)
    say(f"stack is up (embedded store), as ODS {ods}" + (" (a local default)" if ods == LOCAL_ODS else ""))
    print(f"  proxy (FHIR base)  {cfg.public_base()}   (listening on {proxy})")
    print(f"  FHIR store         {store}   (internal: only the proxy calls it)")
    print(f"  Redis              {redis}")
    mesh_note = (
        "real MESH (FHIRPLUG_MESH_URL)" if cfg.mesh_url else f"mesh-sandbox, data in {cfg.var_dir / 'mesh'}"
    )
    print(f"  MESH               {mesh}   ({mesh_note})")
    print(f"  forwarding worker  pid {read_pid(cfg.path('run', 'worker.pid'))}")
    print(f"  metrics            {cfg.metrics_url}   (Prometheus, no token: loopback only)")
    print(f"  logs               {cfg.var_dir / 'log'}")


def down(cfg: StackConfig) -> None:
    if docker_engine_answers():
        subprocess.run(["docker", "compose", "down"], cwd=ROOT, check=True)
        return
    stop_all(cfg)
    say("stack is down")


def status(cfg: StackConfig) -> dict[str, bool]:
    return {
        "redis": _redis_ping(cfg.host, cfg.redis_port) if not cfg.redis_url else True,
        "store": http_ok(cfg.store_url + "/metadata?_summary=true", 5),
        "mesh": True if cfg.mesh_url else mesh_sandbox.answers(cfg.effective_mesh_url),
        "proxy": http_ok(cfg.proxy_url + "/healthz"),
        "worker": read_pid(cfg.path("run", "worker.pid")) is not None,
    }
