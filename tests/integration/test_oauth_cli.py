"""The operator's ``fhirplug`` command end to end, as an operator runs it: keys, client records
in the real Redis, tokens from the real token endpoint, and what a disabled client sees."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration
FHIRPLUG = str(Path(sys.prefix) / "bin" / "fhirplug")
REVOKE_WITHIN_S = 6.0  # the proxy re-reads a client's status at most every 5 s


def uid() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def cli(stack):
    def run(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "REDIS_URL": stack.redis_url}
        return subprocess.run([FHIRPLUG, *args], env=env, capture_output=True, text=True, timeout=120)

    return run


def generate(cli, out: Path, kid: str, alg: str = "ES384") -> tuple[Path, Path]:
    r = cli("keys", "generate", "--kid", kid, "--out", str(out), "--alg", alg)
    assert r.returncode == 0, r.stderr
    return out / f"{kid}.private.jwk.json", out / f"{kid}.jwks.json"


def get_token(cli, stack, client_id: str, key: Path) -> subprocess.CompletedProcess:
    return cli(
        "token", "--token-url", f"{stack.proxy}/oauth2/token", "--client-id", client_id, "--key", str(key)
    )


def read_status(stack, token: str) -> int:
    r = requests.get(
        f"{stack.fhir}/Task",
        params={"_count": 1},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
        timeout=30,
    )
    return r.status_code


def wait_for_status(stack, token: str, wanted: int, since: float) -> float:
    """Seconds from ``since`` (a time.monotonic() of the change) until the proxy answers
    ``wanted`` to several tries in a row, so that every worker's cached client status agrees."""
    start, within = since, REVOKE_WITHIN_S
    streak = 0
    while True:
        status = read_status(stack, token)
        streak = streak + 1 if status == wanted else 0
        if streak >= 4:  # several workers each cache the client's status: all must agree
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"still {status}, not {wanted}, after {within} s"
        time.sleep(0.1)


def test_keys_generate_rsa_writes_a_private_0600_key_and_a_public_set(cli, tmp_path):
    private, public = generate(cli, tmp_path, "partner-rsa", alg="RS512")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = json.loads(private.read_text())
    assert key["kid"] == "partner-rsa" and key["alg"] == "RS512" and key["kty"] == "RSA"
    assert {"d", "p", "q"} <= set(key)
    n_bits = len(key["n"] + "=" * (-len(key["n"]) % 4)) * 6
    assert n_bits >= 4096 - 8, "the NHS asks for 4096-bit RSA"

    jwks = json.loads(public.read_text())
    assert [k["kid"] for k in jwks["keys"]] == ["partner-rsa"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwks["keys"][0])
    assert jwks["keys"][0]["n"] == key["n"]


def test_keys_generate_ec_and_refuses_to_overwrite(cli, tmp_path):
    private, public = generate(cli, tmp_path, "partner-ec")
    key = json.loads(private.read_text())
    assert key["crv"] == "P-384" and key["alg"] == "ES384" and "d" in key
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert "d" not in json.loads(public.read_text())["keys"][0]

    again = cli("keys", "generate", "--kid", "partner-ec", "--out", str(tmp_path), "--alg", "ES384")
    assert again.returncode != 0
    assert json.loads(private.read_text()) == key, "an existing private key was overwritten"


def test_client_lifecycle_add_list_token_disable_enable_remove(cli, stack, tmp_path):
    client_id = f"cli-spoke-{uid()}"
    private, public = generate(cli, tmp_path, f"{client_id}-k1")

    # not registered yet: no token
    refused = get_token(cli, stack, client_id, private)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "invalid_client" in refused.stderr

    added = cli(
        "clients", "add", "--client-id", client_id, "--ods", "FA001", "--role", "spoke", "--jwks", str(public)
    )
    assert added.returncode == 0, added.stderr
    assert "system/Task.cruds" in added.stdout

    listed = cli("clients", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(client_id))
    assert row.split()[1:6] == ["spoke", "FA001", "yes", "RS256", "1"]  # role, ODS, enabled, EPS alg, keys

    got = get_token(cli, stack, client_id, private)
    assert got.returncode == 0, got.stderr
    token = got.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    assert read_status(stack, token) == 200

    disabled = cli("clients", "disable", client_id)
    changed = time.monotonic()
    assert disabled.returncode == 0, disabled.stderr
    refused = get_token(cli, stack, client_id, private)
    assert refused.returncode == 1 and "disabled" in refused.stderr
    wait_for_status(stack, token, 401, changed)
    listed = cli("clients", "list")
    row = next(line for line in listed.stdout.splitlines() if line.startswith(client_id))
    assert row.split()[3] == "no"

    enabled = cli("clients", "enable", client_id)
    changed = time.monotonic()
    assert enabled.returncode == 0, enabled.stderr
    again = get_token(cli, stack, client_id, private)
    assert again.returncode == 0, again.stderr
    wait_for_status(stack, again.stdout.strip(), 200, changed)
    wait_for_status(stack, token, 200, changed)  # the earlier token was never revoked, only paused

    removed = cli("clients", "remove", client_id)
    changed = time.monotonic()
    assert removed.returncode == 0, removed.stderr
    refused = get_token(cli, stack, client_id, private)
    assert refused.returncode == 1 and "invalid_client" in refused.stderr
    wait_for_status(stack, token, 401, changed)
    assert client_id not in cli("clients", "list").stdout
    assert cli("clients", "remove", client_id).returncode == 1  # nothing left to remove


def test_token_with_a_narrower_scope(cli, stack, tmp_path):
    client_id = f"cli-reader-{uid()}"
    private, public = generate(cli, tmp_path, f"{client_id}-k1")
    added = cli("clients", "add", "--client-id", client_id, "--role", "reader", "--jwks", str(public))
    assert added.returncode == 0, added.stderr  # a reader needs no ODS code
    r = cli(
        "token",
        "--token-url",
        f"{stack.proxy}/oauth2/token",
        "--client-id",
        client_id,
        "--key",
        str(private),
        "--scope",
        "system/Patient.rs",
    )
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert read_status(stack, token) == 403  # Task is outside system/Patient.rs
    ok = requests.get(
        f"{stack.fhir}/Patient",
        params={"_count": 1},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
        timeout=30,
    )
    assert ok.status_code == 200, ok.text


def test_clients_add_refuses_bad_input(cli, tmp_path):
    client_id = f"cli-bad-{uid()}"
    _, public = generate(cli, tmp_path, f"{client_id}-k1")

    bad_role = cli(
        "clients", "add", "--client-id", client_id, "--ods", "FA001", "--role", "boss", "--jwks", str(public)
    )
    assert bad_role.returncode != 0 and "role" in bad_role.stderr

    no_ods = cli("clients", "add", "--client-id", client_id, "--role", "spoke", "--jwks", str(public))
    assert no_ods.returncode != 0 and "ODS" in no_ods.stderr

    no_keys = cli("clients", "add", "--client-id", client_id, "--ods", "FA001", "--role", "spoke")
    assert no_keys.returncode != 0

    bad_scope = cli(
        "clients",
        "add",
        "--client-id",
        client_id,
        "--role",
        "reader",
        "--jwks",
        str(public),
        "--scopes",
        "all",
    )
    assert bad_scope.returncode != 0

    private_as_jwks = tmp_path / "not-a-set.json"
    private_as_jwks.write_text(json.dumps({"keys": [{"kty": "RSA", "kid": "x"}]}))
    bad_set = cli(
        "clients", "add", "--client-id", client_id, "--role", "reader", "--jwks", str(private_as_jwks)
    )
    assert bad_set.returncode != 0

    assert client_id not in cli("clients", "list").stdout, "a refused client was registered"
    missing = cli("clients", "disable", client_id)
    assert missing.returncode == 1 and "no client" in missing.stderr
