"""Reads from the store on a plugin's behalf: the current version of a resource, a search, a
$validate; and stores (or removes) the few records plugins keep themselves (audit events,
outbox entries), or, for plugins that serve an operation themselves (EPS messaging), a
transaction and a version-checked update.

Plugins get one as ``ctx.store``; it carries the request's id to the store so the store's log
ties the look-up to the request that caused it. It acts as the proxy's own (admin) identity;
``as_caller(role, ods)`` gives a view that acts as a tenant, so that the store's own tenancy
line judges what a plugin does for that tenant. Writes go through the app's store client, which
takes the read cache's write fence.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from proxy.errors import FhirError
from proxy.response import dumps, loads
from proxy.store_caller import CALLER_KEY, caller_of


class StoreReader:
    def __init__(
        self, store, request_id: Callable[[], str | None] = lambda: None, caller: str | None = None
    ) -> None:
        self._store = store
        self._request_id = request_id  # called at each look-up: the id is chosen after we are made
        self._caller = caller  # None: the proxy's own identity (admin)
        # one request's plugins often ask for the same resource (the Task a PATCH names is read by
        # the workflow rules, the tenancy check and routing): ask the store once per request.
        # Plugins look before the request's own write, so the first answer stays the right one.
        self._read: dict[str, dict | None] = {}

    @property
    def base_url(self) -> str:
        """The store's own FHIR base (absolute references under it are local to the store)."""
        return getattr(self._store, "base_url", "")

    def _get(self, path: str, query: list[tuple[str, str]]) -> tuple[int, dict | None]:
        return self._send("GET", path, query, None)

    def as_caller(self, role: str, ods: str | None) -> StoreReader:
        """A view of the store acting for ``role``/``ods``: the store's tenancy line applies."""
        return StoreReader(self._store, self._request_id, caller_of(role, ods))

    def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        body: bytes | None,
        extra: dict[str, str] | None = None,
    ):
        headers = {"accept": "application/fhir+json", **(extra or {})}
        if body is not None:
            headers["content-type"] = "application/fhir+json"
        if rid := self._request_id():
            headers["X-Request-ID"] = rid
        if self._caller is not None:
            headers[CALLER_KEY] = self._caller
        resp = self._store.send(method, path, query, headers, body)
        try:
            data = resp.read()
        finally:
            resp.release_conn()
        if resp.status >= 500:
            raise FhirError(
                503, "The FHIR store failed a look-up; retry shortly", headers={"Retry-After": "5"}
            )
        try:
            return resp.status, (loads(data) if data else None)
        except ValueError as exc:
            if resp.status >= 400:
                return resp.status, None  # a refusal, whatever it says
            # only a caller's criteria can change the representation (_format is taken out)
            raise FhirError(400, "The search criteria could not be evaluated as given") from exc

    def read(self, resource_type: str, resource_id: str) -> dict | None:
        """The current version, or None when it does not exist or was deleted."""
        path = f"{resource_type}/{resource_id}"
        if path not in self._read:
            status, body = self._get(path, [])
            self._read[path] = body if status == 200 else None
        return self._read[path]

    def search(self, resource_type: str, query: str | list[tuple[str, str]], count: int = 200) -> list[dict]:
        """The matching resources (first page, up to ``count``); ``query`` as ``a=1&b=2`` or pairs."""
        pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else list(query)
        # criteria a caller wrote: plugins read JSON, and the page size is ours
        pairs = [(k, v) for k, v in pairs if k not in ("_format", "_count")]
        # one page, never paged on: the store need not keep the results for paging (no-store
        # saves it writing them away, about 2 ms a search)
        status, body = self._send(
            "GET", resource_type, [*pairs, ("_count", str(count))], None, {"cache-control": "no-store"}
        )
        if status != 200 or not body:
            return []
        return [
            e["resource"]
            for e in body.get("entry") or []
            if e.get("resource") and (e.get("search") or {}).get("mode", "match") == "match"
        ]

    def criteria_problem(self, resource_type: str, query: str) -> str | None:
        """What the store says is wrong with search criteria (its diagnostics), None if nothing."""
        pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "_format"]
        status, body = self._get(resource_type, [*pairs, ("_summary", "count")])
        if status < 400:
            return None
        issues = (body or {}).get("issue") if isinstance(body, dict) else None
        first = issues[0] if isinstance(issues, list) and issues and isinstance(issues[0], dict) else {}
        return str(first.get("diagnostics") or f"the store refused them ({status})")

    def validate(self, resource: dict, profile: str | None = None) -> dict:
        """The store's ``$validate`` OperationOutcome for ``resource`` (stores nothing)."""
        query = [("profile", profile)] if profile else []
        status, body = self._send("POST", f"{resource['resourceType']}/$validate", query, dumps(resource))
        if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
            raise FhirError(503, f"The FHIR store's $validate answered {status} without an OperationOutcome")
        return body

    def create(self, resource: dict) -> dict | None:
        """Store a record a plugin keeps on its own behalf (an audit event); the stored resource."""
        status, body = self._send("POST", resource["resourceType"], [], dumps(resource))
        if status >= 300:
            raise FhirError(503, f"The FHIR store refused a {resource['resourceType']} record ({status})")
        return body

    def delete(self, resource_type: str, resource_id: str) -> None:
        """Remove a plugin's own record (an outbox entry whose change did not happen); a record
        already gone is fine."""
        path = f"{resource_type}/{resource_id}"
        self._read.pop(path, None)
        status, _ = self._send("DELETE", path, [], None)
        if status >= 300 and status not in (404, 410):
            raise FhirError(503, f"The FHIR store refused to remove {path} ({status})")

    def put(self, resource: dict) -> dict | None:
        """Store a plugin's own record under the id it chose (an outbox entry)."""
        path = f"{resource['resourceType']}/{resource['id']}"
        self._read.pop(path, None)
        status, body = self._send("PUT", path, [], dumps(resource))
        if status >= 300:
            raise FhirError(503, f"The FHIR store refused a {resource['resourceType']} record ({status})")
        return body

    def transaction(self, bundle: dict) -> tuple[int, dict | None]:
        """Send a transaction Bundle; the store's status and answer (all of it happened, or none).
        A refusal (4xx) is returned for the caller to judge; a store failure is a 503."""
        self._read.clear()
        return self._send("POST", "", [], dumps(bundle))

    def update(self, resource: dict, if_match: str | None = None) -> tuple[int, dict | None]:
        """PUT ``resource`` under its id; with ``if_match`` (a versionId) only if the stored
        version is still that one, else the store answers 412 and nothing changes: a
        compare-and-set that holds across every proxy process."""
        path = f"{resource['resourceType']}/{resource['id']}"
        self._read.pop(path, None)
        extra = {"if-match": f'W/"{if_match}"'} if if_match is not None else None
        return self._send("PUT", path, [], dumps(resource), extra)
