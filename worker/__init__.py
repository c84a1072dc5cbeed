"""RQ workers: delivery of forwarded messages to partners (see the forwarding issue)."""

from forwarding.delivery import QUEUE

QUEUES = [QUEUE]
