"""The MESH transport on a real mesh-sandbox (one per run, no HAPI): a pharmacy sends a built
immunisation notification to the patient's practice, the practice receives and acknowledges it, and a
resend with the same local id is found by tracking and never sent twice."""

from __future__ import annotations

import dataclasses

import pytest

from gpnotify import Sender, build_immunisation
from gpnotify.mesh import MeshTransport, MeshTransportError
from gpnotify.serialise import from_xml
from tests.unit.gpnotify.examples import normalise, r4_inputs

pytestmark = pytest.mark.integration

PHARMACY = "FA565OT001"  # ops/mesh_sandbox_data/mailboxes.jsonl: the local deployment
PRACTICE = "A83627OT001"  # the mailbox of A83627, the example patient's practice


def immunisation(version: str):
    """The JackDawkins immunisation as stored at FA565, a version per test: a message id each."""
    focus, *related = r4_inputs("immunisation-JackDawkins.r4.json")
    focus = {**focus, "meta": {"versionId": version}}
    return build_immunisation(focus, related, Sender("FA565", PHARMACY))


def waiting(mesh, local_id: str) -> list:
    with MeshTransport(mesh.settings(PRACTICE)) as gp:
        found = [gp.receive(i) for i in gp.inbox()]
    return [m for m in found if m.local_id == local_id]


def test_an_immunisation_reaches_the_practice_which_acknowledges_it(mesh):
    message = immunisation("transport-1")
    with MeshTransport(mesh.settings(PHARMACY)) as pharmacy:
        pharmacy.handshake()
        mailbox = pharmacy.lookup_mailbox(message.receiver_ods, message.workflow_id)
        assert mailbox == PRACTICE
        sent = pharmacy.send(
            mailbox,
            message.xml(),
            workflow_id=message.workflow_id,
            local_id=message.message_id,
            subject="ITK009D",
        )
    assert not sent.already_sent and sent.message_id

    [received] = waiting(mesh, message.message_id)
    assert (received.message_id, received.sender, received.recipient) == (sent.message_id, PHARMACY, PRACTICE)
    assert received.workflow_id == "DIGMED_FLU_VAC"
    assert received.content_type == "application/fhir+xml"
    assert normalise(from_xml(received.body)) == normalise(from_xml(message.xml()))

    with MeshTransport(mesh.settings(PRACTICE)) as gp:
        gp.acknowledge(received.message_id)
        assert received.message_id not in gp.inbox()
    with MeshTransport(mesh.settings(PHARMACY)) as pharmacy:
        tracked = pharmacy.find_sent(message.message_id)
    assert tracked is not None and tracked.status == "acknowledged"


def test_a_resend_with_the_same_local_id_is_found_by_tracking_and_not_sent_again(mesh):
    message = immunisation("transport-2")
    with MeshTransport(mesh.settings(PHARMACY)) as pharmacy:
        assert pharmacy.find_sent(message.message_id) is None
        first = pharmacy.send(
            PRACTICE, message.xml(), workflow_id=message.workflow_id, local_id=message.message_id
        )
        # a retry after an answer that was lost: the message rebuilt from the same stored version
        again = immunisation("transport-2")
        second = pharmacy.send(
            PRACTICE, again.xml(), workflow_id=again.workflow_id, local_id=again.message_id
        )
    assert again.message_id == message.message_id
    assert not first.already_sent
    assert dataclasses.replace(second, status=None) == dataclasses.replace(
        first, already_sent=True, status=None
    )
    assert len(waiting(mesh, message.message_id)) == 1


def test_a_practice_without_a_mailbox_for_the_workflow_is_not_found(mesh):
    with MeshTransport(mesh.settings(PHARMACY)) as pharmacy:
        assert pharmacy.lookup_mailbox("Y99999", "DIGMED_FLU_VAC") is None


def test_an_unknown_recipient_is_a_failure_retrying_cannot_mend(mesh):
    message = immunisation("transport-3")
    with MeshTransport(mesh.settings(PHARMACY)) as pharmacy, pytest.raises(MeshTransportError) as caught:
        pharmacy.send("NOSUCH01", message.xml(), workflow_id=message.workflow_id, local_id=message.message_id)
    assert not caught.value.retryable
    assert "Unregistered" in str(caught.value)


def test_a_wrong_shared_key_is_refused_and_not_worth_retrying(mesh):
    settings = dataclasses.replace(mesh.settings(PHARMACY), shared_key="NotTheKey")
    with MeshTransport(settings) as pharmacy, pytest.raises(MeshTransportError) as caught:
        pharmacy.handshake()
    assert caught.value.status == 403 and not caught.value.retryable


def test_mesh_not_answering_is_worth_retrying(mesh):
    from tests.conftest import free_port

    settings = dataclasses.replace(
        mesh.settings(PHARMACY), url=f"http://127.0.0.1:{free_port()}", timeout_s=2
    )
    with MeshTransport(settings) as pharmacy, pytest.raises(MeshTransportError) as caught:
        pharmacy.find_sent("any")
    assert caught.value.retryable
