"""A stand-in for the FHIR store, for unit tests that must not need a server."""

from __future__ import annotations

import io
import json

import urllib3

from proxy.errors import FhirError

BASE = "http://store.internal:8090/fhir"
# what unit tests configure as the proxy's FHIRPLUG_PUBLIC_BASE_URL (create_app needs one)
PUBLIC_BASE = "https://proxy.test/fhir"


class FakeStore:
    """Answers every call with a canned response and records what it was sent."""

    def __init__(
        self,
        status: int = 200,
        body: dict | None = None,
        headers: dict | None = None,
        fail: FhirError | None = None,
    ):
        self.base_url = BASE
        self.calls: list[dict] = []
        self.status, self.fail = status, fail
        self.body = body if body is not None else {"resourceType": "Patient", "id": "1"}
        self.headers = headers or {}

    def send(self, method, path, query, headers, body):
        self.calls.append(
            {
                "method": method,
                "path": path,
                "query": query,
                "headers": headers,
                "body": json.loads(body) if body else None,
            }
        )
        if self.fail:
            raise self.fail
        data = json.dumps(self.body).encode()
        return urllib3.HTTPResponse(
            body=io.BytesIO(data),
            status=self.status,
            preload_content=False,
            headers={"Content-Type": "application/fhir+json;charset=UTF-8", **self.headers},
        )

    def ping(self) -> bool:
        return self.fail is None
