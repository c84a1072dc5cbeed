"""The store client's connection reuse, against a loopback HTTP/1.1 server that keeps
connections alive: a connection idle for too long is not reused (the store may be closing it)."""

from __future__ import annotations

import threading
import time
from http.server import ThreadingHTTPServer

import pytest

from proxy.upstream import StoreClient
from tests.support.http_stub import QuietHandler


class KeepAlive(QuietHandler):
    protocol_version = "HTTP/1.1"
    peers: list[int] = []

    def do_GET(self):  # http.server calls it by this name
        KeepAlive.peers.append(self.client_address[1])  # the caller's port: one per connection
        self.reply(200, b'{"resourceType":"Patient"}')


@pytest.fixture
def server():
    KeepAlive.peers = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/fhir"
    srv.shutdown()


def get(client: StoreClient) -> int:
    r = client.send("GET", "Patient/1", [], {}, None)
    r.read()
    r.release_conn()
    return r.status


def test_a_connection_is_reused_while_fresh_and_replaced_once_idle_too_long(server):
    client = StoreClient(server, 1, 5, 2, max_idle_s=0.2)
    assert get(client) == 200 and get(client) == 200
    assert KeepAlive.peers[0] == KeepAlive.peers[1], "a fresh connection was not reused"
    time.sleep(0.4)
    assert get(client) == 200
    assert KeepAlive.peers[2] != KeepAlive.peers[1], "a connection idle past the limit was reused"


RACE = (
    b'{"resourceType":"OperationOutcome","issue":[{"diagnostics":'
    b'"HAPI-0550: could not execute batch [Unique index or primary key violation: PUBLIC.X]"}]}'
)


class Racing(QuietHandler):
    """Answers the first ``losses`` POSTs as HAPI does a write that lost a unique-index race."""

    protocol_version = "HTTP/1.1"
    posts = 0
    losses = 1
    other_conflict = False

    def do_POST(self):  # http.server calls it by this name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Racing.posts += 1
        if Racing.other_conflict:
            self.reply(
                409, b'{"resourceType":"OperationOutcome","issue":[{"diagnostics":"HAPI-0550: other"}]}'
            )
        elif Racing.posts <= Racing.losses:
            self.reply(409, RACE)
        else:
            self.reply(200, b'{"resourceType":"Bundle"}')


@pytest.fixture
def racing():
    Racing.posts, Racing.losses, Racing.other_conflict = 0, 1, False
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Racing)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/fhir"
    srv.shutdown()


def post(client: StoreClient) -> tuple[int, bytes]:
    r = client.send("POST", "", [], {"content-type": "application/fhir+json"}, b"{}")
    try:
        return r.status, r.read()
    finally:
        r.release_conn()


def test_a_write_that_lost_a_unique_index_race_is_sent_again(racing):
    assert post(StoreClient(racing, 1, 5, 2)) == (200, b'{"resourceType":"Bundle"}')
    assert Racing.posts == 2


def test_a_write_that_keeps_losing_is_answered_with_the_stores_409_after_three_tries(racing):
    Racing.losses = 10
    status, body = post(StoreClient(racing, 1, 5, 2))
    assert (status, body) == (409, RACE) and Racing.posts == 3


def test_any_other_conflict_is_relayed_at_once(racing):
    Racing.other_conflict = True
    status, body = post(StoreClient(racing, 1, 5, 2))
    assert status == 409 and b"other" in body and Racing.posts == 1
