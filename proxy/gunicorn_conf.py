"""gunicorn settings; each can be overridden by FHIRPLUG_* variables (see the README)."""

import multiprocessing
import os

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
