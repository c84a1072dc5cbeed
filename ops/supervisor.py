"""``python -m ops.supervisor NAME -- COMMAND...``: keep one process of the local stack running,
as compose's ``restart: unless-stopped`` keeps the worker running in production.

``make up`` runs the forwarding worker (and with it the outbox sweep, a thread of the worker)
under this supervisor: whenever the worker exits, for any reason and with any status, it is
started again after a backoff (1 s, doubling up to 30 s, back to 1 s once a run has lasted a
minute), and each exit and restart is logged as a JSON line (``event``: ``exited``,
``restarting``) in the worker's own log. The child shares the supervisor's process group, so
signal the group (``make down`` does: ``kill -TERM -<pid>``): both get SIGTERM, the worker shuts
down warm and the supervisor waits for it and restarts nothing. SIGKILL to the group kills both.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from proxy.logs import configure_logging

log = logging.getLogger("fhirplug.supervisor")
FIRST_WAIT_S = 1.0
MAX_WAIT_S = 30.0
STABLE_S = 60.0  # a run this long resets the backoff


class Supervisor:
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        first_wait_s: float = FIRST_WAIT_S,
        max_wait_s: float = MAX_WAIT_S,
        stable_s: float = STABLE_S,
        spawn: Callable[[Sequence[str]], subprocess.Popen] = subprocess.Popen,
    ):
        self.name, self.command = name, list(command)
        self.first_wait_s, self.max_wait_s, self.stable_s = first_wait_s, max_wait_s, stable_s
        self.spawn = spawn
        self.stopping = threading.Event()
        self.child: subprocess.Popen | None = None
        self.restarts = 0

    def stop(self, signum: int = signal.SIGTERM, forward: bool = True) -> None:
        """Stop for good: restart nothing, and pass ``signum`` on to the child when ``forward``
        (not when the child got it already, from its process group: a second SIGTERM tells an
        RQ worker to stop at once, abandoning the delivery under way)."""
        self.stopping.set()
        child = self.child
        if forward and child is not None and child.poll() is None:
            child.send_signal(signum)

    def run(self) -> int:
        """Run the child until :meth:`stop`; the child's last exit status."""
        wait, status = self.first_wait_s, 0
        while not self.stopping.is_set():
            started = time.monotonic()
            self.child = self.spawn(self.command)
            status = self.child.wait()
            ran = time.monotonic() - started
            if self.stopping.is_set():
                break
            if ran >= self.stable_s:
                wait = self.first_wait_s
            fields = {"process": self.name, "status": status, "ran_s": round(ran, 1)}
            log.warning(f"{self.name} exited", extra={"fields": {"event": "exited", **fields}})
            log.info(
                f"{self.name} restarting in {wait:.0f} s",
                extra={"fields": {"event": "restarting", "process": self.name, "in_s": wait}},
            )
            if self.stopping.wait(wait):
                break
            self.restarts += 1
            wait = min(wait * 2, self.max_wait_s)
        return status


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="what the child is, in log lines: worker")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to keep running")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command to supervise")
    configure_logging()
    supervisor = Supervisor(args.name, command)
    # ``make down`` signals the whole process group, the child with it: the supervisor only stops
    # restarting and waits for the child's warm shutdown (the one signal it got is enough)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _frame: supervisor.stop(s, forward=False))
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
