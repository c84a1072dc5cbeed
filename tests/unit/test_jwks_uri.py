"""A client registered by jwks_uri: fetched once, cached, fetched again for an unknown kid at most
once a minute (so a stream of made-up kids cannot make us hammer the partner's server)."""

from joserfc.jwk import RSAKey

from proxy.auth import registry as registry_mod
from proxy.auth.registry import ClientRecord, ClientRegistry
from tests.support.fake_redis import FakeRedis


def key(kid):
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS512"}).as_dict(private=False)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def setup(monkeypatch):
    reg = ClientRegistry(FakeRedis())
    published = {"keys": [key("k1")]}
    fetches = []

    def fetch(uri):
        fetches.append(uri)
        return {"keys": list(published["keys"])}  # a copy, as a fetch over HTTP gives

    clock = Clock()
    monkeypatch.setattr(reg, "_fetch", fetch)
    monkeypatch.setattr(registry_mod.time, "monotonic", clock)
    rec = ClientRecord("p", "FA1", "spoke", ["system/Task.rs"], jwks_uri="https://partner.example/jwks.json")
    return reg, rec, published, fetches, clock


def test_the_key_set_is_fetched_once_and_cached(monkeypatch):
    reg, rec, _, fetches, _ = setup(monkeypatch)
    assert reg.key_set(rec, "k1") is not None
    assert reg.key_set(rec, "k1") is not None
    assert len(fetches) == 1


def test_an_unknown_kid_refetches_at_most_once_a_minute(monkeypatch):
    reg, rec, published, fetches, clock = setup(monkeypatch)
    reg.key_set(rec, "k1")
    published["keys"].append(key("k2"))  # the partner rotates
    clock.now += 10
    assert reg.key_set(rec, "k2") is None and len(fetches) == 1  # too soon to ask again
    clock.now += 60
    assert reg.key_set(rec, "k2") is not None and len(fetches) == 2


def test_a_kid_that_never_appears_is_refused(monkeypatch):
    reg, rec, _, fetches, clock = setup(monkeypatch)
    clock.now += 120
    assert reg.key_set(rec, "nope") is None
