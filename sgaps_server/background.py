"""A real server on 127.0.0.1 in a background thread: what the tests and the benchmark connect to.

    with BackgroundServer(ServerConfig(record=tmp / "sessions.h5")) as server:
        client = StreamClient(server.ws_url)          # ws://127.0.0.1:<port>/ws/stream
        urllib.request.urlopen(server.http_url + "/api/sessions")

It is the same uvicorn server ``python -m sgaps_server`` runs (same app, same WebSocket size limit), on
a port the operating system picks; leaving the block stops it and waits for its sessions to be recorded.
"""
from __future__ import annotations

import socket
import threading
import time

import uvicorn

from sgaps_server.app import StreamServer, create_app
from sgaps_server.config import ServerConfig


class BackgroundServer:
    """Runs ``create_app(config)`` under uvicorn in a daemon thread (see the module docstring)."""

    def __init__(self, config: ServerConfig, start_timeout_s: float = 60.0):
        self.config = config
        self.app = create_app(config)
        self.start_timeout_s = start_timeout_s
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._uvicorn = uvicorn.Server(uvicorn.Config(self.app, ws_max_size=config.max_message_bytes,
                                                      log_level="warning", ws_ping_interval=None, lifespan="on"))
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._socket]}, daemon=True,
                                        name="sgaps-server")

    @property
    def server(self) -> StreamServer:
        return self.app.state.server

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/stream"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {self.start_timeout_s:g} s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()
