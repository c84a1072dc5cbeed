"""``fhirplug queue status|dead|replay|purge``: the forwarding queue and its dead letters.

Deliveries wait on the RQ queue ``fhirplug-forward`` (queued), in its scheduled registry (waiting
for a retry), or in its deferred registry (waiting for an earlier delivery about the same Task);
the ones that failed for good stay in its failed-job registry, the dead letters, for a month.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from datetime import UTC, datetime

import requests
from redis import Redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from forwarding.delivery import QUEUE, Delivery
from forwarding.metrics import fetch_jobs, partner_of, queue_snapshot
from proxy.config import redis_url_from_env
from proxy.direct_store import DirectStore
from proxy.errors import FhirError

REASON_WIDTH = 100


def add_parser(sub) -> None:
    p = sub.add_parser("queue", help="the forwarding queue: depth, dead letters, replay, purge")
    _add_actions(p)


def _add_actions(p: argparse.ArgumentParser) -> None:
    qs = p.add_subparsers(dest="action", required=True)
    qs.add_parser("status", help="deliveries waiting, in progress and dead, per partner")
    dead = qs.add_parser("dead", help="list the dead letters (deliveries that failed for good)")
    dead.add_argument("--partner", help="only this partner's (ODS code)")
    dead.add_argument("--full", action="store_true", help="print each reason whole")
    replay = qs.add_parser("replay", help="put dead letters back on the queue, with fresh retries")
    replay.add_argument("ids", nargs="*", metavar="ID", help="dead-letter (job) ids")
    replay.add_argument("--all", action="store_true", help="every dead letter")
    replay.add_argument("--partner", help="with --all: only this partner's")
    purge = qs.add_parser("purge", help="delete waiting and dead deliveries (not the ones in progress)")
    purge.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    purge.add_argument(
        "--dead-only", action="store_true", help="only the dead letters (and what waits on them)"
    )
    purge.add_argument(
        "--store",
        default=os.environ.get("FHIRPLUG_STORE_URL"),
        help="the FHIR store, whose outbox records of the purged deliveries go too "
        "(default: FHIRPLUG_STORE_URL); without it the outbox sweep queues them again",
    )


def run(args) -> int:
    redis = Redis.from_url(redis_url_from_env())
    queue = Queue(QUEUE, connection=redis)
    if args.action == "status":
        return _status(redis)
    if args.action == "dead":
        return _dead(queue, args.partner, args.full)
    if args.action == "replay":
        return _replay(queue, args.ids, args.all, args.partner)
    return _purge(queue, args.dead_only, args.yes, args.store)


# ---- status ----------------------------------------------------------------------------------


def _status(redis: Redis) -> int:
    snap = queue_snapshot(redis)
    now = time.time()
    header = ["PARTNER", "DEPTH", "QUEUED", "RETRYING", "DEFERRED", "RUNNING", "OLDEST_S", "DEAD"]
    rows, totals = [], [0] * 6
    oldest = 0.0
    for partner in sorted(snap.partners):
        pq = snap.partners[partner]
        nums = [pq.depth, pq.queued, pq.scheduled, pq.deferred, pq.started, pq.dead]
        totals = [t + n for t, n in zip(totals, nums, strict=True)]
        age = pq.oldest_age(now)
        oldest = max(oldest, age)
        rows.append([partner, *nums[:5], _age(pq.oldest_queued_at, age), nums[5]])
    rows.append(["TOTAL", *totals[:5], str(int(oldest)) if totals[0] else "-", totals[5]])
    _print_table(header, rows)
    return 0


def _age(queued_at: float | None, age: float) -> str:
    return "-" if queued_at is None else str(int(age))


# ---- dead letters ----------------------------------------------------------------------------


def _dead_jobs(queue: Queue) -> list[Job]:
    return fetch_jobs(queue.connection, queue.failed_job_registry.get_job_ids())


def _first_arg(job: Job) -> dict:
    try:
        first = job.args[0] if job.args else None
    except Exception:
        first = None
    return first if isinstance(first, dict) else {}


def what_of(job: Job) -> str:
    first = _first_arg(job)
    if first.get("what") and "kind" not in first:
        return str(first["what"])  # queued before deliveries had a kind
    try:
        return Delivery.from_dict(first).label
    except (TypeError, ValueError):  # not a delivery's arguments: its description tells
        pass
    desc = job.description or ""
    return desc.rsplit(" to ", 1)[0] if " to " in desc else desc


def attempts_of(job: Job) -> str:
    """How often it was tried, where that can be known: ``meta["attempts"]`` if the job keeps it;
    else, for a job that ran out of retries (no dead-letter reason of its own), all of them."""
    if isinstance(job.meta.get("attempts"), int):
        return str(job.meta["attempts"])
    if "dead_letter_reason" not in job.meta and job.retries_left == 0 and job.retry_intervals:
        return str(len(job.retry_intervals) + 1)
    return "?"


def reason_of(job: Job) -> str:
    """``meta["dead_letter_reason"]`` (a final answer), else the last line of the exception."""
    reason = job.meta.get("dead_letter_reason")
    if reason:
        return str(reason)
    exc = None
    try:
        result = job.latest_result()
        exc = result.exc_string if result is not None else None
    except Exception:
        exc = None
    exc = exc or getattr(job, "_exc_info", None) or ""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no reason recorded)"


def _when(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(text: str, width: int | None) -> str:
    text = " ".join(text.split())
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def _failed_at_key(job: Job) -> float:
    when = job.ended_at or job.created_at
    return when.timestamp() if when else 0.0


def _dead(queue: Queue, partner: str | None, full: bool) -> int:
    jobs = [j for j in _dead_jobs(queue) if partner is None or partner_of(j) == partner]
    jobs.sort(key=_failed_at_key)
    if not jobs:
        print("no dead letters" + (f" for {partner}" if partner else ""))
        return 0
    header = ["ID", "PARTNER", "WHAT", "FAILED_AT", "ATTEMPTS", "REASON"]
    width = None if full else REASON_WIDTH
    rows = [
        [j.id, partner_of(j), what_of(j), _when(j.ended_at), attempts_of(j), _one_line(reason_of(j), width)]
        for j in jobs
    ]
    _print_table(header, rows)
    print(f"{len(jobs)} dead letter{'s' if len(jobs) != 1 else ''}")
    return 0


# ---- replay ----------------------------------------------------------------------------------


def replay(queue: Queue, job_id: str) -> Job:
    """Put one dead letter back on the queue with its full retry policy again.

    Raises ``LookupError`` if there is no such dead letter."""
    registry = queue.failed_job_registry
    if job_id not in registry:
        raise LookupError(job_id)
    try:
        job = Job.fetch(job_id, connection=queue.connection)
    except NoSuchJobError as exc:
        registry.remove(job_id)  # the job itself has expired: drop its stale entry
        raise LookupError(job_id) from exc
    reason = job.meta.pop("dead_letter_reason", None)
    if reason:
        job.meta["last_dead_letter_reason"] = reason
    job.meta["replays"] = int(job.meta.get("replays", 0)) + 1  # also keeps meta non-empty, so it is saved
    job.meta.pop("attempts", None)
    job.save_meta()
    if job.retry_intervals:
        job.retries_left = len(job.retry_intervals)
    try:
        job = registry.requeue(job)
    except InvalidJobOperation as exc:  # someone else replayed or purged it meanwhile
        raise LookupError(job_id) from exc
    queue.connection.persist(job.key)  # a waiting job does not expire (the failed one had 30 days)
    return job


def _replay(queue: Queue, ids: list[str], everything: bool, partner: str | None) -> int:
    if everything == bool(ids):
        print("fhirplug: give dead-letter ids or --all", file=sys.stderr)
        return 2
    if partner and not everything:
        print("fhirplug: --partner goes with --all", file=sys.stderr)
        return 2
    if everything:
        ids = [j.id for j in _dead_jobs(queue) if partner is None or partner_of(j) == partner]
        if not ids:
            print("no dead letters to replay")
            return 0
    status = 0
    for job_id in ids:
        try:
            job = replay(queue, job_id)
        except LookupError:
            print(f"fhirplug: no dead letter {job_id}", file=sys.stderr)
            status = 1
            continue
        print(f"replayed {job.id}  {job.description or ''}  (retries: {job.retries_left})")
    return status


# ---- purge -----------------------------------------------------------------------------------


def _with_dependents(redis: Redis, ids: list[str]) -> list[str]:
    """The ids and, transitively, every delivery waiting on one of them."""
    seen: dict[str, None] = dict.fromkeys(ids)
    todo = list(ids)
    while todo:
        job_id = todo.pop()
        for raw in redis.smembers(Job.dependents_key_for(job_id)):
            dep = raw.decode() if isinstance(raw, bytes) else raw
            if dep not in seen:
                seen[dep] = None
                todo.append(dep)
    return list(seen)


def _delete(queue: Queue, job_id: str) -> None:
    with contextlib.suppress(NoSuchJobError):
        Job.fetch(job_id, connection=queue.connection).delete()
    with queue.connection.pipeline() as pipe:  # whatever state the job was in: no stale entries
        queue.remove(job_id, pipeline=pipe)
        for registry in (
            queue.scheduled_job_registry,
            queue.deferred_job_registry,
            queue.ready_job_registry,
            queue.failed_job_registry,
        ):
            registry.remove(job_id, pipeline=pipe)
        pipe.execute()


def forget_outbox(store_url: str, ids: list[str], redis: Redis) -> list[str]:
    """Remove the outbox records (``Basic/<delivery id>``, see forwarding/outbox.py) of purged
    deliveries, so that the sweep does not queue them again. Returns the ids whose record could
    not go."""
    failed = []
    with DirectStore(store_url, redis, marker_ttl_s=60) as store:  # past the proxy: fenced
        for job_id in ids:
            try:
                r = store.delete(f"Basic/{job_id}", timeout=10)
                ok = r.status_code < 300 or r.status_code in (404, 410)
            except (requests.RequestException, FhirError):
                ok = False
            if not ok:
                failed.append(job_id)
    return failed


def _purge(queue: Queue, dead_only: bool, yes: bool, store_url: str | None = None) -> int:
    redis = queue.connection
    dead = queue.failed_job_registry.get_job_ids()
    if dead_only:
        groups = {"dead": dead}
        waiting_on_dead = [i for i in _with_dependents(redis, dead) if i not in set(dead)]
        groups["waiting on them"] = waiting_on_dead
    else:
        groups = {
            "queued": queue.get_job_ids(),
            "retrying": queue.scheduled_job_registry.get_job_ids(),
            "deferred": queue.deferred_job_registry.get_job_ids()
            + queue.ready_job_registry.get_job_ids(cleanup=False),
            "dead": dead,
        }
    ids = list(dict.fromkeys(i for group in groups.values() for i in group))
    if not ids:
        print("nothing to purge")
        return 0
    summary = ", ".join(f"{len(v)} {k}" for k, v in groups.items() if v)
    if not yes:
        try:
            answer = input(f"Delete {len(ids)} deliveries ({summary}) for good? [y/N] ")
        except EOFError:
            print()
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing purged")
            return 1
    for job_id in ids:
        _delete(queue, job_id)
    print(f"purged {len(ids)} deliveries ({summary})")
    status = 0
    if store_url:
        failed = forget_outbox(store_url, ids, queue.connection)
        if failed:
            print(
                f"fhirplug: {len(failed)} outbox records could not be removed from {store_url}; "
                f"the outbox sweep will queue those deliveries again: {' '.join(failed)}",
                file=sys.stderr,
            )
            status = 1
    else:
        print(
            "fhirplug: no FHIR store given (--store or FHIRPLUG_STORE_URL): the outbox records of "
            "these deliveries remain, and the outbox sweep may queue them again",
            file=sys.stderr,
        )
    running = queue.started_job_registry.get_job_ids()
    if running and not dead_only:
        print(f"{len(running)} in progress left alone")
    return status


# ---- output ----------------------------------------------------------------------------------


def _print_table(header: list[str], rows: list[list]) -> None:
    cells = [header] + [[str(c) for c in row] for row in rows]
    numeric = [all(_is_num(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(header))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        out = []
        for i, cell in enumerate(row):
            last = i == len(row) - 1
            if numeric[i]:
                out.append(cell.rjust(widths[i]))
            else:
                out.append(cell if last else cell.ljust(widths[i]))
        print("  ".join(out).rstrip())


def _is_num(cell: str) -> bool:
    return cell.isdigit() or cell in ("-", "?")


def main(argv: list[str] | None = None) -> int:
    """``python -m ops.queue_cli ...``: the same commands without the rest of ``fhirplug``."""
    parser = argparse.ArgumentParser(prog="fhirplug queue", description="the forwarding queue")
    _add_actions(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
