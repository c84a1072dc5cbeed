"""Operator tooling: the ``fhirplug`` command and the local stack it starts."""
