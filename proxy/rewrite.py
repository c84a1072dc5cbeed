"""Keeps the store's internal address out of everything users see, and users' out of the store's.

The store builds links, fullUrls and Location headers from the address it was called on; the
proxy swaps that base for its own public base as bytes stream past, so large bodies are never
buffered just to rewrite them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def stream_replace(chunks: Iterable[bytes], old: bytes, new: bytes) -> Iterator[bytes]:
    """Replace every ``old`` with ``new`` across chunk boundaries, holding back at most len(old)-1 bytes."""
    pending = b""
    for chunk in chunks:
        if not chunk:
            continue
        buf = pending + chunk
        head, sep, rem = buf.rpartition(old)
        out = (head.replace(old, new) + new) if sep else b""
        # the remainder may end in the first bytes of an occurrence that the next chunk completes
        hold = _partial_suffix(rem, old)
        pending = rem[len(rem) - hold :] if hold else b""
        out += rem[: len(rem) - hold]
        if out:
            yield out
    if pending:
        yield pending


def _partial_suffix(data: bytes, old: bytes) -> int:
    """Length of the longest suffix of ``data`` that is a proper prefix of ``old``."""
    first = old[:1]
    start = max(len(data) - len(old) + 1, 0)
    i = data.find(first, start)
    while i != -1:  # candidates start with old's first byte; the earliest match is the longest
        if old.startswith(data[i:]):
            return len(data) - i
        i = data.find(first, i + 1)
    return 0


def replace_base(value: str, old: str, new: str) -> str:
    return value.replace(old, new) if value else value
