"""RQ workers: delivery of forwarded messages to partners (see the forwarding issue)."""

from worker.delivery import QUEUE

QUEUES = [QUEUE]
