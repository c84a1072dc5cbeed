"""proxy.pipeline.run: a request hook may answer, and then the context says a plugin served it."""

from __future__ import annotations

import pluggy

from proxy.hookspecs import hookimpl
from proxy.pipeline import run
from proxy.plugin_manager import build_plugin_manager
from proxy.response import ProxyResponse
from tests.support.plugin_context import request_context


class Serves:
    @hookimpl
    def fhirplug_request(self, ctx):
        return ProxyResponse.from_resource(200, {"resourceType": "Parameters"})


def manager(*plugins) -> pluggy.PluginManager:
    pm = build_plugin_manager([])
    for plugin in plugins:
        pm.register(plugin)
    return pm


def test_an_answer_from_a_request_hook_is_marked_as_served_by_a_plugin():
    ctx = request_context("operation", "POST")
    response = run(manager(Serves()), ctx, handler=lambda c: ProxyResponse.from_resource(200, {}))
    assert response.resource == {"resourceType": "Parameters"} and ctx.served_by_plugin


def test_an_answer_from_the_store_is_not():
    ctx = request_context("read", "GET", "Patient", "1")
    response = run(
        manager(), ctx, handler=lambda c: ProxyResponse.from_resource(200, {"resourceType": "Patient"})
    )
    assert response.resource == {"resourceType": "Patient"} and not ctx.served_by_plugin
