"""The production image (Dockerfile) carries every package the proxy and worker import: no
Docker engine runs here, so this is what stops a new domain package from being left out of it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def copied() -> set[str]:
    text = (ROOT / "Dockerfile").read_text()
    return {m.group(1) for m in re.finditer(r"^COPY (\w+) \./\1$", text, re.M)}


def test_every_installed_package_is_copied_into_the_image():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    assert packages - copied() == set()


def test_the_profiles_init_store_loads_are_in_the_image():
    assert "profiles" in copied()
    assert any((ROOT / "profiles" / "fhirplug").glob("SearchParameter-*.json"))
