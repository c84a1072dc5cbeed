"""ops/stack.py: the store's JVM profiles."""

from __future__ import annotations

import pytest

from ops import stack


def test_the_quick_profile_trades_throughput_for_start_up():
    assert stack.store_jvm_flags("quick", "1g") == ["-Xmx1g", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]


def test_the_production_profile_runs_the_full_jit_and_g1_on_a_fixed_heap():
    flags = stack.store_jvm_flags("production", "4g")
    assert "-XX:+UseG1GC" in flags and {"-Xms4g", "-Xmx4g"} <= set(flags)
    assert not [f for f in flags if f.startswith("-XX:TieredStopAtLevel") or f == "-XX:+UseSerialGC"]


def test_an_unknown_profile_is_refused_naming_the_key():
    with pytest.raises(stack.StackError, match="FHIRPLUG_STORE_PROFILE"):
        stack.store_jvm_flags("fast", "1g")


def test_the_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("FHIRPLUG_STORE_PROFILE", "production")
    assert stack.StackConfig.from_env().store_profile == "production"


def test_a_first_make_up_writes_a_marked_local_identity_and_keeps_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FHIRPLUG_ODS", raising=False)
    cfg = stack.StackConfig(var_dir=tmp_path)
    assert stack.local_identity(cfg) == stack.LOCAL_ODS
    written = (tmp_path / "identity.env").read_text()
    assert "local default" in written and f"FHIRPLUG_ODS={stack.LOCAL_ODS}" in written
    (tmp_path / "identity.env").write_text("FHIRPLUG_ODS=FA565\n")  # the operator names it
    assert stack.local_identity(cfg) == "FA565"


def test_fhirplug_ods_in_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("FHIRPLUG_ODS", "VNE51")
    assert stack.local_identity(stack.StackConfig(var_dir=tmp_path)) == "VNE51"
    assert not (tmp_path / "identity.env").exists()


def test_an_identity_file_without_a_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("FHIRPLUG_ODS", raising=False)
    (tmp_path / "identity.env").write_text("# nothing here\n")
    with pytest.raises(stack.StackError, match="identity.env"):
        stack.local_identity(stack.StackConfig(var_dir=tmp_path))
