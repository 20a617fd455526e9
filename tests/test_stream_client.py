"""The reference client of the live server (agents/stream.py), without the server.

The pieces that need no server are tested directly: the statistics, the HTTP API's URL, how a
``UVCoordinates`` message becomes coordinates, the pacing and the command line. The protocol itself
is tested against :class:`ScriptedServer`, a few lines of ``websockets.sync.server`` that follow the
exchange the way ``models.policy_replay._Link`` does (it is not ``sgaps_server``: the end-to-end tests
against the real server live beside the server). It chooses every frame's coordinates with a
different kind of message (a fixed pattern, ``same``, explicit coordinates, a RAM-guided description
that the client must expand from the state it sent), and with ``FrameTruth`` it checks that every
frame's values were sampled exactly where it said.
"""
from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from websockets.sync.server import serve

from agents.players import make_player
from agents.stream import (AuthenticationError, FrameStats, Pacer, ProtocolError, RemoteSampler, ServerError,
                           ServerUnreachable, StreamClient, api_session_url, check_stream_url, expand_coordinates,
                           fetch_session_psnr, format_summary, summarize)
from sgaps_env.coords import extract_pixels, make_pattern
from sgaps_env.descriptions import PATTERN_ORDER, ClientContext, RamGuidedConfig, coords_from_description
from sgaps_env.rollout import Rollout
from sgaps_env.wire import (ConnectionAck, ErrorMessage, FrameData, FrameTruth, Heartbeat, HeartbeatAck,
                            SessionStart, SessionStartAck, UVCoordinates, decode)

ROOT = Path(__file__).resolve().parents[1]


# --- statistics, URLs, expansion, pacing -------------------------------------------------------------


def test_summary_gives_bytes_and_latency_percentiles_per_frame():
    stats = [FrameStats(i, 300 + i, 0, 35, float(i + 1)) for i in range(100)]
    summary = summarize(stats, seconds=4.0)
    assert summary["frames"] == 100 and summary["fps"] == 25.0
    assert summary["uplink_bytes_mean"] == 349.5 and summary["uplink_bytes_max"] == 399
    assert summary["downlink_bytes_mean"] == 35 and summary["downlink_bytes_max"] == 35
    latencies = np.arange(1, 101, dtype=float)
    for q in (50, 90, 99):
        assert summary[f"latency_ms_p{q}"] == pytest.approx(np.percentile(latencies, q))
    assert summary["truth_bytes_max"] == 0
    json.dumps(summary)  # plain JSON
    line = format_summary("session 0", summary)
    assert "100 frames, 25.0 fps" in line and "up 350 B/frame (max 399)" in line and "p99 99.0" in line
    assert "truth" not in line


def test_summary_of_no_frames_is_json_without_numbers():
    summary = summarize([], seconds=1.0)
    assert summary["frames"] == 0 and summary["latency_ms_p50"] is None and summary["fps"] is None
    assert json.loads(json.dumps(summary)) == summary
    assert format_summary("x", summary) == "x: no frames sent"
    with_truth = summarize([FrameStats(0, 300, 7000, 35, 2.0)])
    assert with_truth["fps"] is None and "truth 7000 B/frame" in format_summary("x", with_truth)


def test_the_http_api_sits_beside_the_stream():
    assert api_session_url("ws://127.0.0.1:8765/ws/stream", "abc") == "http://127.0.0.1:8765/api/sessions/abc"
    assert api_session_url("wss://example.org/ws/stream/", "a/b c") == "https://example.org/api/sessions/a%2Fb%20c"
    assert api_session_url("ws://h:1/sgaps/ws/stream", "s") == "http://h:1/sgaps/api/sessions/s"
    for bad in ("http://127.0.0.1:8765/ws/stream", "127.0.0.1:8765", "ws:///ws/stream", "ws://h:port/ws/stream"):
        with pytest.raises(ValueError, match="ws://"):
            check_stream_url(bad)


def test_coordinates_are_expanded_as_the_offline_link_expands_them():
    count = 50
    context = ClientContext()
    explicit = make_pattern("random", count, np.random.default_rng(0))
    message = UVCoordinates(3, coords=explicit)
    first = expand_coordinates(message, count, context, None)
    np.testing.assert_array_equal(first, message.coords)
    assert expand_coordinates(UVCoordinates(4, description={"k": "same"}), count, context, first) is first
    description = {"k": "fixed", "p": PATTERN_ORDER.index("random"), "s": 7}
    np.testing.assert_array_equal(expand_coordinates(UVCoordinates(5, description=description), count, context, first),
                                  coords_from_description(description, count, context))
    with pytest.raises(ProtocolError, match="there were none before"):
        expand_coordinates(UVCoordinates(0, description={"k": "same"}), count, context, None)
    with pytest.raises(ProtocolError, match="sent 50 coordinates, but the session samples 60"):
        expand_coordinates(message, 60, context, None)
    with pytest.raises(ProtocolError, match="cannot be expanded"):
        expand_coordinates(UVCoordinates(6, description={"k": "fixed"}), count, context, first)


def test_pacer_holds_the_rate_and_zero_does_not_wait():
    start = time.perf_counter()
    unpaced = Pacer(0)
    for _ in range(100):
        unpaced.wait()
    assert time.perf_counter() - start < 0.05
    paced = Pacer(50)
    start = time.perf_counter()
    for _ in range(6):  # ticks at 0, 20, ..., 100 ms
        paced.wait()
    assert 0.09 <= time.perf_counter() - start < 0.5


def test_help_exits_0_and_bad_options_exit_2():
    environment = {**os.environ, "COLUMNS": "240"}
    shown = subprocess.run([sys.executable, "agents/stream.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                           env=environment, timeout=120)
    assert shown.returncode == 0, shown.stderr
    for option in ("--server", "--player", "--stage", "--steps", "--fps", "--clients", "--truth", "--token",
                   "--color", "--seed", "--json", "--verbose"):
        assert option in shown.stdout
    for argv, named in ((["--steps", "0"], "--steps"), (["--server", "http://h:1/ws/stream"], "ws://"),
                        (["--stage", "9-9"], "9-9")):
        bad = subprocess.run([sys.executable, "agents/stream.py", *argv], cwd=ROOT, capture_output=True, text=True,
                             env=environment, timeout=120)
        assert bad.returncode == 2 and named in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_an_absent_server_says_how_to_start_it():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = StreamClient(f"ws://127.0.0.1:{port}/ws/stream", timeout_s=2.0)
    with pytest.raises(ServerUnreachable, match=rf"python -m sgaps_server --port {port}"):
        client.open()
    assert not client.is_open


# --- the protocol, against a scripted server ------------------------------------------------------------


class ScriptedServer:
    """Follows the protocol with a scripted policy and records what arrives. ``error_at``: answer that
    frame with an ErrorMessage; ``token``: refuse handshakes without ``Authorization: Bearer <token>``."""

    SAMPLES = 64

    def __init__(self, token: str | None = None, error_at: int | None = None):
        self.token, self.error_at = token, error_at
        self.frames: list[FrameData] = []
        self.truths: dict[int, np.ndarray] = {}
        self.chosen: dict[int, np.ndarray] = {}  # frame id -> where the server asked for it to be sampled
        self.heartbeats = 0
        self.starts: list[SessionStart] = []
        self.closed_codes: list[int | None] = []
        self.session_ended = threading.Event()
        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._check_token, compression=None)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/ws/stream"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def shutdown(self):
        self._server.shutdown()
        self._thread.join(5)

    def _check_token(self, connection, request):
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return connection.respond(401, "bad token\n")
        return None

    def _coordinates(self, frame_id: int, context: ClientContext, previous: np.ndarray | None):
        """A different kind of message each frame: fixed pattern, same, explicit, RAM-guided."""
        n = self.SAMPLES
        kind = frame_id % 4
        if kind == 0:
            description = {"k": "fixed", "p": PATTERN_ORDER.index("random"), "s": frame_id}
            return UVCoordinates(frame_id, description=description), coords_from_description(description, n, context)
        if kind == 1:
            return UVCoordinates(frame_id, description={"k": "same"}), previous
        if kind == 2:
            message = UVCoordinates(frame_id, coords=make_pattern("random", n, np.random.default_rng(frame_id)))
            return message, message.coords
        description = {"k": "ram", "s": frame_id, "c": RamGuidedConfig().to_description()}
        return UVCoordinates(frame_id, description=description), coords_from_description(description, n, context)

    def _handle(self, connection):
        context = ClientContext()
        connection.send(ConnectionAck("client-1", "scripted").encode())
        start = decode(connection.recv())
        self.starts.append(start)
        connection.send(SessionStartAck("session-1", True, self.SAMPLES, start.max_state_dim, 50.0, "test",
                                        "mixed").encode())
        message, coords = self._coordinates(0, context, None)
        self.chosen[0] = coords
        connection.send(message.encode())
        try:
            for data in connection:
                received = decode(data)
                if isinstance(received, Heartbeat):
                    self.heartbeats += 1
                    connection.send(HeartbeatAck(received.timestamp_ms, 1).encode())
                elif isinstance(received, FrameTruth):
                    self.truths[received.frame_id] = received.frame
                elif isinstance(received, FrameData):
                    if received.frame_id == self.error_at:
                        connection.send(ErrorMessage(409, f"frame {received.frame_id} was refused").encode())
                        continue
                    self.frames.append(received)
                    context.advance(received.state, received.state_mask)
                    connection.send(HeartbeatAck(0, 0).encode())  # unasked: the client skips it
                    message, coords = self._coordinates(received.frame_id + 1, context, coords)
                    self.chosen[received.frame_id + 1] = coords
                    connection.send(message.encode())
        finally:
            self.closed_codes.append(connection.close_code)
            self.session_ended.set()


@pytest.fixture
def scripted():
    servers = []

    def factory(**options) -> ScriptedServer:
        servers.append(ScriptedServer(**options))
        return servers[-1]

    yield factory
    for server in servers:
        server.shutdown()


def _observation(frame: np.ndarray, coords: np.ndarray, step: int) -> dict[str, np.ndarray]:
    state = np.full(64, -999.0, np.float32)
    mask = np.zeros(64, np.float32)
    state[:4], mask[:4] = [step, 1, 2, 3], 1  # a plausible state: a few valid fields
    return {"pixels": extract_pixels(frame, coords, "rgb"), "state": state, "state_mask": mask}


def test_every_frame_is_sampled_where_the_server_said(scripted):
    server = scripted()
    frames = np.random.default_rng(1).integers(0, 256, (9, 240, 256, 3), dtype=np.uint8)
    with StreamClient(server.url, color="rgb", checkpoint_key="smb1-1-2") as client:
        assert (client.session_id, client.client_id, client.sample_count) == ("session-1", "client-1", 64)
        assert client.ack.target_fps == 50.0 and client.ack.description_kind == "mixed"
        coords = client.coords
        for step, frame in enumerate(frames):
            coords = client.exchange(_observation(frame, coords, step), truth=frame if step % 2 else None)
        assert client.frame_id == len(frames)
    assert server.starts[0].checkpoint_key == "smb1-1-2" and server.starts[0].color == "rgb"
    assert [f.frame_id for f in server.frames] == list(range(len(frames)))
    for received in server.frames:
        where = server.chosen[received.frame_id]
        np.testing.assert_array_equal(received.values, FrameData.from_observation(
            0, _observation(frames[received.frame_id], where, 0)).values)
    assert sorted(server.truths) == [1, 3, 5, 7]
    stats = client.stats
    assert [s.frame_id for s in stats] == list(range(len(frames)))
    assert all(s.uplink_bytes > 0 and s.downlink_bytes > 0 and s.latency_ms > 0 for s in stats)
    assert [s.truth_bytes > 0 for s in stats] == [bool(i % 2) for i in range(len(frames))]
    assert stats[0].downlink_bytes < 40 < stats[1].downlink_bytes  # 'same' is tiny, explicit coords are not
    assert server.session_ended.wait(5) and server.closed_codes == [1000]


def test_remote_sampler_sends_every_played_frame_once_across_episodes(scripted):
    server = scripted()
    client = StreamClient(server.url, color="rgb")
    client.open()
    sampler = RemoteSampler(client, truth=True)
    env = sampler.watch(gym.make("SGAPS-SMB-v0", stage="1-1", sample_count=client.sample_count, color="rgb",
                                 return_frame=True))
    try:
        played = [step.info["frame"].copy() for step in Rollout(env, make_player("run_right"), sampler, seed=0,
                                                                   max_steps=5, episodes=2)]
        assert sampler.finish() == 1 and sampler.finish() == 0
        more = list(Rollout(env, make_player("run_right"), sampler, seed=1, max_steps=2))  # the session goes on
        assert len(more) == 3 and sampler.finish() == 1
    finally:
        env.close()
        client.close()
    assert len(played) == 12  # two episodes of a reset and 5 steps
    assert [f.frame_id for f in server.frames] == list(range(15))
    played += [step.info["frame"] for step in more]
    for received in server.frames:
        np.testing.assert_array_equal(server.truths[received.frame_id], played[received.frame_id])
        sampled = extract_pixels(played[received.frame_id], server.chosen[received.frame_id], "rgb")
        np.testing.assert_allclose(received.values, sampled[:, 2:], atol=0.5 / 255 + 1e-6)


def test_remote_sampler_needs_the_watched_env_to_send_the_last_frame(scripted):
    server = scripted()
    client = StreamClient(server.url)
    sampler = RemoteSampler(client)
    try:
        coords = sampler.reset(0)  # opens the client
        assert client.is_open and sampler.count == 64 and coords.shape == (64, 2)
        np.testing.assert_array_equal(sampler.reset(None), coords)  # nothing sent yet: still frame 0's
        frame = np.zeros((240, 256, 3), np.uint8)
        sampler.next_coords(_observation(frame, coords, 0), {})
        with pytest.raises(RuntimeError, match="sampler.watch"):
            sampler.reset(None)
        with pytest.raises(RuntimeError, match="sampler.watch"):
            sampler.finish()
        with pytest.raises(ValueError, match="return_frame=True"):
            RemoteSampler(client, truth=True).next_coords(_observation(frame, client.coords, 1), {})
    finally:
        client.close()


def test_idle_clients_send_heartbeats(scripted):
    server = scripted()
    with StreamClient(server.url) as client:
        assert client.heartbeat() >= 0
        client.pause(0.35, heartbeat_every_s=0.1)  # a heartbeat at about 0.1, 0.2 and 0.3 s
    assert 3 <= server.heartbeats <= 4


def test_a_server_error_is_raised_with_its_code_and_message(scripted):
    server = scripted(error_at=2)
    frame = np.zeros((240, 256, 3), np.uint8)
    client = StreamClient(server.url)
    client.open()
    client.exchange(_observation(frame, client.coords, 0))
    client.exchange(_observation(frame, client.coords, 1))
    with pytest.raises(ServerError, match="error 409 .*frame 2 was refused") as raised:
        client.exchange(_observation(frame, client.coords, 2))
    assert raised.value.code == 409 and not client.is_open


def test_a_wrong_env_is_named_before_anything_is_sent(scripted):
    server = scripted()
    with StreamClient(server.url, color="gray") as client:
        with pytest.raises(ValueError, match="sample_count=client.sample_count and color='gray'"):
            client.exchange(_observation(np.zeros((240, 256, 3), np.uint8), client.coords, 0))
    assert server.frames == []


def test_a_rejected_token_says_so(scripted):
    server = scripted(token="secret")
    with pytest.raises(AuthenticationError, match="requires a token"):
        StreamClient(server.url).open()
    with pytest.raises(AuthenticationError, match="rejected the token"):
        StreamClient(server.url, token="guess").open()
    with StreamClient(server.url, token="secret") as client:
        assert client.session_id == "session-1"


def test_psnr_comes_from_the_http_api():
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            found = self.path == "/api/sessions/s1"
            body = json.dumps({"session_id": "s1", "psnr": [[0, 31.5], [1, 33.25]]} if found else {}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"ws://127.0.0.1:{httpd.server_address[1]}/ws/stream"
        assert fetch_session_psnr(url, "s1", token="t") == [(0, 31.5), (1, 33.25)]
        assert seen[0] == ("/api/sessions/s1", "Bearer t")
        with pytest.raises(Exception, match="HTTP 404"):
            fetch_session_psnr(url, "nope")
    finally:
        httpd.shutdown()
        thread.join(5)
