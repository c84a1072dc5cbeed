"""Request metrics through prometheus_client: every answered request counted and timed by what it
was (interaction kind, resource type, operation) and its status; server errors; the store's
answer time; read-cache look-ups.

Labels are bounded by construction: a resource type is one of R4's (anything else is
``other``), an operation one of those the proxy serves (else ``$other``), never an id or a
query, so a caller cannot grow the series without limit.

Under gunicorn the proxy runs several processes: prometheus_client's multiprocess mode (its
``PROMETHEUS_MULTIPROC_DIR``, set by proxy/gunicorn_conf.py before a worker imports this) keeps
each process's values in files there, and ``exposition`` adds them up. Without it (unit tests,
a single process) the values live in this process's default registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from proxy.context import RequestContext

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# FHIR R4 (4.0.1): its 146 resource types, the only values the resource_type label takes
R4_RESOURCE_TYPES = frozenset(
    """Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse
    AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement
    CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim ClaimResponse
    ClinicalImpression CodeSystem Communication CommunicationRequest CompartmentDefinition
    Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
    CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest
    DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis
    Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence
    EvidenceVariable ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal
    GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
    ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice
    Library Linkage List Location Measure MeasureReport Media Medication MedicationAdministration
    MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct
    MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication
    MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
    MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect
    MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder Observation
    ObservationDefinition OperationDefinition OperationOutcome Organization OrganizationAffiliation
    Parameters Patient PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner
    PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson
    RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject
    RiskAssessment RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen
    SpecimenDefinition StructureDefinition StructureMap Subscription Substance
    SubstanceNucleicAcid SubstancePolymer SubstanceProtein SubstanceReferenceInformation
    SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task
    TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription""".split()  # noqa: SIM905 (a word list reads better than 146 quoted names)
)
# the operations the proxy serves or passes to the store (proxy.capability_statement, plugins/)
OPERATIONS = frozenset({"$validate", "$install", "$process-message", "$prepare", "$release", "$notify-gp"})
# a FHIR request is tens of milliseconds to tens of seconds (a large transaction, a slow store)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter(
    "fhirplug_requests",
    "Requests answered, by interaction, resource type, operation and HTTP status.",
    ["interaction", "resource_type", "operation", "status"],
)
DURATION = Histogram(
    "fhirplug_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by interaction, resource type and operation.",
    ["interaction", "resource_type", "operation"],
    buckets=LATENCY_BUCKETS,
)
ERRORS = Counter(
    "fhirplug_request_errors",
    "Requests answered with a server error (5xx: the proxy's, a plugin's or the store's failure).",
    ["interaction", "resource_type", "operation", "status"],
)
STORE_DURATION = Histogram(
    "fhirplug_store_request_duration_seconds",
    "Time the FHIR store took to answer a request of the proxy (to its response headers), by method.",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
CACHE_LOOKUPS = Counter(
    "fhirplug_read_cache_lookups",
    "Read-cache look-ups by result: hit, miss (then filled), or bypass (not cacheable, or Redis down).",
    ["result"],
)


def labels_of(ctx: RequestContext) -> tuple[str, str, str]:
    """(interaction, resource_type, operation) of a request, each from a bounded set."""
    i = ctx.interaction
    resource_type = i.resource_type or ""
    if resource_type and resource_type not in R4_RESOURCE_TYPES:
        resource_type = "other"
    operation = i.operation or ""
    if operation and operation not in OPERATIONS:
        operation = "$other"
    return i.kind, resource_type, operation


def observe_request(ctx: RequestContext, status: int) -> None:
    """Count and time one answered request (called when its answer has been sent)."""
    kind, resource_type, operation = labels_of(ctx)
    REQUESTS.labels(kind, resource_type, operation, str(status)).inc()
    DURATION.labels(kind, resource_type, operation).observe(ctx.elapsed_ms() / 1000.0)
    if status >= 500:
        ERRORS.labels(kind, resource_type, operation, str(status)).inc()


@contextmanager
def store_timer(method: str) -> Iterator[None]:
    """Time one store request, also when it fails (a timeout is the store's time too)."""
    start = perf_counter()
    try:
        yield
    finally:
        STORE_DURATION.labels(method).observe(perf_counter() - start)


def cache_lookup(result: str) -> None:
    CACHE_LOOKUPS.labels(result).inc()


def registry() -> CollectorRegistry:
    """What to expose: every process's values (multiprocess mode), or this process's. Decided by
    how prometheus_client keeps values, which it chose from the environment at import."""
    if values.ValueClass is not values.MutexValue:
        reg = CollectorRegistry()
        MultiProcessCollector(reg, path=os.environ[MULTIPROC_ENV])
        return reg
    return REGISTRY


def exposition() -> str:
    """The request metrics in the Prometheus text format."""
    return generate_latest(registry()).decode()
