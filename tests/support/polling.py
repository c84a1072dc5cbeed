"""Waiting for what happens asynchronously (deliveries between deployments)."""

from __future__ import annotations

import time


def eventually(check, timeout: float = 90.0, every: float = 0.25):
    """Poll until ``check()`` is truthy; its last value otherwise."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(every)
        value = check()
    return value


def task_at(deployment, session, case) -> dict | None:
    """The Task of ``case`` at a deployment, when there is exactly one."""
    found = session.get(f"{deployment.fhir}/Task", params=case.task_query).json()
    return found["entry"][0]["resource"] if found.get("total") == 1 else None
