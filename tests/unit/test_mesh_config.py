"""The MESH keys (FHIRPLUG_MESH_*) are read once, like every other setting; production names INT or
LIVE and reads its secrets from files; `make up` points the proxy and worker at its own sandbox."""

import pytest

from ops import mesh_sandbox
from ops import stack as stackmod
from proxy.config import MeshSettings, Settings, WorkerSettings

MESH_KEYS = ("URL", "MAILBOX", "PASSWORD", "PASSWORD_FILE", "SHARED_KEY", "SHARED_KEY_FILE", "CLIENT_CERT")
MESH_KEYS += ("CLIENT_KEY", "CA", "VERIFY", "TIMEOUT")


@pytest.fixture
def env(monkeypatch):
    for key in MESH_KEYS:
        monkeypatch.delenv(f"FHIRPLUG_MESH_{key}", raising=False)
    monkeypatch.setenv("FHIRPLUG_STORE_SECRET", "s" * 40)
    return monkeypatch


def test_without_configuration_it_is_the_local_sandbox_and_sends_nothing(env):
    mesh = MeshSettings.from_env()
    assert mesh.url == "http://127.0.0.1:8700"
    assert not mesh.configured


def test_int_and_live_are_named_by_name(env):
    env.setenv("FHIRPLUG_MESH_URL", "int")
    assert MeshSettings.from_env().url == "https://msg.intspineservices.nhs.uk"
    env.setenv("FHIRPLUG_MESH_URL", "LIVE")
    assert MeshSettings.from_env().url == "https://mesh-sync.spineservices.nhs.uk"


def test_secrets_come_from_files_and_never_show_in_the_repr(env, tmp_path):
    (tmp_path / "pw").write_text("mailbox-secret\n")
    (tmp_path / "key").write_text("shared-secret\n")
    env.setenv("FHIRPLUG_MESH_PASSWORD_FILE", str(tmp_path / "pw"))
    env.setenv("FHIRPLUG_MESH_SHARED_KEY_FILE", str(tmp_path / "key"))
    env.setenv("FHIRPLUG_MESH_MAILBOX", "x26ot003")
    env.setenv("FHIRPLUG_MESH_CLIENT_CERT", "/etc/mesh/client.crt")
    mesh = MeshSettings.from_env()
    assert (mesh.mailbox, mesh.password, mesh.shared_key) == ("X26OT003", "mailbox-secret", "shared-secret")
    assert mesh.configured and mesh.client_cert == "/etc/mesh/client.crt"
    assert "secret" not in repr(mesh)


def test_the_proxy_and_the_worker_both_read_them(env):
    env.setenv("FHIRPLUG_MESH_MAILBOX", "FA565OT001")
    assert Settings.from_env().mesh.mailbox == WorkerSettings.from_env().mesh.mailbox == "FA565OT001"


def test_verify_is_a_switch(env):
    env.setenv("FHIRPLUG_MESH_VERIFY", "maybe")
    with pytest.raises(ValueError, match="FHIRPLUG_MESH_VERIFY"):
        MeshSettings.from_env()


def test_make_up_gives_the_proxy_its_sandbox_and_a_real_mesh_replaces_it(env, tmp_path):
    cfg = stackmod.StackConfig(var_dir=tmp_path, mesh_port=18700)
    env_for_proxy = stackmod.proxy_env(cfg)
    assert env_for_proxy["FHIRPLUG_MESH_URL"] == "http://127.0.0.1:18700"
    assert env_for_proxy["FHIRPLUG_MESH_SHARED_KEY"] == mesh_sandbox.LOCAL_SHARED_KEY
    real = stackmod.StackConfig(var_dir=tmp_path, mesh_url="INT")
    assert "FHIRPLUG_MESH_URL" not in stackmod.proxy_env(real)
    assert stackmod.start_mesh(real) == "INT"  # nothing started


def test_the_sandbox_mailboxes_are_valid_json_lines_with_the_local_deployment():
    import json

    lines = (mesh_sandbox.DATA / "mailboxes.jsonl").read_text().splitlines()
    ids = {json.loads(line)["mailbox_id"] for line in lines if line.strip()}
    assert mesh_sandbox.LOCAL_MAILBOX in ids
    for line in (mesh_sandbox.DATA / "workflows.jsonl").read_text().splitlines():
        flow = json.loads(line)
        assert set(flow["senders"]) | set(flow["receivers"]) <= ids
