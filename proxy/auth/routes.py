"""The OAuth HTTP endpoints: token, JWKS and SMART discovery. Answers are RFC 6749 JSON, not
OperationOutcomes: OAuth clients parse ``error`` and ``error_description``."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qsl

from flask import Flask, request
from redis.exceptions import RedisError

from proxy.auth.errors import OAuthError, invalid_request
from proxy.auth.server import TOKEN_PATH, AuthServer
from proxy.context import Interaction
from proxy.response import ProxyResponse

log = logging.getLogger("fhirplug.auth")
FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16 * 1024  # an 8 KB assertion plus the other fields
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _json(status: int, doc: dict, extra: dict | None = None) -> ProxyResponse:
    headers = {"Content-Type": "application/json", **(extra or {})}
    return ProxyResponse(status, headers, (json.dumps(doc).encode(),))


def _error(exc: OAuthError) -> ProxyResponse:
    extra = dict(NO_STORE)
    if exc.status == 401:
        extra["WWW-Authenticate"] = f'Bearer error="{exc.error}"'
    return _json(exc.status, exc.body(), extra)


def register(app: Flask, server: AuthServer | None, issuer: str, serve) -> None:
    """``issuer`` is this server's public origin, from configuration (never from the request's
    Host); ``serve`` runs a handler through the hooks (request id, access log) like any other
    request."""

    def route(handler):
        def view():
            return serve(lambda headers: Interaction("oauth", request.method), lambda ctx: handler())

        view.__name__ = handler.__name__
        return view

    @app.post(TOKEN_PATH)
    @route
    def token():
        if server is None:
            return _error(OAuthError(400, "invalid_request", "Authentication is switched off here"))
        try:
            form = _read_form()
            return _json(200, server.token_response(form, issuer), NO_STORE)
        except OAuthError as exc:
            return _error(exc)
        except RedisError:
            log.exception("token endpoint: Redis unreachable")
            return _json(
                503,
                {"error": "temporarily_unavailable", "error_description": "Retry shortly"},
                {**NO_STORE, "Retry-After": "5"},
            )

    @app.get("/.well-known/jwks.json")
    @route
    def jwks():
        if server is None:
            return _json(404, {"error": "not_found"})
        return _json(200, server.keys.public_jwks(), {"Cache-Control": "max-age=60"})

    @app.get("/.well-known/smart-configuration")
    @route
    def smart_configuration():
        if server is None:
            return _json(404, {"error": "not_found"})
        return _json(200, server.smart_configuration(issuer), {"Cache-Control": "max-age=300"})


def _read_form() -> dict:
    ctype = (request.content_type or "").split(";", 1)[0].strip().lower()
    if ctype != FORM:
        raise invalid_request(f"The token request must be {FORM}")
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise invalid_request(f"The token request is larger than {MAX_FORM_BYTES} bytes")
    raw = request.stream.read(MAX_FORM_BYTES + 1)
    if len(raw) > MAX_FORM_BYTES:
        raise invalid_request(f"The token request is larger than {MAX_FORM_BYTES} bytes")
    if request.args:
        # RFC 6749 §3.2: parameters go in the body; an assertion in a URL ends up in logs
        raise invalid_request("Send the token request's parameters in the body, not the query string")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise invalid_request("The token request is not UTF-8") from exc
    form: dict[str, str] = {}
    for k, v in pairs:
        if k in form:
            raise invalid_request(f"Parameter {k} is repeated")  # RFC 6749 §3.2
        form[k] = v
    return form
