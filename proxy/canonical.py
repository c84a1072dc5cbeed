"""One canonical reading of every FHIR URL the proxy acts on: the request line and each
transaction or batch entry's ``request.url``.

Why: the proxy decides who may do what from the URL, and the store then acts on the URL it is
sent. If the two read a URL differently (a leading slash, a trailing ``?``, ``%2F``, ``..``)
the check judges one thing and the store does another. So every URL is read here, once, by
strict rules, and what reaches the store is the canonical form that was judged (entry URLs are
rewritten in the Bundle; the request path and query are sent as parsed here). Whatever these
rules cannot read unambiguously is refused with 400 and an OperationOutcome, never guessed at.

The rules:

- path: percent-decoded once, as UTF-8; an encoded ``/``, ``?``, ``#``, ``\\``, ``%`` (double
  encoding), NUL, CR or LF is refused, as are control characters, ``.`` and ``..`` segments,
  empty segments (``Task//1``) and backslashes. Leading slashes and one trailing slash are
  dropped (``/Patient/1/`` is ``Patient/1``).
- query: split on ``&`` only, each name and value percent-decoded once (``+`` is a space, as
  in the store's servlet container); empty pieces (a trailing ``?`` or ``&&``) are dropped; a
  parameter without a name, a name outside ``[A-Za-z0-9_.:-]``, control characters and
  ``_method`` are refused. The query reaches the store re-encoded from these pairs.
- an absolute entry URL is accepted only under this server's own base (public or the
  store's); any other absolute URL is refused.
- method overrides (``_method``, ``X-HTTP-Method-Override`` and kin) are refused: the HTTP
  method is the method.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus, urlencode

from proxy.errors import FhirError

METHOD_OVERRIDE_PARAMS = frozenset({"_method"})
METHOD_OVERRIDE_HEADERS = frozenset({"x-http-method-override", "x-http-method", "x-method-override"})
# encoded characters whose decoded form would change how the path splits, or hide a second decoding
_ENCODED_REFUSED = re.compile(r"%(2f|3f|23|5c|25|00|0d|0a)", re.IGNORECASE)
_BAD_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
ENTRY_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})


def _invalid(message: str, where: str | None) -> FhirError:
    return FhirError(400, message, [where] if where else [], code="invalid")


@dataclass(frozen=True)
class Target:
    """A FHIR URL below the base, in canonical form."""

    path: str  # no leading or trailing slash: "Task/1/_history/2"; "" for the base itself
    query: tuple[tuple[str, str], ...] = ()

    @property
    def query_string(self) -> str:
        return urlencode(list(self.query))

    @property
    def url(self) -> str:
        """The canonical relative URL: what the store is sent and what the checks judged."""
        return self.path + (f"?{self.query_string}" if self.query else "")

    @property
    def segments(self) -> list[str]:
        return self.path.split("/") if self.path else []

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    def names(self) -> list[str]:
        return [k for k, _ in self.query]


def is_absolute(url: str) -> bool:
    """Does the URL start with a scheme (``https:``, ``urn:``)?"""
    return bool(_SCHEME.match(url))


def parse_path(raw: str, where: str | None = None) -> str:
    """The canonical path of a still percent-encoded path below the FHIR base."""
    if _ENCODED_REFUSED.search(raw):
        raise _invalid(
            "The URL path holds an encoded '/', '?', '#', '\\', '%' or control character; "
            "send the path unencoded",
            where,
        )
    if _BAD_ESCAPE.search(raw):
        raise _invalid("The URL path holds a '%' that is not a percent-encoding", where)
    try:
        text = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise _invalid("The URL path is not UTF-8 once percent-decoded", where) from None
    if _CONTROL.search(text) or "\\" in text or "#" in text:
        raise _invalid("The URL path holds a control character, a backslash or a '#'", where)
    text = text.lstrip("/")
    if text.endswith("/"):
        text = text[:-1]
    if not text:
        return ""
    segments = text.split("/")
    if any(s == "" for s in segments):
        raise _invalid("The URL path has an empty segment ('//')", where)
    if any(s in (".", "..") for s in segments):
        raise _invalid("The URL path has a '.' or '..' segment", where)
    return "/".join(segments)


def parse_query(raw: str, where: str | None = None) -> tuple[tuple[str, str], ...]:
    """The parameters of a still percent-encoded query string (or form body), in order."""
    pairs = []
    for piece in raw.split("&"):
        if not piece:
            continue
        name_raw, _, value_raw = piece.partition("=")
        if _BAD_ESCAPE.search(piece):
            raise _invalid(
                f"The query parameter {name_raw[:64]!r} holds a '%' that is not an encoding", where
            )
        try:
            name = unquote_plus(name_raw, errors="strict")
            value = unquote_plus(value_raw, errors="strict")
        except UnicodeDecodeError:
            raise _invalid("A query parameter is not UTF-8 once percent-decoded", where) from None
        if not name:
            raise _invalid("A query parameter has no name", where)
        if not _PARAM_NAME.match(name):
            raise _invalid(
                f"The query parameter name {name[:64]!r} is not a FHIR search parameter name", where
            )
        if _CONTROL.search(value):
            raise _invalid(f"The query parameter {name!r} holds a control character", where)
        if name in METHOD_OVERRIDE_PARAMS:
            raise _invalid(f"{name} is not accepted: send the HTTP method itself", where or name)
        pairs.append((name, value))
    return tuple(pairs)


def parse_request_target(raw_path: str, raw_query: str) -> Target:
    """The request line below the FHIR base (``raw_path`` still percent-encoded)."""
    return Target(parse_path(raw_path), parse_query(raw_query))


def check_headers(headers) -> None:
    """Refuse method-override headers: the HTTP method is the method."""
    for name in headers:
        if name.lower() in METHOD_OVERRIDE_HEADERS:
            raise _invalid(f"The {name} header is not accepted: send the HTTP method itself", None)


def parse_entry_url(url, index: int | None = None, bases: tuple[str, ...] = ()) -> Target:
    """A transaction or batch entry's ``request.url`` (or any URL a write names: a conditional
    reference, ``ifNoneExist``), relative to the base or absolute under one of ``bases``."""
    where = f"Bundle.entry[{index}].request.url" if index is not None else None
    if not isinstance(url, str) or not url.strip():
        raise _invalid("The entry needs a request.url", where)
    if url != url.strip() or _CONTROL.search(url):
        raise _invalid("The entry URL holds white space or control characters", where)
    if "#" in url:
        raise _invalid("The entry URL holds a '#'", where)
    if _SCHEME.match(url):
        for base in sorted({b.rstrip("/") for b in bases if b}, key=len, reverse=True):
            if url == base or url.startswith(base + "/") or url.startswith(base + "?"):
                url = url[len(base) :]
                break
        else:
            raise _invalid("An absolute entry URL must name this server's own FHIR base", where)
    raw_path, _, raw_query = url.partition("?")
    # a raw (unencoded) character the request line could not carry is refused like its encoding
    if any(c in raw_path for c in ' "<>{}|^`'):
        raise _invalid("The entry URL path holds characters a URL cannot carry unencoded", where)
    path = parse_path(raw_path, where)
    if not path:
        raise _invalid("The entry URL names no resource type", where)
    return Target(path, parse_query(raw_query, where))


def parse_criteria(text, resource_type: str | None, where: str | None) -> tuple[tuple[str, str], ...]:
    """Search criteria given as ``Type?a=1`` or ``a=1`` (``ifNoneExist``, ``If-None-Exist``)."""
    if not isinstance(text, str):
        raise _invalid("Search criteria must be a string", where)
    head, sep, tail = text.partition("?")
    if sep:
        if parse_path(head, where) not in ("", resource_type):
            raise _invalid(f"The criteria name {head!r}, not {resource_type}", where)
        text = tail
    return parse_query(text, where)
