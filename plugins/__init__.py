"""fhirplug's own plugins. Each module implements part of ``proxy.hookspecs`` and is enabled by
name in FHIRPLUG_PLUGINS (the names are the entry points in pyproject.toml)."""
