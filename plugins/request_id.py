"""X-Request-ID: accepted from the caller or generated, passed to the store, and returned.

One id follows a request through the proxy's log, the store (HAPI records it in meta.source)
and, later, the hop to a partner.
"""

from __future__ import annotations

import re
import uuid

from proxy.hookspecs import hookimpl

HEADER = "X-Request-ID"
# A caller's id is kept only if it is safe to echo into logs and headers.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def choose_request_id(offered: str | None) -> str:
    if offered and _ACCEPTABLE.match(offered):
        return offered
    return uuid.uuid4().hex


@hookimpl
def fhirplug_request(ctx):
    ctx.request_id = choose_request_id(ctx.request.header(HEADER))
    ctx.upstream_headers[HEADER] = ctx.request_id


@hookimpl
def fhirplug_response(ctx, response):
    if ctx.request_id is None:  # an earlier plugin answered before ours ran
        ctx.request_id = choose_request_id(None)
    response.headers[HEADER] = ctx.request_id
