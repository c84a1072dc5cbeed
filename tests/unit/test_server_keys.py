"""The server's signing keys: rotation signs with the new key, tokens of the old one still verify."""

import pytest

from proxy.auth.access_tokens import BearerError, TokenService
from proxy.auth.registry import ClientRecord, ClientRegistry
from proxy.auth.signing import ServerKeys
from tests.support.fake_redis import FakeRedis

ISSUER = "https://fhirplug.example"


@pytest.fixture
def setup(tmp_path):
    keys = ServerKeys(tmp_path / "keys")
    keys.ensure()
    keys.RELOAD_EVERY = 0  # see rotations at once
    reg = ClientRegistry(FakeRedis())
    rec = ClientRecord("c1", "", "admin", ["system/*.cruds"], jwks={"keys": []}, jwks_uri=None)
    reg.redis.hset("fhirplug:clients", "c1", rec.to_json())
    return keys, TokenService(keys, reg, 300), rec


def test_a_rotated_key_signs_and_the_old_one_still_verifies(setup):
    keys, tokens, rec = setup
    old_token, _ = tokens.issue(rec, "system/*.cruds", ISSUER)
    old_kid = keys.signing_key.kid
    new_kid = keys.rotate()
    assert keys.signing_key.kid == new_kid != old_kid
    new_token, _ = tokens.issue(rec, "system/*.cruds", ISSUER)
    assert tokens.verify(f"Bearer {old_token}", ISSUER).client_id == "c1"
    assert tokens.verify(f"Bearer {new_token}", ISSUER).client_id == "c1"
    assert {k["kid"] for k in keys.public_jwks()["keys"]} == {old_kid, new_kid}
    assert all("d" not in k for k in keys.public_jwks()["keys"])


def test_a_pruned_key_no_longer_verifies(setup):
    keys, tokens, rec = setup
    old_token, _ = tokens.issue(rec, "system/*.cruds", ISSUER)
    keys.rotate()
    assert keys.prune(older_than_s=-1)  # everything but the newest
    tokens._verified.clear()
    with pytest.raises(BearerError):
        tokens.verify(f"Bearer {old_token}", ISSUER)


def test_a_token_for_another_issuer_is_refused(setup):
    _, tokens, rec = setup
    token, _ = tokens.issue(rec, "system/*.cruds", ISSUER)
    with pytest.raises(BearerError):
        tokens.verify(f"Bearer {token}", "https://elsewhere.example")
