"""HTTP plumbing shared by the local stand-in servers (DANDI, OpenNeuro)."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["TrackingHTTPServer"]


class TrackingHTTPServer(ThreadingHTTPServer):
    """A threaded server that knows its open connections, so a test can cut them all at once
    (:meth:`close_connections`, to simulate a dropped download) and ``owner`` (the stand-in
    archive) is reachable from the request handlers as ``self.server.owner``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, owner: Any) -> None:
        self.owner = owner
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut down every open connection (the client sees the transfer cut)."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug(
            "%s: connection from %s failed",
            type(self.owner).__name__,
            client_address,
            exc_info=True,
        )
