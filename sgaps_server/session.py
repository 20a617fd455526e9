"""One client's session on the server: what it negotiated, what it may send, and what it has seen.

A :class:`StreamSession` is the server's view of a session: what it negotiated, the frame it waits for,
the worker whose host holds its reconstructor memory, policy and journal (:mod:`sgaps_server.host`), and
the statistics the page and ``/metrics`` show. Every decoded message goes through :meth:`StreamSession.check_frame` or
:meth:`StreamSession.check_truth` before anything of the session changes: a frame that does not fit
the negotiated shape, or whose state lies outside the state fields' ranges, is refused with a
:class:`Rejected` (its code and reason go to the client as an ``error`` message) and the session goes
on unchanged, waiting for that frame again.

Sessions never share mutable state: each has its own reconstructor memory and policy generator on its
host; only the read-only codebook, atlas and networks are shared.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, channels_for
from sgaps_env.session_file import check_name
from sgaps_env.state import MAX_STATE_DIM, STATE_FIELDS, field_out_of_range
from sgaps_env.wire import FrameData, FrameTruth, SessionStart

_FIELD_COUNT = len(STATE_FIELDS)


class Rejected(ValueError):
    """A message the session refuses: ``code`` (HTTP-like) and the reason, both sent to the client."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code

    def __reduce__(self):  # crosses from a worker process with its code
        return Rejected, (self.code, str(self))


# error codes of ``error`` messages (the session goes on unless a close code follows)
BAD_MESSAGE = 400        # not a wire message, or a field that does not fit
UNAUTHORIZED = 401       # (the handshake answers 403 before any message)
OUT_OF_ORDER = 409       # a frame id other than the one the server waits for
TOO_MANY_REQUESTS = 429  # over the message rate
SERVER_ERROR = 500       # the server failed on this frame (a bug); the session is closed
SERVER_FULL = 503        # max_sessions are open

# WebSocket close codes
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008      # too many rejected messages, a bad session_start, a refused token
CLOSE_TOO_BIG = 1009     # a message over max_message_bytes
CLOSE_SERVER_ERROR = 1011
CLOSE_TRY_LATER = 1013   # server full
CLOSE_IDLE = 4408        # nothing received for heartbeat_timeout_s
CLOSE_SLOW_READER = 4429  # the client stopped reading: its send queue is full
CLOSE_FRAME_LIMIT = 4413  # max_session_frames sent


def check_session_start(message: SessionStart) -> None:
    """The resolution, state size and colour a session may negotiate; :class:`Rejected` otherwise."""
    if (message.height, message.width) != (FRAME_HEIGHT, FRAME_WIDTH):
        raise Rejected(BAD_MESSAGE, f"resolution {message.height}x{message.width} is not served: this server "
                                    f"reconstructs {FRAME_HEIGHT}x{FRAME_WIDTH} NES frames")
    if not _FIELD_COUNT <= message.max_state_dim <= MAX_STATE_DIM:
        raise Rejected(BAD_MESSAGE, f"max_state_dim {message.max_state_dim} is outside [{_FIELD_COUNT}, "
                                    f"{MAX_STATE_DIM}]")
    try:
        check_name("checkpoint key", message.checkpoint_key)
    except ValueError as error:
        raise Rejected(BAD_MESSAGE, str(error)) from None


@dataclass
class SessionStats:
    """What the page and the metrics show of one session; bounded (the last 600 frames)."""

    frames: int = 0
    uplink_bytes: int = 0
    downlink_bytes: int = 0
    rejected: int = 0
    latency_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=600))
    arrivals: collections.deque = field(default_factory=lambda: collections.deque(maxlen=64))
    """when the last frames arrived (perf_counter seconds): the fps"""
    psnr: collections.deque = field(default_factory=lambda: collections.deque(maxlen=600))
    """(frame_id, PSNR dB) of frames the client sent the truth of"""

    def summary(self) -> dict[str, Any]:
        latency = np.asarray(self.latency_ms, np.float64)
        fps = 0.0
        if len(self.arrivals) >= 2 and self.arrivals[-1] > self.arrivals[0]:
            fps = (len(self.arrivals) - 1) / (self.arrivals[-1] - self.arrivals[0])
        psnr = np.asarray([value for _, value in self.psnr], np.float64)
        finite = psnr[np.isfinite(psnr)]  # an exact frame's PSNR is infinite: counted apart (JSON has no inf)
        return {
            "frames": self.frames, "fps": round(fps, 2),
            "uplink_bytes_mean": round(self.uplink_bytes / self.frames, 1) if self.frames else 0.0,
            "downlink_bytes_mean": round(self.downlink_bytes / (self.frames + 1), 1),
            "latency_ms": None if not latency.size else {
                name: round(float(np.percentile(latency, q)), 2) for name, q in (("p50", 50), ("p90", 90), ("p99", 99))},
            "psnr_db_mean": round(float(finite.mean()), 2) if finite.size else None,
            "psnr_db_last": _json_number(psnr[-1]) if psnr.size else None,
            "psnr_exact_frames": int(np.isinf(psnr).sum()),
            "rejected": self.rejected,
        }


def _json_number(value: float) -> float | None:
    """``value`` rounded, or None where JSON has no number (an exact frame's infinite PSNR)."""
    return round(float(value), 3) if np.isfinite(value) else None


class StreamSession:
    """The server's side of one client session (see the module docstring)."""

    def __init__(self, session_id: str, client_id: str, start: SessionStart, sample_count: int, seed: int, worker):
        self.session_id, self.client_id, self.seed, self.worker = session_id, client_id, seed, worker
        self.checkpoint_key, self.color = start.checkpoint_key, start.color
        self.channels = channels_for(start.color)
        self.max_state_dim = start.max_state_dim
        self.sample_count = sample_count
        self.expected_frame = 0
        self.stats = SessionStats()
        self.started = time.time()
        self.lock = threading.Lock()  # the page's requests read ``stats`` while frames update it

    # --- what a client may send -----------------------------------------------------------------

    def check_frame(self, message: FrameData) -> None:
        """Refuse a ``frame_data`` that does not fit the session (nothing of the session changes)."""
        if message.frame_id != self.expected_frame:
            raise Rejected(OUT_OF_ORDER, f"frame_id {message.frame_id} is not the frame the server waits for "
                                         f"({self.expected_frame}): send the frames in order, each once")
        if message.sample_count != self.sample_count or message.channels != self.channels:
            raise Rejected(BAD_MESSAGE, f"frame {message.frame_id} has {message.sample_count} samples of "
                                        f"{message.channels} channels; the session negotiated {self.sample_count} "
                                        f"of {self.channels} ({self.color})")
        if message.max_state_dim != self.max_state_dim:
            raise Rejected(BAD_MESSAGE, f"frame {message.frame_id} has a state of {message.max_state_dim} entries; "
                                        f"the session negotiated max_state_dim {self.max_state_dim}")
        index = field_out_of_range(message.state, message.state_mask[:_FIELD_COUNT] == 1.0, slack=1e-6)
        if index is not None:
            field = STATE_FIELDS[index]
            raise Rejected(BAD_MESSAGE, f"frame {message.frame_id}: state field {index} ({field.name}) is "
                                        f"{message.state[index]:.6g}, outside its range [{field.low:.6g}, "
                                        f"{field.high:.6g}]")

    def check_truth(self, message: FrameTruth) -> None:
        """Refuse a truth frame for another frame than the next, or of another size."""
        if message.frame_id != self.expected_frame:
            raise Rejected(OUT_OF_ORDER, f"truth for frame {message.frame_id}; the next frame is "
                                         f"{self.expected_frame}: send a frame's truth just before its frame_data")
        if message.frame.shape != (FRAME_HEIGHT, FRAME_WIDTH, 3):
            raise Rejected(BAD_MESSAGE, f"truth frame is {message.frame.shape}; the session's frames are "
                                        f"({FRAME_HEIGHT}, {FRAME_WIDTH}, 3)")

    # --- what the page shows -----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        with self.lock:
            stats = self.stats.summary()
        return {"session_id": self.session_id, "client_id": self.client_id, "checkpoint_key": self.checkpoint_key,
                "color": self.color, "sample_count": self.sample_count, "seed": self.seed,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)), **stats}

    def psnr_series(self) -> list[list[float]]:
        with self.lock:
            return [[frame_id, _json_number(value)] for frame_id, value in self.stats.psnr]
