"""The operator's pages: partners and their queues (depth, oldest waiting, counts of what was
delivered and retried), the dead letters with their reasons, replaying one after a confirmation;
a Task's journey across deployments from its audit records;
and, for administrators, the OAuth clients (enable, disable). The numbers are those
`fhirplug queue` prints, read from the same Redis."""

from __future__ import annotations

import re
import time

from flask import Blueprint, Response, render_template, request
from redis import Redis
from rq import Queue

from console import fhir_api
from console.authorization import CLIENT_ID
from console.state import current, signed_in, state
from forwarding.delivery import QUEUE
from forwarding.metrics import counters_key, fetch_jobs, partner_of, queue_snapshot
from ops.queue_cli import attempts_of, reason_of, replay, what_of
from proxy.auth.registry import ClientRegistry
from proxy.partners import PartnerDirectory

bp = Blueprint("console_operations", __name__)
OPERATORS = ("operator", "admin")


def _render(template: str, status: int = 200, **values) -> Response:
    return state().page(render_template(template, person=current(), **values), status)


def _redis() -> Redis:
    return state().redis


def _dead_letters(queue: Queue) -> list[dict]:
    jobs = fetch_jobs(queue.connection, queue.failed_job_registry.get_job_ids())
    jobs.sort(key=lambda j: (j.ended_at or j.created_at).timestamp() if (j.ended_at or j.created_at) else 0.0)
    return [
        {
            "id": j.id,
            "partner": partner_of(j),
            "what": what_of(j),
            "failed_at": (j.ended_at or j.created_at).strftime("%Y-%m-%d %H:%M:%S")
            if (j.ended_at or j.created_at)
            else "",
            "attempts": attempts_of(j),
            "reason": reason_of(j),
        }
        for j in jobs
    ]


def _partners(redis: Redis) -> list[dict]:
    snap = queue_snapshot(redis)
    directory = {p.ods: p for p in PartnerDirectory(redis).all()}
    now = time.time()
    rows = []
    for ods in sorted(set(directory) | set(snap.partners)):
        pq = snap.of(ods)
        raw = redis.hgetall(counters_key(ods)) or {}
        counts = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
        partner = directory.get(ods)
        rows.append(
            {
                "ods": ods,
                "role": partner.role if partner else "(not in the directory)",
                "base_url": partner.base_url if partner else "",
                "waiting": pq.waiting,
                "running": pq.started,
                "oldest_s": int(pq.oldest_age(now)) if pq.oldest_queued_at is not None else None,
                "dead": pq.dead,
                "delivered": counts.get("delivered", 0),
                "retried": counts.get("retried", 0),
            }
        )
    return rows


@bp.get("/console/operations")
@signed_in(*OPERATORS)
def operations() -> Response:
    redis = _redis()
    queue = Queue(QUEUE, connection=redis)
    return _render("console_operations.html", partners=_partners(redis), dead=_dead_letters(queue), done=None)


@bp.get("/console/dead/<job_id>/replay")
@signed_in(*OPERATORS)
def confirm_replay(job_id: str) -> Response:
    queue = Queue(QUEUE, connection=_redis())
    letter = next((d for d in _dead_letters(queue) if d["id"] == job_id), None)
    if letter is None:
        return state().error_page(404, "There is no such dead letter (replayed or purged already?).")
    return _render("console_replay.html", letter=letter)


@bp.post("/console/dead/<job_id>/replay")
@signed_in(*OPERATORS)
def do_replay(job_id: str) -> Response:
    st = state()
    queue = Queue(QUEUE, connection=_redis())
    who = current()
    try:
        job = replay(queue, job_id)
    except LookupError:
        st.audit.record("replay", who.username, who.role, False, f"no dead letter {job_id}"[:200])
        return st.error_page(404, "There is no such dead letter (replayed or purged already?).")
    st.audit.record("replay", who.username, who.role, True, f"{job.id} {job.description or ''}"[:200])
    redis = _redis()
    done = f"Replayed {job.id}: back on the queue with {job.retries_left} retries."
    return _render("console_operations.html", partners=_partners(redis), dead=_dead_letters(queue), done=done)


_TASK_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # a FHIR id


@bp.get("/console/journey")
@signed_in(*OPERATORS)
def journey() -> Response:
    """A Task's hand-offs, across deployments, from its AuditEvents (``AuditEvent?entity=Task/id``),
    oldest first, read through the API as the person."""
    st = state()
    task_id = request.args.get("task", "").strip().removeprefix("Task/")
    if not task_id:
        return _render("console_journey.html", task="", events=None, problem=None)
    if not _TASK_ID.match(task_id):
        return _render(
            "console_journey.html", 400, task=task_id, events=None, problem="That is not a Task id."
        )
    account = st.accounts.get(current().username)
    if account is None:
        return st.error_page(403, "Your account is gone.")
    answer = fhir_api.call(
        st.app,
        st.server.person_token(account),
        "GET",
        "AuditEvent",
        [("entity", f"Task/{task_id}"), ("_sort", "date"), ("_count", "200")],
    )
    if not answer.ok or not answer.body:
        problem = f"The audit records could not be read ({answer.status})"
        return _render("console_journey.html", 502, task=task_id, events=None, problem=problem)
    events = [_step(e.get("resource") or {}) for e in answer.body.get("entry") or []]
    return _render("console_journey.html", task=task_id, events=events, problem=None)


def _step(event: dict) -> dict:
    agent = (event.get("agent") or [{}])[0]
    who = agent.get("who") or {}
    observer = ((event.get("source") or {}).get("observer") or {}).get("identifier") or {}
    return {
        "recorded": str(event.get("recorded", "")).replace("T", " ")[:23],
        "what": ", ".join(str(c.get("code", "")) for c in event.get("subtype") or []),
        "by": (who.get("identifier") or {}).get("value") or who.get("display") or "",
        "client": agent.get("altId", ""),
        "at": observer.get("value", ""),
        "outcome": "ok" if event.get("outcome") in (None, "0") else f"failed ({event.get('outcome')})",
    }


ADMINS = ("admin",)


@bp.get("/console/clients")
@signed_in(*ADMINS)
def clients() -> Response:
    return _render("console_clients.html", clients=ClientRegistry(_redis()).all(), done=None)


@bp.post("/console/clients/<client_id>/<action>")
@signed_in(*ADMINS)
def switch_client(client_id: str, action: str) -> Response:
    st = state()
    if action not in ("enable", "disable"):
        return st.error_page(404, "No such action.")
    if client_id == CLIENT_ID:
        # the console's own API client: switched off here, no page could switch it on again
        return st.error_page(409, f"{CLIENT_ID} is the console's own client: use `fhirplug clients` for it.")
    registry = ClientRegistry(_redis())
    found = registry.set_enabled(client_id, action == "enable")
    who = current()
    st.audit.record(f"client-{action}", who.username, who.role, found, client_id[:200])
    if not found:
        return st.error_page(404, "There is no such client.")
    done = f"{client_id} is {action}d (the bearer check sees it within 5 s)."
    return _render("console_clients.html", clients=registry.all(), done=done)
