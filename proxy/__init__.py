"""fhirplug proxy: the front door in front of the FHIR store.

The public contract for plugins is small and lives in these modules:
``proxy.hookspecs`` (the hooks and their markers), ``proxy.context`` (what a hook is given)
and ``proxy.errors`` (how a hook refuses).
"""
