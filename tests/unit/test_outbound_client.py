"""Our OAuth client of partners: fresh assertions, a cached token, one refresh on a 401."""

import json
import time

from joserfc import jwt
from joserfc.jwk import RSAKey
from redis.exceptions import RedisError

from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient, sign_assertion
from tests.support.fake_redis import FakeRedis

KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS512"})
CREDS = PartnerCredentials("https://partner.example/oauth2/token", "us", KEY.as_dict(private=True))


class FakeResponse:
    def __init__(self, status, doc=None):
        self.status_code = status
        self._doc = doc or {}
        self.text = json.dumps(self._doc)

    def json(self):
        return self._doc


class FakePartner:
    """Issues token-1, token-2, ...; answers 401 to the tokens listed in ``revoked``."""

    def __init__(self):
        self.token_requests = []
        self.calls = []
        self.revoked = set()

    def post(self, url, data, timeout):
        self.token_requests.append(data)
        return FakeResponse(200, {"access_token": f"token-{len(self.token_requests)}", "expires_in": 300})

    def request(self, method, url, headers, timeout, **kw):
        token = headers["Authorization"].removeprefix("Bearer ")
        self.calls.append(token)
        return FakeResponse(401 if token in self.revoked else 200)


def claims_of(assertion):
    return jwt.decode(assertion, KEY, algorithms=["RS512"]).claims


def test_every_assertion_is_fresh_and_short_lived():
    a, b = claims_of(sign_assertion(CREDS)), claims_of(sign_assertion(CREDS))
    assert a["jti"] != b["jti"]
    assert a["exp"] - a["iat"] == 300
    assert a["iss"] == a["sub"] == "us" and a["aud"] == CREDS.token_url


def test_the_access_token_is_cached_between_requests():
    partner = FakePartner()
    client = PartnerTokenClient(CREDS, session=partner)
    client.request("GET", "https://partner.example/fhir/Task/1")
    client.request("GET", "https://partner.example/fhir/Task/2")
    assert len(partner.token_requests) == 1 and partner.calls == ["token-1", "token-1"]


def test_a_401_gets_one_new_token_and_one_retry():
    partner = FakePartner()
    client = PartnerTokenClient(CREDS, session=partner)
    client.token()
    partner.revoked.add("token-1")
    r = client.request("GET", "https://partner.example/fhir/Task/1")
    assert r.status_code == 200 and partner.calls == ["token-1", "token-2"]


def test_a_second_401_is_returned_not_retried_forever():
    partner = FakePartner()
    partner.revoked.update({"token-1", "token-2", "token-3"})
    r = PartnerTokenClient(CREDS, session=partner).request("GET", "https://partner.example/fhir/Task/1")
    assert r.status_code == 401 and len(partner.calls) == 2


def test_a_token_near_expiry_is_renewed_before_use():
    partner = FakePartner()
    client = PartnerTokenClient(CREDS, session=partner)
    client.token()
    client._expires_at = 0  # as if its lifetime had run out
    assert client.token() == "token-2"


def test_processes_sharing_redis_ask_for_one_token_between_them():
    """The worker forks a process per delivery: each has a client of its own, one Redis."""
    partner, redis = FakePartner(), FakeRedis()
    for n in range(5):
        PartnerTokenClient(CREDS, session=partner, redis=redis).request("POST", f"https://p.example/fhir/{n}")
    assert len(partner.token_requests) == 1 and partner.calls == ["token-1"] * 5


def test_a_401_replaces_the_shared_token_once():
    partner, redis = FakePartner(), FakeRedis()
    PartnerTokenClient(CREDS, session=partner, redis=redis).token()
    partner.revoked.add("token-1")
    first = PartnerTokenClient(CREDS, session=partner, redis=redis)
    assert first.request("POST", "https://p.example/fhir").status_code == 200
    later = PartnerTokenClient(CREDS, session=partner, redis=redis)
    assert later.request("POST", "https://p.example/fhir").status_code == 200
    assert len(partner.token_requests) == 2 and partner.calls == ["token-1", "token-2", "token-2"]


def test_a_shared_token_is_renewed_30_seconds_before_it_expires():
    partner, redis = FakePartner(), FakeRedis()
    client = PartnerTokenClient(CREDS, session=partner, redis=redis)
    redis.set(client.shared_key, json.dumps({"token": "old", "expires_at": time.time() + 29}))
    assert client.token() == "token-1"
    redis.set(client.shared_key, json.dumps({"token": "fresh", "expires_at": time.time() + 31}))
    assert PartnerTokenClient(CREDS, session=partner, redis=redis).token() == "fresh"


def test_without_redis_answering_each_process_keeps_its_own_token():
    class Down(FakeRedis):
        def get(self, key):
            raise RedisError("down")

        def set(self, *a, **k):
            raise RedisError("down")

    partner = FakePartner()
    client = PartnerTokenClient(CREDS, session=partner, redis=Down())
    client.request("POST", "https://p.example/fhir")
    client.request("POST", "https://p.example/fhir")
    assert len(partner.token_requests) == 1
