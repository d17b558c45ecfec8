"""The soak sampler tells a process's sockets apart: its database connections and the
connections clients opened to a port it listens on (the API's FDs follow its clients)."""

from __future__ import annotations

import os
import socket

from harness.sampler import _tcp_sockets, sample_process


def test_sockets_are_counted_by_kind() -> None:
    served, db = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(served.getsockname())
    accepted, _ = served.accept()
    to_db = socket.create_connection(db.getsockname())  # never accepted: not an FD of ours
    try:
        before = sample_process(os.getpid(), db.getsockname()[1], _tcp_sockets())
        assert before["db_conns"] == 1
        assert before["client_conns"] == 1  # the accepted side; the client's own end is not
        second = socket.create_connection(served.getsockname())
        also, _ = served.accept()
        after = sample_process(os.getpid(), db.getsockname()[1], _tcp_sockets())
        assert after["client_conns"] == 2 and after["db_conns"] == 1
        assert after["fds"] == before["fds"] + 2
        second.close()
        also.close()
    finally:
        for s in (served, db, client, accepted, to_db):
            s.close()
