"""How people sign in: OAuth 2.0 authorization code with PKCE (RFC 7636, S256 only), served by
fhirplug's own authorization server with authlib's grant, for one public client, the console.

The endpoints (``/console/oauth2/authorize``, ``/console/oauth2/token``) sit beside the machine
clients' ``/oauth2/token`` rather than in it, so that endpoint's strict rules (client
credentials with a signed assertion, nothing else) stay as they are. The access token a person
gets is the same kind machine clients get (RFC 9068, signed with the server's keys, checked by
the same bearer check on /fhir), issued to the client ``fhirplug-console`` with ``sub`` the
person; its role and scopes follow the person's console role. Codes live 60 s in Redis and are
taken with GETDEL, so a code is redeemed once even by two requests at the same moment.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, InvalidRequestError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from joserfc import jwt
from redis import Redis

from console.accounts import Account, AccountStore
from proxy.auth.access_tokens import TOKEN_TYPE
from proxy.auth.registry import DEFAULT_SCOPES, ClientRecord, ClientRegistry
from proxy.auth.signing import ALG, ServerKeys

CLIENT_ID = "fhirplug-console"
AUTHORIZE_PATH = "/console/oauth2/authorize"
TOKEN_PATH = "/console/oauth2/token"
CALLBACK_PATH = "/console/callback"
CODE_TTL_S = 60  # RFC 6749 §4.1.2: short-lived; the browser follows the redirect at once
CODES = "fhirplug:console:code:"
# a console role acts on the FHIR API as this proxy role (README "Roles and tenants")
PROXY_ROLE = {"validator": "validator", "operator": "reader", "admin": "admin"}


class ConsoleClient(ClientMixin):
    """The console as an OAuth client: public (no secret; PKCE instead), one exact redirect URI."""

    def __init__(self, redirect_uri: str) -> None:
        self.client_id = CLIENT_ID
        self.redirect_uri = redirect_uri

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uri

    def get_allowed_scope(self, scope):
        return ""  # what a person may do follows from the role, not from a requested scope

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri == self.redirect_uri  # exact match: no open redirect through us

    def check_endpoint_auth_method(self, method, endpoint):
        return method == "none"

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class Code:
    client_id: str
    redirect_uri: str
    username: str
    code_challenge: str
    code_challenge_method: str
    auth_time: float = field(default_factory=time.time)

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return ""

    def get_auth_time(self):
        return self.auth_time

    def get_nonce(self):
        return None


class S256Only(CodeChallenge):
    """PKCE required, and only S256: ``plain`` shows the verifier to whoever sees the redirect."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge' (PKCE is required)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class _Grant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
    redis: Redis
    accounts: AccountStore

    def save_authorization_code(self, code, request):
        data = request.payload.data
        record = Code(
            request.client.client_id,
            request.payload.redirect_uri or request.client.redirect_uri,
            request.user.username,
            data["code_challenge"],
            data.get("code_challenge_method", "S256"),
        )
        self.redis.set(CODES + code, json.dumps(record.__dict__), ex=CODE_TTL_S)

    def query_authorization_code(self, code, client):
        raw = self.redis.getdel(CODES + code) if code and len(code) <= 128 else None
        if not raw:
            return None
        record = Code(**json.loads(raw))
        return record if record.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code):
        pass  # taken when it was read

    def authenticate_user(self, authorization_code):
        account = self.accounts.get(authorization_code.username)
        # disabled between sign-in and the exchange: no token
        return account if account is not None and account.enabled else None


class PeopleAuthorizationServer(AuthorizationServer):
    """authlib's Flask authorization server for the one console client."""

    def __init__(
        self,
        redis: Redis,
        accounts: AccountStore,
        keys: ServerKeys,
        registry: ClientRegistry,
        issuer: str,
        own_ods: str | None,
        lifetime_s: int,
    ) -> None:
        super().__init__()
        self.client = ConsoleClient(issuer + CALLBACK_PATH)
        self.keys = keys
        self.registry = registry
        self.issuer = issuer
        self.own_ods = own_ods or ""
        self.lifetime_s = lifetime_s
        grant = type("Grant", (_Grant,), {"redis": redis, "accounts": accounts})
        self.register_grant(grant, [S256Only(required=True)])

    def query_client(self, client_id):
        return self.client if client_id == CLIENT_ID else None

    def save_token(self, token, request):
        pass  # self-contained JWTs: nothing to keep

    def generate_token(
        self, grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True
    ):
        token = self.person_token(user)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime_s}

    def person_token(self, account: Account) -> str:
        """An access token acting for ``account`` on the FHIR API (also minted afresh for each
        console page's API call: the console is this same server)."""
        self._ensure_client_record()
        role = PROXY_ROLE[account.role]
        now = int(time.time())
        key = self.keys.signing_key
        claims = {
            "iss": self.issuer,
            "sub": f"person:{account.username}",
            "aud": self.issuer + "/fhir",
            "client_id": CLIENT_ID,
            "iat": now,
            "exp": now + self.lifetime_s,
            "jti": secrets.token_urlsafe(16),
            "scope": DEFAULT_SCOPES[role],
            "role": role,
            "ods": self.own_ods or None,
            "console_role": account.role,
        }
        return jwt.encode({"alg": ALG, "kid": key.kid, "typ": TOKEN_TYPE}, claims, key, algorithms=[ALG])

    def person_of(self, token: str) -> tuple[str, str] | None:
        """The (user name, console role) a token from our token endpoint names, checked."""
        try:
            decoded = jwt.decode(token, self.keys.verification_keys(), algorithms=[ALG])
        except Exception:
            return None
        c = decoded.claims
        sub = str(c.get("sub", ""))
        if c.get("iss") != self.issuer or c.get("client_id") != CLIENT_ID or not sub.startswith("person:"):
            return None
        if float(c.get("exp", 0)) < time.time():
            return None
        return sub.removeprefix("person:"), str(c.get("console_role", ""))

    def _ensure_client_record(self) -> None:
        """The bearer check admits a token only while its client is registered and enabled: the
        console is registered once, so `fhirplug clients disable fhirplug-console` stops every
        person's API calls at once. Its keys are the server's own ES256 public keys, which no
        client assertion may use (assertions are RS512/RS384/ES384 only), so the record gives
        nobody the client credentials grant."""
        if self.registry.get(CLIENT_ID) is not None:
            return
        record = ClientRecord(
            client_id=CLIENT_ID,
            ods=self.own_ods,
            role="reader",
            scopes=["system/*.rs"],
            jwks=self.keys.public_jwks(),  # type: ignore[arg-type]
        )
        self.registry.put(record)
