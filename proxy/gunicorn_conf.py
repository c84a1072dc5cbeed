"""gunicorn settings; each can be overridden by FHIRPLUG_* variables (see the README)."""

import multiprocessing
import os

bind = os.environ.get("FHIRPLUG_BIND", "127.0.0.1:8080")
# The proxy waits on the store most of the time: a few processes with threads each keep both
# cores busy without the memory of one process per connection.
workers = int(os.environ.get("FHIRPLUG_WORKERS", str(max(2, multiprocessing.cpu_count()))))
worker_class = "gthread"
threads = int(os.environ.get("FHIRPLUG_THREADS", "8"))
timeout = int(os.environ.get("FHIRPLUG_WORKER_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 30
control_socket_disable = True  # several proxies (dev stack, tests) may share a machine
accesslog = None  # the access_log plugin writes structured lines instead
errorlog = "-"
loglevel = os.environ.get("FHIRPLUG_LOG_LEVEL", "info").lower()
