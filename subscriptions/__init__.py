"""Event notifications: fhirplug as an events server, by the FHIR R4 Subscriptions Backport IG.

One job per module: the topics this deployment offers (``topics``), the filters a subscriber
narrows a topic with (``filters``), reading and checking a Subscription (``resource``), deciding
which writes are events for which subscription (``matching``), the Redis records of
subscriptions and their numbered events (``registry``), the notification Bundles
(``bundles``) and the queue jobs that deliver them (``queue``). The delivery itself is the
worker's (``worker/notifications.py``); the hooks are ``plugins/subscriptions.py``.
"""
