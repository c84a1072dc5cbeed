"""``python -m worker``: an RQ worker with the scheduler (retries with intervals need it), and the
outbox sweep in a thread beside it (every worker runs one; a Redis lock lets one sweep at a time)."""

import os
import threading

from redis import Redis
from rq import Queue, Worker

from proxy.logs import configure_logging
from worker import QUEUES
from worker.outbox import sweep_forever


def main() -> None:
    configure_logging()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    conn = Redis.from_url(url)
    store = os.environ.get("FHIRPLUG_STORE_URL")
    if store:
        every = float(os.environ.get("FHIRPLUG_SWEEP_SECONDS", "15"))
        # its own client: RQ tunes the worker's connection for its blocking pops, and commands
        # from a second thread on that client make those pops time out
        own = Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10)
        sweeper = threading.Thread(target=sweep_forever, args=(store, own, every), name="outbox-sweep")
        sweeper.daemon = True
        sweeper.start()
    queues = [Queue(name, connection=conn) for name in QUEUES]
    # a short monitoring interval makes a delivery whose worker died retried about a minute later
    interval = int(os.environ.get("FHIRPLUG_JOB_MONITORING_INTERVAL", "10"))
    # the scheduler (which runs retries when they fall due) holds a lock; a worker retries taking
    # it at each maintenance round, so a short round means a killed worker's scheduler is
    # replaced within about a minute and a half instead of ten
    maintenance = int(os.environ.get("FHIRPLUG_WORKER_MAINTENANCE_SECONDS", "30"))
    worker = Worker(
        queues, connection=conn, job_monitoring_interval=interval, maintenance_interval=maintenance
    )
    worker.work(with_scheduler=True)


if __name__ == "__main__":
    main()
