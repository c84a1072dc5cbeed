"""An in-memory EPS store for the lifecycle handlers' unit tests, and prescriptions to put in it.

``MemoryStore`` answers the ``EpsStore`` protocol the way the real store does where the handlers
depend on it: a tenant's view (``as_caller``) sees only what carries its label; a transaction is
all or nothing, resolves ``urn:uuid`` references between its entries, and is refused whole (412)
when an entry's ``ifMatch`` names a version that is no longer current.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from eps import records
from eps.events import Sender
from hubspoke.identifiers import TENANT_SYSTEM

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "examples" / "eps"
SEND = "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Process-Request-Send-200_OK.json"
DISPENSE = "spec__dispensing__dispense-notification__acute-primary-example-01-req.json"
RETURN = "spec__dispensing__return__acute-primary-example-req.json"
WITHDRAW = "spec__dispensing__withdraw__acute-primary-example-req.json"
CANCEL = (
    "primary-care__acute__nominated-pharmacy__medical-prescriber__cancellations__"
    "1-Process-Request-Cancel-200_OK.json"
)
PRESCRIBER, NOMINATED, OTHER = "A83008", "FA565", "VNE51"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
PRESCRIBER_SENDER = Sender("gp-system", "prescriber", PRESCRIBER)


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def dispenser(ods: str = NOMINATED) -> Sender:
    return Sender(f"pharmacy-{ods.lower()}", "dispenser", ods)


class MemoryStore:
    def __init__(
        self, resources: dict[str, dict] | None = None, caller: tuple[str, str | None] | None = None
    ):
        self.resources: dict[str, dict] = resources if resources is not None else {}
        self.caller = caller
        self.transactions: list[dict] = []
        self.before_commit: list = []  # callables run just before a transaction is judged (races)

    # -- the EpsStore protocol
    def as_caller(self, role: str, ods: str | None) -> MemoryStore:
        view = MemoryStore(self.resources, (role, ods))
        view.transactions, view.before_commit = self.transactions, self.before_commit
        return view

    def read(self, resource_type: str, resource_id: str) -> dict | None:
        found = self.resources.get(f"{resource_type}/{resource_id}")
        return copy.deepcopy(found) if found is not None and self._visible(found) else None

    def search(self, resource_type: str, query, count: int = 200) -> list[dict]:
        pairs = parse_qsl(query) if isinstance(query, str) else list(query)
        out = []
        for key, resource in self.resources.items():
            if key.split("/")[0] != resource_type or not self._visible(resource):
                continue
            if all(_matches(resource, k, v) for k, v in pairs):
                out.append(copy.deepcopy(resource))
        return out[:count]

    def transaction(self, bundle: dict) -> tuple[int, dict | None]:
        self.transactions.append(copy.deepcopy(bundle))
        for hook in list(self.before_commit):
            hook()
        for entry in bundle["entry"]:
            req = entry["request"]
            if req["method"] == "PUT":
                current = self.resources.get(req["url"])
                if current is None or not self._visible(current):
                    return 404, None
                wanted = req.get("ifMatch")
                if wanted is not None and wanted != f'W/"{current["meta"]["versionId"]}"':
                    return 412, None
                if (
                    self.caller
                    and self.caller[0] != "admin"
                    and self.caller[1] not in _labels(entry["resource"])
                ):
                    return 403, None
        names = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{uuid.uuid4().hex[:12]}"
            for e in bundle["entry"]
            if e["request"]["method"] == "POST"
        }
        for entry in bundle["entry"]:
            resource = _renamed(copy.deepcopy(entry["resource"]), names)
            if entry["request"]["method"] == "POST":
                key = names[entry["fullUrl"]]
                resource["id"] = key.split("/")[1]
                resource.setdefault("meta", {})["versionId"] = "1"
            else:
                key = entry["request"]["url"]
                version = int(self.resources[key]["meta"]["versionId"]) + 1
                resource.setdefault("meta", {})["versionId"] = str(version)
            self.resources[key] = resource
        return 200, {"resourceType": "Bundle", "type": "transaction-response"}

    def update(self, resource: dict, if_match: str | None = None) -> tuple[int, dict | None]:
        entry = {
            "fullUrl": "x",
            "resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
        }
        if if_match is not None:
            entry["request"]["ifMatch"] = f'W/"{if_match}"'
        status, _ = self.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
        return status, self.resources.get(entry["request"]["url"])

    def create(self, resource: dict) -> dict | None:
        self.transaction(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "fullUrl": "urn:uuid:new",
                        "resource": resource,
                        "request": {"method": "POST", "url": resource["resourceType"]},
                    }
                ],
            }
        )
        return resource

    # -- helpers for tests
    def _visible(self, resource: dict) -> bool:
        if self.caller is None or self.caller[0] == "admin":
            return True
        return self.caller[1] in _labels(resource)

    def of_type(self, resource_type: str) -> list[dict]:
        return [r for k, r in self.resources.items() if k.startswith(resource_type + "/")]

    def task(self, short_id: str) -> dict:
        return next(t for t in self.of_type("Task") if records.short_form_id(t) == short_id)

    def items(self, short_id: str) -> list[dict]:
        task = self.task(short_id)
        return [self.resources[i["valueReference"]["reference"]] for i in task["input"]]

    def put(self, resource: dict) -> None:
        key = f"{resource['resourceType']}/{resource['id']}"
        resource = copy.deepcopy(resource)
        resource["meta"]["versionId"] = str(int(self.resources[key]["meta"]["versionId"]) + 1)
        self.resources[key] = resource


_short_ids = itertools.count(1)


def new_prescription(store: MemoryStore, *, nominated: str | None = NOMINATED) -> tuple[str, str, dict]:
    """A prescription stored as records keeps it (from EPS's Send example, fresh ids): its
    short-form id, its prescription-order message id, and the message."""
    message = example(SEND)
    short_id = f"{next(_short_ids):06X}-{PRESCRIBER}-00000X"
    message_id = str(uuid.uuid4())
    message["identifier"]["value"] = message_id
    for e in message["entry"]:
        r = e["resource"]
        if r["resourceType"] == "MedicationRequest":
            r["groupIdentifier"]["value"] = short_id
            if nominated is None:
                r["dispenseRequest"].pop("performer", None)
            else:
                r["dispenseRequest"]["performer"]["identifier"]["value"] = nominated
    tx = records.prescription_transaction(
        message,
        short_id=short_id,
        message_key_value=records.message_key(PRESCRIBER, message_id),
        nhs_number="9449305552",
        authored_on="2022-10-21T13:47:00+00:00",
        prescriber_ods=PRESCRIBER,
        nominated_ods=nominated,
    )
    status, _ = store.transaction(tx)
    assert status == 200
    store.transactions.clear()
    return short_id, message_id, message


def released(store: MemoryStore, short_id: str, ods: str = NOMINATED) -> None:
    """As a release leaves it: with ``ods``'s pharmacy, every part labelled for it."""
    store.put(records.with_status(store.task(short_id), records.BusinessStatus.WITH_DISPENSER, owner=ods))
    for item in store.items(short_id):
        labels = {s["code"] for s in item["meta"]["security"] if s["system"] == TENANT_SYSTEM}
        store.put(records.labelled(copy.deepcopy(item), records.tenant_labels(ods, *labels)))


def notification(short_id: str, message_id: str, items: dict[str, str]) -> dict:
    """EPS's dispense-notification example for our prescription: one dispense per line item
    given, at the item status given (medicationdispense-type)."""
    message = example(DISPENSE)
    message["identifier"]["value"] = message["id"] = str(uuid.uuid4())
    header = message["entry"][0]["resource"]
    header["response"]["identifier"] = message_id
    template = next(e for e in message["entry"] if e["resource"]["resourceType"] == "MedicationDispense")
    others = [e for e in message["entry"] if e["resource"]["resourceType"] not in ("MedicationDispense",)]
    dispenses = []
    for line, code in items.items():
        entry = copy.deepcopy(template)
        entry["fullUrl"] = f"urn:uuid:{uuid.uuid4()}"
        md = entry["resource"]
        prescribed = md["contained"][1]
        prescribed["groupIdentifier"]["value"] = short_id
        prescribed["identifier"][0]["value"] = line
        md["type"]["coding"][0]["code"] = code
        dispenses.append(entry)
    header["focus"] = [{"reference": e["fullUrl"]} for e in dispenses]
    message["entry"] = [others[0], *dispenses, *others[1:]]
    return message


def line_items(message: dict) -> list[str]:
    return [
        e["resource"]["identifier"][0]["value"]
        for e in message["entry"]
        if e["resource"]["resourceType"] == "MedicationRequest"
    ]


def _labels(resource: dict) -> set[str]:
    return {
        s.get("code")
        for s in (resource.get("meta") or {}).get("security") or []
        if s.get("system") == TENANT_SYSTEM
    }


def _matches(resource: dict, key: str, value: str) -> bool:
    if key == "_id":
        return resource.get("id") in value.split(",")
    if key == "_tag":
        system, _, code = value.partition("|")
        return any(
            t.get("system") == system and t.get("code") == code
            for t in (resource.get("meta") or {}).get("tag") or []
        )
    if key == "identifier":
        wanted = [tuple(v.split("|", 1)) for v in value.split(",")]
        return any((i.get("system"), i.get("value")) in wanted for i in resource.get("identifier") or [])
    if key == "status:not":
        return resource.get("status") != value
    raise AssertionError(f"the memory store does not search by {key}")


def _renamed(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: (names.get(v, v) if k == "reference" and isinstance(v, str) else _renamed(v, names))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    return value
