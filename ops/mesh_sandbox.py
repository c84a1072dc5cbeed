"""The embedded MESH: NHS Digital's ``mesh-sandbox`` on loopback, started and stopped with the stack.

Why a virtualenv of its own: mesh-sandbox 1.0.137 pins ``gunicorn>=21.2,<27`` and ``fastapi==0.150.0``;
the proxy needs gunicorn 27 (its control socket switch). Installed side by side they cannot resolve, so
the sandbox lives in ``var/mesh-sandbox-venv`` (made on first start, shared by `make up` and the test
runs: it is a tool, like the store's jar, not data) and runs as its own process under uvicorn.

Why we write into the installed package: the sandbox reads its mailboxes and workflows only from its
package data dir (``mesh_sandbox/store/data/{mailboxes,workflows}.jsonl``), never from configuration.
Our lists (``ops/mesh_sandbox_data/``) are copied over the canned ones before each start, so the
mailboxes are the local deployment's, in one place in this repository.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

from ops.processes import StackError, http_ok, say, spawn, wait_for

ROOT = Path(__file__).resolve().parent.parent
MESH_SANDBOX_VERSION = "1.0.137"  # the version nhs-facts §4 ran and verified; pinned for repeatable tests
VENV = ROOT / "var" / "mesh-sandbox-venv"
DATA = Path(__file__).resolve().parent / "mesh_sandbox_data"
# the embedded sandbox's shared key and mailbox password: local, never a secret
LOCAL_SHARED_KEY = "TestKey"
LOCAL_PASSWORD = "password"  # the sandbox's published test password, loopback only
LOCAL_MAILBOX = "FA565OT001"  # the local deployment's mailbox in mesh_sandbox_data/mailboxes.jsonl


def _python() -> Path:
    return VENV / "bin" / "python"


def install() -> Path:
    """The sandbox's virtualenv, made once (a lock, so `make up` and a test run never race)."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    marker = VENV / f".installed-mesh-sandbox-{MESH_SANDBOX_VERSION}"
    with open(VENV.parent / "mesh-sandbox-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return VENV
        say(f"installing mesh-sandbox {MESH_SANDBOX_VERSION} into {VENV} (its own venv: it pins gunicorn<27)")
        if VENV.exists():
            shutil.rmtree(VENV)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
        result = subprocess.run(
            [str(_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             f"mesh-sandbox=={MESH_SANDBOX_VERSION}"],
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"installing mesh-sandbox into {VENV} failed (see the pip output above)")
        marker.touch()
    return VENV


def _package_data_dir() -> Path:
    found = sorted(VENV.glob("lib/python*/site-packages/mesh_sandbox/store/data"))
    if not found:
        raise StackError(f"mesh_sandbox is not installed in {VENV}; delete it and start again")
    return found[0]


def configure_mailboxes() -> None:
    """Our mailboxes and workflows in place of the canned ones (only when they differ)."""
    target = _package_data_dir()
    for name in ("mailboxes.jsonl", "workflows.jsonl"):
        wanted = (DATA / name).read_bytes()
        path = target / name
        if not path.exists() or path.read_bytes() != wanted:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(wanted)
            tmp.replace(path)  # atomic: a sandbox starting at the same time reads one or the other


def url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def answers(base: str) -> bool:
    return http_ok(base + "/health", timeout=2)


def start(host: str, port: int, data_dir: Path, log: Path, pidfile: Path, shared_key: str) -> str:
    """Start a sandbox on ``host:port`` keeping messages under ``data_dir``; return its URL.

    Idempotent like the other parts: one already answering there is left alone."""
    base = url(host, port)
    if answers(base):
        return base
    install()
    configure_mailboxes()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "STORE_MODE": "file",  # messages survive a sandbox restart (file mode persists every message)
        "MAILBOXES_DATA_DIR": str(data_dir),
        "SHARED_KEY": shared_key,
        # anything but "none"/"canned" makes the sandbox check the NHSMESH HMAC, as the real MESH does
        "AUTH_MODE": "full",
        "ENV": "local",
    }
    cmd = [str(_python()), "-m", "uvicorn", "mesh_sandbox.api:app", "--host", host, "--port", str(port)]
    cmd += ["--workers", "1", "--log-level", "warning"]
    say(f"starting the MESH sandbox on {base} (log: {log})")
    proc = spawn(cmd, log, pidfile, env=env, cwd=data_dir)
    wait_for("the MESH sandbox", lambda: answers(base), 60, proc.pid, log)
    return base
