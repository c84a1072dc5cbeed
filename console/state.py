"""What the console's routes share, built once per app: its settings, stores and servers, and
the few response helpers every page uses (security headers, error pages, the session check)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from urllib.parse import quote

from flask import Flask, Response, current_app, g, redirect, render_template, request
from redis import Redis

from console.accounts import AccountStore
from console.audit import ConsoleAudit
from console.authorization import PeopleAuthorizationServer
from console.oidc import OidcProvider
from console.sessions import SESSION_COOKIE, Records, Session, Sessions
from console.settings import ConsoleSettings

EXTENSION = "fhirplug.console"
# pages are the server's own markup and one stylesheet: nothing inline, nothing from elsewhere
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class ConsoleState:
    app: Flask
    redis: Redis  # the proxy's own: accounts, sessions, and the queues operators look at
    settings: ConsoleSettings
    issuer: str
    accounts: AccountStore
    sessions: Sessions
    attempts: Records  # the client's sign-in attempts (state, PKCE verifier)
    authz_forms: Records  # the authorization server's sign-in forms (CSRF)
    server: PeopleAuthorizationServer
    audit: ConsoleAudit
    oidc: OidcProvider | None = None  # an external provider signs people in instead of passwords

    def page(self, html: str, status: int = 200) -> Response:
        return Response(html, status=status, headers=SECURITY_HEADERS, mimetype="text/html")

    def error_page(self, status: int, message: str) -> Response:
        return self.page(render_template("console_error.html", status=status, message=message), status)


def state() -> ConsoleState:
    return current_app.extensions[EXTENSION]


def signed_in(*roles: str) -> Callable:
    """The route needs a live session (else: to sign-in, and back), and one of ``roles`` (else
    403). A POST also needs the session's CSRF token in its form (else 403)."""

    def wrap(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            st = state()
            session = st.sessions.resume(request.cookies.get(SESSION_COOKIE))
            if session is None:
                return redirect("/console/login?next=" + quote(request.full_path.rstrip("?"), safe="/"), 302)
            account = st.accounts.get(session.username)
            if account is None or not account.enabled:  # disabled since sign-in: over at once
                st.sessions.end(request.cookies.get(SESSION_COOKIE))
                st.audit.record(
                    "forbidden", session.username, session.role, ok=False, detail="account disabled"
                )
                return st.error_page(403, "Your account is disabled; ask an administrator.")
            session.role = account.role  # a role changed since sign-in counts from the next page
            if roles and session.role not in roles:
                st.audit.record("forbidden", session.username, session.role, ok=False, detail=request.path)
                return st.error_page(403, "Your role does not give you this page.")
            if request.method == "POST" and not session.csrf_ok(request.form.get("csrf_token")):
                st.audit.record("csrf-refused", session.username, session.role, ok=False, detail=request.path)
                return st.error_page(403, "The form's security token is missing or wrong; reload the page.")
            g.console_session = session
            return view(*args, **kwargs)

        return guarded

    return wrap


def current() -> Session:
    return g.console_session
