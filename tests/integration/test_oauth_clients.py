"""Real-world OAuth and FHIR client libraries against the real proxy: authlib (token requests
with private_key_jwt), fhirclient (SMART on FHIR) and fhirpy, plus SMART discovery.

None of these tests gets its token through the product's own outbound client: each library
signs its own client assertion, or the token comes from a few lines of joserfc + requests, so
a bug shared by our server and our client cannot hide itself.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid

import pytest
import requests
from authlib.integrations.base_client import OAuthError as AuthlibOAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from fhirclient import client as fhirclient_client
from fhirclient.models.humanname import HumanName
from fhirclient.models.patient import Patient as FCPatient
from fhirclient.server import FHIRPermissionDeniedException, FHIRUnauthorizedException
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, ForbiddenError
from joserfc import jwt
from joserfc.errors import UnsupportedKeyAlgorithmError
from joserfc.jwk import ECKey, import_key

from tests.support import oauth

pytestmark = pytest.mark.integration
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def uid() -> str:
    return uuid.uuid4().hex[:16]


def token_url(stack) -> str:
    return stack.proxy + "/oauth2/token"


def b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def jwt_header(token: str) -> dict:
    return b64json(token.split(".")[0])


def jwt_claims(token: str) -> dict:
    return b64json(token.split(".")[1])


def signed_assertion(stack, client, lifetime: int = 240) -> str:
    """A client assertion made with plain joserfc (not the product's outbound client)."""
    now = int(time.time())
    header = {"alg": client.private_jwk["alg"], "kid": client.kid, "typ": "JWT"}
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": token_url(stack),
        "jti": secrets.token_urlsafe(24),
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(header, claims, import_key(client.private_jwk), algorithms=[header["alg"]])


def raw_token_response(stack, client, scope: str | None = None) -> requests.Response:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed_assertion(stack, client),
    }
    if scope:
        form["scope"] = scope
    return requests.post(token_url(stack), data=form, timeout=10)


def access_token(stack, client, scope: str | None = None) -> str:
    r = raw_token_response(stack, client, scope)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


# --------------------------------------------------------------------------- authlib
#
# What authlib (1.9) needs to talk to this token endpoint with private_key_jwt:
#
#   * alg="RS512" (or RS384/ES384): PrivateKeyJWT signs RS256 by default, which we refuse
#     (and with a JWK that names its alg, as `fhirplug keys generate` writes it, joserfc
#     refuses to sign RS256 with it: UnsupportedKeyAlgorithmError before anything is sent).
#   * headers={"kid": <the registered key's kid>}: authlib/joserfc put no kid in the header
#     (joserfc adds typ "JWT" by itself, so typ needs nothing).
#   * claims={"exp": now + 240} (anything up to 300 s): authlib's default exp is iat + 3600,
#     and we refuse an exp more than 5 minutes ahead.
#   * a fresh PrivateKeyJWT for every token request: authlib writes the jti it generates into
#     the claims dict it was given and reuses it next time, so a second request from the same
#     instance replays its jti (refused), and its fixed exp goes stale anyway. Alternatively a
#     three-line subclass whose sign() sets self.claims afresh (FreshPrivateKeyJWT below). For
#     authlib to re-fetch an expired token by itself, give the session that subclass as
#     token_endpoint_auth_method plus token_endpoint=... and grant_type="client_credentials" in
#     the constructor (fetch_token(grant_type=...) alone does not make it re-fetch: it then
#     raises InvalidTokenError once the token is within 60 s of expiry).
#   * the private key as a joserfc key or a JWK dict: PrivateKeyJWT imports a plain dict as
#     an RSA key, so an EC (ES384) key must be passed as ECKey.import_key(jwk).
#   * session.fetch_token(token_url, grant_type="client_credentials"); the session then
#     sends "Authorization: Bearer ..." on its own requests.


def fresh_private_key_jwt(stack, client) -> PrivateKeyJWT:
    """One per token request: exp 4 minutes ahead, a new jti, the kid, the NHS algorithm."""
    return PrivateKeyJWT(
        token_url(stack),
        claims={"exp": int(time.time()) + 240, "jti": secrets.token_urlsafe(24)},
        headers={"kid": client.kid},
        alg=client.private_jwk["alg"],
    )


class FreshPrivateKeyJWT(PrivateKeyJWT):
    """Signs a new exp and jti each time, so one instance serves any number of token requests."""

    def sign(self, auth, token_endpoint):
        self.claims = {"exp": int(time.time()) + 240}  # authlib adds a new jti to this dict
        return super().sign(auth, token_endpoint)


def authlib_session(client, key=None) -> OAuth2Session:
    s = OAuth2Session(
        client.client_id, key or client.private_jwk, token_endpoint_auth_method="private_key_jwt"
    )
    s.headers["Accept"] = "application/fhir+json"
    return s


def authlib_fetch(stack, session, client, auth=None) -> dict:
    session.register_client_auth_method(auth or fresh_private_key_jwt(stack, client))
    return session.fetch_token(token_url(stack), grant_type="client_credentials")


def test_authlib_private_key_jwt_reads_and_writes_through_the_proxy(stack):
    client = stack.client("authlib-admin", "admin")
    session = authlib_session(client)
    tok = authlib_fetch(stack, session, client)
    assert tok["token_type"] == "Bearer" and tok["access_token"]
    assert tok["scope"] == "system/*.cruds"

    family = f"Authlib{uid()}"
    created = session.post(
        f"{stack.fhir}/Patient",
        json={"resourceType": "Patient", "name": [{"family": family}]},
        headers={"Content-Type": "application/fhir+json"},
    )
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    assert created.headers["Location"].startswith(f"{stack.fhir}/Patient/{pid}")

    read = session.get(f"{stack.fhir}/Patient/{pid}")
    assert read.status_code == 200 and read.json()["name"][0]["family"] == family
    found = session.get(f"{stack.fhir}/Patient", params={"family": family})
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [pid]

    # a second token request needs a second PrivateKeyJWT (new jti); it is granted
    second = authlib_fetch(stack, session, client)
    assert second["access_token"] != tok["access_token"]
    assert session.get(f"{stack.fhir}/Patient/{pid}").status_code == 200


def test_authlib_reusing_one_private_key_jwt_replays_its_jti(stack):
    client = stack.client("authlib-admin", "admin")
    session = authlib_session(client)
    # claims without jti: authlib generates one and stores it in this very dict
    reused = PrivateKeyJWT(
        token_url(stack), claims={"exp": int(time.time()) + 240}, headers={"kid": client.kid}, alg="RS512"
    )
    authlib_fetch(stack, session, client, reused)
    with pytest.raises(AuthlibOAuthError) as exc:
        authlib_fetch(stack, session, client, reused)
    assert exc.value.error == "invalid_client"
    assert "JWT ID is used before" in exc.value.description, exc.value.description
    # the same request with a fresh PrivateKeyJWT is granted: only the replay was refused
    assert authlib_fetch(stack, session, client)["access_token"]


def test_authlib_automatic_refetch_works_with_a_fresh_signing_method(stack):
    client = stack.client("authlib-admin", "admin")
    session = OAuth2Session(
        client.client_id,
        client.private_jwk,
        token_endpoint=token_url(stack),
        grant_type="client_credentials",  # without it authlib does not re-fetch an expired token
        token_endpoint_auth_method=FreshPrivateKeyJWT(
            token_url(stack), headers={"kid": client.kid}, alg="RS512"
        ),
    )
    first = session.fetch_token()
    r = session.get(f"{stack.fhir}/Patient", params={"_count": 1})
    assert r.status_code == 200, r.text
    # pretend the token expired: authlib fetches a new one before the next request
    session.token["expires_at"] = int(time.time()) - 1
    r = session.get(f"{stack.fhir}/Patient", params={"_count": 1})
    assert r.status_code == 200, r.text
    assert session.token["access_token"] != first["access_token"]


@pytest.mark.parametrize(
    ("what", "kwargs", "reason"),
    [
        ("no kid", {"headers": None}, "kid"),
        ("authlib's default exp (1 hour)", {"claims": None}, "5 minutes"),
    ],
)
def test_authlib_defaults_are_refused(stack, what, kwargs, reason):
    client = stack.client("authlib-admin", "admin")
    args = {
        "claims": {"exp": int(time.time()) + 240},
        "headers": {"kid": client.kid},
        "alg": "RS512",
        **kwargs,
    }
    session = authlib_session(client)
    with pytest.raises(AuthlibOAuthError) as exc:
        authlib_fetch(stack, session, client, PrivateKeyJWT(token_url(stack), **args))
    assert exc.value.error == "invalid_client", what
    assert reason in exc.value.description, exc.value.description


def test_authlib_default_rs256_is_refused(stack):
    client = stack.client("authlib-admin", "admin")
    good = {"claims": {"exp": int(time.time()) + 240}, "headers": {"kid": client.kid}}
    # A JWK that names its alg (as `fhirplug keys generate` writes it) stops RS256 before sending
    with pytest.raises(UnsupportedKeyAlgorithmError):
        authlib_fetch(stack, authlib_session(client), client, PrivateKeyJWT(token_url(stack), **good))
    # without alg in the JWK authlib signs RS256, and the server refuses it
    bare = {k: v for k, v in client.private_jwk.items() if k != "alg"}
    with pytest.raises(AuthlibOAuthError) as exc:
        authlib_fetch(stack, authlib_session(client, bare), client, PrivateKeyJWT(token_url(stack), **good))
    assert exc.value.error == "invalid_client"
    assert "RS256" in exc.value.description and "RS512" in exc.value.description


def test_authlib_with_an_es384_key(stack, tmp_path):
    client = oauth.make_client(stack.redis_url, tmp_path, f"authlib-es-{uid()}", "reader", alg="ES384")
    # a plain dict would be imported as an RSA key by PrivateKeyJWT: give it the EC key
    session = authlib_session(client, key=ECKey.import_key(client.private_jwk))
    tok = authlib_fetch(stack, session, client)
    assert tok["scope"] == "system/*.rs"
    assert jwt_header(tok["access_token"])["typ"] == "at+jwt"
    r = session.get(f"{stack.fhir}/Patient", params={"_count": 1})
    assert r.status_code == 200, r.text
    # a reader may not write
    w = session.post(
        f"{stack.fhir}/Patient",
        json={"resourceType": "Patient"},
        headers={"Content-Type": "application/fhir+json"},
    )
    assert w.status_code == 403


# --------------------------------------------------------------------------- fhirclient
#
# fhirclient (4.x) needs nothing patched. Two supported ways:
#   * its own backend-services flow: settings "jwt_token" = a signed client assertion and
#     "scope" = system scopes, and smart.wants_patient = False (else it adds launch/patient to
#     the scope, which this server refuses). smart.prepare() reads /metadata (public), finds the
#     token URL in the oauth-uris extension; smart.authorize() posts the client_credentials
#     request. The assertion is single-use: set smart.server.auth.jwt_token to a fresh one
#     before calling authorize() again (there is no refresh token in client_credentials).
#   * a token got elsewhere: smart.server.session is a plain requests.Session, so
#     smart.server.session.headers["Authorization"] = "Bearer ..." goes on every request.


def test_fhirclient_backend_services_flow_discovers_the_token_url(stack):
    client = stack.client("fhirclient-admin", "admin")
    smart = fhirclient_client.FHIRClient(
        settings={
            "app_id": client.client_id,
            "api_base": stack.fhir,
            "scope": "system/Patient.cruds",
            "jwt_token": signed_assertion(stack, client),
        }
    )
    smart.wants_patient = False
    assert smart.prepare() is False  # capability statement read; no token yet
    assert smart.server.auth.state["token_uri"] == token_url(stack)
    smart.authorize()
    assert smart.ready
    assert jwt_claims(smart.server.auth.access_token)["scope"] == "system/Patient.cruds"

    family = f"Smart{uid()}"
    patient = FCPatient({"resourceType": "Patient"})
    patient.name = [HumanName({"family": family, "given": ["Ada"]})]
    created = patient.create(smart.server)
    assert created["resourceType"] == "Patient" and created["id"]

    read = FCPatient.read(created["id"], smart.server)
    assert read.name[0].family == family and read.name[0].given == ["Ada"]
    found = list(FCPatient.where(struct={"family": family}).perform_resources_iter(smart.server))
    assert [p.id for p in found] == [created["id"]]

    # the token carries only Patient scopes: another type is forbidden
    with pytest.raises(FHIRPermissionDeniedException):
        smart.server.request_json("Task?_count=1")


def test_fhirclient_with_a_bearer_header_on_its_session(stack):
    client = stack.client("fhirclient-admin", "admin")
    smart = fhirclient_client.FHIRClient(settings={"app_id": "t", "api_base": stack.fhir})
    family = f"Hdr{uid()}"
    patient = FCPatient({"resourceType": "Patient", "name": [{"family": family}]})

    with pytest.raises(FHIRUnauthorizedException) as exc:
        patient.create(smart.server)
    assert exc.value.response.headers["WWW-Authenticate"].startswith("Bearer")

    smart.server.session.headers["Authorization"] = f"Bearer {access_token(stack, client)}"
    created = patient.create(smart.server)
    pid = created["id"]
    assert FCPatient.read(pid, smart.server).name[0].family == family
    found = list(FCPatient.where(struct={"family": family}).perform_resources_iter(smart.server))
    assert [p.id for p in found] == [pid]


# --------------------------------------------------------------------------- fhirpy
#
# fhirpy needs only SyncFHIRClient(base, authorization="Bearer <token>"); it sends JSON as
# application/json, which the proxy accepts. It raises AuthorizationError on 401 and
# ForbiddenError on 403 (the exceptions carry the body, not the status code).


def test_fhirpy_creates_reads_and_searches(stack):
    client = stack.client("fhirpy-admin", "admin")
    fhir = SyncFHIRClient(stack.fhir, authorization=f"Bearer {access_token(stack, client)}")
    family = f"Fhirpy{uid()}"
    patient = fhir.resource("Patient", name=[{"family": family, "given": ["Grace"]}])
    patient.save()
    assert patient.id

    fetched = fhir.reference("Patient", patient.id).to_resource()
    assert fetched["name"][0]["family"] == family and fetched["meta"]["versionId"] == "1"
    found = fhir.resources("Patient").search(family=family).fetch()
    assert [p.id for p in found] == [patient.id]

    fetched["gender"] = "female"
    fetched.save()
    assert fhir.reference("Patient", patient.id).to_resource()["meta"]["versionId"] == "2"


def test_fhirpy_without_a_token_gets_401(stack):
    with pytest.raises(AuthorizationError) as exc:
        SyncFHIRClient(stack.fhir).resources("Patient").search(_count=1).fetch()
    outcome = json.loads(str(exc.value))
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "login"

    bogus = SyncFHIRClient(stack.fhir, authorization="Bearer not-a-token")
    with pytest.raises(AuthorizationError):
        bogus.resources("Patient").search(_count=1).fetch()

    # the same request with a token is answered: the 401 above is the missing token's doing
    token = access_token(stack, stack.client("fhirpy-admin", "admin"))
    SyncFHIRClient(stack.fhir, authorization=f"Bearer {token}").resources("Patient").search(_count=1).fetch()


def test_fhirpy_outside_the_scopes_gets_403(stack):
    reader = stack.client("fhirpy-reader", "reader")
    fhir = SyncFHIRClient(stack.fhir, authorization=f"Bearer {access_token(stack, reader)}")
    assert isinstance(fhir.resources("Patient").search(_count=1).fetch(), list)
    with pytest.raises(ForbiddenError):
        fhir.resource("Patient", name=[{"family": "NoWrite"}]).save()


# --------------------------------------------------------------------------- discovery


def test_smart_configuration_is_public_and_names_the_token_endpoint(stack):
    r = requests.get(f"{stack.proxy}/.well-known/smart-configuration", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    conf = r.json()
    assert conf["token_endpoint"] == token_url(stack)
    assert "private_key_jwt" in conf["token_endpoint_auth_methods_supported"]
    assert "client_credentials" in conf["grant_types_supported"]
    assert conf["jwks_uri"] == stack.proxy + "/.well-known/jwks.json"
    assert set(conf["token_endpoint_auth_signing_alg_values_supported"]) == {"RS512", "RS384", "ES384"}


def test_jwks_publishes_public_keys_only(stack):
    r = requests.get(f"{stack.proxy}/.well-known/jwks.json", timeout=10)
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert keys
    for k in keys:
        assert k["kid"] and k["kty"] == "EC"
        assert "d" not in k, "a private key part is published"
        import_key(k)  # a usable public key


def test_metadata_is_public_and_advertises_the_token_endpoint(stack):
    r = requests.get(f"{stack.fhir}/metadata", headers={"Accept": "application/fhir+json"}, timeout=30)
    assert r.status_code == 200
    security = r.json()["rest"][0]["security"]
    uris = [e for e in security["extension"] if e["url"] == OAUTH_URIS]
    assert len(uris) == 1
    token = [e["valueUri"] for e in uris[0]["extension"] if e["url"] == "token"]
    assert token == [token_url(stack)]


def test_token_response_shape_and_access_token_header(stack):
    client = stack.client("shape-reader", "reader")
    r = raw_token_response(stack, client)
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    doc = r.json()
    assert set(doc) >= {"access_token", "token_type", "expires_in", "scope"}
    assert doc["token_type"] == "Bearer"
    assert isinstance(doc["expires_in"], int) and 0 < doc["expires_in"] <= 600
    assert doc["scope"] == "system/*.rs"

    header = jwt_header(doc["access_token"])
    assert header["typ"] == "at+jwt"
    published = {
        k["kid"] for k in requests.get(f"{stack.proxy}/.well-known/jwks.json", timeout=10).json()["keys"]
    }
    assert header["kid"] in published
    claims = jwt_claims(doc["access_token"])
    assert claims["client_id"] == client.client_id and claims["iss"] == stack.proxy
    assert claims["exp"] - claims["iat"] == doc["expires_in"]

    # the token verifies with the published key
    jwks = requests.get(f"{stack.proxy}/.well-known/jwks.json", timeout=10).json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert jwt.decode(doc["access_token"], import_key(key), algorithms=[header["alg"]]).claims["sub"] == (
        client.client_id
    )


def test_an_assertion_is_single_use(stack):
    client = stack.client("shape-reader", "reader")
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed_assertion(stack, client),
    }
    first = requests.post(token_url(stack), data=form, timeout=10)
    assert first.status_code == 200, first.text
    again = requests.post(token_url(stack), data=form, timeout=10)
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"
    assert "used before" in again.json()["error_description"]
