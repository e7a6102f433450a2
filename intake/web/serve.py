"""Serving the app with waitress: in the foreground (`intake web`) or in a thread (`intake run`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from flask import Flask
from sqlalchemy.orm import Session, sessionmaker
from waitress import wasyncore
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from intake.config import Settings

THREADS = 8


def make_server(settings: Settings, host: str, port: int, *, app: Flask | None = None,
                sessions: sessionmaker[Session] | None = None) -> BaseWSGIServer | MultiSocketServer:
    """A bound waitress server (port 0 picks a free one: see `.effective_port`); call `.run()`."""
    from intake.web import create_app

    app = app or create_app(settings, sessions=sessions)
    return create_server(app, host=host, port=port, threads=THREADS, ident="intake",
                         clear_untrusted_proxy_headers=True, channel_timeout=60)


def serve(settings: Settings, host: str, port: int, *, sessions: sessionmaker[Session] | None = None) -> None:
    """Serve until interrupted."""
    make_server(settings, host, port, sessions=sessions).run()


@dataclass
class ServerHandle:
    """A server running in a daemon thread; `close()` stops it and waits for it."""

    server: BaseWSGIServer | MultiSocketServer
    thread: threading.Thread
    stop: threading.Event

    @property
    def port(self) -> int:
        return self.server.effective_port  # type: ignore[union-attr]

    def close(self, timeout: float = 5.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        # Only now, with the loop stopped, close sockets: closing them under a running loop
        # makes worker threads write to a closed trigger.
        self.server.task_dispatcher.shutdown(timeout=timeout)  # type: ignore[union-attr]
        for channel in list(_socket_map(self.server).values()):
            channel.close()


def start_in_thread(settings: Settings, host: str, port: int, *, app: Flask | None = None,
                    sessions: sessionmaker[Session] | None = None) -> ServerHandle:
    server = make_server(settings, host, port, app=app, sessions=sessions)
    stop = threading.Event()
    thread = threading.Thread(target=_run, args=(server, stop), name="intake-web", daemon=True)
    thread.start()
    return ServerHandle(server, thread, stop)


def _run(server: BaseWSGIServer | MultiSocketServer, stop: threading.Event) -> None:
    # waitress's own run() loops until its socket map is empty, which never happens while
    # its trigger is open; loop in short slices instead so `stop` is seen within 0.2 s.
    while not stop.is_set():
        wasyncore.loop(timeout=0.2, map=_socket_map(server), use_poll=server.adj.asyncore_use_poll, count=1)


def _socket_map(server: BaseWSGIServer | MultiSocketServer) -> dict:  # type: ignore[type-arg]
    # A single-socket server keeps it as `_map`, a multi-socket one (host "localhost") as `map`.
    return server.map if isinstance(server, MultiSocketServer) else server._map
