"""Which MESH mailbox receives a workflow for a practice (MESH endpoint lookup by ODS code and
workflow id), cached in Redis so that a notification costs no lookup once its practice is known.

A mailbox found is kept a day (practices rarely move mailbox; a wrong cached one fails the send
with MESH's "unregistered" reason, and the cache entry is then dropped). "None found" is kept five
minutes: long enough that a pharmacy's burst for an unregistered practice asks MESH once, short
enough that a practice registered meanwhile is found soon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger("fhirplug.gpnotify")
PREFIX = "fhirplug:mesh-mailbox:"
FOUND_TTL_S = 24 * 3600
NONE_TTL_S = 300
_NONE = b"-"


def key(ods: str, workflow_id: str) -> str:
    return f"{PREFIX}{ods.upper()}|{workflow_id}"


def lookup(
    redis: Redis | None, ods: str, workflow_id: str, ask_mesh: Callable[[str, str], str | None]
) -> str | None:
    """The mailbox for ``ods`` + ``workflow_id``: from the cache, else ``ask_mesh`` (which may raise
    ``MeshTransportError``; nothing is cached then). A cache that cannot be read is skipped."""
    if redis is not None:
        try:
            cached = redis.get(key(ods, workflow_id))
        except RedisError:
            log.warning("mailbox cache unreadable; asking MESH", exc_info=True)
            cached = None
        if isinstance(cached, bytes):
            return None if cached == _NONE else cached.decode()
    found = ask_mesh(ods, workflow_id)
    if redis is not None:
        try:
            if found:
                redis.set(key(ods, workflow_id), found.encode(), ex=FOUND_TTL_S)
            else:
                redis.set(key(ods, workflow_id), _NONE, ex=NONE_TTL_S)
        except RedisError:
            log.warning("could not cache a mailbox lookup", exc_info=True)
    return found


def forget(redis: Redis | None, ods: str, workflow_id: str) -> None:
    """Drop a cached answer MESH has just contradicted (a send refused as unregistered)."""
    if redis is None:
        return
    try:
        redis.delete(key(ods, workflow_id))
    except RedisError:
        log.warning("could not drop a cached mailbox", exc_info=True)
