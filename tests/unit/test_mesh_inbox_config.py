"""A deployment is made a GP practice (or a pharmacy that takes acks in) by FHIRPLUG_MESH_ROLE alone;
a role it does not know stops it at start rather than polling nothing."""

import pytest

from proxy.config import ConfigError, MeshSettings


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv("FHIRPLUG_MESH_ROLE", raising=False)
    monkeypatch.delenv("FHIRPLUG_MESH_POLL_SECONDS", raising=False)
    return monkeypatch


def test_without_a_role_there_is_no_inbox_and_polls_are_minutes_apart(env):
    mesh = MeshSettings.from_env()
    assert (mesh.role, mesh.poll_seconds) == ("", 300.0)


@pytest.mark.parametrize("role", ["gp", "PHARMACY", "both"])
def test_the_roles_are_read(env, role):
    env.setenv("FHIRPLUG_MESH_ROLE", role)
    env.setenv("FHIRPLUG_MESH_POLL_SECONDS", "5")
    mesh = MeshSettings.from_env()
    assert (mesh.role, mesh.poll_seconds) == (role.lower(), 5.0)


def test_an_unknown_role_is_refused(env):
    env.setenv("FHIRPLUG_MESH_ROLE", "practice")
    with pytest.raises(ConfigError, match="FHIRPLUG_MESH_ROLE"):
        MeshSettings.from_env()
