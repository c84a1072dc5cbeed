"""Logs (proxy/logs.py): every logger of a process as JSON lines, to standard error or a file
rotated by size. Each case runs in a fresh interpreter: logging is process-wide."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import logging
from proxy.logs import configure_logging
configure_logging()
configure_logging()  # idempotent: still one line per record
logging.getLogger("fhirplug.test").info("ours", extra={"fields": {"event": "x"}})
logging.getLogger("rq.worker").info("a library's line")
logging.getLogger("gunicorn.error").warning("gunicorn's line")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("fhirplug.test").exception("with a traceback")
for n in range(int(__import__("os").environ.get("LINES", "0"))):
    logging.getLogger("fhirplug.fill").info("x" * 200)
"""


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FHIRPLUG_LOG")} | env
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=full, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_every_logger_writes_one_json_line_per_record_to_stderr():
    done = run({})
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(x["logger"], x["msg"]) for x in lines] == [
        ("fhirplug.test", "ours"),
        ("rq.worker", "a library's line"),
        ("gunicorn.error", "gunicorn's line"),
        ("fhirplug.test", "with a traceback"),
    ]
    assert lines[0]["event"] == "x" and "ZeroDivisionError" in lines[3]["exc"]


def test_a_log_file_is_rotated_by_size_and_holds_json_lines_only(tmp_path):
    log = tmp_path / "log" / "proxy.log"
    done = run(
        {
            "FHIRPLUG_LOG_FILE": str(log),
            "FHIRPLUG_LOG_MAX_BYTES": "20000",
            "FHIRPLUG_LOG_BACKUPS": "2",
            "LINES": "400",
        }
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing on standard error: the file has it all
    files = sorted(p.name for p in log.parent.iterdir() if p.name.startswith("proxy.log"))
    assert files == ["proxy.log", "proxy.log.1", "proxy.log.2"]  # the oldest dropped
    for name in files:
        text = (log.parent / name).read_text()
        assert len(text) <= 20000 + 400
        assert all(json.loads(line)["level"] for line in text.splitlines())
