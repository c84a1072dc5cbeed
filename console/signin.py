"""The sign-in routes: the console as an OAuth client (start, callback, sign-out) and the
authorization server's two endpoints people's browsers reach (authorize, token)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlencode

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, current_app, redirect, render_template, request
from werkzeug.wrappers import Response

from console.accounts import Account, SignIn
from console.authorization import AUTHORIZE_PATH, CALLBACK_PATH, CLIENT_ID, TOKEN_PATH
from console.oidc import OidcError
from console.sessions import SESSION_COOKIE, cookie_options
from console.state import ConsoleState, state

LOGIN_COOKIE = "__Host-fhirplug-console-login"  # the client's half: state and PKCE verifier
AUTHZ_COOKIE = "__Host-fhirplug-authz"  # the server's half: the sign-in form's CSRF token
ATTEMPT_TTL_S = 600

bp = Blueprint("console_signin", __name__)


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a console path of ours only (no open redirect: not another
    host, not ``//host``, not ``/\\host``, not a scheme)."""
    if not target or not (target == "/console" or target.startswith("/console/")):
        return "/console/"
    if any(c in target for c in "\\\r\n\t") or "://" in target:
        return "/console/"
    return target


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


@bp.get("/console/login")
def login() -> Response:
    st = state()
    verifier = secrets.token_urlsafe(64)[:96]  # RFC 7636: 43-128 unreserved characters
    oauth_state = secrets.token_urlsafe(24)
    attempt = {"state": oauth_state, "verifier": verifier, "next": safe_next(request.args.get("next"))}
    if st.oidc is not None:  # an external provider signs people in instead of our passwords
        attempt["nonce"] = secrets.token_urlsafe(24)
        try:
            target = st.oidc.authorization_url(
                st.issuer + CALLBACK_PATH, oauth_state, attempt["nonce"], s256(verifier)
            )
        except OidcError as exc:
            return st.error_page(503, str(exc))
    else:
        params = {
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": st.issuer + CALLBACK_PATH,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            "state": oauth_state,
        }
        target = AUTHORIZE_PATH + "?" + urlencode(params)
    token = st.attempts.new(attempt, ATTEMPT_TTL_S)
    resp = redirect(target, 302)
    resp.set_cookie(LOGIN_COOKIE, token, **cookie_options(ATTEMPT_TTL_S))
    return resp


def _signin_form(st: ConsoleState, status: int, error: str | None = None, username: str = "") -> Response:
    csrf = secrets.token_urlsafe(32)
    token = st.authz_forms.new({"csrf": csrf}, ATTEMPT_TTL_S)
    html = render_template(
        "console_signin.html", csrf=csrf, error=error, username=username, action=request.full_path
    )
    resp = st.page(html, status)
    resp.set_cookie(AUTHZ_COOKIE, token, **cookie_options(ATTEMPT_TTL_S))
    return resp


@bp.route(AUTHORIZE_PATH, methods=["GET", "POST"])
def authorize() -> Response:
    st = state()
    if st.oidc is not None:
        return st.error_page(404, "Passwords are off here: sign in through the organisation's provider.")
    try:
        grant = st.server.get_consent_grant(end_user=None)
    except OAuth2Error as exc:
        # never redirect an unchecked request anywhere: say what is wrong, here
        return st.error_page(400, f"This sign-in request is not valid: {exc.description or exc.error}")
    if request.method == "GET":
        return _signin_form(st, 200)
    form = st.authz_forms.take(request.cookies.get(AUTHZ_COOKIE))
    sent = request.form.get("csrf_token", "")
    if form is None or not secrets.compare_digest(str(form.get("csrf", "")).encode(), sent.encode()):
        st.audit.record(
            "csrf-refused", request.form.get("username", "")[:128], ok=False, detail="sign-in form"
        )
        return st.error_page(403, "The sign-in form has expired or was not sent from this site; reload it.")
    username = request.form.get("username", "").strip().lower()[:128]
    password = request.form.get("password", "")
    result, account = st.accounts.authenticate(username, password)
    address = request.remote_addr
    if result is SignIn.LOCKED:
        st.audit.record("signin-locked", username, ok=False, detail="account locked", address=address)
        minutes = max(1, st.settings.lockout_s // 60)
        message = f"Too many failed sign-ins: this account is locked for {minutes} minutes."
        return _signin_form(st, 423, message, username)
    if result is SignIn.REFUSED or account is None:
        st.audit.record(
            "signin-refused", username, ok=False, detail="wrong user name or password", address=address
        )
        return _signin_form(st, 401, "The user name or password is wrong.", username)
    st.audit.record("signin", account.username, account.role, detail="password", address=address)
    return st.server.create_authorization_response(grant_user=account, grant=grant)


@bp.post(TOKEN_PATH)
def token() -> Response:
    resp = state().server.create_token_response()
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get(CALLBACK_PATH)
def callback() -> Response:
    st = state()
    attempt = st.attempts.take(request.cookies.get(LOGIN_COOKIE))
    if attempt is None:
        return redirect("/console/login", 302)  # expired or replayed: start again
    if not secrets.compare_digest(attempt["state"].encode(), request.args.get("state", "").encode()):
        return st.error_page(
            400, "The sign-in answer does not belong to this browser's sign-in; start again."
        )
    if request.args.get("error"):
        return st.error_page(400, f"Sign-in refused: {request.args.get('error')}")
    if "nonce" in attempt:
        return _external_callback(st, attempt)
    form = {
        "grant_type": "authorization_code",
        "code": request.args.get("code", ""),
        "redirect_uri": st.issuer + CALLBACK_PATH,
        "client_id": CLIENT_ID,
        "code_verifier": attempt["verifier"],
    }
    # the code exchange, through the token endpoint as any OAuth client would make it
    with current_app.test_client() as client:
        answer = client.post(TOKEN_PATH, data=form)
    body = answer.get_json(silent=True) or {}
    person = st.server.person_of(body.get("access_token", "")) if answer.status_code == 200 else None
    account = st.accounts.get(person[0]) if person else None
    if account is None or not account.enabled:
        return st.error_page(400, "The sign-in could not be completed; start again.")
    return _start(st, account, attempt["next"])


def _start(st: ConsoleState, account: Account, target: str) -> Response:
    sid, _ = st.sessions.start(account.username, account.role)  # a new id: no session fixation
    resp = redirect(target, 302)
    resp.set_cookie(SESSION_COOKIE, sid, **cookie_options(None))  # a browser-session cookie
    resp.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
    return resp


def _external_callback(st: ConsoleState, attempt: dict) -> Response:
    """The external provider's answer: its ID token names the person; our account admits them."""
    assert st.oidc is not None
    address = request.remote_addr
    try:
        name = st.oidc.username(
            request.args.get("code", ""), st.issuer + CALLBACK_PATH, attempt["verifier"], attempt["nonce"]
        )
    except OidcError as exc:
        st.audit.record("signin-refused", "(unknown)", ok=False, detail=f"oidc: {exc}", address=address)
        return st.error_page(400, f"The sign-in could not be completed: {exc}")
    account = st.accounts.get(name)
    if account is None or not account.enabled:
        st.audit.record(
            "signin-refused", name[:128], ok=False, detail="oidc: no enabled account", address=address
        )
        return st.error_page(
            403, f"{name} has no console account here, or it is disabled: ask an administrator."
        )
    st.audit.record(
        "signin", account.username, account.role, detail=f"oidc {st.oidc.settings.issuer}", address=address
    )
    return _start(st, account, attempt["next"])


@bp.post("/console/signout")
def signout() -> Response:
    st = state()
    sid = request.cookies.get(SESSION_COOKIE)
    session = st.sessions.resume(sid)
    if session is not None:
        if not session.csrf_ok(request.form.get("csrf_token")):
            st.audit.record("csrf-refused", session.username, session.role, ok=False, detail="sign-out")
            return st.error_page(403, "The form's security token is missing or wrong; reload the page.")
        st.sessions.end(sid)
        st.audit.record("signout", session.username, session.role, address=request.remote_addr)
    resp = st.page(render_template("console_signedout.html"), 200)
    resp.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
    return resp
