"""Who we are comes from configuration (FHIRPLUG_PUBLIC_BASE_URL), never from the request.

An attacker who sets ``Host`` (or ``X-Forwarded-Host``, ``Forwarded``) to another deployment's
address must not make this proxy accept a client assertion addressed to that deployment, accept
that deployment's access tokens, or write that address into discovery documents, ``Location``
headers or bundle links. Without a public base the proxy does not start at all.

The other deployment is a second proxy on the same store, Redis and signing keys: the same
clients are registered there, so only its identity tells the two apart."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import pytest
import requests

from ops import stack as stackmod
from proxy.app import create_app
from proxy.auth.client_assertion import ASSERTION_TYPE
from proxy.auth.outbound import PartnerCredentials, sign_assertion
from proxy.config import ConfigError, Settings
from tests.support.fake_store import PUBLIC_BASE, FakeStore

integration = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
EVIL = "evil.example"


def spoofing(netloc: str, how: str) -> dict[str, str]:
    """Headers that claim the request was addressed to ``netloc``."""
    host, _, port = netloc.partition(":")
    forms = {
        "host": {"Host": netloc},
        "x-forwarded": {
            "X-Forwarded-Host": netloc,
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Port": port or "80",
            "X-Forwarded-Prefix": "/elsewhere",
        },
        "forwarded": {"Forwarded": f"for=198.51.100.7;host={netloc};proto=http"},
    }
    if how == "all":
        return {k: v for form in forms.values() for k, v in form.items()}
    return forms[how]


SPOOFS = ["host", "x-forwarded", "forwarded", "all"]


# ================================================================ no start without an identity


def test_building_the_app_without_a_public_base_fails_naming_the_key():
    with pytest.raises(ConfigError, match="FHIRPLUG_PUBLIC_BASE_URL is not set"):
        create_app(Settings(plugins=["request_id"], auth=False), store=FakeStore())


@pytest.mark.parametrize(
    "value",
    [
        "fhir.example.org/fhir",
        "ftp://fhir.example.org/fhir",
        "https:///fhir",
        "https://fhir.example.org",
        "https://fhir.example.org/fhir?x=1",
        "https://fhir.example.org/fhir#top",
        "https://user:pw@fhir.example.org/fhir",
        "https://fhir.example.org:http/fhir",
    ],
)
def test_building_the_app_with_a_public_base_that_is_not_a_fhir_base_fails(value):
    with pytest.raises(ConfigError, match="FHIRPLUG_PUBLIC_BASE_URL=.* is not a public FHIR base"):
        create_app(Settings(public_base_url=value, plugins=["request_id"], auth=False), store=FakeStore())


def test_the_app_builds_with_a_public_base():
    app = create_app(
        Settings(public_base_url=PUBLIC_BASE, plugins=["request_id"], auth=False), store=FakeStore()
    )
    assert app.test_client().get("/healthz").status_code == 200


def test_gunicorn_refuses_to_start_without_a_public_base(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FHIRPLUG_PUBLIC_BASE_URL"}
    env.update(
        {
            "FHIRPLUG_BIND": "127.0.0.1:0",
            "FHIRPLUG_WORKERS": "1",
            "FHIRPLUG_KEYS_DIR": str(tmp_path / "keys"),
            "REDIS_URL": "redis://127.0.0.1:1/0",  # never reached: the app is refused before
        }
    )
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        os.path.join(ROOT, "proxy", "gunicorn_conf.py"),
        "proxy.wsgi:app",
    ]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "FHIRPLUG_PUBLIC_BASE_URL is not set" in out, out
    assert "Traceback" not in out, out  # one clear line, not a stack trace


def test_make_up_gives_each_proxy_its_own_local_base_unless_the_operator_set_one(monkeypatch):
    monkeypatch.delenv("FHIRPLUG_PUBLIC_BASE_URL", raising=False)
    monkeypatch.setenv("FHIRPLUG_PORT", "8181")
    local = stackmod.StackConfig.from_env()
    assert local.public_base() == "http://127.0.0.1:8181/fhir"
    assert local.public_base(9999) == "http://127.0.0.1:9999/fhir"  # a test's extra proxy
    monkeypatch.setenv("FHIRPLUG_PUBLIC_BASE_URL", "https://fhir.example.org/fhir/")
    operated = stackmod.StackConfig.from_env()
    assert operated.public_base() == "https://fhir.example.org/fhir"
    assert operated.public_base(9999) == "http://127.0.0.1:9999/fhir"


def test_unit_app_rewrites_the_stores_base_to_the_configured_one_whatever_host_says():
    store = FakeStore(
        status=201,
        headers={"Location": "http://store.internal:8090/fhir/Patient/1/_history/1"},
        body={"resourceType": "Patient", "id": "1"},
    )
    app = create_app(Settings(public_base_url=PUBLIC_BASE, plugins=["request_id"], auth=False), store=store)
    headers = {**FHIR_JSON, **spoofing(EVIL, "all")}
    r = app.test_client().post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == PUBLIC_BASE + "/Patient/1/_history/1"


# ================================================================ the real proxy


@pytest.fixture(scope="module")
def other(stack):
    """Another deployment's FHIR base: a second proxy, same Redis (so the same clients) and keys."""
    fhir, _ = stack.start_proxy({})
    return fhir


@pytest.fixture(scope="module")
def reader(stack):
    return stack.client("identity-reader", "reader")


def origin_of(fhir_base: str) -> str:
    return fhir_base.removesuffix("/fhir")


def netloc_of(url: str) -> str:
    return urlsplit(url).netloc


def assertion(client, aud: str) -> str:
    return sign_assertion(PartnerCredentials(aud, client.client_id, client.private_jwk))


def post_token(origin: str, client_assertion: str, headers: dict | None = None) -> requests.Response:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
    }
    return requests.post(origin + "/oauth2/token", data=form, headers=headers or {}, timeout=30)


def token_from(origin: str, client, headers: dict | None = None) -> str:
    r = post_token(origin, assertion(client, origin + "/oauth2/token"), headers)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@integration
@pytest.mark.parametrize("how", SPOOFS)
def test_assertion_for_another_deployment_is_refused_here_whatever_host_says(stack, other, reader, how):
    theirs = origin_of(other) + "/oauth2/token"
    r = post_token(stack.proxy, assertion(reader, theirs), spoofing(netloc_of(other), how))
    assert r.status_code == 401, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert "no-store" in r.headers.get("Cache-Control", "")
    body = r.json()
    assert body["error"] == "invalid_client"
    assert "access_token" not in body
    # the twin: the same kind of assertion is good where it is addressed
    assert post_token(origin_of(other), assertion(reader, theirs)).status_code == 200


@integration
@pytest.mark.parametrize("how", SPOOFS)
def test_assertion_for_a_made_up_host_is_refused_when_host_names_it(stack, reader, how):
    r = post_token(stack.proxy, assertion(reader, f"http://{EVIL}/oauth2/token"), spoofing(EVIL, how))
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"


@integration
@pytest.mark.parametrize("how", SPOOFS)
def test_token_obtained_here_is_bound_to_the_configured_issuer_whatever_host_says(stack, reader, how):
    token = token_from(stack.proxy, reader, spoofing(EVIL, how))
    claims = claims_of(token)
    assert claims["iss"] == stack.proxy
    assert claims["aud"] == stack.fhir
    # and it is good here whatever Host the FHIR request names
    r = requests.get(
        stack.fhir + "/Patient",
        params={"_count": "1"},
        headers={"Authorization": f"Bearer {token}", **spoofing(EVIL, how)},
        timeout=30,
    )
    assert r.status_code == 200, r.text


@integration
@pytest.mark.parametrize("how", SPOOFS)
def test_another_deployments_token_is_refused_here_whatever_host_says(stack, other, reader, how):
    foreign = token_from(origin_of(other), reader)
    assert claims_of(foreign)["iss"] == origin_of(other)
    auth = {"Authorization": f"Bearer {foreign}"}
    # good where it came from...
    assert (
        requests.get(other + "/Patient", params={"_count": "1"}, headers=auth, timeout=30).status_code == 200
    )
    # ...and worthless here, even addressed to there
    r = requests.get(
        stack.fhir + "/Patient",
        params={"_count": "1"},
        headers={**auth, **spoofing(netloc_of(other), how), "Accept": "application/fhir+json"},
        timeout=30,
    )
    assert r.status_code == 401, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


@integration
@pytest.mark.parametrize("how", SPOOFS)
def test_smart_configuration_names_the_configured_urls_whatever_host_says(stack, how):
    r = requests.get(
        stack.proxy + "/.well-known/smart-configuration", headers=spoofing(EVIL, how), timeout=30
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["issuer"] == stack.proxy
    assert doc["token_endpoint"] == stack.proxy + "/oauth2/token"
    assert doc["jwks_uri"] == stack.proxy + "/.well-known/jwks.json"
    assert EVIL not in r.text


@integration
@pytest.mark.parametrize("how", SPOOFS)
def test_capability_statement_names_the_configured_token_url_whatever_host_says(stack, how):
    headers = {"Accept": "application/fhir+json", **spoofing(EVIL, how)}
    r = requests.get(stack.fhir + "/metadata", headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    rest = next(x for x in r.json()["rest"] if x["mode"] == "server")
    uris = next(e for e in rest["security"]["extension"] if e["url"] == OAUTH_URIS)
    assert uris["extension"] == [{"url": "token", "valueUri": stack.proxy + "/oauth2/token"}]
    assert EVIL not in r.text


@integration
@pytest.mark.parametrize("how", SPOOFS)
def test_location_uses_the_configured_base_whatever_host_says(stack, http, how):
    patient = {"resourceType": "Patient", "name": [{"family": f"Identity{uuid.uuid4().hex[:8]}"}]}
    r = http.post(stack.fhir + "/Patient", json=patient, headers={**FHIR_JSON, **spoofing(EVIL, how)})
    assert r.status_code == 201, r.text
    assert r.headers["Location"].startswith(stack.fhir + "/Patient/"), r.headers["Location"]
    assert EVIL not in r.text


@integration
@pytest.mark.parametrize("how", SPOOFS)
def test_bundle_links_and_full_urls_use_the_configured_base_whatever_host_says(stack, http, how):
    family = f"Identity{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        created = http.post(
            stack.fhir + "/Patient",
            json={"resourceType": "Patient", "name": [{"family": family}]},
            headers=FHIR_JSON,
        )
        assert created.status_code == 201, created.text
    r = http.get(
        stack.fhir + "/Patient",
        params={"family": family, "_count": "1"},
        headers={"Accept": "application/fhir+json", **spoofing(EVIL, how)},
    )
    assert r.status_code == 200, r.text
    bundle = r.json()
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert "next" in links, links
    for url in links.values():
        assert url.startswith(stack.fhir + "/") or url.startswith(stack.fhir + "?"), url
    assert [e["fullUrl"].startswith(stack.fhir + "/Patient/") for e in bundle["entry"]] == [True]
    assert EVIL not in r.text
    # and the next page, asked for with the same lie, too
    page = http.get(links["next"], headers={"Accept": "application/fhir+json", **spoofing(EVIL, how)})
    assert page.status_code == 200, page.text
    assert EVIL not in page.text
    assert all(e["fullUrl"].startswith(stack.fhir + "/Patient/") for e in page.json()["entry"])
