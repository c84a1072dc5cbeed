"""The local stack's supervisor restarts what exits, with a growing backoff, until it is stopped."""

from __future__ import annotations

import sys
import threading
import time

from ops.supervisor import Supervisor

EXIT_3 = [sys.executable, "-c", "raise SystemExit(3)"]
SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_child_that_exits_is_started_again_with_a_growing_backoff():
    supervisor = Supervisor("worker", EXIT_3, first_wait_s=0.05, max_wait_s=0.2, stable_s=60)
    runner = threading.Thread(target=supervisor.run)
    starts: list[float] = []
    spawn = supervisor.spawn

    def counted(cmd):
        starts.append(time.monotonic())
        return spawn(cmd)

    supervisor.spawn = counted
    runner.start()
    deadline = time.monotonic() + 20
    while len(starts) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    supervisor.stop()
    runner.join(timeout=10)
    assert not runner.is_alive() and len(starts) >= 5
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[2] >= 0.2  # 0.05, 0.1, 0.2 (capped)


def test_stopping_stops_the_child_and_restarts_nothing():
    supervisor = Supervisor("worker", SLEEP, first_wait_s=0.05)
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    deadline = time.monotonic() + 10
    while supervisor.child is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child = supervisor.child
    supervisor.stop()
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert child is not None and child.poll() is not None  # the child got the signal and ended
    assert supervisor.restarts == 0
