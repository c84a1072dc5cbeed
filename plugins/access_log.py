"""One structured JSON access-log line per request."""

from __future__ import annotations

import logging

from proxy.hookspecs import hookimpl

log = logging.getLogger("fhirplug.access")


def access_record(ctx, status: int) -> dict:
    i = ctx.interaction
    return {
        "event": "access",
        "request_id": ctx.request_id,
        "method": ctx.request.method,
        "path": ctx.request.full_path,
        "interaction": i.kind,
        "resource_type": i.resource_type,
        "status": status,
        "duration_ms": round(ctx.elapsed_ms(), 2),
        "client_id": ctx.client.id,
        "remote_addr": ctx.request.remote_addr,
    }


@hookimpl
def fhirplug_request_finished(ctx, status):
    log.info("access", extra={"fields": access_record(ctx, status)})
