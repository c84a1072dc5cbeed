"""Mounts the console on the proxy's Flask app (entry point ``fhirplug.web: console``): the
proxy finds it by name, as it finds plugins, so ``proxy/`` never imports it."""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, redirect
from redis import Redis

from console import operations, pages, signin
from console.accounts import AccountStore
from console.audit import ConsoleAudit
from console.authorization import PeopleAuthorizationServer
from console.oidc import OidcProvider
from console.sessions import Records, Sessions
from console.settings import ConsoleSettings
from console.state import EXTENSION, ConsoleState

log = logging.getLogger("fhirplug.console")


def register(app: Flask, redis: Redis) -> None:
    """Add the console's routes under /console, and ``GET /`` answering with a redirect there.
    Off (nothing added) when FHIRPLUG_CONSOLE=off or when the proxy runs without authentication:
    the console signs people in through the proxy's own authorization server."""
    settings = ConsoleSettings.from_env()
    parts = app.extensions["fhirplug"]
    auth = parts["auth"]
    if not settings.enabled:
        return
    if auth is None:
        log.warning("the web console is off: FHIRPLUG_AUTH=off leaves it no way to sign people in")
        return
    proxy_settings = parts["settings"]
    issuer = proxy_settings.issuer
    accounts = AccountStore(redis, settings.lockout_failures, settings.lockout_s)
    server = PeopleAuthorizationServer(
        redis, accounts, auth.keys, auth.registry, issuer, proxy_settings.own_ods, auth.tokens.lifetime_s
    )
    app.extensions[EXTENSION] = ConsoleState(
        app=app,
        redis=redis,
        settings=settings,
        issuer=issuer,
        accounts=accounts,
        sessions=Sessions(redis, settings.idle_s, settings.max_s),
        attempts=Records(redis, "attempt"),
        authz_forms=Records(redis, "authz"),
        server=server,
        audit=ConsoleAudit(parts["store"]),
        oidc=OidcProvider(settings.oidc) if settings.oidc else None,
    )
    assets = Blueprint(
        "console",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/console/static",
    )
    app.register_blueprint(assets)
    app.register_blueprint(signin.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(operations.bp)
    app.add_url_rule("/", "console_root", lambda: redirect("/console/", 302), methods=["GET"])
    app.add_url_rule("/console", "console_bare", lambda: redirect("/console/", 302), methods=["GET"])
