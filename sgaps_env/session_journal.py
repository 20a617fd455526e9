"""A session that arrives frame by frame, recorded crash-safely: an append-only journal that becomes a shard.

Why: a live server receives a client's session one frame at a time, and the server may be killed or
the client may vanish at any frame. A shard of the session file format (``sgaps_env.session_file``)
is only ever written whole, because HDF5 has no journal and a half-written HDF5 file can be
unreadable. So each frame is appended to a plain journal file beside the shards, flushed to the
operating system every ``flush_every`` frames, and the journal becomes an ordinary shard (through
the same atomic writer and index) when the session ends. A crashed process loses only the frames it
had not flushed yet; the next start turns every journal left behind into a shard
(``recover_journals``)::

    journal = SessionJournal("data/server.h5", "smb1-1-1", session_id, attrs, sample_count=500,
                             channels=1, max_state_dim=64)
    journal.append(coords_xy, values, state, state_mask, timestamp_s, frame=None, reconstruction=None)
    ...
    entry = journal.close()                        # the shard is written and indexed; the journal is gone
    recover_journals("data/server.h5")             # on start: what a crashed server left

File layout, ``<index>.shards/<checkpoint_key>/<session_id>.journal``::

    b"SGAPSJNL"                                   8 bytes
    record 0 (the header), record 1 (row 0), record 2 (row 1), ...
    record = length (uint32 LE) | CRC-32 of the payload (uint32 LE) | payload (one msgpack map)

    header  {"format": "sgaps-session-journal", "version": 1, "checkpoint_key", "session_id",
             "sample_count": N, "channels": C, "max_state_dim": D, "resolution": [H, W],
             "attrs": JSON text, "created", "journal_id": a random hex id, stored with the session}
    row     {"c": coords (N, 2) uint8 (x, y), "v": values (N, C) float32 LE, "s": state (D,) float32 LE,
             "m": state_mask (D,) float32 LE, "t": timestamp in seconds,
             "f": true frame (H, W, 3) uint8, only when the client sent it,
             "r": reconstruction (H, W, C) uint8 = round(value * 255), only on rows that have one}

A journal is created under a temporary name with its header and renamed into place, so a file named
``.journal`` always begins with a complete header. Its writer holds an exclusive ``flock`` on it, so
that ``recover_journals`` (in any thread or process) never converts a journal that is still written.

Reading trusts nothing: a journal is bytes from disk. The header's sizes are checked before anything
is allocated, and every record's length is checked against the largest record those sizes allow
before it is read; then its CRC, its keys and the exact byte length of every array. A torn last
record (the process died in the middle of writing it) is dropped silently; a damaged record ends
reading there with a ``JournalWarning``; a damaged header is a ``JournalError`` and the journal is
left where it is, untouched, as is the index.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import tempfile
import threading
import uuid
import warnings
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import msgpack
import numpy as np

from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, uv_to_pixel
from sgaps_env.session_file import (SESSION_GROUP, FramePalette, SessionData, SessionEntry, SessionFile,
                                    SessionFileError, check_name, shard_problem, shards_dir_for, _now)

try:
    import fcntl
except ImportError:  # not POSIX: journals of this process are still guarded by _OPEN_JOURNALS
    fcntl = None

__all__ = ["JOURNAL_FORMAT", "JOURNAL_SUFFIX", "JOURNAL_VERSION", "JournalError", "JournalWarning",
           "SessionJournal", "journal_path", "read_journal", "recover_journal", "recover_journals"]

JOURNAL_FORMAT = "sgaps-session-journal"
JOURNAL_VERSION = 1
JOURNAL_SUFFIX = ".journal"
MAGIC = b"SGAPSJNL"

#: length and CRC-32 of the payload, before every record
_PREFIX = struct.Struct("<II")
#: the header is small (sizes and the session's attributes): a larger one is refused when written and read
MAX_HEADER_BYTES = 1 << 20
#: what msgpack adds to a row's arrays at most: the map, its one-letter keys, bin lengths and the timestamp
_ROW_OVERHEAD = 128
_ROW_KEYS = frozenset("cvsmtfr")
_REQUIRED_ROW_KEYS = frozenset("cvsmt")
_MAX_STATE_DIM = 65535

#: journals written by this process (resolved paths): a second guard beside flock, and the only one without it
_OPEN_JOURNALS: set[str] = set()
_OPEN_JOURNALS_GUARD = threading.Lock()


class JournalError(SessionFileError):
    """A journal that cannot be used: its header is missing or damaged, or it cannot become a shard."""


class JournalWarning(UserWarning):
    """A journal's record was damaged: the session was kept up to the record before it."""


def journal_path(index_path: str | os.PathLike, checkpoint_key: str, session_id: str) -> Path:
    """Where the journal of session ``checkpoint_key/session_id`` of the index at ``index_path`` lives."""
    return shards_dir_for(index_path) / checkpoint_key / f"{session_id}{JOURNAL_SUFFIX}"


def _record(payload: bytes) -> bytes:
    return _PREFIX.pack(len(payload), zlib.crc32(payload)) + payload


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _attrs_json(attrs: dict[str, Any]) -> str:
    if not isinstance(attrs, dict) or not all(isinstance(key, str) for key in attrs):
        raise ValueError(f"attrs must be a dict with string keys, got {type(attrs).__name__}")
    try:
        return json.dumps(attrs, default=_json_value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"the session's attrs must be JSON serializable (numbers, strings, lists, dicts, numpy "
                         f"scalars and arrays): {error}") from error


def _int_in(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


# --- the header: what every record is checked against ---------------------------------------------------------


class _Header:
    """A journal's fixed facts: the session's name and attributes, and the shapes of every row."""

    def __init__(self, checkpoint_key: str, session_id: str, attrs_json: str, sample_count: int, channels: int,
                 max_state_dim: int, resolution: tuple[int, int], created: str, journal_id: str):
        self.checkpoint_key = check_name("checkpoint key", checkpoint_key)
        self.session_id = check_name("session id", session_id)
        if len(resolution) != 2:
            raise ValueError(f"resolution must be (height, width), got {resolution!r}")
        self.height = _int_in(resolution[0], "resolution's height", 1, FRAME_HEIGHT)
        self.width = _int_in(resolution[1], "resolution's width", 1, FRAME_WIDTH)
        self.sample_count = _int_in(sample_count, "sample_count", 1, self.height * self.width)
        self.channels = _int_in(channels, "channels", 1, 3)
        if self.channels == 2:
            raise ValueError("channels must be 1 (gray) or 3 (rgb), got 2")
        self.max_state_dim = _int_in(max_state_dim, "max_state_dim", 1, _MAX_STATE_DIM)
        self.attrs_json = attrs_json
        self.attrs = json.loads(attrs_json)
        if not isinstance(self.attrs, dict):
            raise ValueError(f"the attrs must be a JSON object, got {type(self.attrs).__name__}")
        if not isinstance(created, str) or not isinstance(journal_id, str) or not journal_id:
            raise ValueError(f"created and journal_id must be strings, got {created!r} and {journal_id!r}")
        self.created = created
        #: stored with the session, so that recovery can tell this journal's shard from another recording's
        self.journal_id = journal_id
        count, channels, dim = self.sample_count, self.channels, self.max_state_dim
        #: exact byte length of each array of a row
        self.sizes = {"c": count * 2, "v": count * channels * 4, "s": dim * 4, "m": dim * 4,
                      "f": self.height * self.width * 3, "r": self.height * self.width * channels}
        self.max_record_bytes = sum(self.sizes.values()) + _ROW_OVERHEAD

    def payload(self) -> bytes:
        return msgpack.packb({
            "format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "checkpoint_key": self.checkpoint_key,
            "session_id": self.session_id, "sample_count": self.sample_count, "channels": self.channels,
            "max_state_dim": self.max_state_dim, "resolution": [self.height, self.width], "attrs": self.attrs_json,
            "created": self.created, "journal_id": self.journal_id})

    @classmethod
    def parse(cls, payload: bytes) -> _Header:
        """The header of a journal's first record; a ValueError saying what is wrong with it otherwise."""
        try:
            fields = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        except (ValueError, TypeError, msgpack.UnpackException) as error:
            raise ValueError(f"its header is not msgpack ({error})") from error
        if not isinstance(fields, dict):
            raise ValueError(f"its header is a msgpack {type(fields).__name__}, not a map")
        if fields.get("format") != JOURNAL_FORMAT:
            raise ValueError(f"its header names the format {fields.get('format')!r}, not {JOURNAL_FORMAT!r}")
        if fields.get("version") != JOURNAL_VERSION:
            raise ValueError(f"it is of journal version {fields.get('version')!r}, but this code reads version "
                             f"{JOURNAL_VERSION}: convert it with the SGAPS version that wrote it")
        missing = {"checkpoint_key", "session_id", "attrs", "sample_count", "channels", "max_state_dim",
                   "resolution", "created", "journal_id"} - set(fields)
        if missing:
            raise ValueError(f"its header lacks {sorted(missing)}")
        resolution = fields["resolution"]
        if not isinstance(resolution, list) or len(resolution) != 2:
            raise ValueError(f"its header's resolution is {resolution!r}, not [height, width]")
        if not isinstance(fields["attrs"], str):
            raise ValueError("its header's attrs are not JSON text")
        try:
            return cls(fields["checkpoint_key"], fields["session_id"], fields["attrs"], fields["sample_count"],
                       fields["channels"], fields["max_state_dim"], tuple(resolution), fields["created"],
                       fields["journal_id"])
        except (ValueError, TypeError) as error:
            raise ValueError(f"its header is invalid: {error}") from error


# --- writing ----------------------------------------------------------------------------------------------------


def _lock_exclusively(stream: BinaryIO) -> bool:
    """Take the exclusive ``flock`` of an open file without waiting; False when someone else holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class SessionJournal:
    """The journal of one session being recorded frame by frame; ``close()`` makes it a shard of the index.

    Creating it checks (and, if need be, creates) the session file at ``index_path`` and refuses a session
    that is already indexed, already has a shard or already has a journal, so that nothing recorded is
    lost at ``close()``. Each ``append`` writes one record; every ``flush_every`` records the journal is
    flushed to the operating system (a crash of this process then loses none of them), and with
    ``fsync=True`` also to the disk (which a power cut spares too, at a few milliseconds a flush).

    One journal may be appended to from several threads (appends are serialized); journals of different
    sessions are independent and may close at once into the same index.
    """

    def __init__(self, index_path: str | os.PathLike, checkpoint_key: str, session_id: str, attrs: dict[str, Any],
                 sample_count: int, channels: int, max_state_dim: int, flush_every: int = 1, *,
                 resolution: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH), fsync: bool = False):
        self.header = _Header(checkpoint_key, session_id, _attrs_json(attrs), sample_count, channels, max_state_dim,
                              tuple(resolution), _now(), uuid.uuid4().hex)
        self.flush_every = _int_in(flush_every, "flush_every", 1, 1 << 30)
        self.fsync = bool(fsync)
        header = _record(self.header.payload())
        if len(header) > MAX_HEADER_BYTES:
            raise ValueError(f"the session's attrs take {len(header)} bytes, more than the journal header's "
                             f"{MAX_HEADER_BYTES}: keep large data out of the attributes")
        self.index_path = Path(index_path)
        session_file = SessionFile(self.index_path, create=True)
        if (checkpoint_key, session_id) in session_file or session_file.shard_path(checkpoint_key, session_id).exists():
            raise ValueError(f"session {checkpoint_key}/{session_id} is already recorded in {self.index_path}: "
                             "choose another session id (sgaps_env.session_file.new_session_id())")
        self.path = journal_path(self.index_path, checkpoint_key, session_id)
        self._lock = threading.Lock()
        self._rows = 0
        self._unflushed = 0
        self._closed = False
        self._failure: BaseException | None = None
        self._key = os.path.realpath(self.path)
        self._file = self._create(header)

    def _create(self, header: bytes) -> BinaryIO:
        """The journal, opened for appending, locked, beginning with its header: written under a temporary name
        and linked into place, so that no one ever sees a journal without a complete header."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _OPEN_JOURNALS_GUARD:
            if self._key in _OPEN_JOURNALS:
                raise ValueError(f"session {self.header.checkpoint_key}/{self.header.session_id} is already being "
                                 "recorded by this process: choose another session id")
            _OPEN_JOURNALS.add(self._key)
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        stream = os.fdopen(handle, "wb")
        try:
            _lock_exclusively(stream)  # a fresh file: no one else can hold it
            stream.write(MAGIC + header)
            stream.flush()
            if self.fsync:
                os.fsync(stream.fileno())
            try:
                os.link(temporary, self.path)  # unlike a rename, never replaces an existing journal
            except FileExistsError:
                raise ValueError(f"a journal of session {self.header.checkpoint_key}/{self.header.session_id} "
                                 f"already exists ({self.path}): a crashed server left it, or another one is "
                                 "recording it. Run sgaps_env.session_journal.recover_journals"
                                 f"({str(self.index_path)!r}) before starting sessions, or choose another session "
                                 "id") from None
            except OSError:  # a file system without hard links
                if self.path.exists():
                    raise ValueError(f"a journal of session {self.header.checkpoint_key}/{self.header.session_id} "
                                     f"already exists ({self.path}): run recover_journals first") from None
                os.rename(temporary, self.path)
            Path(temporary).unlink(missing_ok=True)
        except BaseException:
            stream.close()
            Path(temporary).unlink(missing_ok=True)
            with _OPEN_JOURNALS_GUARD:
                _OPEN_JOURNALS.discard(self._key)
            raise
        return stream

    def __len__(self) -> int:
        """Rows appended so far."""
        return self._rows

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, coords_xy: np.ndarray, values: np.ndarray, state: np.ndarray, state_mask: np.ndarray,
               timestamp_s: float, frame: np.ndarray | None = None, reconstruction: np.ndarray | None = None) -> int:
        """Append one frame of the session as its next row; returns the row's index.

        ``coords_xy`` ``(N, 2)`` integer pixel column x and row y of each sampled value (in the order of
        ``values``); ``values`` ``(N, C)`` the sampled values, stored as float32; ``state`` and
        ``state_mask`` ``(D,)``; ``timestamp_s`` the client's time of the frame in seconds; ``frame`` the
        true ``(H, W, 3)`` uint8 RGB frame when the client sent it; ``reconstruction`` the server's
        ``(H, W, C)`` reconstruction in [0, 1] (stored as ``round(value * 255)`` uint8; uint8 is taken as is).
        """
        row = self._row_payload(coords_xy, values, state, state_mask, timestamp_s, frame, reconstruction)
        with self._lock:
            self._check_open()
            try:
                self._file.write(_record(row))
                self._rows += 1
                self._unflushed += 1
                if self._unflushed >= self.flush_every:
                    self._flush()
            except BaseException as error:
                self._failure = error  # a record may be half written: nothing may follow it
                raise
            return self._rows - 1

    def append_observation(self, observation: dict[str, np.ndarray], timestamp_s: float,
                           frame: np.ndarray | None = None, reconstruction: np.ndarray | None = None) -> int:
        """``append`` for an environment observation ``{"pixels" (N, 2 + C), "state", "state_mask"}``, as
        ``SessionRecorder`` takes it: the ``(u, v)`` columns become pixel coordinates."""
        pixels = np.asarray(observation["pixels"])
        if pixels.ndim != 2 or pixels.shape[1] != 2 + self.header.channels:
            raise ValueError(f"observation['pixels'] must be (N, {2 + self.header.channels}) (u, v, values), got "
                             f"{pixels.shape}")
        rows, cols = uv_to_pixel(pixels[:, :2], self.header.height, self.header.width)
        return self.append(np.stack([cols, rows], axis=1), pixels[:, 2:], observation["state"],
                           observation["state_mask"], timestamp_s, frame, reconstruction)

    def _row_payload(self, coords_xy, values, state, state_mask, timestamp_s, frame, reconstruction) -> bytes:
        header = self.header
        count, channels, dim = header.sample_count, header.channels, header.max_state_dim
        coords_xy = np.asarray(coords_xy)
        if coords_xy.shape != (count, 2) or not np.issubdtype(coords_xy.dtype, np.integer):
            raise ValueError(f"coords_xy must be ({count}, 2) integer pixel (x, y), got {coords_xy.dtype} "
                             f"{coords_xy.shape}: convert (u, v) with sgaps_env.coords.uv_to_pixel, or use "
                             "append_observation")
        if len(coords_xy) and (coords_xy.min() < 0 or coords_xy[:, 0].max() >= header.width
                               or coords_xy[:, 1].max() >= header.height):
            raise ValueError(f"coords_xy must lie inside the {header.width}x{header.height} frame (0 <= x < "
                             f"{header.width}, 0 <= y < {header.height})")
        values = np.asarray(values)
        if values.shape != (count, channels):
            raise ValueError(f"values must be ({count}, {channels}), got {values.shape}")
        state, state_mask = np.asarray(state), np.asarray(state_mask)
        if state.shape != (dim,) or state_mask.shape != (dim,):
            raise ValueError(f"state and state_mask must be ({dim},) (max_state_dim), got {state.shape} and "
                             f"{state_mask.shape}")
        if isinstance(timestamp_s, bool) or not isinstance(timestamp_s, (int, float, np.number)) \
                or not math.isfinite(float(timestamp_s)):
            raise ValueError(f"timestamp_s must be a finite number of seconds, got {timestamp_s!r}")
        fields: dict[str, Any] = {
            "c": coords_xy.astype(np.uint8).tobytes(), "v": values.astype("<f4").tobytes(),
            "s": state.astype("<f4").tobytes(), "m": state_mask.astype("<f4").tobytes(), "t": float(timestamp_s)}
        if frame is not None:
            frame = np.asarray(frame)
            if frame.shape != (header.height, header.width, 3) or frame.dtype != np.uint8:
                raise ValueError(f"frame must be the true ({header.height}, {header.width}, 3) uint8 RGB frame, got "
                                 f"{frame.dtype} {frame.shape}")
            fields["f"] = frame.tobytes()
        if reconstruction is not None:
            fields["r"] = self._reconstruction_bytes(np.asarray(reconstruction))
        return msgpack.packb(fields)

    def _reconstruction_bytes(self, reconstruction: np.ndarray) -> bytes:
        shape = (self.header.height, self.header.width, self.header.channels)
        if reconstruction.shape != shape:
            raise ValueError(f"reconstruction must be {shape} (H, W, C), got {reconstruction.shape}")
        if reconstruction.dtype == np.uint8:
            return reconstruction.tobytes()
        if not np.issubdtype(reconstruction.dtype, np.floating):
            raise ValueError(f"reconstruction must be float values in [0, 1] (or uint8), got {reconstruction.dtype}")
        if not np.isfinite(reconstruction).all():
            raise ValueError("reconstruction holds NaN or infinite values: pass the model's output after clipping "
                             "to [0, 1]")
        return np.rint(np.clip(reconstruction, 0.0, 1.0) * 255.0).astype(np.uint8).tobytes()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"the journal of session {self.header.checkpoint_key}/{self.header.session_id} is "
                             "closed: start a new SessionJournal for a new session")
        if self._failure is not None:
            raise JournalError(f"an earlier write to {self.path} failed ({self._failure}): the journal takes no more "
                               "rows; close() keeps the rows before the failure") from self._failure

    def _flush(self) -> None:
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self._unflushed = 0

    def flush(self) -> None:
        """Flush every appended row to the operating system now (and to the disk with ``fsync=True``)."""
        with self._lock:
            self._check_open()
            self._flush()

    def close(self, truncated: bool = False, **extra_attrs) -> SessionEntry | None:
        """Turn the journal into a shard of the index and delete it; returns the session's index entry, or None
        when no row was appended (the journal is deleted, nothing is indexed).

        ``truncated=True`` marks the last row as truncated (the session was cut short, e.g. a disconnect);
        ``extra_attrs`` join the session's attributes. If the shard cannot be written, the journal is kept
        and a ``JournalError`` says why; ``recover_journals`` converts it later.
        """
        with self._lock:
            if self._closed:
                raise ValueError(f"the journal of session {self.header.checkpoint_key}/{self.header.session_id} "
                                 "is already closed")
            self._closed = True
            try:
                if self._failure is None:
                    self._flush()
                return _convert(self.index_path, self.path, recovered=False, truncated=truncated,
                                extra_attrs=extra_attrs)
            finally:
                with contextlib.suppress(OSError):  # a failed write left bytes in the buffer: they are not needed
                    self._file.close()  # releases the flock, after the journal is deleted
                with _OPEN_JOURNALS_GUARD:
                    _OPEN_JOURNALS.discard(self._key)


# --- reading ----------------------------------------------------------------------------------------------------


class _Contents:
    """What a journal holds: its header, its complete rows as compact arrays, and what was left unread.

    Rows are kept as they are read, without their record's bytes: true frames as palette indices (61 KB
    each instead of 184 KB), and none at all once a row without one shows that they will not be stored.
    """

    def __init__(self, header: _Header):
        self.header = header
        self.columns: dict[str, list] = {name: [] for name in ("coords", "values", "state", "state_mask",
                                                                "timestamps", "frames", "reconstructions",
                                                                "reconstruction_steps")}
        self.rows = 0
        self.rows_with_frames = 0
        self.palette = FramePalette()
        #: why the true frames cannot be stored although every row may have one (too many colours), or None
        self.frames_unencodable: str | None = None
        self.dropped_bytes = 0
        self.problem: str | None = None

    def add(self, fields: dict[str, Any]) -> None:
        header, columns = self.header, self.columns
        count, channels = header.sample_count, header.channels
        columns["coords"].append(np.frombuffer(fields["c"], dtype=np.uint8).reshape(count, 2).copy())
        columns["values"].append(np.frombuffer(fields["v"], dtype="<f4").reshape(count, channels).astype(np.float32))
        columns["state"].append(np.frombuffer(fields["s"], dtype="<f4").astype(np.float32))
        columns["state_mask"].append(np.frombuffer(fields["m"], dtype="<f4").astype(np.float32))
        columns["timestamps"].append(float(fields["t"]))
        self.rows_with_frames += "f" in fields
        every_row_has_frame = self.rows_with_frames == self.rows + 1  # this row included
        if every_row_has_frame and self.frames_unencodable is None:
            frame = np.frombuffer(fields["f"], dtype=np.uint8).reshape(header.height, header.width, 3)
            try:
                columns["frames"].append(self.palette.encode(frame))
            except ValueError as error:
                self.frames_unencodable = str(error)
        if not every_row_has_frame or self.frames_unencodable is not None:
            columns["frames"].clear()  # they will not be stored: free them now
        if "r" in fields:
            shape = (header.height, header.width, channels)
            columns["reconstructions"].append(np.frombuffer(fields["r"], dtype=np.uint8).reshape(shape).copy())
            columns["reconstruction_steps"].append(self.rows)
        self.rows += 1

    def session_data(self, recovered: bool, truncated: bool, extra_attrs: dict[str, Any]) -> SessionData:
        """The rows as the session to store (there is at least one row)."""
        header, columns, total = self.header, self.columns, self.rows
        store_frames = self.rows_with_frames == total and self.frames_unencodable is None
        frames_left_out = None
        if self.frames_unencodable is not None:
            frames_left_out = f"the true frames were not stored: {self.frames_unencodable}"
        elif 0 < self.rows_with_frames < total:
            frames_left_out = (f"the true frames were not stored: only {self.rows_with_frames} of {total} rows had "
                               "one (frames are stored when every row has one)")
        truncated_rows = np.zeros(total, dtype=bool)
        truncated_rows[-1] = bool(truncated)
        attrs = {**header.attrs, "resolution": [header.height, header.width], "journal_id": header.journal_id,
                 "journal_created": header.created, "rows_with_frames": self.rows_with_frames,
                 "recovered": recovered, **extra_attrs, "steps": total - 1}
        if frames_left_out:
            attrs["frames_left_out"] = frames_left_out
        if recovered:
            attrs["journal_dropped_bytes"] = self.dropped_bytes
        shape = (header.height, header.width, header.channels)
        return SessionData(
            checkpoint_key=header.checkpoint_key, session_id=header.session_id,
            coords=np.stack(columns["coords"]), values=np.stack(columns["values"]),
            state=np.stack(columns["state"]), state_mask=np.stack(columns["state_mask"]),
            buttons=np.full(total, -1, dtype=np.int16),
            rewards=np.zeros(total, dtype=np.float32),
            terminated=np.zeros(total, dtype=bool),
            truncated=truncated_rows,
            timestamps=np.array(columns["timestamps"], dtype=np.float64),
            frame_index=np.full(total, -1, dtype=np.int64),
            frames=np.stack(columns["frames"]) if store_frames else None,
            palette=self.palette.array() if store_frames else None,
            reconstructions=(np.stack(columns["reconstructions"]) if columns["reconstructions"]
                             else np.zeros((0,) + shape, dtype=np.uint8)),
            reconstruction_steps=np.array(columns["reconstruction_steps"], dtype=np.int64),
            attrs=attrs)


def _decode_row(payload: bytes, header: _Header) -> dict[str, Any]:
    """One row record's fields, each checked against the header; a ValueError says what is wrong."""
    try:
        fields = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise ValueError(f"it is not msgpack ({error})") from error
    if not isinstance(fields, dict):
        raise ValueError(f"it is a msgpack {type(fields).__name__}, not a map")
    keys = set(fields)
    if not _REQUIRED_ROW_KEYS <= keys or not keys <= _ROW_KEYS:
        raise ValueError(f"its keys are {sorted(map(str, keys))}, expected {sorted(_REQUIRED_ROW_KEYS)} and "
                         "optionally 'f' and 'r'")
    for key in keys - {"t"}:
        value = fields[key]
        if not isinstance(value, bytes) or len(value) != header.sizes[key]:
            size = len(value) if isinstance(value, bytes) else type(value).__name__
            raise ValueError(f"its '{key}' holds {size} bytes, expected {header.sizes[key]} for this session's shapes")
    timestamp = fields["t"]
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
        raise ValueError(f"its timestamp is {timestamp!r}, not a finite number")
    coords = np.frombuffer(fields["c"], dtype=np.uint8).reshape(header.sample_count, 2)
    if (coords[:, 0] >= header.width).any() or (coords[:, 1] >= header.height).any():
        raise ValueError(f"its coordinates lie outside the {header.width}x{header.height} frame")
    return fields


def _read(path: Path) -> _Contents:
    """Read a journal: a JournalError for a missing or damaged header; records up to the first bad one."""
    try:
        with open(path, "rb") as stream:
            contents = _read_stream(path, stream)
    except OSError as error:
        raise JournalError(f"cannot read the journal {path} ({error}): check the disk; the journal is kept") from error
    if contents.problem is not None:
        warnings.warn(f"the journal {path} is damaged: {contents.problem}. The session keeps its {contents.rows} "
                      f"rows before it; {contents.dropped_bytes} bytes from there on are dropped", JournalWarning,
                      stacklevel=3)
    return contents


def _read_stream(path: Path, stream: BinaryIO) -> _Contents:
    """``_read`` on an open journal: the header is checked before anything it sizes is read."""
    size = os.fstat(stream.fileno()).st_size
    start = stream.read(len(MAGIC) + _PREFIX.size)
    try:
        if start[:len(MAGIC)] != MAGIC:
            raise ValueError(f"it does not begin with {MAGIC!r} (not a session journal, or damaged)")
        if len(start) < len(MAGIC) + _PREFIX.size:
            raise ValueError("it ends inside its header")
        length, crc = _PREFIX.unpack(start[len(MAGIC):])
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"its header claims {length} bytes, more than the {MAX_HEADER_BYTES} a header may have")
        payload = stream.read(length)
        if len(payload) < length:
            raise ValueError(f"it ends inside its header ({len(payload)} of {length} bytes)")
        if zlib.crc32(payload) != crc:
            raise ValueError("its header fails its CRC check")
        header = _Header.parse(payload)
        expected = (path.parent.name, path.name.removesuffix(JOURNAL_SUFFIX))
        if (header.checkpoint_key, header.session_id) != expected:
            raise ValueError(f"its header names session {header.checkpoint_key}/{header.session_id}, but the "
                             f"file is where session {expected[0]}/{expected[1]} keeps its journal")
    except ValueError as error:
        raise JournalError(f"the journal {path} cannot be read: {error}. Nothing was changed: inspect the file, "
                           "and delete it if it holds nothing worth keeping") from error
    contents = _Contents(header)
    offset = stream.tell()
    while offset < size:
        row = contents.rows
        prefix = stream.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size:
            break  # torn: the process died while writing this record's length
        length, crc = _PREFIX.unpack(prefix)
        if not 0 < length <= header.max_record_bytes:
            contents.problem = (f"row {row} at byte {offset} claims {length} bytes, but a row of this session "
                                f"has 1 to {header.max_record_bytes}")
            break
        payload = stream.read(length)
        if len(payload) < length:
            break  # torn: the process died while writing this record
        if zlib.crc32(payload) != crc:
            contents.problem = f"row {row} at byte {offset} fails its CRC check"
            break
        try:
            fields = _decode_row(payload, header)
        except ValueError as error:
            contents.problem = f"row {row} at byte {offset} is damaged: {error}"
            break
        contents.add(fields)
        offset = stream.tell()
    contents.dropped_bytes = size - offset
    return contents


def read_journal(path: str | os.PathLike) -> SessionData | None:
    """The session a journal holds, as it would be stored (marked ``recovered``), or None when it has no row.

    A ``JournalError`` for a missing or damaged header; a ``JournalWarning`` when a damaged record ends it early.
    """
    contents = _read(Path(path))
    return contents.session_data(True, False, {}) if contents.rows else None


def _convert(index_path: Path, path: Path, recovered: bool, truncated: bool,
             extra_attrs: dict[str, Any]) -> SessionEntry | None:
    """Write the journal at ``path`` as a shard, index it and delete the journal (the caller holds its flock)."""
    contents = _read(path)
    header = contents.header
    key, session_id = header.checkpoint_key, header.session_id
    entry: SessionEntry | None = None
    try:
        session_file = SessionFile(index_path, create=True)
        shard = session_file.shard_path(key, session_id)
        complete = shard_problem(shard) is None
        if complete and _journal_id_of(shard) != header.journal_id:
            raise ValueError(f"session {key}/{session_id} was recorded again by someone else meanwhile ({shard}); "
                             "move that shard away, or the journal to another session id, to keep both")
        if (key, session_id) in session_file and complete:
            pass  # a crash after indexing, before the journal was deleted: the shard is this journal's
        elif complete:
            entry = session_file.index_written(key, session_id)  # a crash after the shard, before the index
        elif contents.rows:
            entry = session_file.add(contents.session_data(recovered, truncated, extra_attrs))
        elif contents.problem is not None:
            return None  # nothing could be read: keep the damaged journal for inspection (warned)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise JournalError(f"the journal {path} could not become a shard of {index_path} ({error}). The journal "
                           "is kept: fix the cause, then run sgaps_env.session_journal.recover_journals"
                           f"({str(index_path)!r})") from error
    for stale in path.parent.glob(f".{session_id}.h5.*.tmp"):
        stale.unlink(missing_ok=True)  # a shard temporary of a crashed conversion of this journal
    path.unlink(missing_ok=True)
    return entry


def _journal_id_of(shard: Path) -> str | None:
    with h5py.File(shard, "r") as stream:
        value = stream[SESSION_GROUP].attrs.get("journal_id")
    return value.decode() if isinstance(value, bytes) else value


def recover_journal(index_path: str | os.PathLike, path: str | os.PathLike) -> SessionEntry | None:
    """Turn one journal left behind into a shard of the index (marked ``recovered``) and delete it.

    Returns the newly indexed entry, or None when there was nothing new to index (no complete row, the session
    was indexed before the journal could be deleted, or another thread or process holds the journal: it is
    still being written or recovered). A ``JournalError`` for a damaged header leaves the file and the index
    as they are.
    """
    path = Path(path)
    key = os.path.realpath(path)
    with _OPEN_JOURNALS_GUARD:
        if key in _OPEN_JOURNALS:
            return None
        _OPEN_JOURNALS.add(key)
    try:
        try:
            stream = open(path, "rb")
        except FileNotFoundError:
            return None  # converted meanwhile
        with stream:
            if not _lock_exclusively(stream):
                return None
            try:
                if os.stat(path).st_ino != os.fstat(stream.fileno()).st_ino:
                    return None
            except FileNotFoundError:
                return None  # converted and deleted between our open and our lock
            return _convert(Path(index_path), path, recovered=True, truncated=False, extra_attrs={})
    finally:
        with _OPEN_JOURNALS_GUARD:
            _OPEN_JOURNALS.discard(key)


def recover_journals(index_path: str | os.PathLike) -> list[SessionEntry]:
    """Turn every journal that a crashed or killed writer left beside the index at ``index_path`` into a shard.

    Each journal keeps every complete row (a torn last record is dropped; a damaged record ends it there, with
    a ``JournalWarning``); its session gains the attributes ``recovered=True`` and ``journal_dropped_bytes``.
    A journal whose header is damaged is left untouched, with a ``JournalWarning``. Journals still being written
    (by this or another process) are skipped. Safe to call again and from several threads: what was converted
    is gone. Returns the newly indexed sessions.
    """
    index_path = Path(index_path)
    found = []
    shards_dir = shards_dir_for(index_path)
    if not shards_dir.exists():
        return found
    for path in sorted(shards_dir.glob(f"*/*{JOURNAL_SUFFIX}")):
        try:
            entry = recover_journal(index_path, path)
        except JournalError as error:
            warnings.warn(str(error), JournalWarning, stacklevel=2)
            continue
        if entry is not None:
            found.append(entry)
    return found
