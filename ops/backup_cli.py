"""``fhirplug backup`` / ``fhirplug restore``: what lives only in Redis, to a file and back.

Redis holds two records nothing else can rebuild: the OAuth clients (``fhirplug:clients``) and
the partner directory (``fhirplug:partners``), each one hash of JSON records. A backup is a JSON
document with both hashes as they are, and the partners' key files by path with their SHA-256;
``--with-keys`` also carries the key files themselves (the partners' private JWKs and this
server's token-signing keys in FHIRPLUG_KEYS_DIR): the file is then a secret, written mode 600.

What is not in it, by design: queues, leases, replay records, the read cache and intake's
remembered answers are transient or rebuilt (the outbox sweep, the store's message identifiers);
keep Redis's AOF on for those. The FHIR store is backed up with its own tools (README).

Restore adds the records (an existing client or partner of the same id is replaced); with
``--replace`` the two hashes are emptied first. A key file is written back only when its path is
free or already holds the same bytes: a different key there is never overwritten.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from redis import Redis

from proxy.auth.registry import KEY as CLIENTS_KEY
from proxy.config import redis_url_from_env
from proxy.partners import KEY as PARTNERS_KEY

FORMAT = "fhirplug-backup"
VERSION = 1
HASHES = (CLIENTS_KEY, PARTNERS_KEY)


class RestoreError(Exception):
    pass


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_files(redis: Redis, keys_dir: Path | None) -> list[Path]:
    """The partners' key files and this server's signing keys."""
    paths = []
    for raw in redis.hvals(PARTNERS_KEY):
        if key_file := json.loads(raw).get("key_file"):
            paths.append(Path(key_file))
    if keys_dir is not None and keys_dir.is_dir():
        paths += sorted(keys_dir.glob("*.jwk.json"))
    return list(dict.fromkeys(paths))


def export_state(redis: Redis, keys_dir: Path | None = None, with_keys: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "redis": {key: {_text(k): _text(v) for k, v in redis.hgetall(key).items()} for key in HASHES},
        "files": [],
    }
    for path in key_files(redis, keys_dir):
        entry: dict[str, Any] = {"path": str(path)}
        if path.is_file():
            data = path.read_bytes()
            entry["sha256"] = _sha256(data)
            if with_keys:
                entry["content"] = base64.b64encode(data).decode()
        else:
            entry["missing"] = True  # a partner whose key is not on this host: say so now
        doc["files"].append(entry)
    return doc


def import_state(redis: Redis, doc: dict[str, Any], replace: bool = False) -> list[str]:
    """Write a backup back; returns what was done, one line each. Raises RestoreError before
    writing anything when the document is not a backup this version reads, or a key file would
    replace a different one."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise RestoreError(f"not a {FORMAT} version {VERSION} document")
    hashes = doc.get("redis")
    if not isinstance(hashes, dict) or set(hashes) - set(HASHES):
        raise RestoreError(f"'redis' must hold only {', '.join(HASHES)}")
    writes: list[tuple[Path, bytes]] = []
    notes: list[str] = []
    for entry in doc.get("files") or []:
        path = Path(entry["path"])
        if "content" not in entry:
            if entry.get("missing") or not path.is_file():
                notes.append(f"key file {path}: not in the backup and not on this host; put it there")
            elif entry.get("sha256") and _sha256(path.read_bytes()) != entry["sha256"]:
                notes.append(f"key file {path}: on this host, but not the one backed up")
            continue
        data = base64.b64decode(entry["content"])
        if entry.get("sha256") and _sha256(data) != entry["sha256"]:
            raise RestoreError(f"key file {path}: its content does not match its checksum")
        if path.exists():
            if path.read_bytes() != data:
                raise RestoreError(f"key file {path} exists with other content; move it away first")
            notes.append(f"key file {path}: already in place")
            continue
        writes.append((path, data))
    for path, data in writes:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        notes.append(f"key file {path}: restored")
    pipe = redis.pipeline(transaction=True)  # the records move together
    for key in HASHES:
        records = hashes.get(key) or {}
        if replace:
            pipe.delete(key)
        if records:
            pipe.hset(key, mapping=records)
        notes.append(f"{key}: {len(records)} records" + (" (replacing what was there)" if replace else ""))
    pipe.execute()
    return notes


def add_parsers(sub) -> None:
    b = sub.add_parser("backup", help="write the OAuth clients and partners (Redis) to a file")
    b.add_argument("file", help="where to write the backup (JSON); '-' for standard output")
    b.add_argument(
        "--with-keys",
        action="store_true",
        help="also carry the partners' private keys and the token-signing keys: the file is then a secret",
    )
    r = sub.add_parser("restore", help="write a backup's OAuth clients and partners back to Redis")
    r.add_argument("file", help="a file from `fhirplug backup`; '-' for standard input")
    r.add_argument("--replace", action="store_true", help="empty the clients and partners first")


def _keys_dir() -> Path:
    return Path(os.environ.get("FHIRPLUG_KEYS_DIR", "var/keys"))


def run_backup(args) -> int:
    redis = Redis.from_url(redis_url_from_env())
    doc = export_state(redis, _keys_dir(), args.with_keys)
    text = json.dumps(doc, indent=2) + "\n"
    if args.file == "-":
        sys.stdout.write(text)
    else:
        path = Path(args.file)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # clients' keys are in it
        with os.fdopen(fd, "w") as f:
            f.write(text)
    counts = ", ".join(f"{len(v)} {k.rsplit(':', 1)[1]}" for k, v in doc["redis"].items())
    missing = [f["path"] for f in doc["files"] if f.get("missing")]
    print(f"fhirplug: backed up {counts}, {len(doc['files'])} key files", file=sys.stderr)
    for path in missing:
        print(f"fhirplug: warning: key file {path} is not on this host", file=sys.stderr)
    return 0


def run_restore(args) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    try:
        doc = json.loads(text)
        notes = import_state(Redis.from_url(redis_url_from_env()), doc, args.replace)
    except (ValueError, RestoreError) as exc:
        print(f"fhirplug: restore refused: {exc}", file=sys.stderr)
        return 1
    for line in notes:
        print(f"fhirplug: {line}")
    return 0
