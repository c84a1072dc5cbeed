"""Signing in through an external OpenID Connect provider instead of local passwords (NHS CIS2,
or any standard provider), by configuration: FHIRPLUG_CONSOLE_OIDC_ISSUER and its client id and
secret. Authorization code with PKCE S256 and a nonce; the ID token is checked with joserfc (the
provider's keys from its ``jwks_uri``, an asymmetric algorithm, ``iss``, ``aud``, ``exp``,
``nonce``). The provider says who the person is; the console's own account of that name (one
claim, ``FHIRPLUG_CONSOLE_OIDC_USER_CLAIM``) says whether they may come in and with which role,
so ``fhirplug users disable`` works the same for both kinds of sign-in."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]  # asymmetric only, never none
TIMEOUT_S = 10


class OidcError(Exception):
    """The provider's answer cannot sign anyone in; the message is safe to show."""


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str
    user_claim: str = "sub"
    scope: str = "openid profile email"


class OidcProvider:
    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._meta: dict | None = None
        self._keys: tuple[float, KeySet] | None = None
        self._lock = threading.Lock()

    def metadata(self) -> dict:
        """The provider's discovery document, fetched once; its issuer must be the configured one."""
        with self._lock:
            if self._meta is None:
                url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
                meta = _get_json(url)
                if str(meta.get("issuer", "")).rstrip("/") != self.settings.issuer.rstrip("/"):
                    raise OidcError("The provider's discovery document names another issuer")
                self._meta = meta
            return self._meta

    def authorization_url(self, redirect_uri: str, state: str, nonce: str, challenge: str) -> str:
        from urllib.parse import urlencode

        params = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.settings.scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        endpoint = self.metadata()["authorization_endpoint"]
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    def username(self, code: str, redirect_uri: str, verifier: str, nonce: str) -> str:
        """The code exchanged, the ID token checked; the person's name (the configured claim)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        try:
            r = requests.post(
                self.metadata()["token_endpoint"],
                data=form,
                auth=(self.settings.client_id, self.settings.client_secret),  # client_secret_basic
                timeout=TIMEOUT_S,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise OidcError("The sign-in provider did not answer") from exc
        if r.status_code != 200:
            raise OidcError(f"The sign-in provider refused the code ({r.status_code})")
        id_token = (r.json() or {}).get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("The sign-in provider sent no ID token")
        claims = self._checked(id_token, nonce)
        name = claims.get(self.settings.user_claim)
        if not isinstance(name, str) or not name:
            raise OidcError(f"The ID token has no {self.settings.user_claim}")
        return name.strip().lower()

    def _checked(self, id_token: str, nonce: str) -> dict:
        try:
            token = jwt.decode(id_token, self._key_set(), algorithms=ALGORITHMS)
        except (JoseError, ValueError) as exc:
            # a key rotated since we fetched: fetch once more, then give up
            self._keys = None
            try:
                token = jwt.decode(id_token, self._key_set(), algorithms=ALGORITHMS)
            except (JoseError, ValueError):
                raise OidcError("The ID token's signature does not verify") from exc
        registry = jwt.JWTClaimsRegistry(
            leeway=30,
            iss={"essential": True, "values": [self.settings.issuer.rstrip("/"), self.settings.issuer]},
            aud={"essential": True, "value": self.settings.client_id},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(token.claims)
        except JoseError as exc:
            raise OidcError(f"The ID token is not valid here ({exc.error})") from exc
        return token.claims

    def _key_set(self) -> KeySet:
        if self._keys is None or time.monotonic() - self._keys[0] > 3600:
            doc = _get_json(self.metadata()["jwks_uri"])
            self._keys = (time.monotonic(), KeySet.import_key_set(doc))  # type: ignore[arg-type]
        return self._keys[1]


def _get_json(url: str) -> dict:
    try:
        r = requests.get(url, timeout=TIMEOUT_S, allow_redirects=False)
        r.raise_for_status()
        doc = r.json()
    except (requests.RequestException, ValueError) as exc:
        raise OidcError("The sign-in provider did not answer") from exc
    if not isinstance(doc, dict):
        raise OidcError("The sign-in provider's answer is not a JSON object")
    return doc
