"""The code systems and naming systems hub-and-spoke data is written with: one place for each URL."""

from __future__ import annotations

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"  # an organisation's ODS code
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
TENANT_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/tenant"  # meta.security: who may see a resource
# meta.security: who may only read a resource, by a care relationship (careaccess.rules)
READER_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/reader"
HANDOFF_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/hand-off"  # AuditEvent.subtype of a hand-off
CLIENT_SYSTEM = "https://fhirplug.org/fhir/NamingSystem/client-id"  # an OAuth client, in audit events
MESSAGE_ID_SYSTEM = "https://fhirplug.org/fhir/NamingSystem/message-identifier"
PARTNER_TASK_SYSTEM = "https://fhirplug.org/fhir/NamingSystem/partner-task-id"  # "<ODS>/<their id>"
