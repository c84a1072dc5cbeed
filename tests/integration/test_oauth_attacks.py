"""What the token endpoint and the bearer check on /fhir refuse: forged, tampered, replayed and
misdirected client assertions and access tokens. Every refusal is checked for its status and its
error code, and that no token leaks out; each attack has a valid twin that passes, so a check
that stopped working would show."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey, import_key
from redis import Redis

from proxy.auth.registry import ClientRegistry
from proxy.store_caller import store_auth
from tests.support import oauth
from tests.support.http_stub import QuietHandler

pytestmark = pytest.mark.integration

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FORM = "application/x-www-form-urlencoded"
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
HASHES = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}


# ---------------------------------------------------------------- JOSE by hand


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def part(obj) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def sign_rsa(private_jwk: dict, header: dict, claims: dict, alg: str = "RS512") -> str:
    """A compact JWS signed with PKCS#1 v1.5, whatever the header and claims say."""
    key = import_key(private_jwk)
    signing_input = f"{part(header)}.{part(claims)}"
    sig = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(), HASHES[alg]())
    return f"{signing_input}.{b64(sig)}"


def sign_hmac(secret: bytes, header: dict, claims: dict) -> str:
    signing_input = f"{part(header)}.{part(claims)}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def unsigned(header: dict, claims: dict) -> str:
    return f"{part(header)}.{part(claims)}."


def with_payload(token: str, claims: dict) -> str:
    """The token with its payload replaced and its original signature kept."""
    h, _, s = token.split(".")
    return f"{h}.{part(claims)}.{s}"


def flip_signature(token: str) -> str:
    h, p, s = token.split(".")
    sig = bytearray(unb64(s))
    sig[len(sig) // 2] ^= 0x01
    return f"{h}.{p}.{b64(bytes(sig))}"


def payload_of(token: str) -> dict:
    return json.loads(unb64(token.split(".")[1]))


# ---------------------------------------------------------------- the token endpoint


def token_url(origin: str) -> str:
    return origin + "/oauth2/token"


def header_for(client, **over) -> dict:
    header = {"alg": "RS512", "typ": "JWT", "kid": client.kid}
    header.update(over)
    return {k: v for k, v in header.items() if v is not None}


def claims_for(stack, client, origin: str | None = None, **over) -> dict:
    now = int(time.time())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": token_url(origin or stack.proxy),
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 240,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def assertion_for(stack, client, header=None, **claims) -> str:
    return sign_rsa(client.private_jwk, header or header_for(client), claims_for(stack, client, **claims))


def form_for(assertion: str, **over) -> dict:
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
    form["client_assertion"] = assertion
    form.update(over)
    return {k: v for k, v in form.items() if v is not None}


def post_token(origin: str, assertion: str, **form) -> requests.Response:
    return requests.post(token_url(origin), data=form_for(assertion, **form), timeout=30)


def get_token(origin: str, stack, client, scope: str | None = None) -> str:
    r = post_token(origin, assertion_for(stack, client, origin=origin), scope=scope)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def assert_oauth_error(r: requests.Response, status: int, error: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert "no-store" in r.headers.get("Cache-Control", "")
    body = r.json()
    assert body["error"] == error, body
    assert isinstance(body.get("error_description"), str) and body["error_description"]
    assert "access_token" not in body
    assert "Traceback" not in r.text
    return body


def refused_client(r: requests.Response) -> dict:
    body = assert_oauth_error(r, 401, "invalid_client")
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    return body


# ---------------------------------------------------------------- the bearer check


def assert_outcome(r: requests.Response, status: int, code: str, expression=None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    assert oo["issue"][0]["severity"] == "error"
    assert oo["issue"][0]["code"] == code, oo
    assert "Traceback" not in r.text
    if expression is not None:
        assert oo["issue"][0].get("expression") == expression, oo
    return oo


def unauthorized(r: requests.Response) -> dict:
    oo = assert_outcome(r, 401, "login")
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    return oo


def forbidden_by_scope(r: requests.Response, expression=None) -> dict:
    oo = assert_outcome(r, 403, "forbidden", expression)
    assert "scopes do not allow" in oo["issue"][0]["diagnostics"], oo
    return oo


def get_patients(stack, authorization: str | None = None, **params) -> requests.Response:
    headers = {"Accept": "application/fhir+json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return requests.get(
        f"{stack.fhir}/Patient", params={"_count": "1", **params}, headers=headers, timeout=30
    )


def server_key(stack) -> ECKey:
    """The proxy's own newest signing key, private part included."""
    files = sorted((stack.cfg.var_dir / "keys").glob("*.jwk.json"), key=lambda p: (p.stat().st_mtime, p.name))
    assert files, "the proxy has written no signing key"
    return ECKey.import_key(json.loads(files[-1].read_text()))


def server_public_jwk(stack) -> dict:
    return server_key(stack).as_dict(private=False)


def mint_access_token(stack, client, header: dict | None = None, **over) -> str:
    """An access token signed with the server's own key, with whatever claims a test needs."""
    key = server_key(stack)
    now = int(time.time())
    claims = {
        "iss": stack.proxy,
        "sub": client.client_id,
        "aud": stack.proxy + "/fhir",
        "client_id": client.client_id,
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(16),
        "scope": "system/*.cruds",
        "role": "admin",
        "ods": "",
    }
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    header = header or {"alg": "ES256", "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=["ES256"])


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reader(stack):
    return stack.client("atk-reader", "reader")


@pytest.fixture(scope="module")
def other(stack):
    return stack.client("atk-other", "reader")


@pytest.fixture(scope="module")
def admin(stack):
    return stack.client("atk-admin", "admin")


@pytest.fixture(scope="module")
def admin_token(stack, admin):
    return get_token(stack.proxy, stack, admin)


@pytest.fixture(scope="module")
def patient_reader(stack):
    # an admin role, so the only thing holding this client back is its scope
    return stack.client("atk-patient-rs", "admin", scopes="system/Patient.rs")


@pytest.fixture(scope="module")
def registry(stack):
    return ClientRegistry(Redis.from_url(stack.redis_url))


@pytest.fixture
def attacker_key(reader):
    """A key pair nobody registered, carrying the victim's kid."""
    return RSAKey.generate_key(2048, parameters={"kid": reader.kid, "alg": "RS512"}, private=True)


class _Recorder(QuietHandler):
    def do_GET(self):  # http.server calls it by this name
        self.server.hits.append(self.path)
        self.reply(200, json.dumps(self.server.jwks).encode(), "application/json")


@pytest.fixture
def key_server(attacker_key):
    """An HTTP server offering the attacker's public key, counting every request it gets."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.hits = []
    server.jwks = {"keys": [attacker_key.as_dict(private=False)]}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


# ================================================================ valid baselines


def test_valid_assertion_signed_with_joserfc_gets_a_bearer_token(stack, reader):
    now = int(time.time())
    header = {"alg": "RS512", "typ": "JWT", "kid": reader.kid}
    claims = {
        "iss": reader.client_id,
        "sub": reader.client_id,
        "aud": stack.proxy + "/oauth2/token",
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 240,
    }
    assertion = jwt.encode(header, claims, import_key(reader.private_jwk), algorithms=["RS512"])
    r = post_token(stack.proxy, assertion)
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["Cache-Control"]
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["access_token"].count(".") == 2
    assert 0 < body["expires_in"] <= 600
    assert isinstance(body["scope"], str) and body["scope"] == "system/*.rs"


def test_hand_signed_assertion_is_accepted_so_the_attacks_below_differ_only_in_their_flaw(stack, reader):
    r = post_token(stack.proxy, assertion_for(stack, reader))
    assert r.status_code == 200, r.text
    assert r.json()["access_token"]


def test_a_narrower_scope_than_registered_is_granted(stack, reader):
    r = post_token(stack.proxy, assertion_for(stack, reader), scope="system/Patient.rs")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/Patient.rs"


# ================================================================ the request itself: 400 invalid_request


def test_json_body_is_invalid_request(stack, reader):
    r = requests.post(token_url(stack.proxy), json=form_for(assertion_for(stack, reader)), timeout=30)
    assert_oauth_error(r, 400, "invalid_request")


def test_multipart_body_is_invalid_request(stack, reader):
    fields = {k: (None, v) for k, v in form_for(assertion_for(stack, reader)).items()}
    r = requests.post(token_url(stack.proxy), files=fields, timeout=30)
    assert_oauth_error(r, 400, "invalid_request")


def test_parameters_in_the_query_string_are_invalid_request(stack, reader):
    form = form_for(assertion_for(stack, reader))
    r = requests.post(token_url(stack.proxy), params=form, headers={"Content-Type": FORM}, timeout=30)
    assert_oauth_error(r, 400, "invalid_request")


def test_a_valid_body_with_a_query_string_is_invalid_request(stack, reader):
    r = requests.post(
        token_url(stack.proxy),
        params={"scope": "system/*.rs"},
        data=form_for(assertion_for(stack, reader)),
        timeout=30,
    )
    assert_oauth_error(r, 400, "invalid_request")


@pytest.mark.parametrize("name", ["grant_type", "client_assertion", "scope"])
def test_a_repeated_parameter_is_invalid_request(stack, reader, name):
    form = list(form_for(assertion_for(stack, reader), scope="system/*.rs").items())
    form += [(k, v) for k, v in form if k == name]
    r = requests.post(token_url(stack.proxy), data=form, timeout=30)
    assert_oauth_error(r, 400, "invalid_request")


def test_missing_grant_type_is_invalid_request(stack, reader):
    assert_oauth_error(
        post_token(stack.proxy, assertion_for(stack, reader), grant_type=None), 400, "invalid_request"
    )


@pytest.mark.parametrize(
    "grant", ["password", "authorization_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"]
)
def test_other_grant_types_are_unsupported(stack, reader, grant):
    r = post_token(stack.proxy, assertion_for(stack, reader), grant_type=grant)
    assert_oauth_error(r, 400, "unsupported_grant_type")


@pytest.mark.parametrize(
    "assertion_type",
    [None, "", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer", "private_key_jwt"],
    ids=["missing", "empty", "saml2", "method-name"],
)
def test_missing_or_wrong_client_assertion_type_is_invalid_request(stack, reader, assertion_type):
    r = post_token(stack.proxy, assertion_for(stack, reader), client_assertion_type=assertion_type)
    assert_oauth_error(r, 400, "invalid_request")


@pytest.mark.parametrize("assertion", [None, ""], ids=["missing", "empty"])
def test_missing_client_assertion_is_invalid_request(stack, assertion):
    assert_oauth_error(post_token(stack.proxy, assertion), 400, "invalid_request")


def test_assertion_over_8_kb_is_invalid_request(stack, reader):
    assertion = assertion_for(stack, reader, padding="x" * 8192)
    assert len(assertion) > 8192
    assert_oauth_error(post_token(stack.proxy, assertion), 400, "invalid_request")


@pytest.mark.parametrize(
    "assertion",
    [
        "!!!.@@@.###",
        "not-a-jwt",
        "eyJhbGciOiJSUzUxMiJ9.e30",
        b64(b"not json") + "." + part({}) + ".c2ln",
        b64(b'{"alg": "RS512",') + "." + part({}) + ".c2ln",
        "a.b.c.d.e",
        "\u00e9t\u00e9.\u00e9t\u00e9.\u00e9t\u00e9",
    ],
    ids=[
        "bad-base64",
        "one-part",
        "two-parts",
        "header-not-json",
        "header-truncated",
        "jwe-shape",
        "non-ascii",
    ],
)
def test_assertion_that_is_not_a_compact_jws_is_invalid_request(stack, assertion):
    assert_oauth_error(post_token(stack.proxy, assertion), 400, "invalid_request")


# ================================================================ the header: 401 invalid_client


@pytest.mark.parametrize("alg", ["none", "NONE", "None", "nOnE"])
def test_unsigned_assertion_is_refused(stack, reader, alg):
    assertion = unsigned(header_for(reader, alg=alg), claims_for(stack, reader))
    refused_client(post_token(stack.proxy, assertion))


def test_unsigned_assertion_with_a_signature_part_is_refused(stack, reader):
    valid = assertion_for(stack, reader)
    _, p, s = valid.split(".")
    refused_client(post_token(stack.proxy, f"{part(header_for(reader, alg='none'))}.{p}.{s}"))


@pytest.mark.parametrize("secret_kind", ["pem", "jwk-json", "jwks-json", "modulus"])
def test_hs256_signed_with_the_clients_public_key_is_refused(stack, reader, secret_kind):
    public = reader.public_jwks["keys"][0]
    secrets_by_kind = {
        "pem": import_key(public).as_pem(private=False),
        "jwk-json": json.dumps(public).encode(),
        "jwks-json": json.dumps(reader.public_jwks).encode(),
        "modulus": unb64(public["n"]),
    }
    assertion = sign_hmac(
        secrets_by_kind[secret_kind], header_for(reader, alg="HS256"), claims_for(stack, reader)
    )
    refused_client(post_token(stack.proxy, assertion))


def test_rs256_is_refused_though_signed_by_the_client_key(stack, reader):
    assertion = sign_rsa(
        reader.private_jwk, header_for(reader, alg="RS256"), claims_for(stack, reader), "RS256"
    )
    refused_client(post_token(stack.proxy, assertion))


def test_rs384_with_a_key_registered_for_rs512_is_refused(stack, reader):
    assertion = sign_rsa(
        reader.private_jwk, header_for(reader, alg="RS384"), claims_for(stack, reader), "RS384"
    )
    refused_client(post_token(stack.proxy, assertion))


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_the_other_nhs_algorithms_are_accepted_with_a_key_registered_for_them(stack, alg):
    client = oauth.make_client(stack.redis_url, stack.keys_dir, f"atk-{alg.lower()}", "reader", alg=alg)
    header, claims = header_for(client, alg=alg), claims_for(stack, client)
    assertion = jwt.encode(header, claims, import_key(client.private_jwk), algorithms=[alg])
    r = post_token(stack.proxy, assertion)
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "Bearer"


@pytest.mark.parametrize(
    "kid",
    [None, "", "../../etc/passwd", "' OR 1=1 --", "k1\nX-Injected: 1", "a" * 200, 42],
    ids=["missing", "empty", "path-traversal", "sql", "newline", "too-long", "number"],
)
def test_missing_or_unsafe_kid_is_refused(stack, reader, kid):
    header = header_for(reader, kid=None)
    if kid is not None:
        header["kid"] = kid
    refused_client(post_token(stack.proxy, sign_rsa(reader.private_jwk, header, claims_for(stack, reader))))


@pytest.mark.parametrize(
    "typ", [None, "at+jwt", "JOSE", "JWS", ""], ids=["missing", "at+jwt", "JOSE", "JWS", "empty"]
)
def test_typ_other_than_jwt_is_refused(stack, reader, typ):
    header = header_for(reader, typ=None)
    if typ is not None:
        header["typ"] = typ
    refused_client(post_token(stack.proxy, sign_rsa(reader.private_jwk, header, claims_for(stack, reader))))


# ---------------------------------------------------------------- keys named in the header are never used


def test_embedded_jwk_header_with_the_victims_kid_is_refused(stack, reader, attacker_key):
    header = header_for(reader, jwk=attacker_key.as_dict(private=False))
    assertion = sign_rsa(attacker_key.as_dict(private=True), header, claims_for(stack, reader))
    refused_client(post_token(stack.proxy, assertion))


def test_embedded_small_ec_jwk_header_with_the_victims_kid_is_refused(stack, reader):
    # a P-384 key fits in a header of under 512 bytes, so this one reaches the signature check
    key = ECKey.generate_key("P-384", parameters={"kid": reader.kid}, private=True)
    header = header_for(reader, alg="ES384", jwk=key.as_dict(private=False))
    assertion = jwt.encode(header, claims_for(stack, reader), key, algorithms=["ES384"])
    assert len(assertion.split(".")[0]) < 512
    refused_client(post_token(stack.proxy, assertion))


@pytest.mark.parametrize("param", ["jku", "x5u"])
def test_key_url_in_the_header_is_never_fetched(stack, reader, attacker_key, key_server, param):
    url = f"http://127.0.0.1:{key_server.server_address[1]}/jwks.json"
    assert requests.get(url, timeout=5).status_code == 200  # the trap answers...
    key_server.hits.clear()
    assertion = sign_rsa(
        attacker_key.as_dict(private=True), header_for(reader, **{param: url}), claims_for(stack, reader)
    )
    refused_client(post_token(stack.proxy, assertion))
    time.sleep(0.3)
    assert key_server.hits == []  # ...but the proxy never asked it


def test_key_url_with_an_unregistered_kid_is_never_fetched(stack, reader, attacker_key, key_server):
    url = f"http://127.0.0.1:{key_server.server_address[1]}/jwks.json"
    header = header_for(reader, kid="attacker-k1", jku=url)
    refused_client(
        post_token(
            stack.proxy, sign_rsa(attacker_key.as_dict(private=True), header, claims_for(stack, reader))
        )
    )
    time.sleep(0.3)
    assert key_server.hits == []


# ================================================================ who signed: 401 invalid_client


def test_unknown_client_is_refused(stack, attacker_key):
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    now = int(time.time())
    claims = {
        "iss": ghost,
        "sub": ghost,
        "aud": token_url(stack.proxy),
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 240,
    }
    header = {"alg": "RS512", "typ": "JWT", "kid": attacker_key.kid}
    refused_client(post_token(stack.proxy, sign_rsa(attacker_key.as_dict(private=True), header, claims)))


def test_disabled_client_is_refused(stack, registry):
    client = stack.client("atk-disabled", "reader")
    assert post_token(stack.proxy, assertion_for(stack, client)).status_code == 200
    assert registry.set_enabled(client.client_id, False)
    refused_client(post_token(stack.proxy, assertion_for(stack, client)))


def test_unknown_kid_is_refused(stack, reader):
    header = header_for(reader, kid=reader.kid + "-2")
    refused_client(post_token(stack.proxy, sign_rsa(reader.private_jwk, header, claims_for(stack, reader))))


def test_key_of_another_registered_client_is_refused(stack, reader, other):
    # signed by atk-other's key while naming atk-reader and its kid
    assertion = sign_rsa(other.private_jwk, header_for(reader), claims_for(stack, reader))
    refused_client(post_token(stack.proxy, assertion))


def test_attacker_key_with_the_victims_kid_is_refused(stack, reader, attacker_key):
    assertion = sign_rsa(attacker_key.as_dict(private=True), header_for(reader), claims_for(stack, reader))
    refused_client(post_token(stack.proxy, assertion))


def test_stripped_signature_is_refused(stack, reader):
    h, p, _ = assertion_for(stack, reader).split(".")
    refused_client(post_token(stack.proxy, f"{h}.{p}."))


def test_altered_signature_is_refused(stack, reader):
    refused_client(post_token(stack.proxy, flip_signature(assertion_for(stack, reader))))


@pytest.mark.parametrize(
    "change",
    [{"exp": 1}, {"jti": "replaced"}, {"sub": "atk-other", "iss": "atk-other"}, {"extra": True}],
    ids=["exp", "jti", "identity", "added-claim"],
)
def test_altered_payload_is_refused(stack, reader, change):
    valid = assertion_for(stack, reader)
    refused_client(post_token(stack.proxy, with_payload(valid, {**payload_of(valid), **change})))


# ================================================================ the claims: 401 invalid_client


def _aud(stack, how: str) -> str | list:
    port = stack.proxy.rsplit(":", 1)[1]
    return {
        "trailing-slash": token_url(stack.proxy) + "/",
        "https": token_url(stack.proxy).replace("http://", "https://", 1),
        "localhost": f"http://localhost:{port}/oauth2/token",
        "origin-only": stack.proxy,
        "fhir-base": stack.fhir,
        "upper-case-path": stack.proxy + "/OAUTH2/TOKEN",
        "two-audiences": [token_url(stack.proxy), "https://elsewhere.example/oauth2/token"],
    }[how]


@pytest.mark.parametrize(
    "how",
    ["trailing-slash", "https", "localhost", "origin-only", "fhir-base", "upper-case-path", "two-audiences"],
)
def test_audience_other_than_the_exact_token_url_is_refused(stack, reader, how):
    refused_client(post_token(stack.proxy, assertion_for(stack, reader, aud=_aud(stack, how))))


def test_single_element_audience_list_is_accepted(stack, reader):
    r = post_token(stack.proxy, assertion_for(stack, reader, aud=[token_url(stack.proxy)]))
    assert r.status_code == 200, r.text


def test_missing_audience_is_refused(stack, reader):
    claims = claims_for(stack, reader)
    del claims["aud"]
    refused_client(post_token(stack.proxy, sign_rsa(reader.private_jwk, header_for(reader), claims)))


CLAIM_FLAWS = {
    "exp-missing": lambda now: {"exp": None},
    "exp-passed": lambda now: {"exp": now - 60, "iat": now - 120},
    "exp-600s-ahead": lambda now: {"exp": now + 600},
    "exp-a-day-ahead": lambda now: {"exp": now + 86400},
    "exp-word": lambda now: {"exp": "soon"},
    "exp-numeric-string": lambda now: {"exp": str(now + 240)},
    "exp-bool": lambda now: {"exp": True},
    "exp-nan": lambda now: {"exp": float("nan")},
    "exp-infinity": lambda now: {"exp": float("inf")},
    "iat-future": lambda now: {"iat": now + 120},
    "iat-string": lambda now: {"iat": str(now)},
    "iat-nan": lambda now: {"iat": float("nan")},
    "nbf-future": lambda now: {"nbf": now + 120},
    "nbf-nan": lambda now: {"nbf": float("nan")},
    "jti-missing": lambda now: {"jti": None},
    "jti-empty": lambda now: {"jti": ""},
    "jti-number": lambda now: {"jti": 12345},
    "jti-too-long": lambda now: {"jti": "j" * 300},
    "iss-missing": lambda now: {"iss": None},
    "sub-missing": lambda now: {"sub": None},
    "iss-not-sub": lambda now: {"iss": "atk-other"},
    "sub-not-iss": lambda now: {"sub": "atk-other"},
    "iss-and-sub-another-client": lambda now: {"iss": "atk-other", "sub": "atk-other"},
    "iss-number": lambda now: {"iss": 1, "sub": 1},
}


@pytest.mark.parametrize("flaw", list(CLAIM_FLAWS))
def test_flawed_claims_are_refused(stack, reader, other, flaw):  # other: atk-other is registered
    now = int(time.time())
    claims = claims_for(stack, reader, **CLAIM_FLAWS[flaw](now))
    refused_client(post_token(stack.proxy, sign_rsa(reader.private_jwk, header_for(reader), claims)))


def test_form_client_id_naming_another_client_is_refused(stack, reader, other):
    # RFC 7521 §4.2: a client_id sent beside the assertion must name the client the assertion proves
    refused_client(post_token(stack.proxy, assertion_for(stack, reader), client_id=other.client_id))


def test_form_client_id_naming_the_same_client_is_accepted(stack, reader):
    r = post_token(stack.proxy, assertion_for(stack, reader), client_id=reader.client_id)
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------- replay


def test_replayed_assertion_is_refused(stack, reader):
    assertion = assertion_for(stack, reader)
    assert post_token(stack.proxy, assertion).status_code == 200
    refused_client(post_token(stack.proxy, assertion))


def test_replayed_jti_in_a_new_assertion_is_refused(stack, reader):
    jti = str(uuid.uuid4())
    assert post_token(stack.proxy, assertion_for(stack, reader, jti=jti)).status_code == 200
    refused_client(post_token(stack.proxy, assertion_for(stack, reader, jti=jti, exp=int(time.time()) + 200)))


def test_same_assertion_sent_eight_times_at_once_gets_exactly_one_token(stack, reader):
    assertion = assertion_for(stack, reader)
    copies = 8
    barrier = threading.Barrier(copies)

    def send(_):
        barrier.wait(10)
        return post_token(stack.proxy, assertion)

    with ThreadPoolExecutor(copies) as pool:
        answers = list(pool.map(send, range(copies)))
    ok = [r for r in answers if r.status_code == 200]
    assert len(ok) == 1, [(r.status_code, r.text) for r in answers]
    for r in answers:
        if r.status_code != 200:
            refused_client(r)


# ---------------------------------------------------------------- scope


@pytest.mark.parametrize(
    "scope", ["system/*.cruds", "system/Patient.c", "system/*.write", "system/Task.cruds"]
)
def test_scope_not_granted_is_invalid_scope(stack, reader, scope):
    assert_oauth_error(
        post_token(stack.proxy, assertion_for(stack, reader), scope=scope), 400, "invalid_scope"
    )


@pytest.mark.parametrize(
    "scope",
    [
        "patient/*.read",
        "user/Patient.rs",
        "system/Patient.sr",
        "system/Patient.rs?category=x",
        "openid",
        "system/*",
    ],
)
def test_malformed_scope_is_invalid_scope(stack, reader, scope):
    assert_oauth_error(
        post_token(stack.proxy, assertion_for(stack, reader), scope=scope), 400, "invalid_scope"
    )


# ================================================================ the bearer check on /fhir


def test_no_authorization_header_is_401_with_a_bearer_challenge(stack):
    unauthorized(get_patients(stack))


def test_metadata_is_open_without_a_token(stack, anon):
    r = anon.get(f"{stack.fhir}/metadata")
    assert r.status_code == 200, r.text
    assert r.json()["resourceType"] == "CapabilityStatement"


def test_a_valid_token_reads_so_the_refusals_below_mean_something(stack, admin_token):
    r = get_patients(stack, f"Bearer {admin_token}")
    assert r.status_code == 200, r.text
    assert r.json()["resourceType"] == "Bundle"


@pytest.mark.parametrize(
    "value",
    ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer    ", "Token abc", "Digest username=x"],
    ids=["basic", "bearer-empty", "bearer-blank", "token-scheme", "digest"],
)
def test_wrong_scheme_or_empty_bearer_is_401(stack, value):
    unauthorized(get_patients(stack, value))


def test_valid_token_under_another_scheme_is_401(stack, admin_token):
    unauthorized(get_patients(stack, f"Basic {admin_token}"))


@pytest.mark.parametrize("alg", ["none", "NONE", "None"])
def test_unsigned_access_token_is_401(stack, admin_token, alg):
    h = json.loads(unb64(admin_token.split(".")[0]))
    forged = unsigned({**h, "alg": alg}, payload_of(admin_token))
    unauthorized(get_patients(stack, f"Bearer {forged}"))


@pytest.mark.parametrize("secret_kind", ["pem", "jwk-json", "jwks-json"])
def test_hs256_token_signed_with_the_servers_public_key_is_401(stack, admin, secret_kind):
    public = server_public_jwk(stack)
    secret = {
        "pem": ECKey.import_key(public).as_pem(private=False),
        "jwk-json": json.dumps(public).encode(),
        "jwks-json": requests.get(stack.proxy + "/.well-known/jwks.json", timeout=10).content,
    }[secret_kind]
    claims = payload_of(mint_access_token(stack, admin))
    forged = sign_hmac(secret, {"alg": "HS256", "typ": "at+jwt", "kid": public["kid"]}, claims)
    unauthorized(get_patients(stack, f"Bearer {forged}"))


def test_client_assertion_presented_as_a_bearer_token_is_401(stack, reader):
    claims = claims_for(stack, reader, aud=stack.proxy + "/fhir")
    unauthorized(get_patients(stack, f"Bearer {sign_rsa(reader.private_jwk, header_for(reader), claims)}"))


def test_server_signed_token_with_typ_jwt_is_401(stack, admin):
    key = server_key(stack)
    token = mint_access_token(stack, admin, header={"alg": "ES256", "typ": "JWT", "kid": key.kid})
    unauthorized(get_patients(stack, f"Bearer {token}"))


def test_minted_token_with_future_exp_is_accepted_so_minting_is_sound(stack, admin):
    r = get_patients(stack, f"Bearer {mint_access_token(stack, admin)}")
    assert r.status_code == 200, r.text


def test_expired_token_is_401(stack, admin):
    now = int(time.time())
    token = mint_access_token(stack, admin, iat=now - 900, exp=now - 60)
    unauthorized(get_patients(stack, f"Bearer {token}"))


@pytest.mark.parametrize(
    "change",
    [
        {"exp": None},
        {"exp": "never"},
        {"aud": "http://elsewhere.example/fhir"},
        {"iss": "http://elsewhere.example"},
        {"client_id": None},
        {"scope": None},
        {"client_id": "nobody-registered", "sub": "nobody-registered"},
    ],
    ids=["no-exp", "exp-word", "other-aud", "other-iss", "no-client-id", "no-scope", "unregistered-client"],
)
def test_server_signed_token_with_bad_claims_is_401(stack, admin, change):
    unauthorized(get_patients(stack, f"Bearer {mint_access_token(stack, admin, **change)}"))


def test_token_from_another_issuer_is_401(stack, admin):
    other_fhir, _ = stack.start_proxy({})
    other_origin = other_fhir.removesuffix("/fhir")
    foreign = get_token(other_origin, stack, admin)
    # it is a good token where it came from...
    r = requests.get(
        f"{other_fhir}/Patient", params={"_count": "1"}, headers={"Authorization": f"Bearer {foreign}"}
    )
    assert r.status_code == 200, r.text
    # ...and worthless here
    unauthorized(get_patients(stack, f"Bearer {foreign}"))


def test_altered_access_token_payload_is_401(stack, reader):
    token = get_token(stack.proxy, stack, reader)
    assert get_patients(stack, f"Bearer {token}").status_code == 200
    widened = {**payload_of(token), "scope": "system/*.cruds", "role": "admin"}
    unauthorized(get_patients(stack, f"Bearer {with_payload(token, widened)}"))


def test_altered_access_token_signature_is_401(stack, admin_token):
    unauthorized(get_patients(stack, f"Bearer {flip_signature(admin_token)}"))


def test_stripped_access_token_signature_is_401(stack, admin_token):
    h, p, _ = admin_token.split(".")
    unauthorized(get_patients(stack, f"Bearer {h}.{p}."))


def test_access_token_in_the_query_string_is_401(stack, admin_token):
    unauthorized(get_patients(stack, access_token=admin_token))


def test_access_token_in_the_query_string_is_401_even_beside_a_valid_header(stack, admin_token):
    unauthorized(get_patients(stack, f"Bearer {admin_token}", access_token=admin_token))


def test_token_of_a_client_disabled_after_issue_is_401_within_six_seconds(stack, registry):
    client = stack.client("atk-revoked", "reader")
    token = get_token(stack.proxy, stack, client)
    for _ in range(4):  # every worker process has seen the client enabled and cached that
        assert get_patients(stack, f"Bearer {token}").status_code == 200
    assert registry.set_enabled(client.client_id, False)
    t0 = time.monotonic()
    first_refusal = None
    while time.monotonic() - t0 < 6.0:
        r = get_patients(stack, f"Bearer {token}")
        if r.status_code != 200:
            unauthorized(r)
            first_refusal = first_refusal or time.monotonic() - t0
        time.sleep(0.2)
    assert first_refusal is not None, "a disabled client's token still worked after 6 s"
    for _ in range(8):  # by now every worker process refuses it, not just one
        unauthorized(get_patients(stack, f"Bearer {token}"))


# ---------------------------------------------------------------- scopes: 403


@pytest.fixture(scope="module")
def patient_rs_token(stack, patient_reader):
    return get_token(stack.proxy, stack, patient_reader)


def _as(token: str) -> dict:
    return {**FHIR_JSON, "Authorization": f"Bearer {token}"}


def test_scoped_token_may_search_what_it_was_granted(stack, patient_rs_token):
    r = requests.get(f"{stack.fhir}/Patient", params={"_count": "1"}, headers=_as(patient_rs_token))
    assert r.status_code == 200, r.text


def test_create_without_the_c_scope_is_403(stack, patient_rs_token):
    family = f"Forbidden{time.time_ns()}"
    r = requests.post(
        f"{stack.fhir}/Patient",
        json={"resourceType": "Patient", "name": [{"family": family}]},
        headers=_as(patient_rs_token),
    )
    forbidden_by_scope(r)
    assert (
        requests.get(f"{stack.store_url}/Patient", params={"family": family}, auth=store_auth()).json()[
            "total"
        ]
        == 0
    )


@pytest.mark.parametrize(
    "path", ["Observation?_count=1", "Observation/does-not-matter"], ids=["search", "read"]
)
def test_reading_another_type_is_403(stack, patient_rs_token, path):
    forbidden_by_scope(requests.get(f"{stack.fhir}/{path}", headers=_as(patient_rs_token)))


def test_transaction_entry_without_scope_is_403_naming_the_entry(stack, patient_rs_token):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    r = requests.post(stack.fhir, json=bundle, headers=_as(patient_rs_token))
    forbidden_by_scope(r, expression=["Bundle.entry[0].request"])


def test_revinclude_of_an_unscoped_type_is_403(stack, patient_rs_token):
    r = requests.get(
        f"{stack.fhir}/Patient", params={"_revinclude": "Provenance:target"}, headers=_as(patient_rs_token)
    )
    forbidden_by_scope(r)
