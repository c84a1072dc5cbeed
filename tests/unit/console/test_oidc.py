"""The ID token checks of the external sign-in, with a key of our own standing in for the
provider's (the whole flow runs against a real provider in tests/integration/test_console.py)."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from console.oidc import OidcError, OidcProvider, OidcSettings

ISSUER = "https://login.example.test"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})


class _Answer:
    def __init__(self, body: dict, status: int = 200) -> None:
        self.body, self.status_code = body, status

    def json(self):
        return self.body

    def raise_for_status(self):
        pass


@pytest.fixture
def provider(monkeypatch):
    meta = {
        "issuer": ISSUER,
        "authorization_endpoint": ISSUER + "/authorize",
        "token_endpoint": ISSUER + "/token",
        "jwks_uri": ISSUER + "/jwks",
    }
    answers = {
        ISSUER + "/.well-known/openid-configuration": meta,
        ISSUER + "/jwks": {"keys": [KEY.as_dict(private=False)]},
    }
    monkeypatch.setattr("console.oidc.requests.get", lambda url, **kw: _Answer(answers[url]))
    p = OidcProvider(OidcSettings(ISSUER, "console", "secret", "email"))
    p.sent_token = None

    def post(url, **kw):
        assert url == ISSUER + "/token" and kw["auth"] == ("console", "secret")
        return _Answer({"id_token": p.sent_token})

    monkeypatch.setattr("console.oidc.requests.post", post)
    return p


def token(key=KEY, alg="RS256", **over) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "console",
        "sub": "1",
        "email": "Dr.Who@Example.Test",
        "exp": now + 60,
        "iat": now,
        "nonce": "n1",
    }
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": "k1"}, claims, key, algorithms=[alg])


def test_a_good_id_token_names_the_person_by_the_configured_claim(provider):
    provider.sent_token = token()
    assert provider.username("code", "https://us/console/callback", "v" * 43, "n1") == "dr.who@example.test"


@pytest.mark.parametrize(
    "over",
    [
        {"nonce": "other"},
        {"nonce": None},
        {"aud": "someone-else"},
        {"iss": "https://evil.test"},
        {"exp": int(time.time()) - 600},
    ],
)
def test_an_id_token_not_for_this_sign_in_is_refused(provider, over):
    provider.sent_token = token(**over)
    with pytest.raises(OidcError):
        provider.username("code", "https://us/console/callback", "v" * 43, "n1")


def test_an_id_token_signed_with_a_shared_secret_is_refused(provider):
    provider.sent_token = token(key=OctKey.generate_key(256, parameters={"kid": "k1"}), alg="HS256")
    with pytest.raises(OidcError, match="signature"):
        provider.username("code", "https://us/console/callback", "v" * 43, "n1")


def test_a_discovery_document_naming_another_issuer_is_refused(monkeypatch):
    monkeypatch.setattr(
        "console.oidc.requests.get", lambda url, **kw: _Answer({"issuer": "https://evil.test"})
    )
    with pytest.raises(OidcError, match="another issuer"):
        OidcProvider(OidcSettings(ISSUER, "console", "secret")).metadata()
