"""The proxy's own FHIR API, called in-process as the signed-in person.

Each call goes through the proxy's WSGI app exactly as an HTTP request would (the bearer check,
every plugin, the store), with an access token minted for the person: what the console shows is
what the API answers that person, and nothing the console does can reach further than the
person's role reaches through the API. In-process rather than over the network: the public base
may name a load balancer this process cannot (or should not) call back through."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Flask


@dataclass
class Answer:
    status: int
    body: dict | None  # the JSON answer, when it is JSON
    text: str  # the answer as received, for showing it when it is not JSON

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def issues(self) -> list[dict]:
        """The OperationOutcome's issues (severity, code, text, where, line), if it is one."""
        body = self.body or {}
        if body.get("resourceType") != "OperationOutcome":
            return []
        out = []
        for i in body.get("issue") or []:
            text = i.get("diagnostics") or (i.get("details") or {}).get("text") or ""
            where = ", ".join(i.get("expression") or i.get("location") or [])
            # HAPI's line of the issue in the document as sent (the proxy passes the caller's bytes)
            lines = [
                e.get("valueInteger")
                for e in i.get("extension") or []
                if str(e.get("url", "")).endswith("operationoutcome-issue-line")
            ]
            line = lines[0] if lines and isinstance(lines[0], int) else None
            out.append(
                {
                    "severity": i.get("severity", ""),
                    "code": i.get("code", ""),
                    "text": text,
                    "where": where,
                    "line": line,
                }
            )
        return out


def call(
    app: Flask,
    token: str,
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
) -> Answer:
    """``path`` is below /fhir (``StructureDefinition``, ``Bundle/$validate``)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    if content_type:
        headers["Content-Type"] = content_type
    target = "/fhir/" + path.lstrip("/") + ("?" + urlencode(query) if query else "")
    with app.test_client() as client:
        resp = client.open(target, method=method, data=body, headers=headers)
        text = resp.get_data(as_text=True)
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return Answer(resp.status_code, parsed if isinstance(parsed, dict) else None, text)
