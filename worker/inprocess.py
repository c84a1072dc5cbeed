"""The worker class ``python -m worker`` runs: RQ's worker without a fork per job.

RQ's default worker forks a "work horse" for every job. A profile of a delivery to a partner
that answers at once put about 40 % of the worker's time in that fork (and in the modules each
new horse imports again), against 16 % in the delivery itself; and every cache of a forked job
(the partner's HTTP connections, its token, its key) died with the horse. Jobs here run in the
worker's own process, so connections stay pooled per partner for the process's life.

What the horse gave, kept: a thread heartbeats the running job at the same interval as RQ's
horse monitor, with the same TTL, so a worker killed mid-delivery leaves a job RQ's
``StartedJobRegistry`` cleanup retries once its heartbeat lapses (about a minute), exactly as a
killed horse did; the job timeout is still enforced (SIGALRM, in the main thread).
"""

from __future__ import annotations

import logging
import threading

from redis.exceptions import RedisError
from rq.job import Job
from rq.queue import Queue
from rq.worker import BaseWorker, SimpleWorker, WorkerStatus

log = logging.getLogger("fhirplug.worker")


class InProcessWorker(SimpleWorker):
    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        # the forking worker's TTL (monitoring interval + 60 s), not SimpleWorker's job timeout
        # + 60 s: the heartbeat thread renews it as a horse monitor would
        return BaseWorker.get_heartbeat_ttl(self, job, working_time)

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        stop = threading.Event()
        beat = threading.Thread(
            target=self._beat, args=(job, execution, stop), name="job-heartbeat", daemon=True
        )
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            stop.set()
            beat.join(timeout=5)
        self.set_state(WorkerStatus.IDLE)

    def _beat(self, job: Job, execution, stop: threading.Event) -> None:
        while not stop.wait(self.job_monitoring_interval):
            try:
                self.maintain_heartbeats(job, execution)
            except RedisError:
                log.warning("could not renew a running job's heartbeat", exc_info=True)
