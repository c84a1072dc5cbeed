"""A request context for calling one plugin's hooks directly (unit tests, no servers)."""

from __future__ import annotations

from proxy.context import Client, Interaction, RequestContext, make_request_view
from proxy.store_reader import StoreReader
from tests.support.fake_store import FakeStore


class ScriptedStore(FakeStore):
    """A fake store that answers by method and path (``("GET", "Task/1")``), or by method and
    resource type for any id (``("PUT", "Basic/*")``); anything not scripted is 404."""

    def __init__(self, answers: dict[tuple[str, str], dict] | None = None):
        super().__init__()
        self.answers = dict(answers or {})

    def send(self, method, path, query, headers, body):
        answer = self.answers.get((method, path), self.answers.get((method, path.split("/", 1)[0] + "/*")))
        if answer is None:
            self.status, self.body = 404, {"resourceType": "OperationOutcome", "issue": []}
        else:
            self.status, self.body = 200, answer
        return super().send(method, path, query, headers, body)


def searchset(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def request_context(
    kind: str = "read",
    method: str = "GET",
    resource_type: str | None = None,
    resource_id: str | None = None,
    *,
    client: Client | None = None,
    headers: dict[str, str] | None = None,
    query: list[tuple[str, str]] | None = None,
    store: FakeStore | None = None,
    body: object = None,
) -> RequestContext:
    path = "/".join(p for p in (resource_type, resource_id) if p)
    view = make_request_view(method, f"/fhir/{path}", path, query or [], headers or {}, None, "10.0.0.1")
    ctx = RequestContext(view, Interaction(kind, method, resource_type, resource_id))
    if client is not None:
        ctx.client = client
    ctx.body = body
    ctx.store = StoreReader(store if store is not None else ScriptedStore())
    return ctx
