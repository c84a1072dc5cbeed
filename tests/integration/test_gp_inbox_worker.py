"""A deployment configured as a GP practice by configuration only (``FHIRPLUG_MESH_ROLE=gp``, its ODS
code and mailbox): its inbox worker polls the MESH inbox on its own, stores what arrives and InfAcks
it. The test runs ``python -m worker.mesh_inbox`` (the loop alone; ``python -m worker`` runs the same
loop in a thread) with its own Redis database, as a separate deployment would have its own Redis: a
full worker here would also sweep the test stack's outbox and take its forwarding jobs."""

from __future__ import annotations

import sys
import uuid

import pytest

from gpnotify.mesh import MeshTransport
from gpnotify.tracking import NOTIFICATION_SYSTEM
from ops import mesh_sandbox
from ops import stack as stackmod
from ops.processes import spawn, stop_process
from proxy.direct_store import DirectStore
from tests.integration.test_gp_inbox import PHARMACY, PRACTICE, acks_waiting, send
from tests.support.polling import eventually
from tests.unit.gpnotify.notifications import immunisation

pytestmark = pytest.mark.integration


@pytest.fixture
def gp_worker(stack, mesh):
    cfg = stack.cfg
    pidfile, log = cfg.path("run", "gp-worker.pid"), cfg.path("log", "gp-worker.log")
    env = {
        **stackmod.proxy_env(cfg),
        "REDIS_URL": cfg.effective_redis_url.rsplit("/", 1)[0] + "/1",
        "FHIRPLUG_ODS": "A83627",
        "FHIRPLUG_MESH_URL": mesh.url,
        "FHIRPLUG_MESH_MAILBOX": PRACTICE,
        "FHIRPLUG_MESH_PASSWORD": mesh_sandbox.LOCAL_PASSWORD,
        "FHIRPLUG_MESH_SHARED_KEY": mesh_sandbox.LOCAL_SHARED_KEY,
        "FHIRPLUG_MESH_ROLE": "gp",
        "FHIRPLUG_MESH_POLL_SECONDS": "1",
    }
    spawn([sys.executable, "-m", "worker.mesh_inbox"], log, pidfile, env=env)
    yield log
    stop_process("gp-worker", pidfile)


def test_the_gp_inbox_worker_polls_stores_and_infacks_by_itself(stack, mesh, gp_worker):
    message = immunisation(f"worker-{uuid.uuid4()}")
    mesh_id = send(mesh, message)
    with DirectStore(stack.store_url, None) as store:

        def stored() -> bool:
            r = store.get(
                "DocumentReference", params={"identifier": f"{NOTIFICATION_SYSTEM}|{message.message_id}"}
            )
            return r.status_code == 200 and r.json().get("total", len(r.json().get("entry") or [])) == 1

        assert eventually(stored, timeout=60), f"the GP worker stored nothing; see {gp_worker}"
    assert eventually(lambda: len(acks_waiting(mesh, message.message_id)) == 1, timeout=30), "no InfAck"
    with MeshTransport(mesh.settings(PRACTICE)) as m:
        assert mesh_id not in m.inbox()
    assert PHARMACY  # the InfAck went to the pharmacy's mailbox (acks_waiting reads it there)
