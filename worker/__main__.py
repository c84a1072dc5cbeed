"""``python -m worker``: an RQ worker with the scheduler (retries with intervals need it), and the
outbox sweep in a thread beside it (every worker runs one; a Redis lock lets one sweep at a time).

The worker's composition root: its settings are read from the environment here, once
(``WorkerSettings.from_env``), and handed to the sweep and the delivery jobs."""

import logging
import threading
import time
from collections.abc import Callable

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Worker

from proxy.config import WorkerSettings
from proxy.logs import configure_logging
from worker import QUEUES, delivery, mesh_delivery, mesh_inbox, notifications
from worker.gp_repair import repair_forever
from worker.inprocess import InProcessWorker
from worker.outbox import recover_forever, sweep_forever

log = logging.getLogger("fhirplug.worker")


def main() -> None:
    configure_logging()
    settings = WorkerSettings.from_env()
    delivery.configure(settings)
    mesh_delivery.configure(settings)
    notifications.configure(settings)
    conn = Redis.from_url(settings.redis_url)
    # event notifications: heartbeats that are due, deliveries a proxy could not queue, dead letters
    ticker = threading.Thread(
        target=notifications.tick_forever,
        args=(settings, Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=10)),
        name="notification-tick",
        daemon=True,
    )
    ticker.start()
    if settings.store_url:
        # its own client: RQ tunes the worker's connection for its blocking pops, and commands
        # from a second thread on that client make those pops time out
        own = Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=10)
        sweeper = threading.Thread(
            target=sweep_forever, args=(settings.store_url, own, settings.sweep_seconds), name="outbox-sweep"
        )
        sweeper.daemon = True
        sweeper.start()
    else:
        # no store, no sweep: a killed worker's job and retries still need recovering (the sweep
        # does this otherwise)
        own = Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=10)
        threading.Thread(
            target=recover_forever, args=(own, settings.sweep_seconds), name="recover", daemon=True
        ).start()
    if settings.store_url and settings.mesh.role and settings.mesh.configured:
        # the MESH inbox (GP notifications in, or their acks): one thread per worker, a Redis lock
        # lets one poll at a time
        inbox_redis = Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=10)
        inbox = threading.Thread(
            target=mesh_inbox.poll_forever,
            args=(settings.mesh, settings.store_url, settings.own_ods, inbox_redis),
            name="mesh-inbox",
        )
        inbox.daemon = True
        inbox.start()
    if settings.store_url and settings.mesh.configured and settings.gp_notify:
        # GP notifications whose trigger was lost with a proxy that died mid-request
        repairer = threading.Thread(
            target=repair_forever,
            args=(settings, Redis.from_url(settings.redis_url, socket_timeout=30), settings.sweep_seconds),
            name="gp-notify-repair",
            daemon=True,
        )
        repairer.start()
    queues = [Queue(name, connection=conn) for name in QUEUES]
    # jobs run in the worker's own process (worker/inprocess.py: no fork per job);
    # a short monitoring interval makes a delivery whose worker died retried about a minute later;
    # the scheduler (which runs retries when they fall due) holds a lock; a worker retries taking
    # it at each maintenance round, so a short round means a killed worker's scheduler is
    # replaced within about a minute and a half instead of ten
    work_through_outages(
        lambda: InProcessWorker(
            queues,
            connection=conn,
            job_monitoring_interval=settings.job_monitoring_interval,
            maintenance_interval=settings.maintenance_seconds,
        )
    )


def work_through_outages(
    make_worker: Callable[[], Worker], sleep: Callable[[float], None] = time.sleep, max_wait_s: float = 30.0
) -> None:
    """Run an RQ worker until it stops cleanly (SIGTERM), outliving Redis outages: RQ lets a lost
    Redis connection end ``work`` ("unhandled exception, quitting"), which left a ``make up``
    stack with no worker. Here the worker waits (1 s, doubling up to ``max_wait_s``) and starts
    again, a new one each time; a job a dead connection cut short is retried through RQ's own
    heartbeat path and the outbox sweep, as after any crash."""
    wait = 1.0
    while True:
        try:
            make_worker().work(with_scheduler=True)
            return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning(
                "Redis unreachable; the worker starts again in %.0f s",
                wait,
                extra={"fields": {"event": "worker_redis_lost", "error": str(exc)[:300]}},
            )
            sleep(wait)
            wait = min(wait * 2, max_wait_s)


if __name__ == "__main__":
    main()
