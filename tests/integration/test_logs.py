"""The running proxy's and worker's log files hold JSON lines only: ours, gunicorn's own and RQ's
(they used to mix plain text with JSON)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ops import stack as stackmod
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


def json_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_proxy_log_is_json_lines_with_gunicorns_own(stack, http):
    assert http.get(f"{stack.fhir}/metadata").status_code == 200
    lines = json_lines(stack.cfg.var_dir / "log" / "proxy.log")  # raises on any other line
    loggers = {x["logger"] for x in lines}
    assert "gunicorn.error" in loggers and "fhirplug.access" in loggers
    assert any(x["msg"].startswith("Booting worker") for x in lines)
    # the master imports nothing that gevent must patch first (redis, through the log handler)
    stderr = (stack.cfg.var_dir / "log" / "proxy.stderr.log").read_text()
    assert "MonkeyPatchWarning" not in stderr, stderr


def test_the_worker_log_is_json_lines_with_rqs_own(stack, tmp_path):
    cfg = dataclasses.replace(stack.cfg, var_dir=tmp_path)
    stackmod.start_worker(cfg)
    log = tmp_path / "log" / "worker.log"
    try:
        assert eventually(
            lambda: log.exists() and any("Listening on" in x["msg"] for x in json_lines(log)), timeout=60
        ), (tmp_path / "log" / "worker.stderr.log").read_text()
        assert any(x["logger"].startswith("rq.") for x in json_lines(log))
    finally:
        stackmod.stop_all(cfg)
