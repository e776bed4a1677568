"""A stand-in for ``kubectl port-forward``'s tunnel: listen on a loopback port, proxy to a real server.

The fake ``kubectl`` executables the CLI tests put on PATH answer ``port-forward ... LOCAL:REMOTE``
by running this (``python tests/fakes/port_forward.py LOCAL HOST:PORT``, e.g. via ``os.execv``):
it binds ``127.0.0.1:LOCAL`` like the real command and copies bytes both ways between each accepted
connection and ``HOST:PORT`` (a local Ray head's dashboard standing in for the cluster's head
Service), so ``submit --stack`` and ``connect`` really reach a Ray head. It runs until terminated,
as ``kubectl port-forward`` does; one implementation for every test that needs the tunnel.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from pathlib import Path

SCRIPT = Path(__file__).resolve()  # what a fake kubectl execs: python SCRIPT LOCAL_PORT HOST:PORT


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until either side closes, then shut both down."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def forward(local_port: int, host: str, port: int) -> None:
    """Serve ``127.0.0.1:local_port`` forever, proxying each connection to ``host:port``."""
    server = socket.create_server(("127.0.0.1", local_port))
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection((host, port))
        threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        print("usage: port_forward.py LOCAL_PORT HOST:PORT", file=sys.stderr)
        sys.exit(2)
    host, port = argv[1].rsplit(":", 1)
    forward(int(argv[0]), host, int(port))


if __name__ == "__main__":
    main(sys.argv[1:])
