"""gunicorn settings; each can be overridden by FHIRPLUG_* variables (see the README)."""

import multiprocessing
import os
from pathlib import Path

from proxy.logs import dict_config

bind = os.environ.get("FHIRPLUG_BIND", "127.0.0.1:8080")
# The proxy waits on the store and Redis most of the time: a process per core, each serving many
# requests at once on gevent's event loop. Measured here against gthread (bench/RESULTS.md):
# less CPU per request, and no process left idle while another holds every keep-alive
# connection (gthread did that: half the throughput in some runs). gthread stays selectable.
workers = int(os.environ.get("FHIRPLUG_WORKERS", str(max(2, multiprocessing.cpu_count()))))
# gunicorn's own workers, answering what gunicorn refuses itself as an OperationOutcome
_kind = os.environ.get("FHIRPLUG_WORKER_CLASS", "gevent")
worker_class = {
    "gevent": "proxy.gunicorn_workers.FhirGeventWorker",
    "gthread": "proxy.gunicorn_workers.FhirThreadWorker",
}.get(_kind, _kind)
threads = int(os.environ.get("FHIRPLUG_THREADS", "8"))  # gthread only
# gevent: requests in flight per process; bounded so Redis and store connections stay bounded too
worker_connections = int(os.environ.get("FHIRPLUG_WORKER_CONNECTIONS", "256"))
timeout = int(os.environ.get("FHIRPLUG_WORKER_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 30
control_socket_disable = True  # several proxies (dev stack, tests) may share a machine
accesslog = None  # the access_log plugin writes structured lines instead
errorlog = "-"
loglevel = os.environ.get("FHIRPLUG_LOG_LEVEL", "info").lower()
# gunicorn's own lines (booting, worker exits, timeouts) as JSON too, through the proxy's one
# handler (standard error, or FHIRPLUG_LOG_FILE rotated by size): the log holds JSON lines only
logconfig_dict = dict_config()

# ---- metrics: prometheus_client's multiprocess mode, and the metrics listener ----------------
# Every worker keeps its request metrics in files of one directory, which prometheus_client adds
# up at each scrape. The directory is this proxy's own (two proxies on a host must not share
# one: each cleans it at start), put in the environment by the master before the first worker
# forks, so every worker has it before it imports prometheus_client.
_ROOT = Path(__file__).resolve().parent.parent
_metrics_listen = os.environ.get("FHIRPLUG_METRICS_LISTEN", "127.0.0.1:9464")


def metrics_dir() -> Path:
    """FHIRPLUG_METRICS_DIR, else var/metrics/proxy-<port> (FHIRPLUG_VAR_DIR's var)."""
    if explicit := os.environ.get("FHIRPLUG_METRICS_DIR"):
        return Path(explicit)
    var = Path(os.environ.get("FHIRPLUG_VAR_DIR", _ROOT / "var"))
    return var / "metrics" / f"proxy-{bind.rsplit(':', 1)[-1]}"


def on_starting(server) -> None:
    """Before the first worker: a clean directory (a previous run's files would be added to ours).
    The master imports none of the proxy: gevent patches each worker before the proxy loads."""
    directory = metrics_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def post_worker_init(worker) -> None:
    """Each worker contends for the metrics listener (proxy.metrics_route.hold_listener). A
    malformed FHIRPLUG_METRICS_LISTEN fails the worker's boot, and gunicorn then stops."""
    from proxy.metrics_route import hold_listener, parse_listen

    address = parse_listen(_metrics_listen)
    app = getattr(worker, "wsgi", None)
    text = app.extensions.get("fhirplug", {}).get("metrics_text") if app is not None else None
    if address is not None and text is not None:
        hold_listener(address, text)


def child_exit(server, worker) -> None:
    """A worker is gone: prometheus_client drops its live gauges (its counts stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
