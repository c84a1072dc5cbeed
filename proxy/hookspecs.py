"""The hook contract: every moment in a request's life where a plugin may act.

This module is the whole contract. A plugin is a module (or object) that implements any
subset of these functions, decorated with ``@hookimpl`` and taking any subset of the named
arguments. The proxy calls them by keyword, in the order FHIRPLUG_PLUGINS lists the plugins.

Once, when the app is built and before it serves: ``fhirplug_configure`` (the settings and the
shared Redis client: a plugin reads no environment of its own).

Life of a request::

    fhirplug_request ─> [fhirplug_before_bundle] ─> fhirplug_before_storage (per written resource) ─> [store]
        ─> fhirplug_after_storage (per written resource) ─> fhirplug_response ─> fhirplug_request_finished

A plugin that raises refuses the request: the caller gets a 500 OperationOutcome and nothing
reaches the store. The one exception is ``fhirplug_after_storage``: the write is already
durable there, and a 5xx would invite a duplicate resubmission, so its failures are logged.
"""

from __future__ import annotations

import pluggy

PROJECT = "fhirplug"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def fhirplug_configure(settings, redis):
    """Take this deployment's configuration, once, when the app is built and before it serves.

    ``settings`` is the app's ``proxy.config.Settings`` (read once from the environment at start),
    ``redis`` the app's one Redis client (connections are made on first use). Keep what you need;
    values given to a plugin's constructor (unit tests) win over these. Raise to refuse to start.
    """


@hookspec(firstresult=True)
def fhirplug_request(ctx):
    """Decide about a request before anything else happens.

    Return ``None`` to let it continue, or a ``proxy.response.ProxyResponse`` (or raise
    ``proxy.errors.FhirError``) to answer it directly: a denial, or a response served without
    the store. The first plugin that answers ends the call. Plugins may set ``ctx.request_id``,
    ``ctx.client`` and add ``ctx.upstream_headers`` here.
    """


@hookspec(firstresult=True)
def fhirplug_before_bundle(ctx, bundle):
    """See a whole transaction or batch ``bundle`` (a dict) once, before its entries one by one.

    For rules that span entries (which Task the other resources travel with) and for the
    entries ``fhirplug_before_storage`` never sees: the reads (``GET``) of a batch, whose
    ``request.url`` may be amended here, and entries may be added (an audit record that must be
    stored with the rest). Return (or raise) a ``FhirError`` to refuse the whole Bundle;
    expressions are absolute (``Bundle.entry[3].request.url``). Return a ``ProxyResponse`` to
    answer without storing anything (e.g. the first result of an identical earlier submission).
    """


@hookspec(firstresult=True)
def fhirplug_before_storage(ctx, entry):
    """Inspect one resource about to be written; ``entry`` is a ``proxy.context.WriteEntry``.

    Called for a plain create, update, patch or delete, and for each write entry of a
    transaction or batch, before anything is sent to the store. Amend ``entry.resource`` in
    place to change what is stored; a PATCH may be turned into the update it amounts to
    (``entry.method = "PUT"``, ``entry.resource`` the patched resource, ``entry.if_match`` the
    version it was computed from), so that a rule can judge the result before it is written.
    Return a ``FhirError`` (or raise it) to refuse: the whole request is answered with its
    OperationOutcome and nothing is stored. Expressions in the
    error are relative to the resource; the proxy rebases them onto the Bundle entry.
    """


@hookspec
def fhirplug_after_storage(ctx, entry, outcome):
    """See what the store answered for one written resource (``outcome``: ``StorageOutcome``).

    For side effects only, such as recording an intent to forward. Never changes what was
    stored or what the caller is told; exceptions are logged, not raised to the caller.
    """


@hookspec
def fhirplug_response(ctx, response):
    """See, narrow or rewrite the ``ProxyResponse`` before it leaves.

    Set headers on ``response.headers``; read or replace the body through
    ``response.resource`` (which buffers a streamed body on first use).
    """


@hookspec
def fhirplug_request_finished(ctx, status):
    """Observe a finished request (``status`` is the HTTP status sent): logs and metrics."""


@hookspec
def fhirplug_metrics(redis):
    """Return this plugin's metrics as Prometheus text exposition (format 0.0.4, complete
    families, best written by prometheus_client), read from the shared ``redis``; joined after
    the request metrics. Called at each scrape of the metrics listener (no token: it is bound to
    a private address) and for ``GET /metrics`` by an administrator; a ``RedisError`` answers 503."""
