"""``fhirplug eps prepare`` and ``verify`` on files, and ``clients add --eps-algorithm``.
``prepare`` runs with a recorder in place of eps.prepare (its rules are tested in tests/unit/eps);
``verify`` runs the real eps.verify on messages signed with the TEST ONLY keys."""

from __future__ import annotations

import json

import pytest

from eps.prepare import HashAlgorithm, Prepared
from ops import cli, clients_cli
from proxy.errors import FhirError
from tests.support.fake_redis import FakeRedis
from tests.unit.eps.xmldsig_signer import EXAMPLES as EPS_EXAMPLES
from tests.unit.eps.xmldsig_signer import TRUST, signed

MESSAGE = {"resourceType": "Bundle", "type": "message", "entry": []}


@pytest.fixture
def prepared(monkeypatch):
    calls = []

    def fake(bundle, algorithm=HashAlgorithm.RS256):
        calls.append((bundle, algorithm))
        return Prepared("ZGlnZXN0", "2024-12-09T11:50:04+00:00", algorithm)

    monkeypatch.setattr("eps.prepare.prepare", fake)
    return calls


@pytest.fixture
def message(tmp_path):
    path = tmp_path / "message.json"
    path.write_text(json.dumps(MESSAGE))
    return path


def test_prepare_prints_the_parameters(prepared, message, capsys):
    assert cli.main(["eps", "prepare", str(message)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["resourceType"] == "Parameters"
    assert {p["name"]: p["valueString"] for p in out["parameter"]}["algorithm"] == "RS256"
    assert prepared == [(MESSAGE, HashAlgorithm.RS256)]


def test_prepare_takes_the_algorithm_and_can_print_the_digest_alone(prepared, message, capsys):
    assert cli.main(["eps", "prepare", str(message), "--algorithm", "RS1", "--digest-only"]) == 0
    assert capsys.readouterr().out.strip() == "ZGlnZXN0"
    assert prepared[0][1] is HashAlgorithm.RS1


def test_a_refused_message_prints_the_diagnostics_and_exits_1(monkeypatch, message, capsys):
    def refuse(bundle, algorithm=HashAlgorithm.RS256):
        raise FhirError(400, "wrong event", ["Bundle.entry[0].resource.eventCoding"])

    monkeypatch.setattr("eps.prepare.prepare", refuse)
    assert cli.main(["eps", "prepare", str(message)]) == 1
    err = capsys.readouterr().err
    assert "wrong event" in err and "Bundle.entry[0].resource.eventCoding" in err


def test_malformed_json_exits_1(prepared, tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text("{")
    assert cli.main(["eps", "prepare", str(path)]) == 1
    assert "not valid JSON" in capsys.readouterr().err and prepared == []


def test_a_missing_file_is_a_usage_problem(prepared, tmp_path, capsys):
    assert cli.main(["eps", "prepare", str(tmp_path / "none.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def _write(tmp_path, bundle) -> str:
    path = tmp_path / "signed.json"
    path.write_text(json.dumps(bundle, default=str))
    return str(path)


def test_verify_accepts_a_message_signed_after_prepare(tmp_path, capsys):
    path = _write(tmp_path, signed())
    assert (
        cli.main(["eps", "verify", path, "--now", "2025-06-01T10:00:00+00:00", "--trust-dir", str(TRUST)])
        == 0
    )
    out = capsys.readouterr().out
    assert "valid RS1 signature by" in out and "TEST ONLY Prescriber" in out and "trusted" in out


def test_verify_refuses_a_tampered_message_and_says_why(tmp_path, capsys):
    bundle = signed()
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["name"][0]["family"] = "Someone-Else"
    assert cli.main(["eps", "verify", _write(tmp_path, bundle), "--now", "2025-06-01T10:00:00+00:00"]) == 1
    assert "does not match the prescription" in capsys.readouterr().err


def test_verify_reads_a_signed_hl7_v3_prescription(capsys):
    # EPS's own signed test prescription, judged at its signing time (its certificate has expired)
    path = EPS_EXAMPLES / "signed-prescriptions-hl7v3" / "ValidSignature.xml"
    assert cli.main(["eps", "verify", str(path), "--now", "2021-07-26T12:05:22+00:00"]) == 0
    assert "valid RS1 signature" in capsys.readouterr().out


def test_verify_with_a_broken_trust_dir_is_a_usage_problem(tmp_path, capsys):
    assert cli.main(["eps", "verify", _write(tmp_path, signed()), "--trust-dir", str(tmp_path / "none")]) == 2
    assert "--trust-dir" in capsys.readouterr().err


# ---------------------------------------------------------------- clients add --eps-algorithm


@pytest.fixture
def registry(monkeypatch, tmp_path):
    from proxy.auth.registry import ClientRegistry

    reg = ClientRegistry(FakeRedis())
    monkeypatch.setattr(clients_cli, "_registry", lambda: reg)
    jwks = tmp_path / "k.jwks.json"
    jwks.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "kty": "EC",
                        "crv": "P-256",
                        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                        "kid": "k1",
                    }
                ]
            }
        )
    )
    return reg, str(jwks)


def add(jwks: str, *extra: str) -> int:
    return cli.main(
        [
            "clients",
            "add",
            "--client-id",
            "gp",
            "--role",
            "prescriber",
            "--ods",
            "A83008",
            "--jwks",
            jwks,
            *extra,
        ]
    )


def test_clients_add_registers_rs1_when_asked(registry, capsys):
    reg, jwks = registry
    assert add(jwks, "--eps-algorithm", "RS1") == 0
    assert reg.get("gp").eps_signing_algorithm == "RS1"
    assert "EPS signing algorithm: RS1" in capsys.readouterr().out


def test_clients_add_defaults_to_rs256(registry):
    reg, jwks = registry
    assert add(jwks) == 0
    assert reg.get("gp").eps_signing_algorithm == "RS256"


def test_clients_add_refuses_an_unknown_algorithm(registry):
    _, jwks = registry
    with pytest.raises(SystemExit):
        add(jwks, "--eps-algorithm", "RS512")


def test_clients_list_shows_the_algorithm(registry, capsys):
    _, jwks = registry
    add(jwks, "--eps-algorithm", "RS1")
    capsys.readouterr()
    assert cli.main(["clients", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("gp "))
    assert "prescriber" in line and "RS1" in line
