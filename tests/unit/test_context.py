"""The request context: typed notes per plugin, and the typed message."""

from dataclasses import dataclass, field

import pytest

from proxy.context import Interaction, Message, RequestContext, make_request_view


@dataclass
class Mine:
    count: int = 0
    seen: list[str] = field(default_factory=list)


@dataclass
class Theirs:
    count: int = 0


def ctx() -> RequestContext:
    view = make_request_view("GET", "/fhir/Task", "Task", [], {}, None, None)
    return RequestContext(view, Interaction("search-type", "GET", "Task"))


def test_notes_are_made_once_per_request_and_kept():
    c = ctx()
    c.notes(Mine).count += 1
    c.notes(Mine).seen.append("a")
    assert c.notes(Mine) == Mine(1, ["a"])
    assert ctx().notes(Mine) == Mine()


def test_notes_of_one_plugin_are_not_anothers():
    c = ctx()
    c.notes(Mine).count = 5
    assert c.notes(Theirs).count == 0


def test_the_message_is_typed_and_frozen():
    c = ctx()
    assert c.message is None
    c.message = Message("spoke-to-hub", "ab" * 32, "FS1A1", "spoke-system")
    with pytest.raises(AttributeError):
        c.message.kind = "hub-to-spoke"


def test_the_request_body_is_read_once_whoever_asks_first():
    reads = []
    c = ctx()
    c.body_source = lambda: reads.append(1) or b'{"resourceType":"Bundle"}'
    assert c.request_body() == c.request_body() == b'{"resourceType":"Bundle"}'
    assert reads == [1]


def test_without_a_body_reader_the_body_is_empty():
    assert ctx().request_body() == b""
