"""Runs one request through the hooks: decide, handle, narrow, observe. Fails closed."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pluggy
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import HTTPException

from proxy import xml_render
from proxy.context import RequestContext
from proxy.errors import FhirError
from proxy.response import ProxyResponse

log = logging.getLogger("fhirplug.pipeline")

Handler = Callable[[RequestContext], ProxyResponse]


def error_response(err: FhirError) -> ProxyResponse:
    return ProxyResponse.from_resource(err.status, err.to_resource(), err.headers)


def body_unreadable(exc: Exception) -> FhirError:
    return FhirError(400, f"The request body could not be read: {exc}", code="structure")


def _plugin_failure(ctx: RequestContext, hook: str) -> ProxyResponse:
    # The traceback goes to the log; the caller learns only that the request was refused.
    log.exception("plugin failed in %s", hook, extra={"fields": {"request_id": ctx.request_id}})
    return error_response(
        FhirError(
            500,
            f"The request was refused because a fhirplug plugin failed ({hook}); request id {ctx.request_id}",
            code="exception",
        )
    )


def run(pm: pluggy.PluginManager, ctx: RequestContext, handler: Handler) -> ProxyResponse:
    try:
        response = call_guarded(pm.hook.fhirplug_request, "fhirplug_request", ctx=ctx)
        if response is None:
            response = handler(ctx)
    except FhirError as err:
        response = error_response(err)
    except HTTPException as exc:
        response = error_response(FhirError(exc.code or 500, exc.description or exc.name))
    except PluginFailure as pf:
        response = _plugin_failure(ctx, pf.hook)
    except (ParseException, NoMoreData) as exc:  # gunicorn could not read the body (bad chunking)
        response = error_response(body_unreadable(exc))
    except Exception:
        log.exception("internal error", extra={"fields": {"request_id": ctx.request_id}})
        response = error_response(
            FhirError(500, f"Internal error in the proxy; request id {ctx.request_id}", code="exception")
        )

    try:
        pm.hook.fhirplug_response(ctx=ctx, response=response)
    except Exception:
        # A response hook may be the one narrowing what a caller may see: never let the
        # un-narrowed response out.
        response = _plugin_failure(ctx, "fhirplug_response")
        if ctx.request_id:
            response.headers["X-Request-ID"] = ctx.request_id
    if ctx.render_as == "xml":
        # after every hook: the hooks judged the JSON the store was asked for; XML is only its rendering
        xml_render.render_response(response)
    return response


def finished(pm: pluggy.PluginManager, ctx: RequestContext, status: int) -> None:
    try:
        pm.hook.fhirplug_request_finished(ctx=ctx, status=status)
    except Exception:
        log.exception("plugin failed in fhirplug_request_finished")


class PluginFailure(Exception):
    """A hook raised something other than FhirError: the request is refused with a 500."""

    def __init__(self, hook: str):
        super().__init__(hook)
        self.hook = hook


def call_guarded(hook_caller, hook: str, **kwargs):
    """Call a hook where a FhirError is a refusal and anything else a plugin failure."""
    try:
        return hook_caller(**kwargs)
    except FhirError:
        raise
    except Exception as exc:
        raise PluginFailure(hook) from exc
