"""The MESH transport: send a notification to a mailbox, find what was already sent, read and
acknowledge the inbox. A thin layer over NHS England's ``mesh-client``; no Flask, no store.

Exactly once, from the sender's side: every send carries MESH's ``localID`` = our stable message id
(``ItkMessage.message_id``). Before sending, ``send`` asks MESH's tracking whether a message with that
local id already left this mailbox; if one did (a retry after an answer that was lost), it returns
that one and sends nothing. The tracking-by-local-id route is marked deprecated in the MESH API (the
sandbox mirrors it); when MESH drops it, the outbox record has to hold MESH's message id instead,
which covers every case but a send whose answer never came back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
from mesh_client import MeshClient

from proxy.config import MeshSettings

XML = "application/fhir+xml"


class MeshTransportError(RuntimeError):
    """MESH refused or did not answer. ``retryable``: worth trying again later (an outage, a 5xx);
    otherwise retrying cannot help (an unknown mailbox, bad credentials): it belongs to the dead letters."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class Sent:
    message_id: str | None  # MESH's id; None when tracking found several with our local id
    local_id: str
    already_sent: bool  # True: an earlier attempt had sent it; nothing was sent now
    status: str | None = None  # MESH's tracking status (accepted, acknowledged, …) when known


@dataclass(frozen=True)
class Received:
    message_id: str
    sender: str
    recipient: str
    workflow_id: str
    local_id: str | None
    subject: str | None
    content_type: str | None
    body: bytes = field(repr=False)


class _Client(MeshClient):
    """mesh-client plus tracking by local id, which it does not offer (the route is deprecated)."""

    def track_local_id(self, local_id: str) -> requests.Response:
        url = f"{self.mailbox_url}/outbox/tracking/{quote(local_id, safe='')}"
        return self._session.get(url, headers={"Accept": "application/json"}, timeout=self._timeout)


def _failure(what: str, exc: Exception) -> MeshTransportError:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        detail = exc.response.text[:300]
        retryable = status >= 500 or status in (408, 425, 429)
        return MeshTransportError(f"MESH {what}: {status} {detail}", retryable=retryable, status=status)
    if isinstance(exc, requests.RequestException):
        return MeshTransportError(f"MESH {what}: not answering ({exc.__class__.__name__})", retryable=True)
    # mesh-client's own errors (an unregistered recipient, a refused send) carry MESH's reason
    return MeshTransportError(f"MESH {what}: {exc}", retryable=False)


class MeshTransport:
    """One mailbox's session with MESH. Use as a context manager; not shared between threads."""

    def __init__(self, settings: MeshSettings, *, mailbox: str | None = None, password: str | None = None):
        mailbox = (mailbox or settings.mailbox).upper()
        if not mailbox:
            raise ValueError("no MESH mailbox configured (FHIRPLUG_MESH_MAILBOX)")
        cert: tuple[str, str] | None = None
        if settings.client_cert:
            cert = (settings.client_cert, settings.client_key or settings.client_cert)
        verify: str | bool | None = settings.ca_bundle or (None if settings.verify else False)
        self.mailbox = mailbox
        # retries stay with us (the outbox's backoff): mesh-client retrying inside a send would hide
        # an outage from the delivery's count and hold a worker for its whole backoff
        self._client = _Client(
            settings.url,
            mailbox,
            password if password is not None else settings.password,
            shared_key=settings.shared_key.encode() if settings.shared_key else None,
            cert=cert,
            verify=verify,
            max_retries=0,
            timeout=settings.timeout_s,
            application_name="fhirplug",
        )

    def __enter__(self) -> MeshTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def handshake(self) -> None:
        try:
            self._client.handshake()
        except Exception as exc:
            raise _failure("handshake", exc) from exc

    def find_sent(self, local_id: str) -> Sent | None:
        """What this mailbox already sent with ``local_id``, or None if nothing was."""
        try:
            response = self._client.track_local_id(local_id)
        except requests.RequestException as exc:
            raise _failure("tracking", exc) from exc
        if response.status_code == 404:
            return None
        if response.status_code == 300:  # more than one: it was certainly sent
            return Sent(None, local_id, already_sent=True)
        try:
            response.raise_for_status()
        except requests.HTTPError as exc:
            raise _failure("tracking", exc) from exc
        body: dict[str, Any] = response.json()
        status = body.get("status")
        return Sent(
            body.get("messageId"), local_id, already_sent=True, status=status.lower() if status else None
        )

    def send(
        self,
        recipient: str,
        payload: bytes,
        *,
        workflow_id: str,
        local_id: str,
        subject: str | None = None,
        content_type: str = XML,
    ) -> Sent:
        """Send ``payload`` to ``recipient`` unless a message with ``local_id`` already left (then
        that one is returned with ``already_sent``)."""
        earlier = self.find_sent(local_id)
        if earlier is not None:
            return earlier
        try:
            message_id = self._client.send_message(
                recipient.upper(),
                payload,
                workflow_id=workflow_id,
                local_id=local_id,
                subject=subject,
                content_type=content_type,
                filename=f"{local_id}.xml" if content_type == XML else f"{local_id}.json",
            )
        except Exception as exc:
            raise _failure(f"send to {recipient}", exc) from exc
        return Sent(str(message_id), local_id, already_sent=False, status="accepted")

    def lookup_mailbox(self, ods_code: str, workflow_id: str) -> str | None:
        """The mailbox that receives ``workflow_id`` for ``ods_code`` (MESH endpoint lookup), or None."""
        try:
            found: Any = self._client.lookup_endpoint(ods_code, workflow_id)
        except Exception as exc:
            raise _failure("endpoint lookup", exc) from exc
        results = found.get("results") or [] if isinstance(found, dict) else []
        # API v2 names it mailbox_id (v1 said address)
        return str(results[0].get("mailbox_id") or results[0].get("address")) if results else None

    def inbox(self, workflow_id: str | None = None) -> list[str]:
        """Message ids waiting in this mailbox's inbox (first page: up to 500, as MESH pages)."""
        try:
            return list(self._client.list_messages(workflow_filter=workflow_id))
        except Exception as exc:
            raise _failure("inbox", exc) from exc

    def receive(self, message_id: str) -> Received:
        """One inbox message, whole (mesh-client joins its chunks); it stays there until acknowledged."""
        try:
            # not ``with``: mesh-client's Message acknowledges on leaving its context, which would
            # take the message out of the inbox before the caller has stored it
            msg = self._client.retrieve_message(message_id)
            try:
                body = msg.read()
                h = {k.lower(): v for k, v in msg.mex_headers()}
            finally:
                msg.close()
        except Exception as exc:
            raise _failure(f"receive {message_id}", exc) from exc
        return Received(
            message_id=message_id,
            sender=h.get("from", ""),
            recipient=h.get("to", ""),
            workflow_id=h.get("workflowid", ""),
            local_id=h.get("localid"),
            subject=h.get("subject"),
            content_type=h.get("content-type"),
            body=body,
        )

    def acknowledge(self, message_id: str) -> None:
        """Take a message out of the inbox: only once it is durably stored (or quarantined)."""
        try:
            self._client.acknowledge_message(message_id)
        except Exception as exc:
            raise _failure(f"acknowledge {message_id}", exc) from exc
