"""The completion plugin: a thin adapter that adds the request's update and its audit as
companion writes, granted to the store when the dispenser only reads the request."""

from hubspoke.identifiers import READER_SYSTEM, TENANT_SYSTEM
from plugins.completion import Completion
from proxy.context import Client, Message, WriteEntry
from tests.support.plugin_context import ScriptedStore, request_context, searchset

PHARMACY = Client("pharmacy", "FD001", "spoke")
TABLETS = {"value": 60, "unit": "tablet", "system": "http://snomed.info/sct", "code": "428673006"}
REQUEST = {
    "resourceType": "MedicationRequest",
    "id": "5",
    "status": "active",
    "meta": {
        "versionId": "3",
        "security": [{"system": TENANT_SYSTEM, "code": "FP001"}, {"system": READER_SYSTEM, "code": "FD001"}],
    },
    "dispenseRequest": {"quantity": TABLETS},
}


def dispense(value: float, status: str = "completed") -> dict:
    return {
        "resourceType": "MedicationDispense",
        "status": status,
        "authorizingPrescription": [{"reference": "MedicationRequest/5"}],
        "quantity": {**TABLETS, "value": value},
    }


def run(md: dict, *earlier: dict, client: Client = PHARMACY, enabled: bool = True, request: dict = REQUEST):
    store = ScriptedStore(
        {("GET", "MedicationRequest/5"): request, ("GET", "MedicationDispense"): searchset(*earlier)}
    )
    ctx = request_context("create", "POST", "MedicationDispense", client=client, store=store)
    entry = WriteEntry("POST", "MedicationDispense", md)
    Completion(enabled=enabled).fhirplug_before_storage(ctx=ctx, entry=entry)
    return ctx, entry


def test_a_full_dispense_adds_the_request_update_and_its_audit():
    ctx, entry = run(dispense(60))
    put, audit = ctx.companion_writes
    assert put["request"] == {"method": "PUT", "url": "MedicationRequest/5", "ifMatch": 'W/"3"'}
    assert put["resource"]["status"] == "completed"
    assert audit["resource"]["resourceType"] == "AuditEvent"
    assert audit["resource"]["agent"][0]["altId"] == "pharmacy"
    assert {"what": {"reference": entry.full_url}} in audit["resource"]["entity"]


def test_the_dispenser_that_only_reads_the_request_gets_a_grant_for_it_alone():
    ctx, _ = run(dispense(60))
    assert ctx.completion_grants == {"MedicationRequest/5"}


def test_the_prescriber_itself_needs_no_grant():
    ctx, _ = run(dispense(60), client=Client("prescriber", "FP001", "spoke"))
    assert ctx.companion_writes and ctx.completion_grants == set()


def test_a_partial_dispense_adds_nothing():
    ctx, _ = run(dispense(20))
    assert ctx.companion_writes == [] and ctx.completion_grants == set()


def test_earlier_completed_dispenses_count():
    ctx, _ = run(dispense(20), dispense(40))
    assert ctx.companion_writes[0]["resource"]["status"] == "completed"


def test_a_request_the_caller_cannot_read_is_left_alone():
    ctx, _ = run(dispense(60), client=Client("other", "FX001", "spoke"))
    assert ctx.companion_writes == []


def test_switched_off_it_adds_nothing():
    ctx, _ = run(dispense(60), enabled=False)
    assert ctx.companion_writes == []


def test_a_dispense_not_completed_adds_nothing():
    ctx, _ = run(dispense(60, status="in-progress"))
    assert ctx.companion_writes == []


def test_a_hub_to_spoke_message_is_left_to_dispense_return():
    store = ScriptedStore({("GET", "MedicationRequest/5"): REQUEST})
    ctx = request_context("transaction", "POST", client=PHARMACY, store=store)
    ctx.message = Message("hub-to-spoke", "digest", "FA565", "hub")
    Completion(enabled=True).fhirplug_before_storage(
        ctx=ctx, entry=WriteEntry("POST", "MedicationDispense", dispense(60), index=0)
    )
    assert ctx.companion_writes == []


class _ByCriteria(ScriptedStore):
    """Answers the conditional create's identifier search apart from the prescription search."""

    def __init__(self, same_identifier: list[dict]):
        super().__init__(
            {("GET", "MedicationRequest/5"): REQUEST, ("GET", "MedicationDispense"): searchset()}
        )
        self.same_identifier = same_identifier

    def send(self, method, path, query, headers, body):
        if path == "MedicationDispense" and any(k == "identifier" for k, _ in query):
            self.answers[("GET", "MedicationDispense")] = searchset(*self.same_identifier)
        else:
            self.answers[("GET", "MedicationDispense")] = searchset()
        return super().send(method, path, query, headers, body)


def conditional_create(same_identifier: list[dict]):
    ctx = request_context(
        "create", "POST", "MedicationDispense", client=PHARMACY, store=_ByCriteria(same_identifier)
    )
    entry = WriteEntry("POST", "MedicationDispense", dispense(60), if_none_exist="identifier=urn:x|MD-1")
    Completion(enabled=True).fhirplug_before_storage(ctx=ctx, entry=entry)
    return ctx


def test_a_conditional_create_that_creates_the_dispense_completes_the_request():
    ctx = conditional_create([])
    assert ctx.companion_writes[0]["resource"]["status"] == "completed"


def test_a_conditional_create_that_matches_a_stored_dispense_completes_nothing():
    ctx = conditional_create([dispense(60)])
    assert ctx.companion_writes == [] and ctx.completion_grants == set()
