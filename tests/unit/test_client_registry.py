"""Client records: the prescriber role and the EPS signing algorithm a client is registered with."""

import json

import pytest

from proxy.auth.registry import DEFAULT_SCOPES, KEY, ClientRecord, ClientRegistry
from proxy.auth.scopes import ScopeSet, needs_for_interaction
from tests.support.fake_redis import FakeRedis

JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                  "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "k1"}]}  # fmt: skip


def prescriber(**fields) -> ClientRecord:
    return ClientRecord(
        "gp", "A83008", "prescriber", DEFAULT_SCOPES["prescriber"].split(), jwks=JWKS, **fields
    )


def test_a_prescriber_registers_with_its_default_scope():
    reg = ClientRegistry(FakeRedis())
    reg.put(prescriber())
    assert "system/MedicationRequest.rs" in reg.get("gp").scopes
    assert all(s.endswith(".rs") for s in reg.get("gp").scopes)  # REST reads only: changes go by operation


def test_the_eps_algorithm_defaults_to_rs256_and_rs1_is_kept():
    reg = ClientRegistry(FakeRedis())
    reg.put(prescriber())
    assert reg.get("gp").eps_signing_algorithm == "RS256"
    reg.put(prescriber(eps_signing_algorithm="RS1"))
    assert reg.get("gp").eps_signing_algorithm == "RS1"


@pytest.mark.parametrize("value", ["RS512", "rs1", "SHA1", ""])
def test_an_unknown_eps_algorithm_is_refused(value):
    with pytest.raises(ValueError, match="eps-algorithm"):
        ClientRegistry(FakeRedis()).put(prescriber(eps_signing_algorithm=value))


def test_a_record_written_before_the_attribute_existed_still_loads():
    redis = FakeRedis()
    old = json.loads(prescriber().to_json())
    del old["eps_signing_algorithm"]
    redis.hset(KEY, "gp", json.dumps(old))
    assert ClientRegistry(redis).get("gp").eps_signing_algorithm == "RS256"


def test_prepare_needs_no_scope_as_it_reads_and_stores_nothing():
    assert needs_for_interaction("operation", None, "$prepare") == []
    assert ScopeSet.parse(DEFAULT_SCOPES["prescriber"]).scopes  # but a token needs one scope
