"""The response a hook sees: status, headers and a body that is streamed unless someone looks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import simplejson

from proxy.errors import FHIR_JSON


def dumps(resource: dict) -> bytes:
    # use_decimal keeps FHIR decimals exactly as they were written (1.50 stays 1.50)
    return simplejson.dumps(resource, use_decimal=True, ensure_ascii=False, separators=(",", ":")).encode()


def loads(body: bytes | str):
    return simplejson.loads(body, use_decimal=True)


class ProxyResponse:
    """An HTTP response on its way out. ``body`` is an iterable of byte chunks."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, body: Iterable[bytes] = ()):
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        self._body: Iterable[bytes] = body
        self._resource: dict | None = None

    @classmethod
    def from_resource(cls, status: int, resource: dict, headers: dict[str, str] | None = None):
        r = cls(status, {"Content-Type": FHIR_JSON, **(headers or {})})
        r.resource = resource
        return r

    @property
    def is_json(self) -> bool:
        ctype = self.headers.get("Content-Type", "")
        return "json" in ctype

    @property
    def resource(self) -> dict | None:
        """The JSON body, parsed. Buffers a streamed body; None when the body is not JSON."""
        if self._resource is None and self.is_json:
            raw = b"".join(self._body)
            self._body = (raw,)
            self._resource = loads(raw) if raw else None
        return self._resource

    @resource.setter
    def resource(self, value: dict) -> None:
        self._resource = value
        self._body = (dumps(value),)
        self.headers["Content-Type"] = FHIR_JSON
        self.headers.pop("Content-Length", None)

    def replace_body(self, data: bytes, content_type: str) -> None:
        """A body in another syntax (the proxy's XML rendering of the JSON it judged)."""
        self._resource = None
        self._body = (data,)
        self.headers["Content-Type"] = content_type
        self.headers.pop("Content-Length", None)

    def iter_body(self) -> Iterator[bytes]:
        yield from self._body
