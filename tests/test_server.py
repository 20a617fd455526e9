"""The live server on 127.0.0.1 with real WebSocket clients: protocol, concurrency, recording, hostile clients.

One real uvicorn server (``sgaps_server.background.BackgroundServer``: the app ``python -m sgaps_server``
runs) serves the module, with limits small enough to reach in a test; a second one with a token tests
authentication and the session cap. Frames are 90 real frames of 1-1 played by the heuristic player;
clients sample them where the server says, as the env would. Every loop is bounded and every
connection has a timeout, so nothing here can hang.
"""
from __future__ import annotations

import inspect
import json
import os
import threading
import time
import urllib.request
import zlib

import gymnasium as gym
import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as _connect

import sgaps_env  # noqa: F401  (registers SGAPS-SMB-v0)
from agents.players import make_player
from agents.policies import make_policy
from agents.stream import AuthenticationError, ServerError, StreamClient
from models.policy_replay import replay_offline
from models.tile_reconstructor import TileReconstructor, load_codebook
from sgaps_env.coords import extract_pixels
from sgaps_env.rollout import Rollout
from sgaps_env.sampler import PatternSampler
from sgaps_env.session_file import RecordedSession, list_sessions
from sgaps_env.state import STATE_FIELDS
from sgaps_env.wire import (MAX_DECODED_BYTES, ConnectionAck, ErrorMessage, FrameData, Heartbeat, HeartbeatAck,
                            SessionStart, SessionStartAck, UVCoordinates, decode)
from sgaps_server.background import BackgroundServer
from sgaps_server.config import ServerConfig

def connect(url, **kwargs):
    """A bare WebSocket (closed by the test; websockets >= 17.1 wants ``legacy=True`` said for that)."""
    direct = {"legacy": True} if "legacy" in inspect.signature(_connect).parameters else {}
    return _connect(url, **direct, **kwargs)


FRAMES = 90
COUNT = 500
CAMERA = [field.name for field in STATE_FIELDS].index("camera_x")


@pytest.fixture(scope="module")
def played():
    """``(frames (T, 240, 256, 3) uint8, states (T, D), masks (T, D))`` of 1-1 played by the heuristic player."""
    env = gym.make("SGAPS-SMB-v0", stage="1-1", sample_count=COUNT, color="rgb", return_frame=True)
    frames, states, masks = [], [], []
    try:
        for step in Rollout(env, make_player("heuristic"), PatternSampler("random", COUNT), seed=0, max_steps=FRAMES - 1):
            frames.append(step.info["frame"].copy())
            states.append(step.observation["state"].copy())
            masks.append(step.observation["state_mask"].copy())
    finally:
        env.close()
    assert len(frames) == FRAMES
    return np.stack(frames), np.stack(states), np.stack(masks)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = ServerConfig(record=tmp_path_factory.mktemp("server") / "sessions.h5", record_reconstruction_every=10,
                          max_errors=12, heartbeat_timeout_s=2.0, handshake_timeout_s=2.0, max_message_bytes=300_000,
                          max_sessions=12)
    with BackgroundServer(config) as running:
        yield running


def _stream(client: StreamClient, played, count: int = FRAMES, truth: bool = True, pace_s: float = 0.0) -> None:
    frames, states, masks = played
    coords = client.open() if not client.is_open else client.coords
    for t in range(count):
        observation = {"pixels": extract_pixels(frames[t], coords, "rgb"), "state": states[t], "state_mask": masks[t]}
        coords = client.exchange(observation, frames[t] if truth else None)
        if pace_s:
            time.sleep(pace_s)


def _stream_concurrently(clients: list[StreamClient], played, count: int) -> None:
    """Each client streams ``count`` frames on its own thread, all at once; any client's error fails the test."""
    errors = []

    def run(client):
        try:
            _stream(client, played, count=count)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors


def _same_psnr(live: np.ndarray, offline: np.ndarray) -> bool:
    """Per frame within 0.1 dB (two exact frames agree)."""
    return len(live) == len(offline) and bool(np.all(np.abs(np.where(np.isinf(live) & np.isinf(offline), 0.0,
                                                                               live - offline)) < 0.1))


def _api(server: BackgroundServer, path: str) -> dict:
    with urllib.request.urlopen(server.http_url + path, timeout=10) as response:
        return json.loads(response.read())


def _offline_psnr(played, seed: int, count: int) -> np.ndarray:
    """Per-frame PSNR of the offline replay of ``count`` frames (looping over the played ones) with ``seed``."""
    rows = np.arange(count) % FRAMES
    frames, states, masks = (array[rows] for array in played)
    reconstructor = TileReconstructor(load_codebook()[0], max_pages=32)
    policy = make_policy("uncertainty", COUNT, reconstructor=reconstructor, fast_order=True)  # as the server draws
    scored, _ = replay_offline(policy, reconstructor, frames, states, masks, "rgb", seed=seed, with_ssim=False)
    return np.array([row["psnr"] for row in scored])


def _live_psnr(server: BackgroundServer, session_id: str) -> np.ndarray:
    series = _api(server, f"/api/sessions/{session_id}")["psnr"]
    return np.array([np.inf if value is None else value for _, value in series])


def _raw(server: BackgroundServer, **kwargs):
    """A bare WebSocket past the handshake: ``(connection, ack, first coordinates message)``."""
    connection = connect(server.ws_url, open_timeout=10, close_timeout=2, compression=None, max_size=1 << 21, **kwargs)
    assert isinstance(decode(connection.recv(timeout=10)), ConnectionAck)
    connection.send(SessionStart("smb1-1-1", color="rgb").encode())
    ack = decode(connection.recv(timeout=10))
    first = decode(connection.recv(timeout=10))
    return connection, ack, first


def _frame_message(played, t: int, coords_message=None, **changes) -> bytes:
    frames, states, masks = played
    state, mask = states[t].copy(), masks[t].copy()
    for index, value in changes.get("state", {}).items():
        state[index], mask[index] = value, 1.0
    values = np.asarray(changes.get("values", np.full((COUNT, 3), 0.5, np.float32)), np.float32)
    return FrameData(changes.get("frame_id", t), values, state, mask).encode()


def _closed_code(connection, seconds: float = 5.0) -> int:
    """Read until the server closes the connection; its close code."""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            connection.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else -1
    except TimeoutError:
        pass
    raise AssertionError(f"the server did not close the connection within {seconds} s")


# --- the protocol ------------------------------------------------------------------------------------


def test_protocol_sequence_and_heartbeat(server, played):
    connection, ack, first = _raw(server)
    try:
        assert isinstance(ack, SessionStartAck)
        assert (ack.sample_count, ack.max_state_dim, ack.target_fps) == (COUNT, 64, 15.0)
        assert ack.description_kind == "blocks" and ack.checkpoint_loaded and ack.model_version.startswith("tiles:")
        assert isinstance(first, UVCoordinates) and first.frame_id == 0 and first.description["k"] == "blocks"
        connection.send(Heartbeat(12345).encode())
        beat = decode(connection.recv(timeout=10))
        assert isinstance(beat, HeartbeatAck) and beat.timestamp_ms == 12345 and beat.server_time_ms > 0
        connection.send(_frame_message(played, 0))
        reply = decode(connection.recv(timeout=10))
        assert isinstance(reply, UVCoordinates) and reply.frame_id == 1
    finally:
        connection.close()


def test_live_session_matches_offline_replay(server, played):
    """PSNR of a live session equals the offline replay of the same frames with the session's seed."""
    with StreamClient(server.ws_url, checkpoint_key="smb1-1-1") as client:
        _stream(client, played)
        summary = _api(server, f"/api/sessions/{client.session_id}")
    live = _live_psnr(server, client.session_id)
    offline = _offline_psnr(played, summary["seed"], FRAMES)
    assert len(live) == FRAMES
    assert _same_psnr(live, offline)
    assert np.nanmean(np.where(np.isinf(live), np.nan, live)) > 25.0
    uplink = [stat.uplink_bytes for stat in client.stats]
    downlink = [stat.downlink_bytes for stat in client.stats]
    assert max(downlink) <= 128 and np.mean(uplink) <= 600


def test_concurrent_sessions_are_isolated(server, played):
    """Four sessions at once: each replays exactly as it would alone. The tile reconstructor has no network to
    batch, so its frames go one at a time."""
    before = _metric(server, "sgaps_batch_size_sum"), _metric(server, "sgaps_batch_size_count")
    clients = [StreamClient(server.ws_url, checkpoint_key="smb1-1-1") for _ in range(4)]
    _stream_concurrently(clients, played, count=40)
    for client in clients:
        seed = _api(server, f"/api/sessions/{client.session_id}")["seed"]
        live, offline = _live_psnr(server, client.session_id), _offline_psnr(played, seed, 40)
        assert _same_psnr(live, offline)
        client.close()
    frames = _metric(server, "sgaps_batch_size_sum") - before[0]
    batches = _metric(server, "sgaps_batch_size_count") - before[1]
    assert frames == 160 and batches == frames


def _replay_spt(played, seed: int, count: int) -> np.ndarray:
    from models.spt import SPTReconstructor

    frames, states, masks = played
    policy = make_policy("stratified", COUNT)
    rows, _ = replay_offline(policy, SPTReconstructor(), frames[:count], states[:count], masks[:count], "rgb",
                             seed=seed, with_ssim=False)
    return np.array([row["psnr"] for row in rows])


def test_spt_sessions_share_forward_passes(played):
    """With the SPT, frames of concurrent sessions are reconstructed in one forward pass (dynamic batching), and
    each session still scores what it scores alone."""
    config = ServerConfig(reconstructor="spt", policy="stratified", record=None, batch_deadline_ms=20.0)
    with BackgroundServer(config) as running:
        clients = [StreamClient(running.ws_url, checkpoint_key="smb1-1-1") for _ in range(3)]
        _stream_concurrently(clients, played, count=15)
        frames, batches = _metric(running, "sgaps_batch_size_sum"), _metric(running, "sgaps_batch_size_count")
        assert frames == 45 and batches < 30  # most frames shared a forward pass with another session's
        for client in clients:
            seed = _api(running, f"/api/sessions/{client.session_id}")["seed"]
            live, offline = _live_psnr(running, client.session_id), _replay_spt(played, seed, 15)
            assert _same_psnr(live, offline)
            client.close()


def _metric(server: BackgroundServer, name: str) -> float:
    with urllib.request.urlopen(server.http_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_sessions_are_recorded_and_replay(server, played):
    """A closed session is in the session file: what the client sent, the truth, every 10th reconstruction;
    the recorded samples rebuild the recorded reconstructions."""
    frames, states, masks = played
    with StreamClient(server.ws_url, checkpoint_key="smb1-1-1") as client:
        sent_coords = [client.coords]
        for t in range(30):
            observation = {"pixels": extract_pixels(frames[t], sent_coords[-1], "rgb"), "state": states[t],
                           "state_mask": masks[t]}
            sent_coords.append(client.exchange(observation, frames[t]))
        session_id = client.session_id
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sessions = {s.session_id: s for s in list_sessions([server.config.record])}
        if session_id in sessions:
            break
        time.sleep(0.1)
    session: RecordedSession = sessions[session_id]
    assert len(session) == 30 and session.has_frames
    assert np.array_equal(session.frames(), frames[:30])
    recorded_states, recorded_masks = session.states()
    assert np.array_equal(recorded_states, states[:30]) and np.array_equal(recorded_masks, masks[:30])
    pixels = session.pixels()
    assert np.array_equal(pixels[:, :, :2], np.stack(sent_coords[:30]))
    steps, images = session.reconstructions()
    assert list(steps) == [0, 10, 20]
    replay = TileReconstructor(load_codebook()[0], max_pages=32)
    rebuilt = [replay.reconstruct(pixels[t], recorded_states[t], recorded_masks[t]) for t in range(30)]
    for step, image in zip(steps, images):
        assert np.array_equal(np.rint(np.clip(rebuilt[step], 0, 1) * 255).astype(np.uint8), image)
    assert session.attrs()["source"] == "sgaps_server" and session.attrs()["seed"] >= 0


def test_disconnect_without_close_keeps_the_recording(server, played):
    """A client that vanishes (TCP closed, no WebSocket close) still leaves its frames recorded."""
    connection, ack, first = _raw(server)
    from sgaps_env.descriptions import ClientContext, coords_from_description

    frames, states, masks = played
    context = ClientContext()
    coords = coords_from_description(first.description, COUNT, context)
    for t in range(12):
        observation = {"pixels": extract_pixels(frames[t], coords, "rgb"), "state": states[t], "state_mask": masks[t]}
        connection.send(FrameData.from_observation(t, observation).encode())
        context.advance(states[t], masks[t])
        coords = coords_from_description(decode(connection.recv(timeout=10)).description, COUNT, context)
    connection.socket.close()  # gone, without a close frame
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        recorded = {s.session_id: s for s in list_sessions([server.config.record])}
        if ack.session_id in recorded:
            break
        time.sleep(0.1)
    assert len(recorded[ack.session_id]) == 12


# --- hostile and broken clients ------------------------------------------------------------------------


class _WellBehaved(threading.Thread):
    """A client streaming at 15 fps (looping over the played frames) while a hostile one does its worst, until
    :meth:`stop_and_check`: every frame it sent must score what the offline replay scores, within bounded
    latency."""

    def __init__(self, server, played):
        super().__init__(daemon=True)
        self.server, self.played, self.error = server, played, None
        self.client = StreamClient(server.ws_url, checkpoint_key="smb1-1-1")
        self.stopped = threading.Event()

    def run(self):
        frames, states, masks = self.played
        try:
            coords = self.client.open()
            for t in range(100_000):
                if self.stopped.is_set() and t >= 10:
                    break
                index = t % FRAMES
                observation = {"pixels": extract_pixels(frames[index], coords, "rgb"), "state": states[index],
                               "state_mask": masks[index]}
                coords = self.client.exchange(observation, frames[index])
                time.sleep(1 / 15)
        except Exception as error:  # noqa: BLE001
            self.error = error

    def stop_and_check(self):
        self.stopped.set()
        self.join(timeout=120)
        assert self.error is None, self.error
        live = _live_psnr(self.server, self.client.session_id)
        seed = _api(self.server, f"/api/sessions/{self.client.session_id}")["seed"]
        offline = _offline_psnr(self.played, seed, len(self.client.stats))
        assert len(live) == len(self.client.stats) >= 10 and _same_psnr(live, offline)
        latency = np.array([stat.latency_ms for stat in self.client.stats])
        assert np.percentile(latency, 99) < 500  # loose: a loaded CI machine; the benchmark measures it
        self.client.close()


@pytest.fixture
def bystander(server, played):
    """A well-behaved session streaming in parallel with the test's hostile client, checked afterwards."""
    good = _WellBehaved(server, played)
    good.start()
    yield good
    good.stop_and_check()


def _bomb() -> bytes:
    """A few KB that inflate past the decoder's limit."""
    return zlib.compress(b"\0" * (MAX_DECODED_BYTES + 4096), 9)


def _expect_error(connection, code: int) -> ErrorMessage:
    message = decode(connection.recv(timeout=10))
    assert isinstance(message, ErrorMessage) and message.code == code, message
    return message


def test_hostile_frames_are_refused_and_the_session_survives(server, played, bystander):
    """Each bad message gets an error and changes nothing: the same connection then streams good frames whose
    reconstructions equal an offline replay (no NaN, no huge camera left in its memory)."""
    connection, ack, first = _raw(server)
    frames, states, masks = played
    session = server.server.sessions[ack.session_id]
    hosted = server.server.workers[0].host.sessions[ack.session_id]  # --processes 0: the host is in this process
    try:
        cases = [
            (_bomb(), 400),                                                          # zip bomb
            (b"\x00not zlib", 400),                                                  # garbage
            (_frame_message(played, 0, values=np.zeros((1_000_000, 1), np.float32)), 400),  # a million values
            (_frame_message(played, 0, values=np.zeros((0, 3), np.float32)), 400),  # no values
            (_frame_message(played, 0, values=np.zeros((COUNT, 1), np.float32)), 400),  # gray in an rgb session
            (_frame_message(played, 0, state={CAMERA: 1e6}), 400),                   # camera far outside its range
            (_frame_message(played, 0, frame_id=7), 409),                           # out of order
            (zlib.compress(msgpack.packb({"t": 3, "i": 0, "c": 3, "v": b"\0" * COUNT * 3, "d": 64,
                                          "s": [float("nan")] * len(STATE_FIELDS)})), 400),  # NaN state
            (SessionStart("again").encode(), 400),                                  # not a session message
        ]
        for data, code in cases:
            connection.send(data)
            _expect_error(connection, code)
            assert session.expected_frame == 0 and hosted.reconstructor.channels is None  # memory untouched
        connection.send("a text message")
        _expect_error(connection, 400)
        assert session.stats.rejected == len(cases) + 1
        # the same session then streams: its reconstructions are those of a session that never saw the above
        from sgaps_env.descriptions import ClientContext, coords_from_description
        context = ClientContext()
        coords = coords_from_description(first.description, COUNT, context)
        for t in range(20):
            observation = {"pixels": extract_pixels(frames[t], coords, "rgb"), "state": states[t], "state_mask": masks[t]}
            connection.send(FrameData.from_observation(t, observation).encode())
            context.advance(states[t], masks[t])
            reply = decode(connection.recv(timeout=10))
            assert isinstance(reply, UVCoordinates), reply
            coords = coords_from_description(reply.description, COUNT, context)
        assert len(hosted.reconstructor._pages) <= 2  # one level area: no page allocated for the bad camera
    finally:
        connection.close()


def test_too_many_refusals_close_the_session(server, played, bystander):
    connection, _, _ = _raw(server)
    for _ in range(server.config.max_errors):
        connection.send(b"junk")
    assert _closed_code(connection) == 1008


def test_oversized_message_closes_before_decompression(server, bystander):
    time.sleep(0.5)  # the bystander's session is open
    good_clients = len(server.server.sessions)
    connection, _, _ = _raw(server)
    connection.send(np.random.default_rng(0).bytes(server.config.max_message_bytes + 1))
    assert _closed_code(connection) == 1009
    deadline = time.monotonic() + 5
    while len(server.server.sessions) > good_clients and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(server.server.sessions) == good_clients


def test_silent_clients_are_closed(server, bystander):
    """No session_start within the handshake timeout, or nothing at all mid-session: closed (4408)."""
    connection = connect(server.ws_url, open_timeout=10, compression=None)
    assert isinstance(decode(connection.recv(timeout=10)), ConnectionAck)
    start = time.monotonic()
    assert _closed_code(connection, 10) == 4408
    assert time.monotonic() - start < server.config.handshake_timeout_s + 3
    connection, _, _ = _raw(server)
    assert _closed_code(connection, 10) == 4408


def test_message_flood_is_rate_limited(server, played, bystander):
    """Heartbeats far over the rate: the excess is refused (429) and the flood ends in a close."""
    connection, _, _ = _raw(server)
    codes = []
    try:
        for index in range(int(server.config.max_messages_per_second) + 40):
            connection.send(Heartbeat(index).encode())
        while True:
            message = decode(connection.recv(timeout=5))
            if isinstance(message, ErrorMessage):
                codes.append(message.code)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None and closed.rcvd.code == 1008
    assert codes and set(codes) == {429}


def test_slow_reader_is_closed_by_its_send_queue():
    """A client that stops reading fills its bounded send queue; after the send timeout the server closes it
    (4429) instead of queueing more. A burst to a reading client only waits."""
    import asyncio

    from sgaps_server.app import _Closed, _Connection

    class Socket:
        def __init__(self, stuck: bool):
            self.stuck, self.sent = stuck, 0

        async def send_bytes(self, data):
            await asyncio.sleep(3600 if self.stuck else 0.001)
            self.sent += 1

    async def scenario(stuck: bool):
        socket = Socket(stuck)
        connection = _Connection(socket, limit=3, timeout_s=0.2)
        queued = 0
        try:
            for _ in range(10):
                await connection.send(HeartbeatAck(1, 2))
                queued += 1
        except _Closed as closed:
            return queued, closed.code
        finally:
            connection.sender.cancel()
        return queued, None

    assert asyncio.run(scenario(stuck=True)) == (4, 4429)  # one being sent, three waiting, the fifth refused
    assert asyncio.run(scenario(stuck=False)) == (10, None)


def test_bad_session_start_is_refused(server, bystander):
    for start in (SessionStart("smb1-1-1", height=120, width=128), SessionStart("../etc", color="rgb"),
                  SessionStart("smb1-1-1", max_state_dim=5000)):
        connection = connect(server.ws_url, open_timeout=10, compression=None)
        assert isinstance(decode(connection.recv(timeout=10)), ConnectionAck)
        connection.send(start.encode())
        _expect_error(connection, 400)
        assert _closed_code(connection) == 1008


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory):
    config = ServerConfig(record=None, token="s3cret", max_sessions=2)
    with BackgroundServer(config) as running:
        yield running


def test_token_is_checked_before_any_work(guarded_server, played):
    for token in (None, "wrong"):
        with pytest.raises(AuthenticationError):
            StreamClient(guarded_server.ws_url, token=token).open()
        headers = {"Authorization": f"Bearer {token}"} if token else None
        with pytest.raises(InvalidStatus) as refused:
            connect(guarded_server.ws_url, additional_headers=headers, open_timeout=10)
        assert refused.value.response.status_code == 403
    assert guarded_server.server.metrics.sessions._value.get() == 0
    with StreamClient(guarded_server.ws_url, token="s3cret") as client:
        _stream(client, played, count=3, truth=False)
        assert client.frame_id == 3


def test_token_guards_the_page_api_and_metrics(guarded_server):
    """With --token, the page, its API and /metrics answer only with the token (header, or ?token= for the page
    and what it loads); /healthz stays open for liveness probes."""
    import urllib.error

    def status(path: str, headers: dict | None = None) -> int:
        request = urllib.request.Request(guarded_server.http_url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    for path in ("/", "/api/sessions", "/metrics", "/api/sessions/x/frame.png"):
        assert status(path) == 401 and status(path, {"Authorization": "Bearer wrong"}) == 401
    assert status("/api/sessions", {"Authorization": "Bearer s3cret"}) == 200
    assert status("/metrics", {"Authorization": "Bearer s3cret"}) == 200
    assert status("/?token=s3cret") == 200 and status("/api/sessions?token=s3cret") == 200
    assert status("/healthz") == 200


def test_session_cap(guarded_server, played):
    clients = [StreamClient(guarded_server.ws_url, token="s3cret") for _ in range(2)]
    for client in clients:
        client.open()
    try:
        with pytest.raises(ServerError) as refused:
            StreamClient(guarded_server.ws_url, token="s3cret").open()
        assert refused.value.code == 503
    finally:
        for client in clients:
            client.close()
    deadline = time.monotonic() + 5
    while guarded_server.server.sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    with StreamClient(guarded_server.ws_url, token="s3cret") as client:  # room again
        _stream(client, played, count=2, truth=False)


def test_page_and_metrics(server, played):
    with StreamClient(server.ws_url, checkpoint_key="smb1-1-2") as client:
        _stream(client, played, count=5)
        listing = _api(server, "/api/sessions")
        ours = [s for s in listing["sessions"] if s["session_id"] == client.session_id]
        assert ours and ours[0]["frames"] == 5 and ours[0]["checkpoint_key"] == "smb1-1-2"
        assert ours[0]["psnr_db_mean"] is not None and ours[0]["latency_ms"]["p99"] > 0
        with urllib.request.urlopen(f"{server.http_url}/api/sessions/{client.session_id}/frame.png", timeout=10) as r:
            assert r.headers["content-type"] == "image/png" and r.read()[:8] == b"\x89PNG\r\n\x1a\n"
    with urllib.request.urlopen(server.http_url + "/", timeout=10) as response:
        assert b"<html" in response.read().lower()
    assert _metric(server, "sgaps_frames_total") >= 5


def test_page_in_a_real_browser_shows_a_live_session(server, played, tmp_path):
    """Headless Chromium opens the real server's page while a session streams: its card, numbers and
    reconstruction are on the screenshot."""
    from browser import INSTALL_HINT, chromium_path, dump_dom, screenshot

    if chromium_path() is None:
        if os.environ.get("SGAPS_REQUIRE_BROWSER"):
            pytest.fail(f"headless Chromium is required here (SGAPS_REQUIRE_BROWSER) but missing; {INSTALL_HINT}")
        pytest.skip(f"headless Chromium is not installed; {INSTALL_HINT}")
    playing = _WellBehaved(server, played)  # streams (with truth) until stopped, however slow the browser is
    playing.start()
    client = playing.client
    try:
        deadline = time.monotonic() + 30
        while len(client.stats) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(3):  # a loaded machine may render before the first poll answers: look again
            dom = dump_dom(server.http_url + "/", wait_ms=2000)
            if f'data-session-id="{client.session_id}"' in dom:
                break
        shot = screenshot(server.http_url + "/", tmp_path / "live.png", wait_ms=2000)
    finally:
        playing.stop_and_check()
    assert f'data-session-id="{client.session_id}"' in dom
    assert "no truth sent" not in dom.split(f'data-session-id="{client.session_id}"')[1].split("session-card")[0]
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape == (900, 1280, 3)
    # the reconstruction of 1-1 is on the page: its sky blue (NES palette 0x22) covers a large area
    sky = np.all(np.abs(image.astype(int) - frames_sky(played)) <= 2, axis=2)
    assert sky.sum() > 20_000


def frames_sky(played) -> np.ndarray:
    """The most common colour of the played frames (1-1's sky)."""
    frames = played[0][:10].reshape(-1, 3)
    colours, counts = np.unique(frames, axis=0, return_counts=True)
    return colours[np.argmax(counts)].astype(int)


def test_worker_processes_share_sessions_and_fail_alone(tmp_path, played):
    """--processes 2: sessions spread over two worker processes and replay exactly as offline; killing one
    process closes its sessions only (1011) while the other's go on."""
    config = ServerConfig(record=tmp_path / "sessions.h5", processes=2)
    with BackgroundServer(config) as running:
        clients = [StreamClient(running.ws_url, checkpoint_key="smb1-1-1") for _ in range(4)]
        for client in clients:
            client.open()
        workers = {client.session_id: running.server.sessions[client.session_id].worker for client in clients}
        assert sorted(worker.index for worker in workers.values()) == [0, 0, 1, 1]
        for client in clients:
            _stream(client, played, count=20)
        for client in clients:
            seed = _api(running, f"/api/sessions/{client.session_id}")["seed"]
            live, offline = _live_psnr(running, client.session_id), _offline_psnr(played, seed, 20)
            assert _same_psnr(live, offline)
        victim = running.server.workers[0]
        victim.process.kill()
        victim.process.join(timeout=10)
        for client in clients:
            frames, states, masks = played
            observation = {"pixels": extract_pixels(frames[20], client.coords, "rgb"), "state": states[20],
                           "state_mask": masks[20]}
            if workers[client.session_id] is victim:
                with pytest.raises(Exception):
                    client.exchange(observation, frames[20])
            else:
                client.exchange(observation, frames[20])  # the other worker's sessions go on
                client.close()
    recorded = {s.session_id: len(s) for s in list_sessions([config.record])}
    survivors = [c.session_id for c in clients if workers[c.session_id] is not victim]
    assert all(recorded[session_id] == 21 for session_id in survivors)
    # the killed worker's sessions were journaled frame by frame: the next server start recovers them
    with BackgroundServer(ServerConfig(record=config.record)):
        recovered = {s.session_id: s for s in list_sessions([config.record])}
    for client in clients:
        if workers[client.session_id] is victim:
            assert len(recovered[client.session_id]) == 20 and recovered[client.session_id].attrs()["recovered"]


def test_in_range_garbage_keeps_a_session_within_its_memory_cap(server, bystander):
    """Frames whose every field is in range but random (any camera, any area, random colours) are reconstructed
    like any others, and the session's tile memory stays within --max-pages however far they jump."""
    connection, ack, first = _raw(server)
    hosted = server.server.workers[0].host.sessions[ack.session_id]
    rng = np.random.default_rng(0)
    low = np.array([field.low for field in STATE_FIELDS])
    high = np.array([field.high for field in STATE_FIELDS])
    scale = np.array([field.scale for field in STATE_FIELDS])
    try:
        for t in range(server.config.max_pages + 40):
            state, mask = np.full(64, -999.0, np.float32), np.zeros(64, np.float32)
            state[:len(STATE_FIELDS)] = np.clip(np.round(rng.uniform(low, high) * scale) / scale, low, high)
            mask[:len(STATE_FIELDS)] = 1.0
            values = rng.integers(0, 256, (COUNT, 3)) / 255.0
            connection.send(FrameData(t, values, state, mask).encode())
            reply = decode(connection.recv(timeout=10))
            assert isinstance(reply, UVCoordinates) and reply.frame_id == t + 1, reply
        assert len(hosted.reconstructor._pages) <= server.config.max_pages
    finally:
        connection.close()
