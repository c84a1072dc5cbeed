"""RFC 7523 client authentication: is this signed JWT really from the client it names?

Built on authlib's ``JWTBearerClientAssertion`` (the server side of private_key_jwt), which
reads the assertion, looks the client up, verifies the signature against the client's keys and
checks iss/sub/aud/exp/jti. The NHS profile is stricter than RFC 7523, so this subclass adds:
an algorithm allow-list (RS512, RS384, ES384), ``kid`` and ``typ`` required in the header,
``exp`` at most five minutes ahead, ``iat``/``nbf`` not in the future, a size limit, and the
replay cache. Every failure becomes an ``OAuthError`` with an RFC 6749 code; nothing raises
past this module.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jws, jwt
from joserfc.errors import ExceededSizeError, JoseError

from proxy.auth.errors import OAuthError, invalid_client, invalid_request
from proxy.auth.registry import ClientRecord, ClientRegistry
from proxy.auth.replay import ReplayCache

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS512", "RS384", "ES384")  # the NHS default first; nothing symmetric, never none
MAX_ASSERTION_BYTES = 8 * 1024
MAX_LIFETIME_S = 300  # exp no more than five minutes ahead
LEEWAY_S = 10  # clock skew allowed either side
_KID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_JTI_MAX = 256


@dataclass
class _FormRequest:
    """The little of a request authlib's assertion class reads (and writes: ``client``)."""

    form: dict
    client: ClientRecord | None = None


class _Assertion(JWTBearerClientAssertion):
    """authlib's RFC 7523 flow with the NHS rules; one instance per token request."""

    def __init__(self, token_url: str, registry: ClientRegistry, replay: ReplayCache, kid: str):
        super().__init__(validate_jti=True, leeway=LEEWAY_S)
        self._audience = token_url
        self._registry = registry
        self._replay = replay
        self._kid = kid

    def get_audiences(self):
        return [self._audience]

    def resolve_client_public_key(self, client: ClientRecord):
        keys = self._registry.key_set(client, self._kid)
        if keys is None:
            raise InvalidClientError(description=f"No registered key of this client has kid {self._kid!r}")
        return keys

    def process_assertion_claims(self, assertion, resolve_key):
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ALGORITHMS))
        except JoseError as exc:
            raise InvalidClientError(
                description=f"The assertion's signature does not verify ({exc.error})"
            ) from exc
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims):
        now = time.time()
        for name in ("exp", "iat", "nbf"):
            if name in claims and not _is_number(claims[name]):
                raise InvalidClientError(description=f"Claim {name!r} must be a number of seconds")
        jti = claims.get("jti")
        if jti is not None and (not isinstance(jti, str) or not 0 < len(jti) <= _JTI_MAX):
            raise InvalidClientError(description=f"Claim 'jti' must be 1 to {_JTI_MAX} characters")
        if not isinstance(claims.get("iss"), str):
            raise InvalidClientError(description="Claim 'iss' must be the client_id")
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) != 1:
            raise InvalidClientError(description="Claim 'aud' must name only this token endpoint")
        if "exp" in claims and claims["exp"] > now + MAX_LIFETIME_S + LEEWAY_S:
            raise InvalidClientError(description="Claim 'exp' is more than 5 minutes in the future")
        for name in ("iat", "nbf"):
            if name in claims and claims[name] > now + LEEWAY_S:
                raise InvalidClientError(description=f"Claim {name!r} is in the future")
        # iss/sub/aud/exp essential, sub == iss, jti present and unused: authlib's checks
        super().verify_claims(claims)

    def validate_jti(self, claims, jti):
        # Remember the jti until the assertion could no longer be valid anyway.
        ttl = int(claims["exp"] - time.time()) + LEEWAY_S + 1
        return self._replay.first_use(claims["sub"], jti, ttl)

    def authenticate_client(self, client: ClientRecord):
        if not client.enabled:
            raise InvalidClientError(description="This client is disabled")
        return client


def authenticate(form: dict, token_url: str, registry: ClientRegistry, replay: ReplayCache) -> ClientRecord:
    """The client a token request's ``client_assertion`` proves, or an OAuthError."""
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise invalid_request(f"client_assertion_type must be {ASSERTION_TYPE}")
    assertion = form.get("client_assertion")
    if not assertion:
        raise invalid_request("client_assertion is missing")
    if len(assertion) > MAX_ASSERTION_BYTES:
        raise invalid_request(f"client_assertion is larger than {MAX_ASSERTION_BYTES} bytes")
    header = _header(assertion)
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        # "none", "NONE", HS256 and anything else end here, before any key is looked at
        raise invalid_client(f"alg {alg!r} is not accepted; use one of {', '.join(ALGORITHMS)}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID.match(kid):
        raise invalid_client("The assertion header needs a kid naming one of the client's registered keys")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.upper() != "JWT":
        raise invalid_client("The assertion header's typ must be JWT")
    checker = _Assertion(token_url, registry, replay, kid)
    try:
        client = checker(registry.get, _FormRequest(form))
    except InvalidClientError as exc:
        raise invalid_client(exc.description or "The client assertion is not valid") from exc
    except OAuthError:
        raise
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise invalid_client(f"The client assertion is not valid: {exc}") from exc
    if client is None:
        raise invalid_client("The client assertion is not valid")
    if form.get("client_id") is not None and form["client_id"] != client.client_id:
        # RFC 7521 §4.2: a client_id sent beside the assertion must name the client it proves
        raise invalid_client("client_id does not name the client the assertion is from")
    return client


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _header(assertion: str) -> dict:
    try:
        header = jws.extract_compact(assertion.encode("ascii")).headers()
    except ExceededSizeError as exc:
        # e.g. a "jwk" header carrying a key: well formed, but nothing we would ever read
        raise invalid_client(f"The client assertion is refused: {exc.description}") from exc
    except (JoseError, ValueError, UnicodeError) as exc:
        raise invalid_request("client_assertion is not a compact JWS (three base64url parts)") from exc
    if not isinstance(header, dict):
        raise invalid_request("client_assertion's header is not a JSON object")
    return header
