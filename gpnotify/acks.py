"""ITK3 acknowledgements (ITK008M "ITK Response"): the InfAck a GP practice returns on receipt of a
notification and the BusAck it returns when the notification is filed; built here, and parsed back
into an ``Ack`` the pharmacy can act on.

How ITK3 shapes a response (nhsconnect/ITK3-Messaging-Distribution, "ITK3 Response Codes" and
"Response Patterns"), and what we do:

- an ITK message Bundle whose MessageHeader has event ITK008M, ``response.identifier`` naming the
  acknowledged message and ``response.code`` ok / transient-error / fatal-error, and
  ``response.details`` an OperationOutcome carrying one ITK3 response code;
- InfAck or BusAck is told by the handling extension's ``MessageDefinition``
  (ITK-InfAck-MessageDefinition-1 / ITK-BusAck-MessageDefinition-1) and, redundantly, by the code's
  prefix (1xxxx and 2xxxx are infrastructure codes, 3xxxx business codes); a parser that finds no
  definition falls back on the prefix;
- an ack requests no ack itself (both handling flags false) and is For Information;
- ``response.identifier`` and the handling extension's ``SenderReference`` carry the acknowledged
  message's Bundle identifier: for our notifications that is ``ItkMessage.message_id``, which is
  also the MESH localID and the identifier of the pharmacy's tracking Communication, so the pharmacy
  matches an ack with one search. (A sender whose MessageHeader id differs from its Bundle id is
  still answered with its Bundle identifier: the one thing an ITK3 sender is sure to have kept.)
- a response carries no patient-identifiable information (ITK3 FHIR-BA-02): reasons are ours, short.

The ack's own message id is derived from (kind, acknowledged id): a rebuilt ack is the same message,
and MESH's localID check (``MeshTransport.send``) never sends it twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from gpnotify.itk import (
    MESSAGE_EVENT,
    MESSAGE_HANDLING,
    RFC4122,
    Kind,
    Sender,
    coding,
    header_organization,
    message_handling,
    timestamp,
)
from gpnotify.r4 import ODS_ORG, Resource
from gpnotify.stu3 import ITK

RESPONSE_EVENT = ("ITK008M", "ITK Response")
RESPONSE_CODES = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-ResponseCodes-1"
INF_ACK_DEFINITION = "https://fhir.nhs.uk/STU3/MessageDefinition/ITK-InfAck-MessageDefinition-1"
BUS_ACK_DEFINITION = "https://fhir.nhs.uk/STU3/MessageDefinition/ITK-BusAck-MessageDefinition-1"
ACK_NAMESPACE = uuid.UUID("5b1e7a9c-2d4f-5e60-8a71-3c9d0e2f4b86")


class AckKind(StrEnum):
    INF = "InfAck"  # infrastructure: received, readable, for us
    BUS = "BusAck"  # business: the practice has filed it (or knows why it cannot)


@dataclass(frozen=True)
class ResponseCode:
    """One ITK3 response code with what ITK3 puts beside it in the MessageHeader and OperationOutcome."""

    code: str
    display: str
    response: str = "fatal-error"  # MessageHeader.response.code
    issue_type: str = "processing"  # OperationOutcome.issue.code
    severity: str = "fatal"

    @property
    def ok(self) -> bool:
        return self.response == "ok"

    @property
    def kind(self) -> AckKind:
        return AckKind.BUS if self.code.startswith("3") else AckKind.INF


# the codes we send; any other ITK3 code is still parsed
SUCCESS = ResponseCode("20013", "Success", "ok", "informational", "information")
PATIENT_KNOWN = ResponseCode("30001", "Patient known here", "ok", "informational", "information")
PATIENT_NOT_KNOWN = ResponseCode("30002", "Patient not known here", issue_type="not-found")
PATIENT_LEFT = ResponseCode("30003", "Patient no longer at this clinical setting", issue_type="not-found")
HANDLING_ERROR = ResponseCode("10001", "Handling Specification Error")
MESSAGE_DEFINITION_ERROR = ResponseCode("10004", "Message Definition Value - Processing Error")
UNREADABLE = ResponseCode("10009", "Unreadable message received", issue_type="structure")
UNKNOWN_RECIPIENT_ORG = ResponseCode("20002", "Unrecognised Recipient Organisation", issue_type="not-found")
HEADER_INVALID = ResponseCode("20006", "ITK3 Header validation failure", issue_type="invalid")
PAYLOAD_INVALID = ResponseCode("20009", "Payload validation failure", issue_type="invalid")


class AckError(ValueError):
    """What was read is not an ITK3 response we can match to a message."""


@dataclass(frozen=True)
class Ack:
    """A parsed ITK3 response: which message it acknowledges, which ack, and its verdict."""

    acked_message_id: str
    kind: AckKind
    ok: bool
    code: str  # the ITK3 response code (20013, 30001, 10009, …)
    reason: str | None = None  # the OperationOutcome's words, for a negative ack
    response: str = "ok"  # MessageHeader.response.code
    message_id: str = ""  # the ack's own Bundle identifier
    sender_ods: str | None = None  # who acknowledged (the practice)


@dataclass(frozen=True)
class AckMessage:
    """A built ack: what goes on MESH (on the notification kind's ``_ACK`` workflow)."""

    ack: Ack
    workflow_id: str
    bundle: Resource = field(repr=False)

    @property
    def message_id(self) -> str:
        return self.ack.message_id

    def xml(self) -> bytes:
        from gpnotify.serialise import to_xml

        return to_xml(self.bundle)


def ack_message_id(kind: AckKind, acked_message_id: str) -> str:
    """The ack's stable id (its Bundle identifier and MESH localID): one per kind and acked message."""
    return str(uuid.uuid5(ACK_NAMESPACE, f"{kind}|{acked_message_id}"))


def ack_workflow(workflow_id: str) -> str:
    """The workflow an ack of a ``workflow_id`` message travels on (DIGMED_FLU_VAC → DIGMED_FLU_VAC_ACK)."""
    return workflow_id if workflow_id.endswith("_ACK") else workflow_id + "_ACK"


def build_ack(
    kind: AckKind,
    acked_message_id: str,
    response: ResponseCode,
    *,
    sender: Sender,
    receiver_ods: str | None,
    workflow_id: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> AckMessage:
    """The ITK008M response ``sender`` (the practice) returns to ``receiver_ods`` (the notification's
    sender) about ``acked_message_id``. ``workflow_id``: the notification's workflow or its ``_ACK``.
    ``receiver_ods`` None: a message too broken to name its sender; the ack goes to the MESH mailbox
    it came from without a receiver Organization (ITK3's default for unreadable messages)."""
    if kind is AckKind.BUS and not response.code.startswith("3") and response.ok:
        raise ValueError(f"a positive BusAck carries a business code (3xxxx), not {response.code}")
    message_id = ack_message_id(kind, acked_message_id)
    ids = {n: str(uuid.uuid5(uuid.UUID(message_id), n)) for n in ("header", "sender", "receiver", "outcome")}
    definition = BUS_ACK_DEFINITION if kind is AckKind.BUS else INF_ACK_DEFINITION
    issue: dict[str, Any] = {
        "severity": response.severity,
        "code": response.issue_type,
        "details": {"coding": [coding(RESPONSE_CODES, response.code, response.display)]},
    }
    if reason:
        issue["diagnostics"] = reason
    outcome = {
        "resourceType": "OperationOutcome",
        "id": ids["outcome"],
        "issue": [issue],
    }
    header = {
        "resourceType": "MessageHeader",
        "id": ids["header"],
        "meta": {"profile": [ITK + "ITK-MessageHeader-2"]},
        "extension": [
            message_handling(
                acks_requested=False,  # an ack is never acknowledged: that would never end
                recipient_type=("FI", "For Information"),
                definition=definition,
                sender_reference=acked_message_id,
            )
        ],
        "event": coding(MESSAGE_EVENT, *RESPONSE_EVENT),
        "sender": {"reference": "urn:uuid:" + ids["sender"]},
        "timestamp": timestamp(now),
        "source": {"endpoint": sender.mailbox},
        "response": {
            "identifier": acked_message_id,
            "code": response.response,
            "details": {"reference": "urn:uuid:" + ids["outcome"]},
        },
    }
    entries = [header, header_organization(sender.ods, ids["sender"])]
    if receiver_ods:
        header["receiver"] = {"reference": "urn:uuid:" + ids["receiver"]}
        entries.append(header_organization(receiver_ods, ids["receiver"]))
    entries.append(outcome)
    bundle = {
        "resourceType": "Bundle",
        "id": message_id,
        "meta": {"profile": [ITK + "ITK-Message-Bundle-1"]},
        "identifier": {"system": RFC4122, "value": message_id},
        "type": "message",
        "entry": [{"fullUrl": "urn:uuid:" + r["id"], "resource": r} for r in entries],
    }
    ack = Ack(
        acked_message_id=acked_message_id,
        kind=kind,
        ok=response.ok,
        code=response.code,
        reason=reason,
        response=response.response,
        message_id=message_id,
        sender_ods=sender.ods,
    )
    return AckMessage(ack, ack_workflow(workflow_id), bundle)


def build_for(
    kind: Kind | str,
    ack: AckKind,
    acked_message_id: str,
    response: ResponseCode,
    *,
    sender: Sender,
    receiver_ods: str | None,
    reason: str | None = None,
    now: datetime | None = None,
) -> AckMessage:
    """``build_ack`` for a notification ``kind`` (or its workflow id)."""
    workflow = kind.workflow_id if isinstance(kind, Kind) else kind
    return build_ack(
        ack,
        acked_message_id,
        response,
        sender=sender,
        receiver_ods=receiver_ods,
        workflow_id=workflow,
        reason=reason,
        now=now,
    )


def parse_ack(bundle: Resource) -> Ack:
    """The ``Ack`` an ITK008M response Bundle (STU3 JSON shape) carries; ``AckError`` if it is none."""
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "message":
        raise AckError("not an ITK message Bundle")
    resources = [e.get("resource") or {} for e in bundle.get("entry") or []]
    by_url = {e.get("fullUrl"): e.get("resource") or {} for e in bundle.get("entry") or []}
    header = resources[0] if resources else {}
    if header.get("resourceType") != "MessageHeader":
        raise AckError("the Bundle's first entry is not a MessageHeader")
    event = header.get("event") or {}
    if event.get("code") != RESPONSE_EVENT[0]:
        got = event.get("code")
        raise AckError(f"MessageHeader.event is {got!r}, not {RESPONSE_EVENT[0]} (ITK Response)")
    response = header.get("response") or {}
    acked = response.get("identifier")
    if not acked:
        raise AckError("MessageHeader.response.identifier is missing: the ack names no message")
    handling = _handling(header)
    outcome = _outcome(response, by_url, resources)
    code, reason = _code_and_reason(outcome)
    definition = str((handling.get("MessageDefinition") or {}).get("reference") or "")
    if "BusAck" in definition:
        kind = AckKind.BUS
    elif "InfAck" in definition:
        kind = AckKind.INF
    elif code:
        kind = AckKind.BUS if code.startswith("3") else AckKind.INF
    else:
        raise AckError("neither the MessageDefinition nor a response code says InfAck or BusAck")
    status = str(response.get("code") or "")
    sender = by_url.get((header.get("sender") or {}).get("reference")) or {}
    ident = bundle.get("identifier") or {}
    return Ack(
        acked_message_id=str(acked),
        kind=kind,
        ok=status == "ok",
        code=code or "",
        reason=reason,
        response=status,
        message_id=str(ident.get("value") or bundle.get("id") or ""),
        sender_ods=next(
            (i.get("value") for i in sender.get("identifier") or [] if i.get("system") == ODS_ORG), None
        ),
    )


def _handling(header: Resource) -> dict[str, Any]:
    for ext in header.get("extension") or []:
        if ext.get("url") == MESSAGE_HANDLING:
            return {
                e.get("url"): next((v for k, v in e.items() if k.startswith("value")), None)
                for e in ext.get("extension") or []
            }
    return {}


def _outcome(response: Resource, by_url: dict[Any, Resource], resources: list[Resource]) -> Resource:
    ref = (response.get("details") or {}).get("reference")
    if ref and by_url.get(ref, {}).get("resourceType") == "OperationOutcome":
        return by_url[ref]
    return next((r for r in resources if r.get("resourceType") == "OperationOutcome"), {})


def _code_and_reason(outcome: Resource) -> tuple[str | None, str | None]:
    for issue in outcome.get("issue") or []:
        details = issue.get("details") or {}
        for c in details.get("coding") or []:
            if c.get("system") == RESPONSE_CODES and c.get("code"):
                reason = issue.get("diagnostics") or details.get("text") or c.get("display")
                return str(c["code"]), reason
    return None, None
