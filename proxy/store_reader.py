"""Reads from the store on a plugin's behalf: the current version of a resource, a search, a
$validate; and stores (or removes) the few records plugins keep themselves (audit events,
outbox entries).

Plugins get one as ``ctx.store``; it carries the request's id to the store so the store's log
ties the look-up to the request that caused it.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from proxy.errors import FhirError
from proxy.response import dumps, loads


class StoreReader:
    def __init__(self, store, request_id: Callable[[], str | None] = lambda: None) -> None:
        self._store = store
        self._request_id = request_id  # called at each look-up: the id is chosen after we are made
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

    def _send(self, method: str, path: str, query: list[tuple[str, str]], body: bytes | None):
        headers = {"accept": "application/fhir+json"}
        if body is not None:
            headers["content-type"] = "application/fhir+json"
        if rid := self._request_id():
            headers["X-Request-ID"] = rid
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

    def search(self, resource_type: str, query: str | list[tuple[str, str]]) -> list[dict]:
        """The matching resources (first page, up to 200); ``query`` as ``a=1&b=2`` or pairs."""
        pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else list(query)
        pairs = [(k, v) for k, v in pairs if k != "_format"]  # criteria a caller wrote: plugins read JSON
        status, body = self._get(resource_type, [*pairs, ("_count", "200")])
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
