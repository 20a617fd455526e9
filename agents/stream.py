"""The reference client of the live SGAPS server: play Super Mario Bros and let the server choose the pixels.

A real SGAPS client never sends a frame. It samples each frame at the ``N`` coordinates the server
chose, sends those values and the RAM state vector up (``FrameData``, a few hundred bytes), and the
server answers with where to sample the next frame (``UVCoordinates``, usually a few dozen bytes of
description that the client expands itself). This module is that client, over one WebSocket per
session, so that the server can be exercised, measured and debugged with real play instead of
recorded frames. Every message is a ``sgaps_env.wire`` message, so the bytes counted here are the
protocol's real bytes (the WebSocket's own compression is switched off: the messages are zlib'd).

The exchange, client side (``models.policy_replay._Link`` is the same exchange offline)::

    connect (optional "Authorization: Bearer <token>")    <- ConnectionAck(client_id, server_version)
    SessionStart(checkpoint_key, 240, 256, 64, color) ->  <- SessionStartAck(session_id, N, target_fps, ...)
                                                          <- UVCoordinates(0): coords_0
    per frame t:  [FrameTruth(t, frame)] FrameData(t) ->  <- UVCoordinates(t + 1): coords_{t+1}
    idle: Heartbeat(timestamp) ->                         <- HeartbeatAck
    close (code 1000)

``UVCoordinates`` carries explicit coordinates, a description (expanded by
``sgaps_env.descriptions.coords_from_description`` from the state vectors the client itself sent,
``ClientContext``) or the description ``{"k": "same"}`` (keep the previous coordinates). The
latency of frame ``t`` is the time from sending ``FrameData(t)`` to receiving ``UVCoordinates(t + 1)``.
The server may answer with ``ErrorMessage`` instead (a well-behaved client never gets one): the client
raises :class:`ServerError` with its code and message. ``HeartbeatAck`` may arrive at any time and is
skipped.

In Python (the benchmark's way in)::

    client = StreamClient("ws://127.0.0.1:8765/ws/stream", color="rgb", checkpoint_key="smb1-1-1")
    client.open()                          # handshake: client.sample_count, client.session_id, client.ack
    sampler = RemoteSampler(client, truth=True)
    env = sampler.watch(gym.make("SGAPS-SMB-v0", stage="1-1", sample_count=client.sample_count,
                                 color="rgb", return_frame=True))
    for step in Rollout(env, player, sampler, seed=0, max_steps=300):
        ...
    sampler.finish()                       # the last frame goes up too: every played frame exactly once
    client.close()
    summarize(client.stats)                # bytes up and down per frame, latency percentiles

From the shell (start the server first, ``python -m sgaps_server --port 8765``)::

    python agents/stream.py --server ws://127.0.0.1:8765/ws/stream --player heuristic --stage 1-1 --steps 900
    python agents/stream.py --clients 8 --fps 0 --json outputs/stream.json     # 8 sessions, unpaced
    python agents/stream.py --truth --verbose     # also send the true frames; print the server's PSNR

It prints, per session and over all sessions, the frames sent, the bytes per frame up (``FrameData``)
and down (``UVCoordinates``), the latency percentiles and the frames per second achieved. With
``--truth`` it fetches the per-frame PSNR the server measured from its HTTP API
(``GET /api/sessions/{session_id}``).
"""
from __future__ import annotations

import inspect
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

if __package__ in (None, ""):  # run as a file (python agents/stream.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym
import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from agents.players import PLAYERS, make_player
from sgaps_env.cli import run_script
from sgaps_env.coords import COLOR_CHANNELS, FRAME_HEIGHT, FRAME_WIDTH, channels_for
from sgaps_env.descriptions import ClientContext, coords_from_message
from sgaps_env.env import stage_names
from sgaps_env.rollout import Rollout
from sgaps_env.state import DEFAULT_MAX_STATE_DIM
from sgaps_env.wire import (ConnectionAck, ErrorMessage, FrameData, FrameTruth, Heartbeat, HeartbeatAck,
                            SessionStart, SessionStartAck, UVCoordinates, decode)

__all__ = ["AuthenticationError", "FrameStats", "ProtocolError", "RemoteSampler", "ServerError", "ServerUnreachable",
           "StreamClient", "StreamError", "api_session_url", "check_stream_url", "expand_coordinates",
           "fetch_session_psnr", "format_summary", "summarize"]

#: Where the server listens by default (``python -m sgaps_server --port 8765``).
DEFAULT_URL = "ws://127.0.0.1:8765/ws/stream"
#: The WebSocket endpoint's path; the HTTP API lives beside it.
STREAM_PATH = "/ws/stream"
#: Seconds between heartbeats while a client is idle (:meth:`StreamClient.pause`).
HEARTBEAT_INTERVAL_S = 5.0
#: ErrorMessage codes and WebSocket close codes a server uses to refuse a client's credentials.
AUTH_CODES = frozenset({401, 403, 1008, 4001, 4003, 4401, 4403})
#: Options of ``connect`` that not every supported websockets version has (13+): no proxy (the server is
#: reached directly; websockets >= 15 would read the proxy variables), and ``connect`` returning the connection
#: itself, closed by :meth:`StreamClient.close` (websockets >= 17.1 asks callers that do not use it as a
#: context manager to say so).
_CONNECT_OPTIONS = {name: value for name, value in (("proxy", None), ("legacy", True))
                    if name in inspect.signature(connect).parameters}
#: Largest message accepted from the server: explicit coordinates of every pixel and a full-size map.
MAX_MESSAGE_BYTES = 1 << 20


# --- errors ------------------------------------------------------------------------------------------


class StreamError(RuntimeError):
    """A session with the server failed (every error this client raises about the server is one)."""


class ServerUnreachable(StreamError, ConnectionError):
    """Nothing answers at the server's address."""


class AuthenticationError(StreamError):
    """The server refused the client's token (or wants one and got none)."""


class ProtocolError(StreamError):
    """The server sent something the protocol does not allow here (wrong type, frame id or size)."""


class ServerError(StreamError):
    """The server answered with an ``ErrorMessage``: ``code`` and ``message`` are the server's."""

    def __init__(self, code: int, message: str, context: str = ""):
        self.code, self.message = code, message
        super().__init__(f"the server reported error {code}{' ' + context if context else ''}: {message}")


# --- per-frame statistics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameStats:
    """What one frame cost on the wire."""

    frame_id: int
    uplink_bytes: int
    """bytes of the frame's ``FrameData`` (what a real client sends)"""
    truth_bytes: int
    """bytes of its ``FrameTruth`` (0 unless the true frame was sent for evaluation)"""
    downlink_bytes: int
    """bytes of the ``UVCoordinates`` that answered it (the next frame's coordinates)"""
    latency_ms: float
    """from sending ``FrameData`` to receiving the answer"""


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _max(values: np.ndarray) -> float | None:
    return float(values.max()) if values.size else None


def summarize(stats: Sequence[FrameStats], seconds: float | None = None) -> dict[str, Any]:
    """Frames, bytes per frame up/down/truth (mean, max), latency (mean, p50, p90, p99, max in ms) and,
    given the ``seconds`` they took, frames per second. Undefined values (no frames) are None, so the
    summary is plain JSON."""
    uplink = np.array([s.uplink_bytes for s in stats], dtype=np.float64)
    downlink = np.array([s.downlink_bytes for s in stats], dtype=np.float64)
    truth = np.array([s.truth_bytes for s in stats], dtype=np.float64)
    latency = np.array([s.latency_ms for s in stats], dtype=np.float64)
    p50, p90, p99 = (float(v) for v in np.percentile(latency, [50, 90, 99])) if latency.size else (None,) * 3
    fps = len(stats) / seconds if seconds is not None and seconds > 0 and stats else None
    return {"frames": len(stats),
            "uplink_bytes_mean": _mean(uplink), "uplink_bytes_max": _max(uplink),
            "downlink_bytes_mean": _mean(downlink), "downlink_bytes_max": _max(downlink),
            "truth_bytes_mean": _mean(truth), "truth_bytes_max": _max(truth),
            "latency_ms_mean": _mean(latency), "latency_ms_p50": p50, "latency_ms_p90": p90, "latency_ms_p99": p99,
            "latency_ms_max": _max(latency), "seconds": seconds, "fps": fps}


def format_summary(name: str, summary: dict[str, Any]) -> str:
    """One line for a person: ``name: frames, fps; up, down (and truth) bytes per frame; latency``."""
    if not summary["frames"]:
        return f"{name}: no frames sent"
    fps = f", {summary['fps']:.1f} fps" if summary.get("fps") is not None else ""
    line = (f"{name}: {summary['frames']} frames{fps}; "
            f"up {summary['uplink_bytes_mean']:.0f} B/frame (max {summary['uplink_bytes_max']:.0f}), "
            f"down {summary['downlink_bytes_mean']:.0f} B/frame (max {summary['downlink_bytes_max']:.0f})")
    if summary["truth_bytes_max"]:
        line += f", truth {summary['truth_bytes_mean']:.0f} B/frame"
    return (line + f"; latency p50 {summary['latency_ms_p50']:.1f} ms, p90 {summary['latency_ms_p90']:.1f}, "
            f"p99 {summary['latency_ms_p99']:.1f}")


# --- coordinates from the server's message -----------------------------------------------------------------


def expand_coordinates(message: UVCoordinates, sample_count: int, context: ClientContext,
                       previous: np.ndarray | None) -> np.ndarray:
    """The ``(sample_count, 2)`` coordinates ``message`` asks for (``sgaps_env.descriptions.coords_from_message``,
    as ``models.policy_replay._Link`` expands them too); :class:`ProtocolError` for a message that does not give
    ``sample_count`` coordinates."""
    try:
        return coords_from_message(message, sample_count, context, previous)
    except ValueError as error:
        raise ProtocolError(f"{error}: the server and this client disagree on the protocol "
                            "(sgaps_env.wire, sgaps_env.descriptions)") from None


# --- the server's HTTP API ----------------------------------------------------------------------------------


def check_stream_url(stream_url: str) -> urllib.parse.SplitResult:
    """``stream_url`` split into its parts; a ValueError unless it is a ws:// or wss:// URL with a host."""
    try:
        parts = urllib.parse.urlsplit(stream_url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as error:
        raise ValueError(f"the server URL {stream_url!r} is malformed ({error}): use e.g. {DEFAULT_URL}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"the server URL must be ws://host:port{STREAM_PATH} (or wss:// with TLS), got "
                         f"{stream_url!r}: e.g. {DEFAULT_URL}")
    return parts


def api_session_url(stream_url: str, session_id: str) -> str:
    """``GET`` URL of a session in the server's HTTP API: ``ws://h:p/ws/stream`` ->
    ``http://h:p/api/sessions/{session_id}`` (``wss`` -> ``https``; a prefix before ``/ws/stream`` is kept)."""
    parts = check_stream_url(stream_url)
    path = parts.path.rstrip("/")
    prefix = path[: -len(STREAM_PATH)] if path.endswith(STREAM_PATH) else ""
    session = urllib.parse.quote(session_id, safe="")
    scheme = {"ws": "http", "wss": "https"}[parts.scheme]
    return urllib.parse.urlunsplit((scheme, parts.netloc, f"{prefix}/api/sessions/{session}", "", ""))


def fetch_session_psnr(stream_url: str, session_id: str, token: str | None = None,
                       timeout_s: float = 10.0) -> list[tuple[int, float]]:
    """The ``[(frame_id, psnr_db), ...]`` the server measured for a session that sent ``FrameTruth``
    (the ``"psnr"`` list of ``GET /api/sessions/{session_id}``). Raises :class:`StreamError` saying why not."""
    url = api_session_url(stream_url, session_id)
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   **({"Authorization": f"Bearer {token}"} if token else {})})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the server is reached directly
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        hint = " (pass the server's token with --token)" if error.code in (401, 403) else ""
        raise StreamError(f"GET {url} failed: HTTP {error.code} {error.reason}{hint}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise StreamError(f"GET {url} failed: {getattr(error, 'reason', error)}") from None
    except ValueError as error:
        raise StreamError(f"GET {url} did not return JSON ({error})") from None
    if not isinstance(body, dict) or not isinstance(body.get("psnr"), list):
        raise StreamError(f"GET {url} returned no 'psnr' list of [frame_id, psnr_db] pairs (keys: "
                          f"{sorted(body) if isinstance(body, dict) else type(body).__name__})")
    try:
        return [(int(frame_id), float(value)) for frame_id, value in body["psnr"]]
    except (TypeError, ValueError):
        raise StreamError(f"GET {url}: 'psnr' must be a list of [frame_id, psnr_db] pairs, got "
                          f"{body['psnr'][:3]!r}...") from None


# --- the client ----------------------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _start_server_hint(url: str) -> str:
    try:
        port = urllib.parse.urlsplit(url).port or 8765
    except ValueError:
        port = 8765
    return f"start the server with `python -m sgaps_server --port {port}`"


class StreamClient:
    """One session with the server (synchronous, ``websockets.sync.client``); one thread uses it.

    :meth:`open` connects and starts the session, :meth:`exchange` sends one frame and returns the next
    frame's coordinates, :meth:`close` ends it (also as a context manager). ``stats`` holds one
    :class:`FrameStats` per frame sent; ``frame_id`` is the id the next frame will be sent with and
    ``coords`` the coordinates it must be sampled at.
    """

    def __init__(self, url: str, *, color: str = "rgb", checkpoint_key: str = "smb1-1-1", token: str | None = None,
                 timeout_s: float = 10.0, max_state_dim: int = DEFAULT_MAX_STATE_DIM):
        channels_for(color)  # a ValueError naming the colour modes
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive (seconds to wait for the server), got {timeout_s}")
        self.url, self.color, self.checkpoint_key, self.token = url, color, checkpoint_key, token
        self.timeout_s, self.max_state_dim = float(timeout_s), int(max_state_dim)
        self.session_id: str | None = None
        self.client_id: str | None = None
        self.server_version: str | None = None
        self.sample_count: int | None = None
        self.ack: SessionStartAck | None = None
        self.frame_id = 0
        self.coords: np.ndarray | None = None
        self.context = ClientContext()
        self.stats: list[FrameStats] = []
        self.handshake_ms: float | None = None
        """from connecting to holding the first frame's coordinates"""
        self.first_downlink_bytes: int | None = None
        """bytes of ``UVCoordinates(0)``, which no frame answers"""
        self._connection: ClientConnection | None = None

    def __repr__(self) -> str:
        state = f"session {self.session_id}, frame {self.frame_id}" if self.is_open else "closed"
        return f"StreamClient({self.url!r}, {self.color}, {self.checkpoint_key!r}: {state})"

    @property
    def is_open(self) -> bool:
        return self._connection is not None

    def __enter__(self) -> "StreamClient":
        if not self.is_open:
            self.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- the handshake --

    def open(self) -> np.ndarray:
        """Connect, start a session and return the ``(N, 2)`` coordinates of frame 0."""
        if self.is_open:
            raise RuntimeError(f"{self!r} is already open: one StreamClient is one session; make another")
        start = time.perf_counter()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            self._connection = connect(self.url, additional_headers=headers, open_timeout=self.timeout_s,
                                       compression=None, max_size=MAX_MESSAGE_BYTES,
                                       **_CONNECT_OPTIONS)
        except InvalidURI as error:
            raise ValueError(f"{self.url!r} is not a WebSocket URL ({error}): use e.g. {DEFAULT_URL}") from None
        except InvalidStatus as error:
            raise self._refused(error.response.status_code) from None
        except (OSError, TimeoutError, InvalidHandshake) as error:
            raise ServerUnreachable(f"cannot connect to {self.url} ({type(error).__name__}: {error}): "
                                    f"{_start_server_hint(self.url)}") from None
        try:
            hello, _ = self._receive("ConnectionAck", ConnectionAck, handshake=True)
            self.client_id, self.server_version = hello.client_id, hello.server_version
            self._send(SessionStart(self.checkpoint_key, FRAME_HEIGHT, FRAME_WIDTH, self.max_state_dim,
                                    self.color).encode())
            ack, _ = self._receive("SessionStartAck", SessionStartAck, handshake=True)
            if ack.max_state_dim != self.max_state_dim:
                raise ProtocolError(f"the server acknowledged max_state_dim {ack.max_state_dim}, but the client "
                                    f"asked for {self.max_state_dim}: the state vectors would not line up")
            self.ack, self.session_id, self.sample_count = ack, ack.session_id, ack.sample_count
            first, size = self._receive("UVCoordinates for frame 0", UVCoordinates, handshake=True)
            self._check_frame(first, 0)
            self.coords = expand_coordinates(first, self.sample_count, self.context, None)
            self.first_downlink_bytes = size
        except BaseException:
            self.close()
            raise
        self.handshake_ms = (time.perf_counter() - start) * 1000.0
        return self.coords.copy()

    # -- frames --

    def exchange(self, observation: dict[str, np.ndarray], truth: np.ndarray | None = None) -> np.ndarray:
        """Send ``observation`` (sampled at ``self.coords``) as frame ``self.frame_id``, preceded by its true
        ``(240, 256, 3)`` uint8 ``truth`` frame when given; return the next frame's ``(N, 2)`` coordinates."""
        if not self.is_open:
            raise RuntimeError("the client is not open: call open() first (it returns the first frame's coordinates)")
        pixels = np.asarray(observation.get("pixels") if isinstance(observation, dict) else None)
        expected = (self.sample_count, 2 + channels_for(self.color))
        if pixels.shape != expected:
            raise ValueError(f"observation['pixels'] has shape {pixels.shape}, but this session samples "
                             f"{expected[0]} {self.color} pixels a frame, rows {expected}: create the env with "
                             f"sample_count=client.sample_count and color={self.color!r}")
        frame_id = self.frame_id
        truth_bytes = 0
        if truth is not None:
            data = FrameTruth(frame_id, truth).encode()
            self._send(data)
            truth_bytes = len(data)
        data = FrameData.from_observation(frame_id, observation, timestamp_ms=_now_ms()).encode()
        start = time.perf_counter()
        self._send(data)
        self.context.advance(observation["state"], observation["state_mask"])  # what the next description reads
        reply, size = self._receive(f"UVCoordinates for frame {frame_id + 1}", UVCoordinates)
        latency_ms = (time.perf_counter() - start) * 1000.0
        self._check_frame(reply, frame_id + 1)
        self.coords = expand_coordinates(reply, self.sample_count, self.context, self.coords)
        self.frame_id = frame_id + 1
        self.stats.append(FrameStats(frame_id, len(data), truth_bytes, size, latency_ms))
        return self.coords.copy()

    def heartbeat(self) -> float:
        """Send a ``Heartbeat`` and wait for its ``HeartbeatAck``; the round trip in milliseconds."""
        if not self.is_open:
            raise RuntimeError("the client is not open: call open() first")
        sent = _now_ms()
        start = time.perf_counter()
        self._send(Heartbeat(sent).encode())
        while True:
            ack, _ = self._receive("HeartbeatAck", HeartbeatAck, skip_heartbeat_acks=False)
            if ack.timestamp_ms == sent:
                return (time.perf_counter() - start) * 1000.0

    def pause(self, seconds: float, heartbeat_every_s: float = HEARTBEAT_INTERVAL_S) -> None:
        """Stay idle for ``seconds`` (a paused game), with a heartbeat every ``heartbeat_every_s`` seconds."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if remaining < heartbeat_every_s:
                time.sleep(remaining)
                return
            time.sleep(heartbeat_every_s)
            self.heartbeat()

    def close(self) -> None:
        """End the session normally (close code 1000); closing a closed client does nothing."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close(1000)
            except (OSError, ConnectionClosed):
                pass

    # -- the wire --

    def _send(self, data: bytes) -> None:
        try:
            self._connection.send(data)
        except ConnectionClosed as closed:
            self.close()
            raise self._closed(closed, "while sending") from None

    def _receive(self, expecting: str, kind: type, handshake: bool = False, skip_heartbeat_acks: bool = True):
        """The next message of type ``kind`` and its size in bytes; HeartbeatAcks skipped, anything else raises."""
        while True:
            try:
                data = self._connection.recv(timeout=self.timeout_s)
            except TimeoutError:
                self.close()
                raise StreamError(f"no {expecting} from {self.url} within {self.timeout_s:g} s: the server is "
                                  "stuck or overloaded (raise the client's timeout_s if it is just slow)") from None
            except ConnectionClosed as closed:
                self.close()
                raise self._closed(closed, f"while waiting for {expecting}", handshake) from None
            if isinstance(data, str):
                self.close()
                raise ProtocolError(f"the server sent a text frame while the client waited for {expecting}: SGAPS "
                                    f"messages are binary wire messages ({data[:60]!r})")
            try:
                message = decode(data)
            except ValueError as error:
                self.close()
                raise ProtocolError(f"the server sent an undecodable message while the client waited for "
                                    f"{expecting}: {error}") from None
            if isinstance(message, HeartbeatAck) and skip_heartbeat_acks:
                continue
            if isinstance(message, ErrorMessage):
                self.close()
                if handshake and (message.code in AUTH_CODES or "token" in message.message.lower()):
                    raise AuthenticationError(self._auth_advice(f"error {message.code}: {message.message}"))
                raise ServerError(message.code, message.message, f"while the client waited for {expecting}")
            if not isinstance(message, kind):
                self.close()
                raise ProtocolError(f"the server sent {type(message).__name__} while the client waited for {expecting}")
            return message, len(data)

    def _check_frame(self, message: UVCoordinates, frame_id: int) -> None:
        if message.frame_id != frame_id:
            self.close()
            raise ProtocolError(f"the server sent coordinates for frame {message.frame_id} when those of frame "
                                f"{frame_id} were due: it answers every FrameData with the next frame's coordinates")

    def _auth_advice(self, what: str) -> str:
        if self.token:
            return (f"the server at {self.url} rejected the token ({what}): pass the token the server was started "
                    "with (--token)")
        return f"the server at {self.url} requires a token ({what}): pass it with --token (token=... in Python)"

    def _refused(self, status: int) -> StreamError:
        if status in (401, 403):
            return AuthenticationError(self._auth_advice(f"HTTP {status}"))
        if status == 404:
            return ServerUnreachable(f"the server at {self.url} has no WebSocket endpoint at that path (HTTP 404): "
                                     f"the stream's path is {STREAM_PATH}, e.g. {DEFAULT_URL}")
        return StreamError(f"the server at {self.url} refused the WebSocket connection with HTTP {status}")

    def _closed(self, closed: ConnectionClosed, when: str, handshake: bool = False) -> StreamError:
        code = closed.rcvd.code if closed.rcvd is not None else None
        reason = closed.rcvd.reason if closed.rcvd is not None else ""
        what = f"close code {code}" + (f", {reason!r}" if reason else "") if code is not None else "no close frame"
        if handshake and (code in AUTH_CODES or "token" in reason.lower()):
            return AuthenticationError(self._auth_advice(what))
        return StreamError(f"the server closed the connection {when} ({what})")


# --- the sampler the rollout sees ----------------------------------------------------------------------------


class _SentFrameWatcher(gym.Wrapper):
    """Hands every observation the env produces to a :class:`RemoteSampler`, which must send it."""

    def __init__(self, env: gym.Env, sampler: "RemoteSampler"):
        super().__init__(env)
        self._sampler = sampler

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        self._sampler._produced(observation, info)
        return observation, info

    def step(self, action):
        result = self.env.step(action)
        self._sampler._produced(result[0], result[4])
        return result


class RemoteSampler:
    """The server as a ``sgaps_env.sampler.Sampler``: every frame goes up, and the next coordinates come down.

    ``next_coords(observation, info)`` sends the observation (and ``info["frame"]`` with ``truth``) with
    ``client.exchange`` and returns what the server chose. ``reset(seed)`` opens the client if it is not
    open and returns frame 0's coordinates (the seed is ignored: the server's policy has its own).

    ``Rollout`` never hands the sampler the last observation of an episode, so wrap the env with
    :meth:`watch`: the sampler then sends that frame when the next episode resets (its answer samples
    the reset frame), and :meth:`finish` sends the last frame of the run. Every played frame goes up
    exactly once, with consecutive frame ids across episodes.
    """

    name = "remote"

    def __init__(self, client: StreamClient, truth: bool = False):
        self.client = client
        self.truth = bool(truth)
        self._watching = False
        self._pending: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None

    @property
    def count(self) -> int | None:
        """N, the samples per frame the server asked for (None before the client is open)."""
        return self.client.sample_count

    def watch(self, env: gym.Env) -> gym.Env:
        """``env`` wrapped so that the sampler sees every frame it produces (see the class docstring)."""
        self._watching = True
        return _SentFrameWatcher(env, self)

    def reset(self, seed: int | None = None) -> np.ndarray:
        if not self.client.is_open:
            return self.client.open()
        if self._pending is not None:  # the previous episode's last frame: its answer samples the reset frame
            return self._send_pending()
        if self._watching or self.client.frame_id == 0:  # after finish(), the session goes on where it was
            return self.client.coords.copy()
        raise RuntimeError("RemoteSampler.reset after frames were sent, but the sampler never saw the last frame of "
                           "the episode: wrap the env with sampler.watch(env) so that every played frame goes up")

    def next_coords(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        if self._pending is not None:
            if self._pending[0] is not observation:
                raise RuntimeError("the env produced a frame that was never sent: next_coords must get the "
                                   "observation the watched env returned last")
            self._pending = None
        return self.client.exchange(observation, self._truth_frame(info))

    def finish(self) -> int:
        """Send the last frame the watched env produced, if it has not gone up; the number of frames sent (0 or 1)."""
        if not self._watching:
            raise RuntimeError("finish() sends the last frame the watched env produced: wrap the env with "
                               "sampler.watch(env) first")
        if self._pending is None:
            return 0
        self._send_pending()
        return 1

    def _send_pending(self) -> np.ndarray:
        observation, info = self._pending
        self._pending = None
        return self.client.exchange(observation, self._truth_frame(info))

    def _produced(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        if self._pending is not None:
            raise RuntimeError("the env produced a frame before the previous one was sent: play it with "
                               "sgaps_env.rollout.Rollout and this sampler (reset, then next_coords every step)")
        self._pending = (observation, info)

    def _truth_frame(self, info: dict[str, Any]) -> np.ndarray | None:
        if not self.truth:
            return None
        if "frame" not in info:
            raise ValueError("truth mode sends the true frame: create the env with return_frame=True")
        return info["frame"]


# --- the command line ----------------------------------------------------------------------------------------


@dataclass
class Args:
    """Options of the reference client."""

    server: str = DEFAULT_URL
    """the server's WebSocket URL (ws:// or wss://)"""
    player: Literal[*sorted(PLAYERS)] = "heuristic"
    """who presses the buttons (agents.players)"""
    stage: str = "1-1"
    """stage to play, 'W-S'; the session asks for the server's checkpoint 'smb1-W-S'"""
    steps: int = 900
    """frames to send per session (the stage restarts whenever an episode ends)"""
    fps: float | None = None
    """frames per second to pace the game at (None: the server's target_fps; 0: as fast as possible)"""
    clients: int = 1
    """concurrent sessions, each its own env and connection (seeds seed, seed + 1, ...)"""
    truth: bool = False
    """also send each true frame (FrameTruth), so that the server measures its PSNR; fetched at the end"""
    token: str | None = None
    """bearer token, if the server wants one"""
    color: Literal[*sorted(COLOR_CHANNELS)] = "rgb"
    """colour mode of the samples (the server's checkpoint's mode)"""
    seed: int = 0
    """seed of the env and the player of the first session"""
    timeout_s: float = 10.0
    """seconds to wait for the server before giving up"""
    json: Path | None = None
    """write the per-session and overall statistics (and every frame's) to this JSON file"""
    verbose: bool = False
    """print the server's PSNR of every frame (with --truth)"""
    progress: bool = True
    """show a progress bar (one client only)"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    if args.clients < 1:
        raise ValueError(f"--clients must be at least 1, got {args.clients}")
    if args.fps is not None and not args.fps >= 0:
        raise ValueError(f"--fps must be 0 (as fast as possible) or a positive rate, got {args.fps}")
    if not args.timeout_s > 0:
        raise ValueError(f"--timeout-s must be positive (seconds), got {args.timeout_s}")
    stage_names([args.stage])  # a ValueError naming a bad stage
    check_stream_url(args.server)


class Pacer:
    """Waits for tick ``k`` at ``start + k / fps`` (no wait at fps 0); a late frame does not make the next ones
    hurry (the schedule restarts from it), as a game that drops a frame does."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._next: float | None = None

    def wait(self) -> None:
        if not self.period:
            return
        now = time.perf_counter()
        if self._next is None or now > self._next + self.period:
            self._next = now
        elif now < self._next:
            time.sleep(self._next - now)
        self._next += self.period


@dataclass
class SessionReport:
    """What one session of the command line did."""

    index: int
    session_id: str
    client_id: str
    seed: int
    fps_target: float
    seconds: float
    episodes: int
    stats: list[FrameStats]
    handshake_ms: float
    psnr: list[tuple[int, float]] | None = None
    psnr_error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def make_player_by_name(name: str):
    try:
        return make_player(name)
    except TypeError:
        raise ValueError(f"player {name!r} needs options this script does not pass (a model or a recording): "
                         "use --player heuristic, run_right or random") from None


def play_session(args: Args, index: int, bar=None, stop: threading.Event | None = None) -> SessionReport:
    """One session: open it, play ``args.steps`` frames with the server choosing the samples, close it."""
    seed = args.seed + index
    client = StreamClient(args.server, color=args.color, checkpoint_key=f"smb1-{args.stage}", token=args.token,
                          timeout_s=args.timeout_s)
    client.open()
    env = None
    try:
        sampler = RemoteSampler(client, truth=args.truth)
        env = sampler.watch(gym.make("SGAPS-SMB-v0", stage=args.stage, sample_count=client.sample_count,
                                     color=args.color, return_frame=args.truth,
                                     max_state_dim=client.ack.max_state_dim))
        player = make_player_by_name(args.player)
        pacer = Pacer(client.ack.target_fps if args.fps is None else args.fps)
        rollout = Rollout(env, player, sampler, seed=seed, episodes=sys.maxsize)
        start = time.perf_counter()
        played = 0
        for _ in rollout:  # each observation goes up in the next next_coords / reset, the last one in finish()
            played += 1
            pacer.wait()
            if bar is not None:
                bar.update(1)
                if client.stats:
                    bar.set_postfix_str(f"{client.stats[-1].latency_ms:.1f} ms", refresh=False)
            if played == args.steps or (stop is not None and stop.is_set()):
                break
        sampler.finish()
        seconds = time.perf_counter() - start
        psnr, psnr_error = None, None
        if args.truth:  # while the session is still open on the server
            try:
                psnr = fetch_session_psnr(args.server, client.session_id, args.token, args.timeout_s)
            except StreamError as error:
                psnr_error = str(error)
        fps_target = 1.0 / pacer.period if pacer.period else 0.0
        return SessionReport(index, client.session_id, client.client_id, seed, fps_target,
                             seconds, len(rollout.summaries), list(client.stats), client.handshake_ms, psnr,
                             psnr_error, summarize(client.stats, seconds))
    finally:
        client.close()
        if env is not None:
            env.close()


def psnr_line(report: SessionReport, verbose: bool) -> list[str]:
    if report.psnr_error is not None:
        return [f"  PSNR: not available ({report.psnr_error})"]
    if not report.psnr:
        return ["  PSNR: the server reported none for this session"]
    values = np.array([value for _, value in report.psnr])
    finite = values[np.isfinite(values)]
    mean = f"{finite.mean():.2f} dB" if finite.size else "n/a"
    lines = [f"  PSNR (server): mean {mean} over {len(values)} of {len(report.stats)} frames"
             + (f" ({len(values) - finite.size} identical, infinite)" if finite.size < len(values) else "")]
    if verbose:
        lines += [f"    frame {frame_id}: {value:.2f} dB" for frame_id, value in report.psnr]
    return lines


def main(args: Args) -> dict[str, Any]:
    validate(args)
    try:
        return stream(args)
    except KeyboardInterrupt:
        print("interrupted: the sessions were closed", file=sys.stderr)
        sys.exit(130)


def stream(args: Args) -> dict[str, Any]:
    """Run ``args.clients`` sessions, print their statistics, write the JSON; exit 1 if a session failed."""
    stop = threading.Event()
    wall_start = time.perf_counter()
    reports: list[SessionReport] = []
    errors: list[BaseException] = []
    if args.clients == 1:
        from tqdm import tqdm

        with tqdm(total=args.steps, desc=f"stream {args.stage}", unit="frame", disable=not args.progress,
                  smoothing=0.1) as bar:
            try:
                reports.append(play_session(args, 0, bar))
            except StreamError as error:
                errors.append(error)
    else:
        with ThreadPoolExecutor(max_workers=args.clients, thread_name_prefix="sgaps-client") as pool:
            futures = [pool.submit(play_session, args, index, None, stop) for index in range(args.clients)]
            try:
                for future in futures:
                    try:
                        reports.append(future.result())
                    except StreamError as error:
                        errors.append(error)
            except BaseException:  # a bad option or Ctrl-C: the other sessions stop at their next frame
                stop.set()
                raise
    wall_seconds = time.perf_counter() - wall_start

    for report in reports:
        name = f"session {report.index} ({report.session_id}, seed {report.seed})"
        print(format_summary(name, report.summary))
        if args.truth:
            print("\n".join(psnr_line(report, args.verbose)))
    all_stats = [stat for report in reports for stat in report.stats]
    overall = summarize(all_stats, wall_seconds)
    if len(reports) > 1:
        print(format_summary(f"all {len(reports)} sessions (fps: frames of all sessions per wall-clock second)",
                             overall))
    if args.truth:
        scored = [value for report in reports for _, value in (report.psnr or ()) if np.isfinite(value)]
        if len(reports) > 1 and scored:
            print(f"  PSNR (server), all sessions: mean {np.mean(scored):.2f} dB over {len(scored)} frames")
        overall["psnr_db_mean"] = float(np.mean(scored)) if scored else None
    result = {"server": args.server, "stage": args.stage, "player": args.player, "color": args.color,
              "clients": args.clients, "steps": args.steps, "truth": args.truth, "overall": overall,
              "sessions": [{"index": r.index, "session_id": r.session_id, "client_id": r.client_id, "seed": r.seed,
                            "episodes": r.episodes, "fps_target": r.fps_target, "handshake_ms": r.handshake_ms,
                            "summary": r.summary, "psnr_error": r.psnr_error,
                            "psnr": None if r.psnr is None else [[frame_id, value if np.isfinite(value) else None]
                                                                 for frame_id, value in r.psnr],
                            "frames": [asdict(stat) for stat in r.stats]} for r in reports],
              "errors": list(dict.fromkeys(str(error) for error in errors))}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    if errors:
        for message in result["errors"]:
            print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    return result


if __name__ == "__main__":
    run_script(main, Args, __doc__)
