"""The MESH mailbox lookup is asked once per practice and workflow, then answered from Redis."""

from __future__ import annotations

import pytest

from gpnotify import mailboxes
from gpnotify.mesh import MeshTransportError
from tests.support.fake_redis import FakeRedis


class Mesh:
    def __init__(self, answer):
        self.answer, self.asked = answer, 0

    def __call__(self, ods, workflow):
        self.asked += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_a_mailbox_found_is_kept():
    redis, mesh = FakeRedis(), Mesh("A83627OT001")
    assert [mailboxes.lookup(redis, "A83627", "DIGMED_FLU_VAC", mesh) for _ in range(3)] == [
        "A83627OT001"
    ] * 3
    assert mesh.asked == 1


def test_none_found_is_kept_too_and_forgotten_on_demand():
    redis, mesh = FakeRedis(), Mesh(None)
    assert mailboxes.lookup(redis, "Y99999", "DIGMED_FLU_VAC", mesh) is None
    assert mailboxes.lookup(redis, "Y99999", "DIGMED_FLU_VAC", mesh) is None
    mailboxes.forget(redis, "Y99999", "DIGMED_FLU_VAC")
    mailboxes.lookup(redis, "Y99999", "DIGMED_FLU_VAC", mesh)
    assert mesh.asked == 2


def test_mesh_failing_is_not_cached():
    redis, mesh = FakeRedis(), Mesh(MeshTransportError("down", retryable=True))
    for _ in range(2):
        with pytest.raises(MeshTransportError):
            mailboxes.lookup(redis, "A83627", "DIGMED_FLU_VAC", mesh)
    assert mesh.asked == 2
