import pytest

from console.settings import ConsoleSettings


def test_defaults():
    s = ConsoleSettings.from_env({})
    assert s.enabled and s.idle_s == 900 and s.max_s == 8 * 3600 and s.lockout_failures == 5


def test_keys_are_read():
    s = ConsoleSettings.from_env({"FHIRPLUG_CONSOLE": "off", "FHIRPLUG_CONSOLE_IDLE_SECONDS": "120"})
    assert not s.enabled and s.idle_s == 120


@pytest.mark.parametrize(
    "env",
    [
        {"FHIRPLUG_CONSOLE": "maybe"},
        {"FHIRPLUG_CONSOLE_IDLE_SECONDS": "soon"},
        {"FHIRPLUG_CONSOLE_LOCKOUT_FAILURES": "0"},
    ],
)
def test_bad_values_are_refused(env):
    with pytest.raises(ValueError):
        ConsoleSettings.from_env(env)


def test_an_external_provider_is_configured_with_its_client():
    s = ConsoleSettings.from_env(
        {
            "FHIRPLUG_CONSOLE_OIDC_ISSUER": "https://login.example.nhs.uk",
            "FHIRPLUG_CONSOLE_OIDC_CLIENT_ID": "console",
            "FHIRPLUG_CONSOLE_OIDC_CLIENT_SECRET": "s",
            "FHIRPLUG_CONSOLE_OIDC_USER_CLAIM": "email",
        }
    )
    assert s.oidc is not None and s.oidc.user_claim == "email" and s.oidc.client_id == "console"
    assert ConsoleSettings.from_env({}).oidc is None


@pytest.mark.parametrize(
    "env",
    [
        {
            "FHIRPLUG_CONSOLE_OIDC_ISSUER": "http://login.example.nhs.uk",
            "FHIRPLUG_CONSOLE_OIDC_CLIENT_ID": "c",
            "FHIRPLUG_CONSOLE_OIDC_CLIENT_SECRET": "s",
        },  # plain http to another host
        {"FHIRPLUG_CONSOLE_OIDC_ISSUER": "https://login.example.nhs.uk"},  # no client
    ],
)
def test_a_provider_without_https_or_a_client_is_refused(env):
    with pytest.raises(ValueError):
        ConsoleSettings.from_env(env)
