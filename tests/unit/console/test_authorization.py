"""The people's authorization server through the proxy app (fake store, in-memory Redis): PKCE
with S256 only, exact redirect URI, one use per code, the verifier checked."""

from __future__ import annotations

import re
import tempfile
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from console.accounts import AccountStore
from console.authorization import AUTHORIZE_PATH, CALLBACK_PATH, CLIENT_ID, TOKEN_PATH
from console.signin import AUTHZ_COOKIE, LOGIN_COOKIE, s256, safe_next
from proxy.app import create_app
from proxy.config import Settings
from tests.support.fake_store import FakeStore

ISSUER = "http://127.0.0.1:9"
PASSWORD = "a long enough password"
VERIFIER = "v" * 64


@pytest.fixture
def app(redis):
    settings = Settings(
        plugins=["request_id"], auth=True, public_base_url=ISSUER + "/fhir", keys_dir=tempfile.mkdtemp()
    )
    app = create_app(settings, store=FakeStore(), redis=redis)
    AccountStore(redis).add("alice", "validator", PASSWORD)
    return app


def authorize_query(**over) -> str:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": ISSUER + CALLBACK_PATH,
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
        "state": "st4te",
        **over,
    }
    return AUTHORIZE_PATH + "?" + urlencode({k: v for k, v in params.items() if v is not None})


def sign_in(app, query: str, password: str = PASSWORD):
    client = app.test_client()
    page = client.get(query)
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    cookie = client.get_cookie(AUTHZ_COOKIE, domain="localhost")
    assert cookie is not None
    headers = {"Cookie": f"{AUTHZ_COOKIE}={cookie.value}"}
    return client.post(
        query, data={"username": "alice", "password": password, "csrf_token": csrf}, headers=headers
    )


def code_of(response) -> str:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["Location"])
    assert location.path == CALLBACK_PATH
    params = parse_qs(location.query)
    assert params["state"] == ["st4te"]
    return params["code"][0]


def exchange(app, code: str, verifier: str = VERIFIER):
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": ISSUER + CALLBACK_PATH,
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
    }
    return app.test_client().post(TOKEN_PATH, data=form)


def test_the_code_and_its_verifier_give_a_token_for_the_person(app):
    code = code_of(sign_in(app, authorize_query()))
    answer = exchange(app, code)
    assert answer.status_code == 200, answer.text
    server = app.extensions["fhirplug.console"].server
    assert server.person_of(answer.json["access_token"]) == ("alice", "validator")


def test_a_wrong_verifier_gets_no_token(app):
    code = code_of(sign_in(app, authorize_query()))
    answer = exchange(app, code, "w" * 64)
    assert answer.status_code == 400 and answer.json["error"] == "invalid_grant"


def test_a_code_serves_once(app):
    code = code_of(sign_in(app, authorize_query()))
    assert exchange(app, code).status_code == 200
    again = exchange(app, code)
    assert again.status_code == 400 and again.json["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "over",
    [
        {"code_challenge": None, "code_challenge_method": None},  # no PKCE
        {"code_challenge_method": "plain", "code_challenge": VERIFIER},  # plain PKCE
        {"redirect_uri": "https://evil.example/callback"},  # a redirect elsewhere
        {"client_id": "someone-else"},
        {"response_type": "token"},
    ],
)
def test_a_bad_authorization_request_is_refused_here_without_a_redirect(app, over):
    answer = app.test_client().get(authorize_query(**over))
    assert answer.status_code == 400 and "Location" not in answer.headers


def test_the_sign_in_form_without_its_csrf_token_is_refused(app):
    client = app.test_client()
    client.get(authorize_query())
    answer = client.post(authorize_query(), data={"username": "alice", "password": PASSWORD})
    assert answer.status_code == 403 and "Location" not in answer.headers


def test_a_wrong_password_gives_no_code(app):
    answer = sign_in(app, authorize_query(), "not the password")
    assert answer.status_code == 401 and "Location" not in answer.headers


def test_console_pages_carry_a_strict_content_security_policy(app):
    answer = app.test_client().get(authorize_query())
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "target,expected",
    [
        ("/console/validate", "/console/validate"),
        ("https://evil.example/", "/console/"),
        ("//evil.example/console", "/console/"),
        ("/\\evil.example", "/console/"),
        ("/fhir/Patient", "/console/"),
        ("/console.evil.example", "/console/"),
        ("/console/\r\nSet-Cookie: x", "/console/"),
        (None, "/console/"),
    ],
)
def test_after_sign_in_only_console_paths_are_followed(target, expected):
    assert safe_next(target) == expected


def test_a_disabled_account_gets_no_token_for_its_code(app, redis):
    code = code_of(sign_in(app, authorize_query()))
    AccountStore(redis).set_enabled("alice", False)
    assert exchange(app, code).json["error"] == "invalid_grant"


def test_a_foreign_or_non_ascii_state_is_refused_not_a_crash(app):
    client = app.test_client()
    client.get("/console/login")
    login = client.get_cookie(LOGIN_COOKIE, domain="localhost").value
    answer = client.get(CALLBACK_PATH + "?code=x&state=%C3%A9", headers={"Cookie": f"{LOGIN_COOKIE}={login}"})
    assert answer.status_code == 400 and "does not belong" in answer.text
