"""Plugins declare what they require and provide; a list that cannot meet a need is refused at start."""

import pytest

from proxy.config import DEFAULT_PLUGINS, Settings
from proxy.plugin_manager import PluginLoadError, build_plugin_manager, check_requirements


class Provider:
    provides = ("message",)


class Needs:
    requires = ("message",)


def test_the_default_list_meets_every_requirement():
    build_plugin_manager(list(DEFAULT_PLUGINS))


def test_there_is_one_default_list():
    assert Settings().plugins == list(DEFAULT_PLUGINS)


def test_routing_without_message_checks_is_refused_naming_both():
    names = [n for n in DEFAULT_PLUGINS if n != "message_checks"]
    with pytest.raises(PluginLoadError) as caught:
        build_plugin_manager(names)
    text = str(caught.value)
    assert "'routing' requires 'message'" in text
    assert "no enabled plugin provides it" in text and "message_checks" in text


def test_a_provider_listed_after_its_user_is_refused():
    with pytest.raises(PluginLoadError) as caught:
        build_plugin_manager(["request_id", "routing", "message_checks"])
    assert "'message_checks' provides it but is listed after 'routing'" in str(caught.value)


@pytest.mark.parametrize("plugin", ["routing", "intake", "dispense_return", "audit"])
def test_each_message_reader_requires_the_message(plugin):
    with pytest.raises(PluginLoadError, match=f"'{plugin}' requires 'message'"):
        build_plugin_manager([plugin])
    build_plugin_manager(["message_checks", plugin])


def test_plugins_that_need_nothing_load_alone():
    build_plugin_manager(["request_id", "tenancy", "profile_validation", "task_workflow", "access_log"])


def test_requirements_are_met_in_order_only():
    check_requirements([("p", Provider()), ("n", Needs())])
    with pytest.raises(PluginLoadError, match="'p' provides it but is listed after 'n'"):
        check_requirements([("n", Needs()), ("p", Provider())])
    with pytest.raises(PluginLoadError, match="'extra-0' requires 'message'"):
        build_plugin_manager([], extra=[Needs()])
