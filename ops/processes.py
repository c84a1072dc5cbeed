"""Processes the local stack starts: spawn one with its log and pid file, wait until it answers,
stop it and its children, tell whether it still runs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class StackError(RuntimeError):
    pass


def say(msg: str) -> None:
    print(f"fhirplug: {msg}", flush=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists"; treat it as gone
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
        return state != "Z"
    except (OSError, IndexError):
        return True


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def spawn(
    cmd: list[str], log: Path, pidfile: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd or ROOT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    pidfile.write_text(str(proc.pid))
    return proc


def stop_process(name: str, pidfile: Path, timeout: float = 30.0) -> None:
    pid = read_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return
    say(f"stopping {name} (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        reap(pid)
        time.sleep(0.2)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        reap(pid)
    pidfile.unlink(missing_ok=True)


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except Exception:
        return False


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    pid: int | None = None,
    log: Path | list[Path] | None = None,
) -> None:
    """Wait until ``check()``; on failure show the last lines of ``log`` (or of each log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not pid_alive(pid):
            raise StackError(f"{what} exited while starting. {_tails(log)}")
        time.sleep(0.5)
    raise StackError(f"{what} did not answer within {timeout:.0f} s. {_tails(log)}")


def _tails(log: Path | list[Path] | None) -> str:
    logs = [log] if isinstance(log, Path) else (log or [])
    return "\n".join(f"Last lines of {one}:\n{tail(one)}" for one in logs)


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
