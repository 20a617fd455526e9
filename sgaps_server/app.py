"""The FastAPI application: the ``/ws/stream`` endpoint, the page, the JSON API and ``/metrics``.

:func:`create_app` builds one server from a :class:`~sgaps_server.config.ServerConfig`; uvicorn runs it
(``python -m sgaps_server``). The shared, read-only resources (codebook, atlas, SPT network, learned
sampler) are loaded once when the app is created; each session gets its own reconstructor memory and
policy.

What a connection goes through (see the package docstring for the messages):

1. the bearer token, when the server has one, is checked before the WebSocket is accepted (a wrong or
   missing token gets HTTP 403 and no work); a full server accepts, sends ``error`` 503 and closes (1013);
2. ``connection_ack``; the client has ``handshake_timeout_s`` to send ``session_start``, which must
   negotiate 240x256 frames, a state size in [58, 4096] and a checkpoint key usable as a file name
   (otherwise ``error`` 400 and close 1008);
3. ``session_start_ack`` and the first ``uv_coordinates``; then per ``frame_data`` the next
   ``uv_coordinates``. Every message is size-checked before it is decompressed, counted against the
   session's rate, decoded and checked against the negotiated shapes and the state fields' ranges; a
   refused message gets an ``error`` and the session waits for the same frame again; ``max_errors``
   refusals in a row close it (1008).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import time
import uuid
from pathlib import Path

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.websockets import WebSocketDisconnect, WebSocketState

from sgaps_env import __version__
from sgaps_env.session_file import new_session_id
from sgaps_env.wire import (ConnectionAck, ErrorMessage, FrameData, FrameTruth, Heartbeat, HeartbeatAck, SessionStart,
                            SessionStartAck, decode)

from sgaps_server.config import ServerConfig
from sgaps_server.engine import BatchEngine
from sgaps_server.host import model_version
from sgaps_server.workers import start_workers
from sgaps_server.session import (BAD_MESSAGE, CLOSE_FRAME_LIMIT, CLOSE_IDLE, CLOSE_NORMAL, CLOSE_POLICY,
                                  CLOSE_SERVER_ERROR, CLOSE_SLOW_READER, CLOSE_TOO_BIG, CLOSE_TRY_LATER, SERVER_ERROR,
                                  SERVER_FULL, TOO_MANY_REQUESTS, Rejected, StreamSession, check_session_start)

PAGE = Path(__file__).with_name("page.html")
log = logging.getLogger("sgaps_server")


class _Closed(Exception):
    """End a connection with a WebSocket close code and reason."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_open = Gauge("sgaps_sessions_open", "sessions open now", registry=r)
        self.sessions = Counter("sgaps_sessions", "sessions started", registry=r)
        self.closed = Counter("sgaps_sessions_closed", "sessions closed, by reason", ["reason"], registry=r)
        self.frames = Counter("sgaps_frames", "frames reconstructed", registry=r)
        self.rejected = Counter("sgaps_messages_rejected", "messages refused, by error code", ["code"], registry=r)
        self.refused_connections = Counter("sgaps_connections_refused", "connections refused before a session, by "
                                           "reason", ["reason"], registry=r)
        self.uplink = Counter("sgaps_uplink_bytes", "frame_data bytes received", registry=r)
        self.downlink = Counter("sgaps_downlink_bytes", "uv_coordinates bytes sent", registry=r)
        self.latency = Histogram("sgaps_frame_latency_seconds", "frame_data received -> next uv_coordinates queued",
                                 buckets=(0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0),
                                 registry=r)
        self.batch = Histogram("sgaps_batch_size", "frames per reconstruction batch",
                               buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.batch_seconds = Histogram("sgaps_batch_seconds", "time a batch spends on its worker",
                                       buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0), registry=r)
        self.psnr = Histogram("sgaps_psnr_db", "PSNR of frames whose truth the client sent",
                              buckets=(10, 15, 20, 25, 30, 35, 40, 45, 50, 60, 100), registry=r)


class _Connection:
    """One WebSocket: a bounded send queue drained by its own task. A burst waits for room in the queue; a client
    that stops reading leaves it full, and after ``timeout_s`` it is closed (4429) instead of holding the server's
    memory or blocking it."""

    def __init__(self, websocket: WebSocket, limit: int, timeout_s: float):
        self.websocket, self.timeout_s = websocket, timeout_s
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(limit)
        self.sender = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while (data := await self.queue.get()) is not None:
            await self.websocket.send_bytes(data)

    async def send(self, message) -> int:
        """Queue ``message``; its size in bytes."""
        data = message.encode()
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            try:
                await asyncio.wait_for(self.queue.put(data), self.timeout_s)
            except TimeoutError:
                raise _Closed(CLOSE_SLOW_READER, f"the client stopped reading: {self.queue.maxsize} messages waited "
                                                 f"{self.timeout_s:g} s to be sent") from None
        return len(data)

    async def close(self, code: int, reason: str) -> None:
        """Send what is queued (briefly), then close with ``code``."""
        if code != CLOSE_SLOW_READER:
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.sender), 1.0)
        self.sender.cancel()
        with contextlib.suppress(BaseException):
            await self.sender
        if self.websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.websocket.close(code, reason[:120])


class _RateLimit:
    """A token bucket: ``rate`` messages per second, bursts of up to ``rate``."""

    def __init__(self, rate: float):
        self.rate, self.tokens, self.last = rate, rate, time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class StreamServer:
    """The server's state: its resources, open sessions, engine and metrics."""

    def __init__(self, config: ServerConfig):
        self.config = config.check()
        self.metrics = Metrics()
        self.sessions: dict[str, StreamSession] = {}
        #: the last closed sessions, for clients that ask for their scores after closing (bounded)
        self.closed_sessions: collections.OrderedDict[str, StreamSession] = collections.OrderedDict()
        self.started = time.time()
        self._next_seed = config.seed
        self._pending = 0  # connections past the token check, before their session is open (counted for the cap)
        self.model_version = model_version(config)
        if config.record is not None:  # what a crashed server left, before any new session writes there
            from sgaps_env.session_journal import recover_journals

            recovered = recover_journals(config.record)
            if recovered:
                log.warning("recovered %d session(s) a previous server left unfinished into %s", len(recovered),
                            config.record)
        self.workers = start_workers(config)
        # the tile reconstructor has no network to batch: a frame waiting for others would only wait
        max_batch = config.max_batch if config.reconstructor == "spt" else 1
        self.engine = BatchEngine(self.workers, max_batch, config.batch_deadline_ms, on_batch=self._batch_done)

    def _batch_done(self, size: int, seconds: float) -> None:
        self.metrics.batch.observe(size)
        self.metrics.batch_seconds.observe(seconds)

    async def startup(self) -> None:
        await self.engine.start()

    async def shutdown(self) -> None:
        await self.engine.stop()
        for worker in self.workers:  # their open sessions' journals become shards
            await asyncio.to_thread(worker.stop)

    # --- the JSON the page reads --------------------------------------------------------------------------

    def summary(self) -> dict:
        config = self.config
        return {"server": {"version": __version__, "policy": config.policy, "reconstructor": self.model_version,
                           "sample_count": config.sample_count, "target_fps": config.target_fps,
                           "sessions": len(self.sessions), "max_sessions": config.max_sessions,
                           "uptime_s": round(time.time() - self.started, 1)},
                "sessions": [session.summary() for session in list(self.sessions.values())]}

    # --- one connection ---------------------------------------------------------------------------------

    def _authorized(self, connection: WebSocket | Request) -> bool:
        """The bearer token, when the server has one: in the ``Authorization`` header (clients, scrapers) or, for
        the page and what it loads, in a ``token`` query parameter. Compared in constant time."""
        if self.config.token is None:
            return True
        expected = self.config.token.encode()
        header = connection.headers.get("authorization", "")
        offered = header[len("Bearer "):] if header.startswith("Bearer ") else connection.query_params.get("token", "")
        return hmac.compare_digest(offered.encode(), expected)

    async def serve(self, websocket: WebSocket) -> None:
        if not self._authorized(websocket):
            self.metrics.refused_connections.labels("token").inc()
            await websocket.close(CLOSE_POLICY)  # before accept: HTTP 403, no work done
            return
        await websocket.accept()
        connection = _Connection(websocket, self.config.send_queue_limit, self.config.send_timeout_s)
        session: StreamSession | None = None
        code, reason = CLOSE_NORMAL, "bye"
        counted = False
        try:
            if len(self.sessions) + self._pending >= self.config.max_sessions:
                self.metrics.refused_connections.labels("full").inc()
                await connection.send(ErrorMessage(SERVER_FULL, f"the server is full ({self.config.max_sessions} sessions): "
                                                          "try again later"))
                raise _Closed(CLOSE_TRY_LATER, "server full")
            self._pending += 1
            counted = True
            client_id = uuid.uuid4().hex[:12]
            await connection.send(ConnectionAck(client_id, __version__))
            start = await self._handshake(websocket, connection)
            session = await self._open(client_id, start, connection)
            self._pending -= 1
            counted = False
            await self._frames(websocket, connection, session)
        except _Closed as closed:
            code, reason = closed.code, closed.reason
        except WebSocketDisconnect:
            code, reason = CLOSE_NORMAL, "client disconnected"
        except Exception as error:  # noqa: BLE001 - a bug ends this session only
            log.exception("session %s failed", session.session_id if session else "(starting)")
            code, reason = CLOSE_SERVER_ERROR, f"server error: {type(error).__name__}"
            with contextlib.suppress(_Closed):
                await connection.send(ErrorMessage(SERVER_ERROR, f"{reason}: {error}"[:500]))
        finally:
            if counted:
                self._pending -= 1
            await connection.close(code, reason)
            if session is not None:
                await self._close_session(session, reason)

    async def _receive(self, websocket: WebSocket, timeout: float, what: str) -> bytes:
        """The next binary message, size-checked before anything decompresses it."""
        try:
            message = await asyncio.wait_for(websocket.receive(), timeout)
        except TimeoutError:
            raise _Closed(CLOSE_IDLE, f"nothing received for {timeout:g} s ({what})") from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
        data = message.get("bytes")
        if data is None:
            text = message.get("text") or ""
            data = text.encode()  # refused by decode below: the protocol is binary
        if len(data) > self.config.max_message_bytes:
            raise _Closed(CLOSE_TOO_BIG, f"a message of {len(data)} bytes is over the {self.config.max_message_bytes} "
                                         "allowed")
        return data

    async def _handshake(self, websocket: WebSocket, connection: _Connection) -> SessionStart:
        data = await self._receive(websocket, self.config.handshake_timeout_s, "waiting for session_start")
        try:
            start = decode(data)
            if not isinstance(start, SessionStart):
                raise Rejected(BAD_MESSAGE, f"the first message must be session_start, got {type(start).__name__}")
            check_session_start(start)
        except ValueError as error:
            code = error.code if isinstance(error, Rejected) else BAD_MESSAGE
            self.metrics.rejected.labels(str(code)).inc()
            await connection.send(ErrorMessage(code, str(error)[:500]))
            raise _Closed(CLOSE_POLICY, "bad session_start") from None
        return start

    async def _open(self, client_id: str, start: SessionStart, connection: _Connection) -> StreamSession:
        config = self.config
        seed = self._next_seed
        self._next_seed += 1
        session_id = new_session_id()
        worker = min(self.workers, key=lambda candidate: candidate.sessions)
        attrs = {"source": "sgaps_server", "client_id": client_id, "policy": config.policy,
                 "reconstructor": self.model_version, "seed": seed, "color": start.color,
                 "sample_count": config.sample_count, "target_fps": config.target_fps,
                 "record_reconstruction_every": config.record_reconstruction_every}
        worker.sessions += 1
        try:
            first = await worker.call("open", session_id, start.checkpoint_key, start.color, start.max_state_dim, seed,
                                      attrs)
        except BaseException:
            worker.sessions -= 1
            raise
        session = StreamSession(session_id, client_id, start, config.sample_count, seed, worker)
        self.sessions[session_id] = session
        self.metrics.sessions.inc()
        self.metrics.sessions_open.set(len(self.sessions))
        kind = first.description.get("k", "") if first.description is not None else ""
        await connection.send(SessionStartAck(session_id, True, config.sample_count, start.max_state_dim,
                                              config.target_fps, self.model_version, kind))
        session.stats.downlink_bytes += await connection.send(first)
        return session

    async def _refuse(self, session: StreamSession, connection: _Connection, error: Rejected) -> None:
        session.stats.rejected += 1
        self.metrics.rejected.labels(str(error.code)).inc()
        await connection.send(ErrorMessage(error.code, str(error)[:500]))

    async def _frames(self, websocket: WebSocket, connection: _Connection, session: StreamSession) -> None:
        config = self.config
        rate = _RateLimit(config.max_messages_per_second)
        errors_in_a_row = 0
        truth: FrameTruth | None = None
        while True:
            data = await self._receive(websocket, config.heartbeat_timeout_s, "send frames or heartbeats")
            received = time.perf_counter()
            try:
                if not rate.allow():
                    raise Rejected(TOO_MANY_REQUESTS, f"more than {config.max_messages_per_second:g} messages a second: "
                                                      "slow down (this message was dropped)")
                try:
                    message = decode(data)
                except ValueError as error:
                    raise Rejected(BAD_MESSAGE, str(error)) from None
                if isinstance(message, Heartbeat):
                    await connection.send(HeartbeatAck(message.timestamp_ms, int(time.time() * 1000)))
                elif isinstance(message, FrameTruth):
                    if not config.allow_truth:
                        raise Rejected(BAD_MESSAGE, "this server does not accept truth frames (--allow-truth false)")
                    session.check_truth(message)
                    truth = message
                elif isinstance(message, FrameData):
                    session.check_frame(message)
                    if session.stats.frames >= config.max_session_frames:
                        raise _Closed(CLOSE_FRAME_LIMIT, f"the session sent its {config.max_session_frames} frames "
                                                         "(--max-session-frames): start a new one")
                    result = await self.engine.submit(session, message, truth)  # check_truth: this frame's
                    truth = None
                    down = await connection.send(result.coordinates)
                    elapsed = time.perf_counter() - received
                    session.expected_frame += 1
                    with session.lock:
                        stats = session.stats
                        if result.psnr_db is not None:
                            stats.psnr.append((message.frame_id, result.psnr_db))
                        stats.frames += 1
                        stats.uplink_bytes += len(data)
                        stats.downlink_bytes += down
                        stats.latency_ms.append(elapsed * 1000.0)
                        stats.arrivals.append(received)
                    self.metrics.frames.inc()
                    self.metrics.uplink.inc(len(data))
                    self.metrics.downlink.inc(down)
                    self.metrics.latency.observe(elapsed)
                    if result.psnr_db is not None and np.isfinite(result.psnr_db):
                        self.metrics.psnr.observe(result.psnr_db)
                else:
                    raise Rejected(BAD_MESSAGE, f"{type(message).__name__} is not a message a client sends during a "
                                                "session (frame_data, heartbeat or frame_truth)")
                errors_in_a_row = 0
            except Rejected as error:
                await self._refuse(session, connection, error)
                errors_in_a_row += 1
                if errors_in_a_row >= config.max_errors:
                    raise _Closed(CLOSE_POLICY, f"{errors_in_a_row} refused messages in a row") from None

    async def _close_session(self, session: StreamSession, reason: str) -> None:
        self.sessions.pop(session.session_id, None)
        self.closed_sessions[session.session_id] = session
        while len(self.closed_sessions) > 64:
            self.closed_sessions.popitem(last=False)
        self.metrics.sessions_open.set(len(self.sessions))
        self.metrics.closed.labels(reason.split(":")[0][:40]).inc()
        try:
            await session.worker.call("close", session.session_id, closed=reason, frames=session.stats.frames)
        except Exception as error:  # noqa: BLE001 - the journal stays on disk and is recovered at the next start
            log.warning("could not finish the recording of session %s (%s); its journal is kept and recovered when "
                        "the server starts again", session.session_id, error)
        finally:
            session.worker.sessions -= 1


def create_app(config: ServerConfig) -> FastAPI:
    """The server as an ASGI app (uvicorn runs it; tests run it on 127.0.0.1)."""
    server = StreamServer(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await server.startup()
        try:
            yield
        finally:
            await server.shutdown()

    def authorized(request: Request) -> None:
        if not server._authorized(request):
            raise HTTPException(401, "this server needs its token: send 'Authorization: Bearer <token>', or open "
                                     "the page as /?token=<token>")

    app = FastAPI(title="SGAPS live server", version=__version__, lifespan=lifespan)
    guarded = [Depends(authorized)]  # every HTTP route but /healthz (the WebSocket checks its token itself)
    app.state.server = server

    @app.websocket("/ws/stream")
    async def stream(websocket: WebSocket):
        await server.serve(websocket)

    page_html = PAGE.read_text()

    @app.get("/", response_class=HTMLResponse, dependencies=guarded)
    async def page():
        return HTMLResponse(page_html)

    @app.get("/api/sessions", dependencies=guarded)
    async def sessions():
        return JSONResponse(server.summary())

    def _session(session_id: str) -> StreamSession:
        session = server.sessions.get(session_id) or server.closed_sessions.get(session_id)
        if session is None:
            raise HTTPException(404, f"no session {session_id!r} is open or recently closed")
        return session

    @app.get("/api/sessions/{session_id}", dependencies=guarded)
    async def session_detail(session_id: str):
        session = _session(session_id)
        return JSONResponse({**session.summary(), "open": session.session_id in server.sessions,
                             "psnr": session.psnr_series()})

    @app.get("/api/sessions/{session_id}/frame.png", dependencies=guarded)
    async def frame_png(session_id: str):
        session = _session(session_id)
        png = None
        if session_id in server.sessions:
            try:
                png = await session.worker.call("png", session_id)
            except Exception:  # noqa: BLE001 - its worker is gone: no picture
                png = None
        if png is None:
            raise HTTPException(404, f"session {session_id!r} has no reconstruction yet")
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.get("/metrics", dependencies=guarded)
    async def metrics():
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def health():
        return {"ok": True, "sessions": len(server.sessions)}

    return app
