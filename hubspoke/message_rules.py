"""The shape of a hub-and-spoke message: the rules the England Bundle profiles cannot express.

Two transaction Bundles travel between a spoke pharmacy and its hub (NHS England
``England-Bundle-PharmacySpokeToHub`` and ``England-Bundle-PharmacyHubToSpoke``). Their profiles
check types and slice cardinalities; :func:`check` finds the rest, all at once, so a sender
fixing a message sees every problem in one OperationOutcome:

1. exactly one Task and exactly one Organization (for hub-to-spoke the Task entry is the PATCH
   of the Task, or a Task resource);
2. spoke-to-hub carries at least one MedicationRequest and one Patient; hub-to-spoke at least
   one MedicationDispense;
3. every reference between entries resolves by fullUrl: a ``urn:uuid:`` reference must be some
   entry's fullUrl, and ``Type/id`` naming an entry of the bundle whose fullUrl is a
   ``urn:uuid:`` is a slip (the store would look for a stored resource of that id);
4. every NHS Number passes Modulus 11 (identifiers anywhere, and ``ifNoneExist`` criteria);
5. Task.status: ``requested`` from the spoke; the hub's Task ends ``completed`` or ``failed``;
6. each spoke-to-hub Patient has a name, a birthDate and an address.

A hub-to-spoke PATCH must name its Task (``Task/<id>`` or ``Task?identifier=system|value``).

Each problem is (diagnostics, FHIRPath expressions); the plugin answers them with one 400.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from hubspoke.identifiers import NHS_NUMBER_SYSTEM
from hubspoke.messages import (
    HUB_TO_SPOKE,
    SPOKE_TO_HUB,
    bundle_entries,
    classify,
    entries_of_type,
    entry_method,
    entry_request,
    entry_resource,
    entry_type,
    entry_url,
    is_task_patch,
    json_patch_of,
    walk,
)
from hubspoke.nhs_number import nhs_number_valid

HUB_TASK_ENDS = ("completed", "failed")
PATIENT_NEEDS = ("name", "birthDate", "address")

Problem = tuple[str, list[str]]

_RELATIVE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?")


def _counts(kind: str, entries: list[dict]) -> list[Problem]:
    problems: list[Problem] = []
    if kind == HUB_TO_SPOKE:
        tasks = [i for i, e in enumerate(entries) if is_task_patch(e) or entry_type(e) == "Task"]
        task_what = "Task entry (the PATCH of the Task)"
    else:
        tasks = entries_of_type(entries, "Task")
        task_what = "Task"
    required = [(task_what, tasks, True), ("Organization", entries_of_type(entries, "Organization"), True)]
    if kind == SPOKE_TO_HUB:
        required += [
            ("MedicationRequest", entries_of_type(entries, "MedicationRequest"), False),
            ("Patient", entries_of_type(entries, "Patient"), False),
        ]
    else:
        required.append(("MedicationDispense", entries_of_type(entries, "MedicationDispense"), False))
    for what, found, only_one in required:
        if not found:
            need = "exactly one" if only_one else "at least one"
            problems.append((f"A {kind} Bundle must contain {need} {what}: found none", ["Bundle.entry"]))
        elif only_one and len(found) > 1:
            problems.append(
                (
                    f"A {kind} Bundle must contain exactly one {what}: found {len(found)}",
                    [f"Bundle.entry[{i}]" for i in found],
                )
            )
    return problems


def _references(entries: list[dict]) -> list[Problem]:
    full_urls = {str(e["fullUrl"]) for e in entries if isinstance(e.get("fullUrl"), str)}
    by_id: dict[tuple[str, str], str] = {}  # (type, id) -> the urn:uuid fullUrl of that entry
    for e in entries:
        rtype, full_url = entry_type(e), e.get("fullUrl")
        if not rtype or not isinstance(full_url, str) or not full_url.startswith("urn:uuid:"):
            continue
        by_id[(rtype, full_url[len("urn:uuid:") :])] = full_url
        rid = entry_resource(e).get("id")
        if isinstance(rid, str) and rid:
            by_id[(rtype, rid)] = full_url

    problems: list[Problem] = []

    def check(ref: str, where: str) -> None:
        if ref.startswith("urn:uuid:"):
            if ref not in full_urls:
                problems.append(
                    (f"Reference {ref} does not resolve: no entry in the Bundle has that fullUrl", [where])
                )
            return
        m = _RELATIVE.fullmatch(ref)
        if m and (m.group(1), m.group(2)) in by_id:
            problems.append(
                (
                    f"Reference {ref} is a reference by id, use the entry's fullUrl "
                    f"{by_id[(m.group(1), m.group(2))]}",
                    [where],
                )
            )

    for i, e in enumerate(entries):
        root = f"Bundle.entry[{i}].resource"
        for path, value in walk(entry_resource(e), root):
            if path.endswith(".reference") and isinstance(value, str):
                check(value, path)
        ops = (json_patch_of(e) or []) if entry_method(e) == "PATCH" else []
        for _, value in walk(ops, ""):
            if isinstance(value, dict) and isinstance(value.get("reference"), str):
                check(value["reference"], f"{root}.data")
    return problems


def _nhs_numbers(entries: list[dict]) -> list[Problem]:
    invalid = "NHS Number is not valid: 10 digits passing the Modulus 11 check"
    problems: list[Problem] = []
    for i, e in enumerate(entries):
        for path, node in walk(entry_resource(e), f"Bundle.entry[{i}].resource"):
            if (
                isinstance(node, dict)
                and node.get("system") == NHS_NUMBER_SYSTEM
                and "value" in node
                and not nhs_number_valid(node["value"])
            ):
                problems.append((invalid, [f"{path}.value"]))
        criteria = entry_request(e).get("ifNoneExist")
        if not isinstance(criteria, str):
            continue
        for part in criteria.lstrip("?").split("&"):
            name, _, value = part.partition("=")
            system, bar, number = unquote(value).rpartition("|")
            if (
                name.strip() == "identifier"
                and bar
                and system == NHS_NUMBER_SYSTEM
                and not nhs_number_valid(number)
            ):
                problems.append((f"{invalid} (ifNoneExist)", [f"Bundle.entry[{i}].request.ifNoneExist"]))
    return problems


def _parts(parameter: dict) -> dict[str, tuple[int, dict]]:
    found: dict[str, tuple[int, dict]] = {}
    for j, part in enumerate(parameter.get("part") or []):
        if isinstance(part, dict) and isinstance(part.get("name"), str):
            found.setdefault(part["name"], (j, part))
    return found


def _value_of(part: dict) -> tuple[str | None, Any]:
    key = next((k for k in part if k.startswith("value")), None)
    return key, part.get(key) if key else None


def _fhirpath_patch_status(resource: dict, root: str) -> tuple[Any, str] | None:
    """The status the last FHIRPath Patch operation on Task.status sets, and where it says so."""
    last = None
    for k, param in enumerate(resource.get("parameter") or []):
        if not isinstance(param, dict) or param.get("name") != "operation":
            continue
        parts = _parts(param)
        op = _value_of(parts["type"][1])[1] if "type" in parts else None
        path = _value_of(parts["path"][1])[1] if "path" in parts else None
        name = _value_of(parts["name"][1])[1] if "name" in parts else None
        sets_status = (op == "replace" and path == "Task.status") or (
            op == "add" and path == "Task" and name == "status"
        )
        if not sets_status:
            continue
        if "value" in parts:
            j, part = parts["value"]
            key, value = _value_of(part)
            last = (value, f"{root}.parameter[{k}].part[{j}]" + (f".{key}" if key else ""))
        else:
            last = (None, f"{root}.parameter[{k}]")
    return last


def _json_patch_status(ops: list) -> Any:
    status = None
    for op in ops:
        if isinstance(op, dict) and op.get("op") in ("replace", "add") and op.get("path") == "/status":
            status = op.get("value")
    return status


def _task_status(kind: str, entries: list[dict]) -> list[Problem]:
    problems: list[Problem] = []
    allowed = ("requested",) if kind == SPOKE_TO_HUB else HUB_TASK_ENDS
    wanted = " or ".join(allowed)
    for i, e in enumerate(entries):
        root = f"Bundle.entry[{i}].resource"
        if entry_type(e) == "Task":
            status = entry_resource(e).get("status")
            if status not in allowed:
                problems.append(
                    (f"Task.status must be {wanted} in a {kind} Bundle: it is {status}", [f"{root}.status"])
                )
        elif kind == HUB_TO_SPOKE and is_task_patch(e):
            res = entry_resource(e)
            if res.get("resourceType") == "Parameters":
                found = _fhirpath_patch_status(res, root)
                if found is None:
                    problems.append((f"The patch of the Task must set Task.status to {wanted}", [root]))
                elif found[0] not in allowed:
                    problems.append(
                        (
                            f"The patch of the Task must set Task.status to {wanted}: it sets {found[0]}",
                            [found[1]],
                        )
                    )
            elif res.get("resourceType") == "Binary":
                ops = json_patch_of(e)
                if ops is None:
                    problems.append(("The patch of the Task is not a readable JSON Patch", [f"{root}.data"]))
                    continue
                status = _json_patch_status(ops)
                if status not in allowed:
                    says = f": it sets {status}" if status is not None else ""
                    problems.append(
                        (f"The JSON Patch of the Task must set /status to {wanted}{says}", [f"{root}.data"])
                    )
            else:
                problems.append(
                    (
                        "The patch of the Task must be a FHIRPath Patch (Parameters) "
                        "or a JSON Patch (Binary)",
                        [root],
                    )
                )
    return problems


def _task_urls(entries: list[dict]) -> list[Problem]:
    problems: list[Problem] = []
    for i, e in enumerate(entries):
        if not is_task_patch(e):
            continue
        path, _, query = entry_url(e).partition("?")
        if path.rstrip("/") == "Task" and not query.strip():
            problems.append(
                (
                    "the Task to update must be named: Task/<id> or Task?identifier=system|value",
                    [f"Bundle.entry[{i}].request.url"],
                )
            )
    return problems


def _patients(entries: list[dict]) -> list[Problem]:
    problems: list[Problem] = []
    for i in entries_of_type(entries, "Patient"):
        patient = entry_resource(entries[i])
        for element in PATIENT_NEEDS:
            if not patient.get(element):
                problems.append(
                    (
                        f"Each Patient must have a {element} in a spoke-to-hub Bundle",
                        [f"Bundle.entry[{i}].resource.{element}"],
                    )
                )
    return problems


def check(bundle: Any, kind: str | None = None) -> list[Problem]:
    """Every problem of a hub-and-spoke Bundle, each (diagnostics, expressions); [] for other Bundles."""
    kind = kind or classify(bundle)
    if kind not in (SPOKE_TO_HUB, HUB_TO_SPOKE):
        return []
    entries = bundle_entries(bundle)
    problems = _counts(kind, entries)
    if kind == HUB_TO_SPOKE:
        problems += _task_urls(entries)
    problems += _references(entries)
    problems += _nhs_numbers(entries)
    problems += _task_status(kind, entries)
    if kind == SPOKE_TO_HUB:
        problems += _patients(entries)
    return problems
