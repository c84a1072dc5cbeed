"""Plugins that make the hook contract observable. Used by unit tests (in-process) and by the
integration tests (loaded into a real proxy by name: tests.support.probe_plugins:probe_a).

Behaviour is driven by request headers so one proxy can show every path:
- X-Probe-Deny: <plugin>      that plugin answers 403 itself in fhirplug_request
- X-Probe-Raise: <hook>       probe_a raises RuntimeError in that hook
- a resource tagged probe|refuse is refused by probe_a in fhirplug_before_storage (422)
- every written resource gets a tag probe|<trail> naming the plugins that amended it, in the
  order they ran (e.g. "probe_b>probe_a"; one tag, since the store does not keep tag order)
- X-Probe-Order (response) lists the plugins in the order their response hooks ran
"""

from __future__ import annotations

from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.response import ProxyResponse

TAG_SYSTEM = "http://fhirplug.test/probe"


class Probe:
    def __init__(self, name: str):
        self.name = name
        self.before_storage_calls: list[tuple[int | None, str]] = []
        self.after_storage_calls: list[tuple[int | None, int]] = []

    def _raise_if(self, ctx, hook: str) -> None:
        if self.name == "probe_a" and ctx.request.header("X-Probe-Raise") == hook:
            raise RuntimeError(f"probe failure in {hook}")

    @hookimpl
    def fhirplug_request(self, ctx):
        self._raise_if(ctx, "fhirplug_request")
        if ctx.request.header("X-Probe-Deny") == self.name:
            return ProxyResponse.from_resource(
                403,
                {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {"severity": "error", "code": "forbidden", "diagnostics": f"denied by {self.name}"}
                    ],
                },
            )
        return None

    @hookimpl
    def fhirplug_before_storage(self, ctx, entry):
        self._raise_if(ctx, "fhirplug_before_storage")
        self.before_storage_calls.append((entry.index, entry.method))
        res = entry.resource
        if not isinstance(res, dict) or res.get("resourceType") in (None, "Parameters", "Binary"):
            return None
        tags = res.get("meta", {}).get("tag", [])
        if self.name == "probe_a" and any(t.get("code") == "refuse" for t in tags):
            return FhirError(422, "refused by probe_a", [f"{res['resourceType']}.meta.tag"])
        tags = res.setdefault("meta", {}).setdefault("tag", [])
        trail = next((t for t in tags if t.get("system") == TAG_SYSTEM), None)
        if trail is None:
            tags.append({"system": TAG_SYSTEM, "code": self.name})
        else:
            trail["code"] += f">{self.name}"
        return None

    @hookimpl
    def fhirplug_after_storage(self, ctx, entry, outcome):
        self._raise_if(ctx, "fhirplug_after_storage")
        self.after_storage_calls.append((entry.index, outcome.status))

    @hookimpl
    def fhirplug_response(self, ctx, response):
        self._raise_if(ctx, "fhirplug_response")
        prior = response.headers.get("X-Probe-Order")
        response.headers["X-Probe-Order"] = f"{prior},{self.name}" if prior else self.name


probe_a = Probe("probe_a")
probe_b = Probe("probe_b")
