"""Test-run fixtures. The real stack (store, Redis, proxy) starts once per run, on free ports,
with its own in-memory H2 database, and only when an integration test asks for it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import requests

from ops import stack as stackmod
from tests.support import oauth


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, cfg: stackmod.StackConfig):
        self.cfg = cfg
        self.store_url = cfg.store_url  # direct, for checks that must bypass the proxy
        self.proxy = cfg.proxy_url
        self.metrics = cfg.metrics_url  # the proxy's metrics listener: no token
        self.fhir = cfg.public_base()  # the proxy's configured FHIRPLUG_PUBLIC_BASE_URL
        self.redis_url = cfg.effective_redis_url
        self.keys_dir = cfg.var_dir / "test-client-keys"
        self._extra = 0
        self._clients: dict[str, oauth.TestClient] = {}

    def client(self, client_id: str, role: str, ods: str = "", scopes: str | None = None) -> oauth.TestClient:
        """A registered OAuth client with its own key pair, made once per run and id."""
        if client_id not in self._clients:
            self._clients[client_id] = oauth.make_client(
                self.redis_url, self.keys_dir, client_id, role, ods, scopes
            )
        return self._clients[client_id]

    def session(self, fhir_base: str | None = None, client: oauth.TestClient | None = None, scope=None):
        """An HTTP session with a Bearer token from ``fhir_base``'s own token endpoint (admin by default)."""
        client = client or self.client("test-admin", "admin")
        return oauth.session_for(fhir_base or self.fhir, client, scope)

    def start_proxy(self, env: dict[str, str]) -> tuple[str, Path]:
        """Another proxy on the same store with other settings (plugins, limits, store URL).

        Returns its FHIR base and its log file."""
        self._extra += 1
        name = f"proxy-extra-{self._extra}"
        env = {"FHIRPLUG_WORKERS": "1", **env}
        url = stackmod.start_proxy(self.cfg, name=name, port=free_port(), env=env)
        return url + "/fhir", self.cfg.var_dir / "log" / f"{name}.log"


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    cfg = stackmod.StackConfig(
        var_dir=tmp_path_factory.mktemp("stack"),
        proxy_port=free_port(),
        metrics_port=free_port(),
        store_port=free_port(),
        redis_port=free_port(),
        h2_url="jdbc:h2:mem:fhirplug-test;DB_CLOSE_DELAY=-1",
        store_boot_timeout=float(os.environ.get("FHIRPLUG_TEST_STORE_TIMEOUT", "300")),
        # the test deployment is the examples' hub (FA565) and a spoke at once
        proxy_env={
            "FHIRPLUG_WORKERS": "2",
            "FHIRPLUG_ODS": "FA565",
            "FHIRPLUG_ROLE": "both",
            # quick outbox sweeps and quick detection of a worker that died mid-delivery
            "FHIRPLUG_SWEEP_SECONDS": "3",
            "FHIRPLUG_JOB_MONITORING_INTERVAL": "2",
            # EPS $process-message: prescribers' certificates chain to the TEST ONLY CA
            "FHIRPLUG_EPS_TRUST_DIR": str(Path(__file__).parent / "fixtures" / "eps" / "trust"),
        },
    )
    try:
        stackmod.start_redis(cfg)
        stackmod.start_store(cfg)
        stackmod.load_profiles(cfg)  # as `make up` does, before the proxy answers
        stackmod.start_proxy(cfg)
    except stackmod.StackError as exc:
        stackmod.stop_all(cfg)
        pytest.fail(f"could not start the test stack: {exc}", pytrace=False)
    yield Stack(cfg)
    stackmod.stop_all(cfg)


class Mesh:
    """A mesh-sandbox of the test run: its settings for any mailbox of ops/mesh_sandbox_data."""

    def __init__(self, url: str):
        self.url = url

    def settings(self, mailbox: str):
        from ops import mesh_sandbox
        from proxy.config import MeshSettings

        return MeshSettings(
            url=self.url,
            mailbox=mailbox,
            password=mesh_sandbox.LOCAL_PASSWORD,
            shared_key=mesh_sandbox.LOCAL_SHARED_KEY,
            timeout_s=10,
        )


@pytest.fixture(scope="session")
def mesh(tmp_path_factory) -> Mesh:
    """One MESH sandbox per test run, on a free port, without the store: MESH tests need no HAPI."""
    from ops import mesh_sandbox
    from ops.processes import stop_process

    var = tmp_path_factory.mktemp("mesh")
    pidfile = var / "mesh-sandbox.pid"
    try:
        url = mesh_sandbox.start(
            "127.0.0.1",
            free_port(),
            var / "data",
            var / "mesh-sandbox.log",
            pidfile,
            mesh_sandbox.LOCAL_SHARED_KEY,
        )
    except stackmod.StackError as exc:
        stop_process("mesh-sandbox", pidfile)
        pytest.fail(f"could not start the MESH sandbox: {exc}", pytrace=False)
    yield Mesh(url)
    stop_process("mesh-sandbox", pidfile)


@pytest.fixture
def http(stack) -> requests.Session:
    """An administrator's session on the main proxy."""
    s = stack.session()
    yield s
    s.close()


@pytest.fixture
def anon() -> requests.Session:
    """A session without any token."""
    s = requests.Session()
    s.headers["Accept"] = "application/fhir+json"
    yield s
    s.close()


@pytest.fixture(scope="session")
def pair(stack, tmp_path_factory):
    """Two deployments that are each other's partner: the hub (this stack) and a spoke."""
    from tests.support import deployments

    var, keys = tmp_path_factory.mktemp("spoke-deployment"), tmp_path_factory.mktemp("partner-keys")
    try:
        p = deployments.start_pair(stack, var, keys, free_port)
    except Exception:
        stackmod.stop_all(stackmod.StackConfig(var_dir=var))
        stackmod.stop(stack.cfg, "worker")
        raise
    yield p
    deployments.stop_pair(stack, p)


@pytest.fixture(scope="module")
def linked(pair):
    """The pair, with the hub treating the spoke as a partner for one test module."""
    pair.link()
    yield pair
    pair.unlink()
