"""The SGAPS client/server wire protocol: message layout, encoding and decoding.

This module is the single owner of the bytes that travel between the game client
and the reconstruction server. Everything that sends, receives or counts
messages imports it rather than re-deriving the layout, so that byte counts in
experiments are the real bytes of the protocol.

Encoding
--------
Every message is one msgpack map, compressed with zlib at level 9::

    bytes = zlib.compress(msgpack.packb({"t": TAG, <one-letter key>: value, ...}), 9)

Keys are one letter (a one-letter key costs two bytes) and ``"t"`` is a small
integer type tag. Pixel values, coordinates and maps travel as msgpack ``bin``
byte strings, never as lists of numbers. Optional fields at their default value are left out of the
map. ``decode`` dispatches on the tag and raises ``ValueError`` with a clear
message for anything malformed (bad zlib stream, bad msgpack, trailing bytes,
unknown tag, missing or mistyped keys, inconsistent lengths); it also refuses
to inflate more than ``MAX_DECODED_BYTES``.

====================  ===  ====================================  =============================================
message               tag  fields (key)                          encoding
====================  ===  ====================================  =============================================
*client -> server*
``SessionStart``      1    checkpoint_key (k), height (h),       str, int, int, int, str (``"gray"`` or
                           width (w), max_state_dim (d),         ``"rgb"``); (h, w) is the seed design's
                           color (c)                             ``resolution``
``FrameData``         3    frame_id (i), values (v),             int; ``v``: N*C uint8 bytes ``round(value *
                           channels (c), max_state_dim (d),      255)``, row by row (channels interleaved) in
                           state (s), timestamp_ms (m),          sample order, not delta coded (see below);
                           sentinel (e)                          ``c``: 1 or 3; ``d``: D (1 byte up to 127);
                                                                 ``s``: a list of the real fields (58), each the
                                                                 exact int ``round(value * field.scale)``, nil
                                                                 when masked (a float in the rare case no int
                                                                 reproduces the float32 bit for bit); padding
                                                                 is not sent; ``m`` left out when 0, ``e``
                                                                 when it is ``DEFAULT_SENTINEL``. No
                                                                 coordinates: the server chose them.
``Heartbeat``         5    timestamp_ms (m)                      int
``FrameTruth``        9    frame_id (i), height (h), width (w),  int, int, int; ``f``: H*W*3 uint8 bytes, row by
                           frame (f)                             row. Opt-in, for evaluation only: the true
                                                                 frame, so that the server can score its
                                                                 reconstruction (about 5-9 KB a frame)
*server -> client*
``ConnectionAck``     8    client_id (i), server_version (v)     str, str: the first message on a connection
``SessionStartAck``   2    session_id (i), checkpoint_loaded     str, bool, int, int, float, str, str (the
                           (l), sample_count (n), max_state_dim  ``k`` of the policy's descriptions, see
                           (d), target_fps (f), model_version    ``sgaps_env.descriptions``; ``p`` left out
                           (v), description_kind (p)             when empty)
``UVCoordinates``     4    frame_id (i), description (d) *or*    int; ``d``: a msgpack map that a sampling
                           coords (p); importance_map (q, g, a)  policy writes and the client expands
                                                                 deterministically (not interpreted here);
                                                                 ``p``: N flat pixel indices ``y*256 + x``,
                                                                 uint16 little-endian bytes, in order; ``q``:
                                                                 the map as uint8 bytes, quantized relative
                                                                 to its maximum ``a`` (float), ``g``: its
                                                                 [rows, cols]; q, g, a left out without a map
``HeartbeatAck``      6    timestamp_ms (m), server_time_ms (s)  int, int
``ErrorMessage``      7    code (c), message (m)                 int, str
====================  ===  ====================================  =============================================

What each message holds is what the wire carries: constructing a message
quantizes ``FrameData.values`` to 8-bit levels ``q``, puts the sentinel into
masked and padded state entries, snaps ``UVCoordinates.coords`` to pixel
centres and quantizes the importance map, so that ``decode(m.encode()) == m``
field by field, arrays bit for bit.

Byte budget
-----------
The point of SGAPS is to send a few hundred pixels instead of a frame
(240 * 256 * 3 = 184,320 bytes raw). The targets are ``FrameData`` <= 600 bytes
at 500 gray samples with the state (about 9 KB/s, 72 kbit/s, at the
environment's 15 frames per second) and a described ``UVCoordinates`` <= 128
bytes, so that the return path is negligible. Measured on the 100 real 1-1
frames of ``tests/test_wire.py`` (500 random samples, wall-clock timestamp):

* values: the NES draws every frame from a few palettes, so 500 gray bytes
  deflate to 146 bytes on average (max 164); 500 rgb to 228 (max 261);
* state: 44 ints, most of them 1 byte in msgpack, about 51 bytes after zlib
  (measured before the 9 fields appended on 2026-12-02; in play each takes
  1 to 3 bytes in msgpack before zlib, a masked one a 1-byte nil);
* framing: keys, tag, msgpack headers, the 9-byte timestamp and zlib's 6
  bytes of header and checksum, about 40 bytes.

Whole ``FrameData`` messages: 238 bytes mean, 261 max at 500 gray samples;
309 mean, 349 max at 500 rgb samples. A ``UVCoordinates`` with a description
such as ``{"k": "ram", "n": 500, "s": 12345}`` is 35 bytes; with 500 explicit
random coordinates it is 1023 bytes (pixel indices are ~16 bits of entropy
each), which is why sampling policies should send descriptions.

Gray values are BT.601 luma of uint8 RGB, which is not a multiple of 1/255, so
quantization costs up to 0.5/255 per value. Decoded values are
``q * float32(1/255)`` (within one float32 ulp of ``q / 255``), the
environment's own rgb conversion, so rgb values come back bit for bit.

Delta coding of the values along the sample order (uint8 wraparound
differences) was measured and rejected: it makes the values *larger* after
zlib, because a frame has few distinct values but many distinct differences
between them. Values-only zlib bytes, mean / max, plain vs delta: gray random
146 / 164 vs 198 / 229 and rgb random 228 / 261 vs 306 / 373 (the test
frames); gray stratified 96 / 116 vs 122 / 156 and rgb stratified 137 / 172
vs 195 / 255 (151 frames of 1-1, where stratified order is raster-like and
deltas have their best chance). For rgb, interleaving the channels per
sample (as sent) beats sending them as planes (random: 224 vs 371 bytes).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import msgpack
import numpy as np

from sgaps_env.coords import COLOR_CHANNELS, FRAME_HEIGHT, FRAME_WIDTH, channels_for, pixel_to_uv, uv_to_pixel
from sgaps_env.state import DEFAULT_MAX_STATE_DIM, DEFAULT_SENTINEL, STATE_FIELDS

__all__ = [
    "MAX_DECODED_BYTES", "MESSAGE_TYPES", "ZLIB_LEVEL", "ConnectionAck", "ErrorMessage", "FrameData", "FrameTruth",
    "Heartbeat", "HeartbeatAck", "Message", "SessionStart", "SessionStartAck", "UVCoordinates", "decode",
    "message_size",
]

#: zlib compression level of every message.
ZLIB_LEVEL = 9
#: ``decode`` refuses messages that inflate to more than this many bytes.
MAX_DECODED_BYTES = 1 << 20

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_PIXELS = FRAME_HEIGHT * FRAME_WIDTH
#: The real state fields' scales: a field's value is ``int / scale``.
_SCALES = np.array([field.scale for field in STATE_FIELDS], dtype=np.float64)
_FIELD_COUNT = len(STATE_FIELDS)
_UNPACK_OPTIONS = {"raw": False, "use_list": True, "strict_map_key": True}


# --- validation helpers ------------------------------------------------------------------------


def _int(value: Any, name: str, low: int = _INT64_MIN, high: int = _INT64_MAX) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, got {type(value).__name__} {value!r}")
    return value


def _float(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _frozen_array(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _quantize(values: np.ndarray) -> np.ndarray:
    """``round(v * 255)`` as uint8 for values in [0, 1]."""
    return np.rint(values.astype(np.float64) * 255.0).astype(np.uint8)


def _dequantize(quantized: np.ndarray) -> np.ndarray:
    """``q * float32(1/255)``: the environment's own rgb conversion, so rgb values come back bit for bit."""
    return quantized.astype(np.float32) * np.float32(1.0 / 255.0)


def _dequantize_map(quantized: np.ndarray, scale: float) -> np.ndarray:
    """``q / 255 * scale`` in float32: ``q = 255`` gives ``scale`` exactly, so re-quantizing is the identity."""
    return (quantized.astype(np.float32) / np.float32(255.0)) * np.float32(scale)


def _msgpack_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialize {type(value).__name__} {value!r}")


# --- messages ----------------------------------------------------------------------------------


class _Message:
    """Base of the message classes: field-by-field equality (arrays bit for bit), encoding."""

    TAG: ClassVar[int]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for item in fields(self):
            a, b = getattr(self, item.name), getattr(other, item.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                        and a.shape == b.shape and a.tobytes() == b.tobytes()):
                    return False
            elif type(a) is not type(b) or a != b:
                return False
        return True

    def _to_map(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_map(cls, data: dict[str, Any]) -> "_Message":
        raise NotImplementedError

    def encode(self) -> bytes:
        """The message's bytes on the wire: msgpack map, zlib level 9."""
        return zlib.compress(msgpack.packb({"t": self.TAG, **self._to_map()}, use_bin_type=True), ZLIB_LEVEL)


def _get(data: dict[str, Any], key: str, kinds: type | tuple[type, ...], what: str, message: str,
         default: Any = ...) -> Any:
    """Field ``key`` of a decoded map, type-checked; ValueError naming the message and field otherwise."""
    if key not in data:
        if default is not ...:
            return default
        raise ValueError(f"malformed {message} message: key {key!r} ({what}) is missing")
    value = data[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple)
                                                                                 else (kinds,))):
        raise ValueError(f"malformed {message} message: key {key!r} ({what}) has type {type(value).__name__}")
    return value


def _rewrap(message: str, build):
    """Run ``build()``; re-raise a constructor's ValueError as a malformed-message error."""
    try:
        return build()
    except ValueError as error:
        if str(error).startswith("malformed "):
            raise
        raise ValueError(f"malformed {message} message: {error}") from None


@dataclass(frozen=True, eq=False)
class SessionStart(_Message):
    """Client -> server: open a session (the seed design's ``session_start``)."""

    checkpoint_key: str
    height: int = FRAME_HEIGHT
    width: int = FRAME_WIDTH
    max_state_dim: int = DEFAULT_MAX_STATE_DIM
    color: str = "gray"

    TAG: ClassVar[int] = 1

    def __post_init__(self):
        _str(self.checkpoint_key, "checkpoint_key")
        object.__setattr__(self, "height", _int(self.height, "height", 1, 65535))
        object.__setattr__(self, "width", _int(self.width, "width", 1, 65535))
        object.__setattr__(self, "max_state_dim", _int(self.max_state_dim, "max_state_dim", _FIELD_COUNT, 65535))
        channels_for(_str(self.color, "color"))

    def _to_map(self):
        return {"k": self.checkpoint_key, "h": self.height, "w": self.width, "d": self.max_state_dim,
                "c": self.color}

    @classmethod
    def _from_map(cls, data):
        name = cls.__name__
        return _rewrap(name, lambda: cls(
            _get(data, "k", str, "checkpoint_key", name), _get(data, "h", int, "height", name),
            _get(data, "w", int, "width", name), _get(data, "d", int, "max_state_dim", name),
            _get(data, "c", str, "color", name)))


@dataclass(frozen=True, eq=False)
class SessionStartAck(_Message):
    """Server -> client: the session is open (the seed design's ``session_start_ack``)."""

    session_id: str
    checkpoint_loaded: bool
    sample_count: int
    max_state_dim: int
    target_fps: float
    model_version: str
    description_kind: str = ""

    TAG: ClassVar[int] = 2

    def __post_init__(self):
        _str(self.session_id, "session_id")
        if not isinstance(self.checkpoint_loaded, (bool, np.bool_)):
            raise ValueError(f"checkpoint_loaded must be a bool, got {type(self.checkpoint_loaded).__name__}")
        object.__setattr__(self, "checkpoint_loaded", bool(self.checkpoint_loaded))
        object.__setattr__(self, "sample_count", _int(self.sample_count, "sample_count", 1, _PIXELS))
        object.__setattr__(self, "max_state_dim", _int(self.max_state_dim, "max_state_dim", _FIELD_COUNT, 65535))
        fps = _float(self.target_fps, "target_fps")
        if fps <= 0:
            raise ValueError(f"target_fps must be positive, got {fps}")
        object.__setattr__(self, "target_fps", fps)
        _str(self.model_version, "model_version")
        _str(self.description_kind, "description_kind")

    def _to_map(self):
        data = {"i": self.session_id, "l": self.checkpoint_loaded, "n": self.sample_count, "d": self.max_state_dim,
                "f": self.target_fps, "v": self.model_version}
        if self.description_kind:
            data["p"] = self.description_kind
        return data

    @classmethod
    def _from_map(cls, data):
        name = cls.__name__
        return _rewrap(name, lambda: cls(
            _get(data, "i", str, "session_id", name), _get(data, "l", bool, "checkpoint_loaded", name),
            _get(data, "n", int, "sample_count", name), _get(data, "d", int, "max_state_dim", name),
            _get(data, "f", (int, float), "target_fps", name), _get(data, "v", str, "model_version", name),
            _get(data, "p", str, "description_kind", name, "")))


@dataclass(frozen=True, eq=False)
class FrameData(_Message):
    """Client -> server: one frame's sampled values and state vector (the seed design's ``frame_data``).

    ``values`` is ``(N, C)`` in [0, 1] (``C = 1`` gray, ``3`` rgb), in the order of the coordinates
    the server sent; it is stored quantized (``q * float32(1/255)``, float32), which is what the server
    receives. ``state`` and ``state_mask`` are the environment's ``(D,)`` float32 vectors
    (``D = max_state_dim``): only the ``len(STATE_FIELDS)`` real fields travel, each as the integer
    ``round(value * field.scale)`` or nil when masked; masked and padding entries are rebuilt as
    ``sentinel`` with mask 0. The state is reproduced bit for bit.
    """

    frame_id: int
    values: np.ndarray
    state: np.ndarray
    state_mask: np.ndarray
    timestamp_ms: int = 0
    sentinel: float = DEFAULT_SENTINEL

    TAG: ClassVar[int] = 3

    def __post_init__(self):
        object.__setattr__(self, "frame_id", _int(self.frame_id, "frame_id", 0))
        object.__setattr__(self, "timestamp_ms", _int(self.timestamp_ms, "timestamp_ms", 0))
        sentinel = _float(self.sentinel, "sentinel")
        object.__setattr__(self, "sentinel", sentinel)

        values = np.asarray(self.values)
        if values.ndim != 2 or values.shape[1] not in COLOR_CHANNELS.values():
            raise ValueError(f"values has shape {values.shape}, expected (N, C) with C = 1 (gray) or 3 (rgb): "
                             "one row of values per sampled pixel, without the (u, v) columns")
        if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)
                or values.dtype == np.bool_):
            raise ValueError(f"values must be a numeric array, got dtype {values.dtype}")
        if values.size and not np.isfinite(values).all():
            raise ValueError("values contains NaN or infinite entries; values must be finite numbers in [0, 1]")
        if values.size and (values.min() < 0 or values.max() > 1):
            raise ValueError(f"values must lie in [0, 1] (min {values.min():.4g}, max {values.max():.4g}); "
                             "pixel values are fractions of 255, not uint8 levels")
        quantized = _quantize(values)
        object.__setattr__(self, "_quantized", quantized)
        object.__setattr__(self, "values", _frozen_array(_dequantize(quantized)))

        state = np.asarray(self.state)
        mask = np.asarray(self.state_mask)
        if state.ndim != 1 or mask.shape != state.shape:
            raise ValueError(f"state and state_mask must be 1-D of the same length (max_state_dim), got shapes "
                             f"{state.shape} and {mask.shape}")
        if not _FIELD_COUNT <= len(state) <= 65535:
            raise ValueError(f"state has {len(state)} entries: max_state_dim must be in [{_FIELD_COUNT}, 65535] "
                             f"(the {_FIELD_COUNT} state fields, then padding)")
        state = state.astype(np.float32)  # a copy
        mask = mask.astype(np.float32)
        if not np.isin(mask, (0.0, 1.0)).all():
            raise ValueError("state_mask must hold only 0 (masked or padding) and 1 (valid)")
        if mask[_FIELD_COUNT:].any():
            raise ValueError(f"state_mask is 1 at padding entries past the {_FIELD_COUNT} state fields; "
                             "padding is not sent, so it must be masked (0)")
        valid = mask == 1.0
        if not np.isfinite(state[valid]).all():
            raise ValueError("state holds NaN or infinite values at valid (mask 1) entries")
        state[~valid] = np.float32(sentinel)
        object.__setattr__(self, "state", _frozen_array(state))
        object.__setattr__(self, "state_mask", _frozen_array(mask))

    @property
    def sample_count(self) -> int:
        """N, the number of sampled pixels."""
        return self.values.shape[0]

    @property
    def channels(self) -> int:
        """C, the number of values per sampled pixel (1 gray, 3 rgb)."""
        return self.values.shape[1]

    @property
    def max_state_dim(self) -> int:
        """D, the length of ``state`` and ``state_mask``."""
        return len(self.state)

    @classmethod
    def from_observation(cls, frame_id: int, observation: dict[str, np.ndarray], timestamp_ms: int = 0,
                         sentinel: float | None = None) -> "FrameData":
        """The message for one environment observation ``{pixels, state, state_mask}``.

        ``pixels`` is ``(N, 2 + C)`` rows ``(u, v, values...)``; the ``(u, v)`` columns are dropped (the
        server chose them). ``sentinel=None`` takes it from the observation's masked entries (all equal
        in an environment's state), or ``DEFAULT_SENTINEL`` when no entry is masked.
        """
        try:
            pixels, state, mask = observation["pixels"], observation["state"], observation["state_mask"]
        except (KeyError, TypeError, IndexError):
            raise ValueError("observation must be a dict with keys 'pixels', 'state' and 'state_mask' "
                             "(an SGAPS-SMB-v0 observation)") from None
        pixels = np.asarray(pixels)
        if pixels.ndim != 2 or pixels.shape[1] - 2 not in COLOR_CHANNELS.values():
            raise ValueError(f"observation['pixels'] has shape {pixels.shape}, expected (N, 3) rows (u, v, gray) "
                             "or (N, 5) rows (u, v, r, g, b)")
        if sentinel is None:
            masked = np.asarray(state, dtype=np.float32)[np.asarray(mask) == 0]
            sentinel = float(masked[0]) if masked.size and (masked == masked[0]).all() else DEFAULT_SENTINEL
        return cls(frame_id, pixels[:, 2:], state, mask, timestamp_ms, sentinel)

    def to_pixels(self, coords: np.ndarray) -> np.ndarray:
        """The ``(N, 2 + C)`` float32 rows ``(u, v, values...)`` for the server's ``(N, 2)`` coords.

        ``(u, v)`` is the centre of the pixel each coordinate owns, as in the environment's
        observation, so this rebuilds the observation's ``pixels`` (values quantized).
        """
        coords = np.asarray(coords, dtype=np.float32)
        if coords.shape != (self.sample_count, 2):
            raise ValueError(f"coords has shape {coords.shape}, expected ({self.sample_count}, 2): the (u, v) the "
                             "server sent for this frame, one row per sampled value")
        if not np.isfinite(coords).all() or (coords.size and (coords.min() < 0 or coords.max() > 1)):
            raise ValueError("coords must be finite (u, v) in [0, 1]")
        pixels = np.empty((self.sample_count, 2 + self.channels), dtype=np.float32)
        pixels[:, :2] = pixel_to_uv(*uv_to_pixel(coords))
        pixels[:, 2:] = self.values
        return pixels

    def _state_list(self) -> list[int | float | None]:
        state = self.state[:_FIELD_COUNT]
        ints = np.rint(state.astype(np.float64) * _SCALES) + 0.0  # + 0.0: -0.0 is no int (sent as a float)
        exact = (ints / _SCALES).astype(np.float32).view(np.uint32) == state.view(np.uint32)
        out: list[int | float | None] = []
        for index in range(_FIELD_COUNT):
            if self.state_mask[index] == 0:
                out.append(None)
            elif exact[index] and abs(ints[index]) < 2 ** 63:
                out.append(int(ints[index]))
            else:  # not k / scale for any int k (no environment state): the float32 itself
                out.append(float(state[index]))
        return out

    def _to_map(self):
        data = {"i": self.frame_id, "c": self.channels, "v": self._quantized.tobytes(), "d": self.max_state_dim,
                "s": self._state_list()}
        if self.timestamp_ms:
            data["m"] = self.timestamp_ms
        if self.sentinel != DEFAULT_SENTINEL:
            data["e"] = self.sentinel
        return data

    @classmethod
    def _from_map(cls, data):
        name = cls.__name__
        channels = _get(data, "c", int, "channels", name)
        if channels not in COLOR_CHANNELS.values():
            raise ValueError(f"malformed {name} message: channels is {channels}, expected 1 or 3")
        raw = _get(data, "v", bytes, "values", name)
        if len(raw) % channels:
            raise ValueError(f"malformed {name} message: {len(raw)} value bytes is not a multiple of the "
                             f"{channels} channels")
        values = _dequantize(np.frombuffer(raw, dtype=np.uint8).reshape(-1, channels))
        dim = _get(data, "d", int, "max_state_dim", name)
        if not _FIELD_COUNT <= dim <= 65535:
            raise ValueError(f"malformed {name} message: max_state_dim {dim} is outside [{_FIELD_COUNT}, 65535]")
        items = _get(data, "s", list, "state", name)
        if len(items) != _FIELD_COUNT:
            raise ValueError(f"malformed {name} message: state has {len(items)} entries, expected the "
                             f"{_FIELD_COUNT} state fields")
        sentinel = float(_get(data, "e", (int, float), "sentinel", name, DEFAULT_SENTINEL))
        state = np.full(dim, sentinel, dtype=np.float32)
        mask = np.zeros(dim, dtype=np.float32)
        ints = np.zeros(_FIELD_COUNT, dtype=np.float64)
        is_int = np.zeros(_FIELD_COUNT, dtype=bool)
        for index, item in enumerate(items):
            if item is None:
                continue
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise ValueError(f"malformed {name} message: state entry {index} has type {type(item).__name__}")
            mask[index] = 1.0
            if isinstance(item, int):
                ints[index], is_int[index] = item, True
            else:
                state[index] = item
        state[:_FIELD_COUNT][is_int] = (ints / _SCALES).astype(np.float32)[is_int]
        timestamp = _get(data, "m", int, "timestamp_ms", name, 0)
        frame_id = _get(data, "i", int, "frame_id", name)
        return _rewrap(name, lambda: cls(frame_id, values, state, mask, timestamp, sentinel))


@dataclass(frozen=True, eq=False)
class UVCoordinates(_Message):
    """Server -> client: where to sample frame ``frame_id`` (the seed design's ``uv_coordinates``).

    Exactly one of ``description`` (a msgpack-able dict with str keys that a sampling policy
    writes and the client expands deterministically into coordinates; not interpreted here) or
    ``coords`` (``(N, 2)`` (u, v) in [0, 1], sent as flat pixel indices ``y * 256 + x`` and stored
    as the centres of the pixels they own, which is where the environment reads them).
    ``importance_map`` is an optional 2-D non-negative array, quantized to 8 bits relative to its
    maximum (each entry within ``max / 510`` of the original).
    """

    frame_id: int
    description: dict[str, Any] | None = None
    coords: np.ndarray | None = None
    importance_map: np.ndarray | None = None

    TAG: ClassVar[int] = 4

    def __post_init__(self):
        object.__setattr__(self, "frame_id", _int(self.frame_id, "frame_id", 0))
        if (self.description is None) == (self.coords is None):
            raise ValueError("UVCoordinates needs exactly one of description (a sampling policy's compact "
                             "description) and coords (explicit (N, 2) (u, v)), got "
                             + ("both" if self.description is not None else "neither"))
        if self.description is not None:
            object.__setattr__(self, "description", self._normalize_description(self.description))
        else:
            object.__setattr__(self, "coords", self._normalize_coords(self.coords))
        if self.importance_map is not None:
            scale, quantized = self._quantize_map(self.importance_map)
            object.__setattr__(self, "_map_scale", scale)
            object.__setattr__(self, "_map_quantized", quantized)
            object.__setattr__(self, "importance_map", _frozen_array(_dequantize_map(quantized, scale)))

    @staticmethod
    def _normalize_description(description: Any) -> dict[str, Any]:
        if not isinstance(description, dict):
            raise ValueError(f"description must be a dict with str keys, got {type(description).__name__}")
        bad = [key for key in description if not isinstance(key, str)]
        if bad:
            raise ValueError(f"description keys must be str, got {bad[:3]!r}")
        try:  # what the client will decode: tuples become lists, numpy scalars Python numbers
            return msgpack.unpackb(msgpack.packb(description, use_bin_type=True, default=_msgpack_default),
                                   **_UNPACK_OPTIONS)
        except Exception as error:  # noqa: BLE001 - msgpack raises several types
            raise ValueError(f"description is not msgpack-serializable ({error}); use str keys and int, float, "
                             "str, bytes, bool, None, list or dict values") from None

    @staticmethod
    def _normalize_coords(coords: Any) -> np.ndarray:
        array = np.asarray(coords, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != 2 or not 1 <= len(array) <= _PIXELS:
            raise ValueError(f"coords has shape {array.shape}, expected (N, 2) (u, v) rows with 1 <= N <= {_PIXELS}")
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            finite = array[np.isfinite(array)]
            span = f" (finite min {finite.min():.4g}, max {finite.max():.4g})" if finite.size else ""
            raise ValueError(f"coords must be finite (u, v) in [0, 1]{span}")
        return _frozen_array(pixel_to_uv(*uv_to_pixel(array)))

    @staticmethod
    def _quantize_map(importance: Any) -> tuple[float, np.ndarray]:
        array = np.asarray(importance, dtype=np.float64)
        if array.ndim != 2 or array.size == 0 or max(array.shape) > 65535 or array.size > _PIXELS:
            raise ValueError(f"importance_map has shape {array.shape}, expected a small non-empty 2-D array "
                             f"(at most {_PIXELS} entries)")
        if not np.isfinite(array).all() or array.min() < 0:
            raise ValueError("importance_map must hold finite non-negative values")
        scale = float(np.float32(array.max()))
        if not np.isfinite(scale):
            raise ValueError("importance_map's maximum overflows float32")
        if scale == 0:
            return 0.0, np.zeros(array.shape, dtype=np.uint8)
        return scale, np.clip(np.rint(array / scale * 255.0), 0, 255).astype(np.uint8)

    def _to_map(self):
        data: dict[str, Any] = {"i": self.frame_id}
        if self.description is not None:
            data["d"] = self.description
        else:
            rows, cols = uv_to_pixel(self.coords)
            data["p"] = (rows * FRAME_WIDTH + cols).astype("<u2").tobytes()
        if self.importance_map is not None:
            data["q"] = self._map_quantized.tobytes()
            data["g"] = list(self._map_quantized.shape)
            data["a"] = self._map_scale
        return data

    @classmethod
    def _from_map(cls, data):
        name = cls.__name__
        frame_id = _get(data, "i", int, "frame_id", name)
        description = _get(data, "d", dict, "description", name, None)
        coords = None
        packed = _get(data, "p", bytes, "coords", name, None)
        if packed is not None:
            if len(packed) % 2:
                raise ValueError(f"malformed {name} message: coords has an odd number of bytes ({len(packed)})")
            flat = np.frombuffer(packed, dtype="<u2").astype(np.int64)
            if flat.size and flat.max() >= _PIXELS:
                raise ValueError(f"malformed {name} message: pixel index {flat.max()} is past the "
                                 f"{FRAME_HEIGHT}x{FRAME_WIDTH} frame")
            coords = pixel_to_uv(flat // FRAME_WIDTH, flat % FRAME_WIDTH)
        importance = None
        quantized = _get(data, "q", bytes, "importance_map", name, None)
        if quantized is not None:
            shape = _get(data, "g", list, "importance_map shape", name)
            scale = _get(data, "a", (int, float), "importance_map scale", name)
            if (len(shape) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
                    or shape[0] * shape[1] != len(quantized)):
                raise ValueError(f"malformed {name} message: importance_map shape {shape} does not fit its "
                                 f"{len(quantized)} bytes")
            if not np.isfinite(scale) or scale < 0:
                raise ValueError(f"malformed {name} message: importance_map scale {scale} is not finite and >= 0")
            grid = np.frombuffer(quantized, dtype=np.uint8).reshape(shape)
            importance = _dequantize_map(grid, scale)
        return _rewrap(name, lambda: cls(frame_id, description, coords, importance))


@dataclass(frozen=True, eq=False)
class Heartbeat(_Message):
    """Client -> server: keep-alive (the seed design's ``heartbeat``)."""

    timestamp_ms: int

    TAG: ClassVar[int] = 5

    def __post_init__(self):
        object.__setattr__(self, "timestamp_ms", _int(self.timestamp_ms, "timestamp_ms"))

    def _to_map(self):
        return {"m": self.timestamp_ms}

    @classmethod
    def _from_map(cls, data):
        name = cls.__name__
        return _rewrap(name, lambda: cls(_get(data, "m", int, "timestamp_ms", name)))


@dataclass(frozen=True, eq=False)
class HeartbeatAck(_Message):
    """Server -> client: answer to a heartbeat (the seed design's ``heartbeat_ack``)."""

    timestamp_ms: int
    server_time_ms: int

    TAG: ClassVar[int] = 6

    def __post_init__(self):
        object.__setattr__(self, "timestamp_ms", _int(self.timestamp_ms, "timestamp_ms"))
        object.__setattr__(self, "server_time_ms", _int(self.server_time_ms, "server_time_ms"))

    def _to_map(self):
        return {"m": self.timestamp_ms, "s": self.server_time_ms}

    @classmethod
    def _from_map(cls, data):
        name = cls.__name__
        return _rewrap(name, lambda: cls(_get(data, "m", int, "timestamp_ms", name),
                                         _get(data, "s", int, "server_time_ms", name)))


@dataclass(frozen=True, eq=False)
class ErrorMessage(_Message):
    """Server -> client: an error (the seed design's ``error``)."""

    code: int
    message: str

    TAG: ClassVar[int] = 7

    def __post_init__(self):
        object.__setattr__(self, "code", _int(self.code, "code"))
        _str(self.message, "message")

    def _to_map(self):
        return {"c": self.code, "m": self.message}

    @classmethod
    def _from_map(cls, data):
        name = cls.__name__
        return _rewrap(name, lambda: cls(_get(data, "c", int, "code", name), _get(data, "m", str, "message", name)))


@dataclass(frozen=True, eq=False)
class ConnectionAck(_Message):
    """Server -> client: the connection is accepted (the seed design's ``connection_ack``)."""

    client_id: str
    server_version: str

    TAG: ClassVar[int] = 8

    def __post_init__(self):
        _str(self.client_id, "client_id")
        _str(self.server_version, "server_version")

    def _to_map(self):
        return {"i": self.client_id, "v": self.server_version}

    @classmethod
    def _from_map(cls, data):
        name = cls.__name__
        return _rewrap(name, lambda: cls(_get(data, "i", str, "client_id", name),
                                         _get(data, "v", str, "server_version", name)))


@dataclass(frozen=True, eq=False)
class FrameTruth(_Message):
    """Client -> server, opt-in, for evaluation only: the true ``(H, W, 3)`` uint8 RGB frame ``frame_id``.

    A debugging client sends it just before the frame's ``FrameData`` so that the server can score its
    reconstruction (PSNR) and record the true frame; a real client never does (it is the frame itself).
    """

    frame_id: int
    frame: np.ndarray

    TAG: ClassVar[int] = 9

    def __post_init__(self):
        object.__setattr__(self, "frame_id", _int(self.frame_id, "frame_id", 0))
        frame = np.asarray(self.frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 \
                or not (1 <= frame.shape[0] <= FRAME_HEIGHT and 1 <= frame.shape[1] <= FRAME_WIDTH):
            raise ValueError(f"frame must be (H, W, 3) uint8 RGB with H <= {FRAME_HEIGHT} and W <= {FRAME_WIDTH} "
                             f"(the emulator's frame), got {frame.dtype} {frame.shape}")
        object.__setattr__(self, "frame", _frozen_array(np.ascontiguousarray(frame).copy()))

    def _to_map(self):
        height, width, _ = self.frame.shape
        return {"i": self.frame_id, "h": height, "w": width, "f": self.frame.tobytes()}

    @classmethod
    def _from_map(cls, data):
        name = cls.__name__
        height = _get(data, "h", int, "height", name)
        width = _get(data, "w", int, "width", name)
        raw = _get(data, "f", bytes, "frame", name)
        if not (1 <= height <= FRAME_HEIGHT and 1 <= width <= FRAME_WIDTH) or len(raw) != height * width * 3:
            raise ValueError(f"malformed {name} message: {len(raw)} frame bytes do not make a {height}x{width}x3 "
                             f"frame of at most {FRAME_HEIGHT}x{FRAME_WIDTH}")
        frame = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
        return _rewrap(name, lambda: cls(_get(data, "i", int, "frame_id", name), frame))


Message = (SessionStart | SessionStartAck | FrameData | UVCoordinates | Heartbeat | HeartbeatAck | ErrorMessage
           | ConnectionAck | FrameTruth)

#: Type tag -> message class.
MESSAGE_TYPES: dict[int, type[_Message]] = {
    cls.TAG: cls for cls in (SessionStart, SessionStartAck, FrameData, UVCoordinates, Heartbeat, HeartbeatAck,
                             ErrorMessage, ConnectionAck, FrameTruth)
}


def decode(data: bytes | bytearray | memoryview) -> Message:
    """The message encoded in ``data``; ``ValueError`` explaining why if ``data`` is not a valid message."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode() takes bytes, got {type(data).__name__}")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(bytes(data), MAX_DECODED_BYTES)
    except zlib.error as error:
        raise ValueError(f"not an SGAPS wire message: zlib decompression failed ({error}); "
                         f"got {len(data)} bytes starting {bytes(data[:8]).hex()}") from None
    if inflater.unconsumed_tail:
        raise ValueError(f"not an SGAPS wire message: it inflates to more than {MAX_DECODED_BYTES} bytes")
    if not inflater.eof:
        raise ValueError(f"not an SGAPS wire message: the zlib stream is truncated ({len(data)} bytes)")
    if inflater.unused_data:
        raise ValueError(f"not an SGAPS wire message: {len(inflater.unused_data)} bytes follow the zlib stream")
    try:
        payload = msgpack.unpackb(raw, **_UNPACK_OPTIONS)
    except Exception as error:  # noqa: BLE001 - msgpack raises several types
        raise ValueError(f"not an SGAPS wire message: the inflated bytes are not one msgpack object "
                         f"({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"not an SGAPS wire message: expected a msgpack map, got {type(payload).__name__}")
    tag = payload.get("t")
    if not isinstance(tag, int) or isinstance(tag, bool) or tag not in MESSAGE_TYPES:
        known = ", ".join(f"{t} {cls.__name__}" for t, cls in MESSAGE_TYPES.items())
        raise ValueError(f"not an SGAPS wire message: unknown type tag {tag!r} (known: {known})")
    return MESSAGE_TYPES[tag]._from_map(payload)


def message_size(message: Message) -> int:
    """The number of bytes ``message`` takes on the wire."""
    return len(message.encode())
