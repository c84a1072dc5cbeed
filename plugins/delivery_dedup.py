"""The receiving side of exactly-once: a delivery a partner sends again is answered, not redone.

A partner's worker sends each delivery with a stable ``X-Delivery-ID``. The first request with
that id (per client) claims it in Redis and is processed; one arriving meanwhile waits for its
result; one arriving later (a retry after a lost answer, a sweep that queued it again) gets the
first answer again and changes nothing. Only successful answers are kept: a refused or failed
delivery changed nothing, and a repeat of it (a retry, a replay once the cause is fixed) is
judged afresh. A repeat that cannot be answered yet (the first is still under way) is told 503
with ``Retry-After``, which the sending worker retries like any outage.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from proxy.errors import FhirError
from proxy.first_copy import first_result, owe_release, settle_releases
from proxy.hookspecs import hookimpl
from proxy.redis_conn import UsesRedis
from proxy.response import ProxyResponse, dumps

log = logging.getLogger("fhirplug.dedup")
HEADER = "X-Delivery-ID"
_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
PENDING_TTL_S = 120
RESULT_TTL_S = 30 * 24 * 3600
WAIT_S = 20.0
KEPT_HEADERS = ("Content-Type", "Location", "ETag")


@dataclass
class _Notes:
    key: str | None = None  # the Redis key of the delivery this request claimed


class DeliveryDedup(UsesRedis):
    def __init__(self, redis: Redis | None = None):
        """``redis`` given here (unit tests) wins over the app's (``fhirplug_configure``)."""
        self._redis = redis

    @hookimpl
    def fhirplug_configure(self, redis: Redis) -> None:
        self.use_app_redis(redis)

    @hookimpl
    def fhirplug_request(self, ctx):
        delivery_id = ctx.request.header(HEADER)
        if not delivery_id or not ctx.client.authenticated or not ctx.interaction.is_write:
            return None
        if not _ID.match(delivery_id):
            raise FhirError(400, f"{HEADER} must be 1 to 128 of A-Za-z0-9._:-")
        key = f"fhirplug:delivery-seen:{ctx.client.id}:{delivery_id}"
        try:
            settle_releases(self.redis)  # claims of failed deliveries this process could not release
            if self.redis.set(key, b'{"state":"pending"}', nx=True, ex=PENDING_TTL_S):
                ctx.notes(_Notes).key = key
                return None
            return self._earlier(key)
        except RedisError as exc:
            raise FhirError(
                503, "Cannot check for a repeated delivery now", headers={"Retry-After": "5"}
            ) from exc

    def _earlier(self, key: str) -> ProxyResponse:
        record = first_result(self.redis, key, "delivery", WAIT_S)
        log.info("repeated delivery answered", extra={"fields": {"event": "redelivery"}})
        return ProxyResponse(record["status"], record["headers"], (record["body"].encode(),))

    @hookimpl(trylast=True)  # keep the answer exactly as it leaves
    def fhirplug_response(self, ctx, response):
        notes = ctx.notes(_Notes)
        key, notes.key = notes.key, None
        if key is None:
            return
        if not 200 <= response.status < 300:
            # nothing was done: a repeat (a replay after the cause was fixed) is judged afresh
            try:
                self.redis.delete(key)
            except RedisError:
                owe_release(self.redis, key)  # deleted as soon as Redis answers again
            return
        try:
            body = response.resource if response.is_json else None
            record = {
                "state": "done",
                "status": response.status,
                "headers": {
                    k: v for k, v in response.headers.items() if k in ("Content-Type", "Location", "ETag")
                },
                "body": dumps(body).decode() if body is not None else "",
            }
            self.redis.set(key, json.dumps(record), ex=RESULT_TTL_S)
        except RedisError:
            log.exception("could not record a delivery's answer")


delivery_dedup = DeliveryDedup()
