"""Structured logs: one JSON object per line, for people and log shippers alike, from every
logger of the process (ours, gunicorn's, RQ's, the libraries'), so a log file holds JSON lines
only.

Where they go: standard error by default (containers: the runtime keeps and rotates them), or
the file ``FHIRPLUG_LOG_FILE``, rotated by size (``FHIRPLUG_LOG_MAX_BYTES``, keeping
``FHIRPLUG_LOG_BACKUPS`` old files). The file is shared by every process of a proxy (gunicorn's
master and workers) or of a worker (RQ's work horses): concurrent-log-handler rotates it under a
file lock, so no process writes into a file another has just rotated away.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
import time
from typing import Any

FILE_ENV = "FHIRPLUG_LOG_FILE"
MAX_BYTES_ENV = "FHIRPLUG_LOG_MAX_BYTES"
BACKUPS_ENV = "FHIRPLUG_LOG_BACKUPS"
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_BACKUPS = 5

# concurrent-log-handler's lock library (portalocker) imports redis for an optional RedisLock we
# never use. gunicorn's master builds the log handler, and redis imported there (ssl with it)
# comes before gevent patches each worker: gevent then warns that ssl was imported too early.
# Marking that one optional module absent makes portalocker keep its stub instead.
sys.modules.setdefault("portalocker.redis", None)  # type: ignore[arg-type]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def level() -> str:
    return os.environ.get("FHIRPLUG_LOG_LEVEL", "INFO").upper()


def handler_config() -> dict[str, Any]:
    """The one handler, as ``logging.config.dictConfig`` takes it (gunicorn's ``logconfig_dict``)."""
    path = os.environ.get(FILE_ENV, "").strip()
    if not path:
        return {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return {
        "class": "concurrent_log_handler.ConcurrentRotatingFileHandler",
        "formatter": "json",
        "filename": path,
        "maxBytes": int(os.environ.get(MAX_BYTES_ENV, str(DEFAULT_MAX_BYTES))),
        "backupCount": int(os.environ.get(BACKUPS_ENV, str(DEFAULT_BACKUPS))),
    }


def dict_config() -> dict[str, Any]:
    """Every logger through one JSON handler at the root; gunicorn's own loggers pass to it."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "proxy.logs.JsonFormatter"}},
        "handlers": {"fhirplug": handler_config()},
        "root": {"level": level(), "handlers": ["fhirplug"]},
        "loggers": {
            name: {"level": level(), "handlers": [], "propagate": True}
            for name in ("gunicorn.error", "gunicorn.access", "fhirplug")
        },
    }


def configure_logging() -> None:
    """Idempotent: every process (gunicorn worker, RQ worker, test, CLI) may call it. When the
    root already logs JSON (gunicorn configured it from ``dict_config``), nothing changes."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    logging.config.dictConfig(dict_config())
    # a test or CLI that configured the fhirplug logger alone before keeps a single line per record
    own = logging.getLogger("fhirplug")
    own.handlers = [h for h in own.handlers if not isinstance(h.formatter, JsonFormatter)]
    own.propagate = True
