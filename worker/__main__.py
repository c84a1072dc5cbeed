"""``python -m worker``: an RQ worker with the scheduler (needed for retries with intervals)."""

import os

from redis import Redis
from rq import Queue, Worker

from proxy.logs import configure_logging
from worker import QUEUES


def main() -> None:
    configure_logging()
    conn = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    queues = [Queue(name, connection=conn) for name in QUEUES]
    Worker(queues, connection=conn).work(with_scheduler=True)


if __name__ == "__main__":
    main()
