"""A small in-memory FHIR store behind the proxy's store interface (``send``), for unit tests of
plugins that read, search and write through ``ctx.store``: reads by id, searches on simple
element-named parameters, PUT, DELETE and transactions of PUTs, and the store's tenancy line
(a caller acting as a tenant sees only resources labelled for it)."""

from __future__ import annotations

import copy
import io
import json
from urllib.parse import unquote

import urllib3

from gpnotify.r4 import key_of
from hubspoke.identifiers import TENANT_SYSTEM
from proxy.store_caller import CALLER_KEY
from tests.support.fake_store import BASE


class MemoryStore:
    def __init__(self, resources: list[dict] | None = None):
        self.base_url = BASE
        self.resources: dict[str, dict] = {}
        self.transactions: list[dict] = []
        for r in resources or []:
            self.resources[f"{r['resourceType']}/{r['id']}"] = copy.deepcopy(r)

    def _visible(self, resource: dict, headers: dict) -> bool:
        caller = headers.get(CALLER_KEY)
        if not caller:
            return True
        role, _, ods = caller.partition(";")
        if role == "admin" or not ods:
            return True
        labels = [s.get("code") for s in (resource.get("meta") or {}).get("security") or []
                  if s.get("system") == TENANT_SYSTEM]  # fmt: skip
        return not labels or ods in labels

    def _answer(self, status: int, body: dict | None):
        data = json.dumps(body).encode() if body is not None else b""
        return urllib3.HTTPResponse(body=io.BytesIO(data), status=status, preload_content=False)

    def _matches(self, resource: dict, name: str, value: str) -> bool:
        got = resource.get(name)
        if isinstance(got, dict) and "reference" in got:
            return key_of(got["reference"]) == key_of(value)
        if isinstance(got, list):
            return any(isinstance(g, dict) and key_of(g.get("reference", "")) == key_of(value) for g in got)
        return str(got) in value.split(",")

    def put(self, resource: dict) -> dict:
        key = f"{resource['resourceType']}/{resource['id']}"
        old = self.resources.get(key)
        stored = copy.deepcopy(resource)
        version = int(((old or {}).get("meta") or {}).get("versionId", "0")) + 1
        stored.setdefault("meta", {})["versionId"] = str(version)
        self.resources[key] = stored
        return stored

    def send(self, method, path, query, headers, body):
        headers = {k: v for k, v in (headers or {}).items()}
        body = json.loads(body) if body else None
        parts = [p for p in path.split("/") if p]
        if method == "GET" and len(parts) == 2:
            found = self.resources.get(path)
            if found is None or not self._visible(found, headers):
                return self._answer(404, {"resourceType": "OperationOutcome"})
            return self._answer(200, found)
        if method == "GET" and len(parts) == 1:
            criteria = [(k, unquote(v)) for k, v in query if not k.startswith("_")]
            hits = [
                r
                for key, r in self.resources.items()
                if key.startswith(parts[0] + "/")
                and self._visible(r, headers)
                and all(self._matches(r, k, v) for k, v in criteria)
            ]
            return self._answer(
                200,
                {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in hits]},
            )
        if method == "PUT":
            return self._answer(201, self.put(body))
        if method == "DELETE":
            self.resources.pop(path, None)
            return self._answer(204, None)
        if method == "POST" and not parts:
            self.transactions.append(body)
            out = []
            for e in body.get("entry") or []:
                stored = self.put(e["resource"])
                out.append({"response": {"status": "201", "location": f"{e['request']['url']}/_history/"
                                         f"{stored['meta']['versionId']}"}})  # fmt: skip
            return self._answer(200, {"resourceType": "Bundle", "type": "transaction-response", "entry": out})
        return self._answer(400, {"resourceType": "OperationOutcome"})
