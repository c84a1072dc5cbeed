"""Forwarding: what a delivery to a partner is, how it is queued and retried, its outbox record
and its metrics. Imports redis/rq and proxy's contract pieces; never plugins/ or worker/."""
