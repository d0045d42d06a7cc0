"""A TCP relay that counts the bytes each way between the agency and the custodian.

The agency dials the relay instead of the custodian; the relay copies bytes unchanged, so
mTLS runs end to end through it and what it counts is exactly what crossed the wire
(TLS records, HTTP/2 frames and all). ``snapshot`` returns the totals so far; the harness
takes differences around each phase.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass

_BLOCK = 1 << 16


@dataclass(frozen=True)
class ByteCounts:
    """Bytes from the agency to the custodian (``up``) and back (``down``)."""

    up: int
    down: int

    def __sub__(self, other: ByteCounts) -> ByteCounts:
        return ByteCounts(self.up - other.up, self.down - other.down)


class CountingRelay:
    """Listens on 127.0.0.1 (ephemeral port) and forwards every connection to ``target``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._counts = {"up": 0, "down": 0}
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def snapshot(self) -> ByteCounts:
        with self._lock:
            return ByteCounts(self._counts["up"], self._counts["down"])

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for source, sink, way in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(
                    target=self._pump, args=(source, sink, way), name=f"relay-{way}", daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, way: str) -> None:
        try:
            while block := source.recv(_BLOCK):
                sink.sendall(block)
                with self._lock:
                    self._counts[way] += len(block)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        self._listener.close()
        for sock in sockets:
            sock.close()
