"""A small threaded TCP proxy on loopback, for network-fault tests.

Sits in front of a real server port. A test points its client at `proxy.port` and then
makes the network misbehave on cue:

    proxy = TcpProxy(dovecot.port).start()
    proxy.cut()              # close every current connection (the client sees EOF/reset)
    proxy.cut_after(50_000)  # let 50 kB more flow from the server, then cut (mid-response)
    proxy.stall()            # stop forwarding in both directions (the client times out)
    proxy.resume()           # forward again
    proxy.client_bytes       # everything any client sent, e.g. to assert LOGIN never went out
    proxy.stop()

Each connection is served by one thread that copies bytes both ways with `select`; sockets
are only closed by their own thread, so a cut never races with a read on a reused fd.
"""

from __future__ import annotations

import select
import socket
import threading
from dataclasses import dataclass, field

_CHUNK = 65536
_TICK = 0.02  # how often an idle or stalled pump re-checks its orders


@dataclass(eq=False)
class _Link:
    client: socket.socket
    server: socket.socket
    doomed: threading.Event = field(default_factory=threading.Event)


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`, with faults on demand."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_TICK * 5)
        self.port: int = self._listener.getsockname()[1]
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._budget: int | None = None  # server->client bytes left before a cut
        self._client_bytes = bytearray()
        self.connections = 0
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"proxy:{self.port}", daemon=True)

    # -- orders --------------------------------------------------------------------------
    def start(self) -> "TcpProxy":
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._closed.set()
        self.cut()
        self._acceptor.join(timeout=5)
        self._listener.close()

    def cut(self) -> None:
        """Close all current connections; new ones are still accepted."""
        with self._lock:
            for link in self._links:
                link.doomed.set()
                for sock in (link.client, link.server):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)  # wakes the pump's select at once
                    except OSError:
                        pass

    def cut_after(self, nbytes: int) -> None:
        """Forward `nbytes` more server->client bytes (over all connections), then cut."""
        with self._lock:
            self._budget = nbytes

    def stall(self) -> None:
        """Stop forwarding: connections stay open but nothing moves (data waits in buffers)."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    @property
    def client_bytes(self) -> bytes:
        with self._lock:
            return bytes(self._client_bytes)

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- machinery -----------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()  # upstream down: the client sees the connection drop
                continue
            link = _Link(client, server)
            with self._lock:
                self._links.add(link)
                self.connections += 1
            threading.Thread(target=self._pump, args=(link,), name=f"proxy:{self.port}:link", daemon=True).start()

    def _pump(self, link: _Link) -> None:
        try:
            self._copy_until_closed(link)
        finally:
            with self._lock:
                self._links.discard(link)
            for sock in (link.client, link.server):
                sock.close()

    def _copy_until_closed(self, link: _Link) -> None:
        peers = {link.client: link.server, link.server: link.client}
        while not link.doomed.is_set():
            if not self._flowing.is_set():
                self._flowing.wait(_TICK)
                continue
            try:
                readable, _, _ = select.select(list(peers), [], [], _TICK)
            except (OSError, ValueError):
                return
            for sock in readable:
                try:
                    data = sock.recv(_CHUNK)
                except OSError:
                    return
                if not data or link.doomed.is_set():
                    return
                if sock is link.client:
                    with self._lock:
                        self._client_bytes += data
                elif not self._spend(data, link):
                    return
                try:
                    peers[sock].sendall(data)
                except OSError:
                    return

    def _spend(self, data: bytes, link: _Link) -> bool:
        """Account server->client bytes against a cut_after budget; False means cut now
        (after sending whatever still fits in the budget)."""
        with self._lock:
            if self._budget is None:
                return True
            if len(data) <= self._budget:
                self._budget -= len(data)
                return True
            head, self._budget = data[: self._budget], None
        try:
            link.client.sendall(head)
        except OSError:
            pass
        self.cut()
        return False
