"""``fhirplug backup`` and ``fhirplug restore`` on a real Redis of their own (no store needed):
the OAuth clients and partners round-trip, with their keys when asked; a different key is never
overwritten; a document that is not a backup is refused."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from ops import stack as stackmod
from proxy.auth import partner_keys
from proxy.auth.registry import KEY as CLIENTS_KEY
from proxy.partners import KEY as PARTNERS_KEY
from proxy.partners import Partner, PartnerDirectory
from tests.conftest import free_port
from tests.support import oauth

pytestmark = pytest.mark.integration
FHIRPLUG = str(Path(sys.executable).parent / "fhirplug")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    cfg = stackmod.StackConfig(var_dir=tmp_path_factory.mktemp("backup-redis"), redis_port=free_port())
    url = stackmod.start_redis(cfg)
    yield url
    stackmod.stop_all(cfg)


@pytest.fixture
def redis(redis_url):
    conn = Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


def fhirplug(redis_url: str, keys_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": redis_url, "FHIRPLUG_KEYS_DIR": str(keys_dir)}
    return subprocess.run([FHIRPLUG, *args], env=env, capture_output=True, text=True, timeout=60)


def populate(redis_url: str, tmp: Path) -> tuple[Path, Path]:
    """Two clients, a partner with its key file, and a server signing key."""
    keys_dir = tmp / "server-keys"
    keys_dir.mkdir()
    (keys_dir / "k1.jwk.json").write_text(json.dumps({"kty": "EC", "kid": "k1", "d": "secret"}))
    oauth.make_client(redis_url, tmp / "client-keys", "backup-spoke", "spoke", "VNE51")
    oauth.make_client(redis_url, tmp / "client-keys", "backup-admin", "admin")
    private, _ = partner_keys.generate("hub-k1", tmp / "partner-keys", "RS512", rsa_bits=2048)
    PartnerDirectory(Redis.from_url(redis_url)).put(
        Partner(
            "FA565", "hub", "https://hub.example/fhir", "https://hub.example/oauth2/token", "us", str(private)
        )
    )
    return keys_dir, private


def test_clients_partners_and_keys_round_trip(redis_url, redis, tmp_path):
    keys_dir, partner_key = populate(redis_url, tmp_path)
    before = {key: redis.hgetall(key) for key in (CLIENTS_KEY, PARTNERS_KEY)}
    key_bytes, server_key = partner_key.read_bytes(), (keys_dir / "k1.jwk.json").read_bytes()
    backup = tmp_path / "fhirplug-backup.json"

    r = fhirplug(redis_url, keys_dir, "backup", str(backup), "--with-keys")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600  # it carries private keys
    assert "2 clients, 1 partners, 2 key files" in r.stderr

    redis.flushdb()  # Redis lost, and the keys with the host
    partner_key.unlink()
    shutil.rmtree(keys_dir)
    r = fhirplug(redis_url, keys_dir, "restore", str(backup))
    assert r.returncode == 0, r.stderr

    assert {key: redis.hgetall(key) for key in (CLIENTS_KEY, PARTNERS_KEY)} == before
    assert partner_key.read_bytes() == key_bytes and (keys_dir / "k1.jwk.json").read_bytes() == server_key
    assert stat.S_IMODE(partner_key.stat().st_mode) == 0o600
    # the restored partner signs as before: its key is a private JWK again
    assert PartnerDirectory(redis).get("FA565").private_jwk()["kid"] == "hub-k1"


def test_without_keys_the_backup_names_them_and_restore_says_which_are_missing(redis_url, redis, tmp_path):
    keys_dir, partner_key = populate(redis_url, tmp_path)
    backup = tmp_path / "b.json"
    assert fhirplug(redis_url, keys_dir, "backup", str(backup)).returncode == 0
    doc = json.loads(backup.read_text())
    assert all("content" not in f and f["sha256"] for f in doc["files"])
    assert "secret" not in backup.read_text()
    redis.flushdb()
    partner_key.unlink()
    r = fhirplug(redis_url, keys_dir, "restore", str(backup))
    assert r.returncode == 0, r.stderr
    assert f"key file {partner_key}: not in the backup and not on this host" in r.stdout
    assert redis.hlen(CLIENTS_KEY) == 2 and redis.hlen(PARTNERS_KEY) == 1


def test_a_different_key_in_place_is_never_overwritten_and_nothing_is_written(redis_url, redis, tmp_path):
    keys_dir, partner_key = populate(redis_url, tmp_path)
    backup = tmp_path / "b.json"
    assert fhirplug(redis_url, keys_dir, "backup", str(backup), "--with-keys").returncode == 0
    redis.flushdb()
    partner_key.write_text('{"kid": "someone-elses"}')
    r = fhirplug(redis_url, keys_dir, "restore", str(backup))
    assert r.returncode == 1 and "exists with other content" in r.stderr
    assert partner_key.read_text() == '{"kid": "someone-elses"}'
    assert redis.hlen(CLIENTS_KEY) == 0  # refused before writing anything


def test_replace_empties_first_and_a_non_backup_is_refused(redis_url, redis, tmp_path):
    keys_dir, _ = populate(redis_url, tmp_path)
    backup = tmp_path / "b.json"
    assert fhirplug(redis_url, keys_dir, "backup", str(backup)).returncode == 0
    oauth.make_client(redis_url, tmp_path / "client-keys", "added-later", "admin")
    assert fhirplug(redis_url, keys_dir, "restore", str(backup)).returncode == 0
    assert redis.hexists(CLIENTS_KEY, "added-later")  # merged
    assert fhirplug(redis_url, keys_dir, "restore", str(backup), "--replace").returncode == 0
    assert not redis.hexists(CLIENTS_KEY, "added-later")  # as backed up

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"resourceType": "Bundle"}))
    r = fhirplug(redis_url, keys_dir, "restore", str(other))
    assert r.returncode == 1 and "not a fhirplug-backup" in r.stderr
