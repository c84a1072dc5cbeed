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
