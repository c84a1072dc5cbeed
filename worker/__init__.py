"""RQ workers: delivery of forwarded messages to partners (see the forwarding issue)."""

from forwarding.delivery import QUEUE
from subscriptions.queue import QUEUE as NOTIFY_QUEUE

QUEUES = [QUEUE, NOTIFY_QUEUE]  # event notifications (subscriptions) wait on a queue of their own
