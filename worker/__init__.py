"""RQ workers: delivery of forwarded messages to partners (see the forwarding issue)."""

QUEUES = ["fhirplug-forward"]
