"""The recorded-session file format: one module owns how sessions are laid out, written and read.

A *session* is one episode of ``SGAPS-SMB-v0``: every observation the agent saw, what it did, and
the true frames as ground truth. A session file is an HDF5 **index** file plus a folder of
**shards** beside it (``sessions.h5`` and ``sessions.h5.shards/``)::

    sessions.h5                                   index: root attributes + external links
      /<checkpoint_key>/<session_id>  ->  sessions.h5.shards/<checkpoint_key>/<session_id>.h5:/session
    sessions.h5.shards/<checkpoint_key>/<session_id>.h5
      /session                                    one episode, T = steps + 1 rows (row 0 is the reset)
        frames       (T, 240, 256) uint8   palette index of every pixel of the true frame (lossless)
        palette      (P, 3) uint8          RGB of each palette index: rgb = palette[frames]
        coords       (T, N, 2) uint8       column x and row y of each sampled pixel, in observation order
        values       (T, N, C) float32     the sampled values as observed (C = 1 gray, 3 rgb)
        state        (T, D) float32        the observation's state vector
        state_mask   (T, D) float32        1 where state is valid
        buttons      (T,) int16            button index of the step that produced row t (-1 for the reset row)
        rewards      (T,) float32          the env's reward for that step (0 for the reset row)
        terminated   (T,) bool, truncated (T,) bool
        timestamps   (T,) float64          seconds since the episode's reset
        frame_index  (T,) int64            NES frames emulated since reset, at this row
        ram          (T, 2048) uint8       optional: the RAM each frame was drawn from
        reconstructions      (K, H, W, C) uint8  optional: a model's reconstruction of K rows, round(value * 255)
        reconstruction_steps (K,) int64          optional: the row each reconstruction belongs to (ascending)

The observation's ``pixels`` ``(T, N, 2 + C)`` are ``coords`` as pixel centres beside ``values``:
``u = (x + 0.5) / 256``, ``v = (y + 0.5) / 240`` (``session_pixels`` rebuilds them bit for bit).
Storing the integer coordinates instead of float ``(u, v)`` columns saves about 2 KB per step for
random patterns.

An HDF5 external link resolves relative to the index's folder, so ``h5py.File("sessions.h5")``
reads every session as if it were inside it (copy the index *and* its shards folder together).
The layout is described for plain-h5py readers in ``docs/session_format.md``.

Why shards: HDF5 has no journal, and a process killed while writing can leave a file unreadable.
A shard is written under a temporary name and renamed when complete; the index is rewritten to a
temporary file and renamed over the old one. Renames are atomic, so a kill at any moment leaves
every indexed session complete and the index openable; a shard finished but not yet indexed is
picked up by ``SessionFile.recover()`` (the recorder calls it on every start).

Several threads may add sessions to one index at once (a server closing many sessions): every change
to the index re-reads it from disk and rewrites it under one lock per index path (``index_lock``), so
no thread's entry is lost to another's stale copy. Two *processes* writing one index still need the
recorder's lock file (``collect.py`` takes ``sessions.h5.lock``).

A session streamed over the network is journaled frame by frame and turned into a shard when it ends
(``sgaps_env.session_journal``): a shard is only ever written whole.

Frames are stored as palette indices (Super Mario Bros uses a few dozen colours) compressed with
Zstandard through ``hdf5plugin``: reading them needs ``import hdf5plugin`` before opening.
"""
from __future__ import annotations

import contextlib
import datetime as _datetime
import hashlib
import json
import os
import re
import tempfile
import threading
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import hdf5plugin
import numpy as np

from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, frame_values, pixel_to_uv, uv_to_pixel

FORMAT_NAME = "sgaps-sessions"
FORMAT_VERSION = 1
SHARDS_SUFFIX = ".shards"
SESSION_GROUP = "session"
RAM_SIZE = 2048

#: Chunk length in steps: a chunk of frames is what one read decompresses.
CHUNK_STEPS = 16

_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")


class SessionFileError(ValueError):
    """A session file that cannot be used: not HDF5, another format or version, corrupt, unwritable."""


def _package_version() -> str:
    from sgaps_env import __version__

    return __version__


def _now() -> str:
    return _datetime.datetime.now(_datetime.timezone.utc).isoformat(timespec="seconds")


def checkpoint_key_for(stage: str | None, game: str = "smb1") -> str:
    """The default checkpoint key of a game and stage: ``smb1-1-1``, or ``smb1-all`` for the whole game."""
    return f"{game}-{stage}" if stage else f"{game}-all"


def check_name(kind: str, name: str) -> str:
    """Checkpoint keys and session ids become folder and file names: letters, digits, '.', '_', '-'."""
    if not isinstance(name, str) or not _ID_PATTERN.match(name) or name in {".", ".."}:
        raise ValueError(f"{kind} {name!r} may only contain letters, digits, '.', '_' and '-'")
    return name


# --- palette --------------------------------------------------------------------------------------------


class FramePalette:
    """Maps RGB frames to palette indices, growing the palette as new colours appear (at most 255)."""

    UNKNOWN = 255

    def __init__(self):
        self._lookup = np.full(1 << 24, self.UNKNOWN, dtype=np.uint8)
        self._buffer = np.zeros(0, dtype=np.uint8)
        self.colors: list[tuple[int, int, int]] = []

    def _keys(self, frame: np.ndarray) -> np.ndarray:
        """``R | G << 8 | B << 16`` per pixel, read as one unaligned little-endian uint32 every 3 bytes."""
        size = frame.shape[0] * frame.shape[1]
        if len(self._buffer) != 3 * size + 1:
            self._buffer = np.zeros(3 * size + 1, dtype=np.uint8)  # +1: the last pixel's read runs one byte over
        self._buffer[:-1] = frame.reshape(-1)
        packed = np.ndarray((size,), dtype="<u4", buffer=self._buffer, strides=(3,))
        return (packed & 0xFFFFFF).reshape(frame.shape[:2])

    def encode(self, frame: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB -> ``(H, W)`` uint8 palette indices."""
        keys = self._keys(frame)
        indices = np.take(self._lookup, keys)
        if (indices == self.UNKNOWN).any():
            for key in np.unique(keys[indices == self.UNKNOWN]).tolist():
                if len(self.colors) >= self.UNKNOWN:
                    raise ValueError("more than 255 distinct colours in one session: not an NES frame?")
                self._lookup[key] = len(self.colors)
                self.colors.append((key & 255, (key >> 8) & 255, (key >> 16) & 255))
            indices = np.take(self._lookup, keys)
        return indices

    def array(self) -> np.ndarray:
        """The palette as ``(P, 3)`` uint8."""
        return np.array(self.colors, dtype=np.uint8).reshape(-1, 3)


# --- one episode in memory ------------------------------------------------------------------------------


@dataclass
class SessionData:
    """One recorded episode: per-step arrays (T rows, row 0 is the reset) and attributes."""

    checkpoint_key: str
    session_id: str
    coords: np.ndarray
    values: np.ndarray
    state: np.ndarray
    state_mask: np.ndarray
    buttons: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    timestamps: np.ndarray
    frame_index: np.ndarray
    frames: np.ndarray | None = None
    palette: np.ndarray | None = None
    ram: np.ndarray | None = None
    reconstructions: np.ndarray | None = None
    """optional ``(K, H, W, C)`` uint8: a model's reconstructions of some rows, ``round(value * 255)``"""
    reconstruction_steps: np.ndarray | None = None
    """optional ``(K,)`` int64: the row each of ``reconstructions`` belongs to (given with it)"""
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Env steps in the session (rows minus the reset row)."""
        return len(self.buttons) - 1


class SessionRecorder:
    """Accumulates one episode row by row, then hands it over as ``SessionData``.

    ``add(observation, info, ...)`` once after ``reset`` (``buttons=None``) and once after every
    ``step``. ``info["frame"]`` (the env's ``return_frame=True``) is required when frames are stored;
    ``ram`` (the env's ``frame_ram``) when RAM is stored.
    """

    def __init__(self, checkpoint_key: str, session_id: str, attrs: dict[str, Any], store_frames: bool = True,
                 store_ram: bool = False, palette: FramePalette | None = None):
        self.checkpoint_key = check_name("checkpoint key", checkpoint_key)
        self.session_id = check_name("session id", session_id)
        self.attrs = dict(attrs)
        self.store_frames = store_frames
        self.store_ram = store_ram
        self.palette = palette if palette is not None else FramePalette()
        self._rows: dict[str, list] = {name: [] for name in (
            "coords", "values", "state", "state_mask", "buttons", "rewards", "terminated", "truncated",
            "timestamps", "frame_index", "frames", "ram")}

    def __len__(self) -> int:
        return len(self._rows["buttons"])

    def add(self, observation: dict[str, np.ndarray], info: dict[str, Any], buttons: int | None = None,
            reward: float = 0.0, terminated: bool = False, truncated: bool = False, timestamp: float = 0.0,
            ram: np.ndarray | None = None) -> None:
        rows = self._rows
        if buttons is None and rows["buttons"]:
            raise ValueError("only the first row (the reset) may have buttons=None")
        pixels = observation["pixels"]
        y, x = uv_to_pixel(pixels[:, :2])
        rows["coords"].append(np.stack([x, y], axis=1).astype(np.uint8))
        rows["values"].append(pixels[:, 2:])
        rows["state"].append(observation["state"])
        rows["state_mask"].append(observation["state_mask"])
        rows["buttons"].append(-1 if buttons is None else int(buttons))
        rows["rewards"].append(float(reward))
        rows["terminated"].append(bool(terminated))
        rows["truncated"].append(bool(truncated))
        rows["timestamps"].append(float(timestamp))
        rows["frame_index"].append(int(info.get("frame_index", -1)))
        if self.store_frames:
            if "frame" not in info:
                raise ValueError("storing frames needs info['frame']: create the env with return_frame=True")
            rows["frames"].append(self.palette.encode(info["frame"]))
        if self.store_ram:
            if ram is None:
                raise ValueError("storing RAM needs ram=env.unwrapped.frame_ram for every row")
            rows["ram"].append(np.asarray(ram, dtype=np.uint8))

    def finish(self, **extra_attrs) -> SessionData:
        """The episode as ``SessionData``; the attributes gain ``steps`` and anything passed here."""
        rows = self._rows
        if not rows["buttons"]:
            raise ValueError("the session has no rows: add the reset observation first")
        height, width = rows["frames"][0].shape if self.store_frames else (FRAME_HEIGHT, FRAME_WIDTH)
        attrs = {"resolution": [height, width], **self.attrs, "steps": len(rows["buttons"]) - 1, **extra_attrs}
        return SessionData(
            checkpoint_key=self.checkpoint_key, session_id=self.session_id,
            coords=np.stack(rows["coords"]),
            values=np.stack(rows["values"]).astype(np.float32, copy=False),
            state=np.stack(rows["state"]).astype(np.float32, copy=False),
            state_mask=np.stack(rows["state_mask"]).astype(np.float32, copy=False),
            buttons=np.array(rows["buttons"], dtype=np.int16),
            rewards=np.array(rows["rewards"], dtype=np.float32),
            terminated=np.array(rows["terminated"], dtype=bool),
            truncated=np.array(rows["truncated"], dtype=bool),
            timestamps=np.array(rows["timestamps"], dtype=np.float64),
            frame_index=np.array(rows["frame_index"], dtype=np.int64),
            frames=np.stack(rows["frames"]) if self.store_frames else None,
            palette=self.palette.array() if self.store_frames else None,
            ram=np.stack(rows["ram"]) if self.store_ram else None,
            attrs=attrs,
        )


# --- writing and reading one shard ----------------------------------------------------------------------

_PER_STEP = ("coords", "values", "state", "state_mask", "buttons", "rewards", "terminated", "truncated",
             "timestamps", "frame_index")


def _compression(name: str) -> dict[str, Any]:
    if name in ("frames", "reconstructions"):
        return dict(hdf5plugin.Zstd(clevel=6))
    return {"compression": "gzip", "compression_opts": 4, "shuffle": True}


def _write_array(group: h5py.Group, name: str, array: np.ndarray) -> None:
    chunks = (min(CHUNK_STEPS, len(array)),) + array.shape[1:]
    group.create_dataset(name, data=array, chunks=chunks, **_compression(name))


def _attr_value(value: Any) -> Any:
    """HDF5 attributes hold numbers, strings and arrays; anything else is stored as JSON text."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(item, (int, float, np.number)) and not isinstance(item, bool) for item in value):
        return np.asarray(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return value


def _checked_reconstructions(data: SessionData) -> tuple[np.ndarray, np.ndarray] | None:
    """``(steps, images)`` of ``data`` checked against its rows, or None when it has none."""
    images, steps = data.reconstructions, data.reconstruction_steps
    if images is None and steps is None:
        return None
    if images is None or steps is None:
        raise ValueError("SessionData.reconstructions and reconstruction_steps go together: give both or neither")
    images, steps = np.asarray(images), np.asarray(steps)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"reconstructions must be (K, H, W, C) uint8 with C 1 or 3 (round(value * 255)), got "
                         f"{images.dtype} {images.shape}")
    if steps.shape != images.shape[:1] or not np.issubdtype(steps.dtype, np.integer):
        raise ValueError(f"reconstruction_steps must be (K,) integers, one row per reconstruction: got "
                         f"{steps.dtype} {steps.shape} for {len(images)} reconstructions")
    rows = len(data.buttons)
    if len(steps) and (steps.min() < 0 or steps.max() >= rows or (np.diff(steps) <= 0).any()):
        raise ValueError(f"reconstruction_steps must be ascending rows in [0, {rows}), got {steps.tolist()[:10]} (first 10)")
    return steps.astype(np.int64), images


def write_shard(path: Path, data: SessionData) -> None:
    """Write one session to ``path`` atomically: a temporary file, fsync, then rename."""
    reconstructions = _checked_reconstructions(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        with h5py.File(temporary, "w", libver=("v110", "latest")) as shard:
            group = shard.create_group(SESSION_GROUP)
            for name in _PER_STEP:
                _write_array(group, name, getattr(data, name))
            for name in ("frames", "ram"):
                if getattr(data, name) is not None:
                    _write_array(group, name, getattr(data, name))
            if data.palette is not None:
                group.create_dataset("palette", data=data.palette)
            if reconstructions is not None and len(reconstructions[0]):
                _write_array(group, "reconstruction_steps", reconstructions[0])
                _write_array(group, "reconstructions", reconstructions[1])
            attrs = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "package_version": _package_version(),
                     "created": _now(), "checkpoint_key": data.checkpoint_key, "session_id": data.session_id,
                     **data.attrs}
            for key, value in attrs.items():
                group.attrs[key] = _attr_value(value)
            group.attrs["complete"] = True
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def shards_dir_for(index_path: str | os.PathLike) -> Path:
    """The shards folder that belongs to the index at ``index_path`` (``sessions.h5`` -> ``sessions.h5.shards``)."""
    index_path = Path(index_path)
    return index_path.with_name(index_path.name + SHARDS_SUFFIX)


def shard_file(index_path: str | os.PathLike, checkpoint_key: str, session_id: str) -> Path:
    """Where the session ``checkpoint_key/session_id`` of the index at ``index_path`` keeps its shard."""
    return shards_dir_for(index_path) / checkpoint_key / f"{session_id}.h5"


def shard_problem(path: Path) -> str | None:
    """None when ``path`` is a complete shard of this format, else what is wrong with it, in words."""
    if not path.exists():
        return "the shard file is missing"
    try:
        with h5py.File(path, "r") as shard:
            group = shard.get(SESSION_GROUP)
            if group is None:
                return f"the shard has no '{SESSION_GROUP}' group"
            if group.attrs.get("format") != FORMAT_NAME:
                return f"the shard is of format {group.attrs.get('format')!r}, not {FORMAT_NAME!r}"
            if not bool(group.attrs.get("complete", False)):
                return "the shard was never completed"
            for name in _PER_STEP:
                if name not in group:
                    return f"the shard lacks its '{name}' dataset"
    except (OSError, KeyError, RuntimeError) as error:
        return f"the shard cannot be read ({error})"
    return None


class DamagedSessionWarning(UserWarning):
    """A session whose shard is missing or damaged was skipped (``python experiments/check_sessions.py`` repairs)."""


def attrs_of(group: h5py.Group) -> dict[str, Any]:
    """A session group's attributes with JSON-encoded values decoded."""
    result = {}
    for key, value in group.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and value[:1] in "[{n" and value not in ("",):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        elif isinstance(value, (np.generic, np.ndarray)):
            value = value.tolist()
        result[key] = value
    return result


def session_pixels(group: h5py.Group, rows: slice | np.ndarray | int = slice(None)) -> np.ndarray:
    """The observations' sampled pixels ``(..., N, 2 + C)`` float32 rows ``(u, v, value...)``, bit-exact."""
    coords = group["coords"][rows]
    values = group["values"][rows]
    height, width = (int(size) for size in group.attrs.get("resolution", (240, 256)))
    flat = coords.reshape(-1, 2)
    uv = pixel_to_uv(flat[:, 1], flat[:, 0], height, width).reshape(coords.shape)
    return np.concatenate([uv, values], axis=-1)


def frames_rgb(group: h5py.Group, rows: slice | np.ndarray | int = slice(None)) -> np.ndarray:
    """RGB frames of a session group: ``(..., 240, 256, 3)`` uint8 for the given rows."""
    if "frames" not in group:
        raise KeyError(f"session {group.name} was recorded without frames (collect.py --no-store-frames)")
    return group["palette"][:][group["frames"][rows]]


# --- the index ------------------------------------------------------------------------------------------

_INDEX_LOCKS: dict[str, threading.RLock] = {}
_INDEX_LOCKS_GUARD = threading.Lock()


def index_lock(index_path: str | os.PathLike) -> threading.RLock:
    """The one lock of this process for the index at ``index_path`` (any spelling of the same path).

    ``SessionFile`` holds it while it re-reads and rewrites the index, so threads that add sessions to one
    index at once never lose each other's entries. Hold it around several index changes to make them one.
    """
    key = os.path.realpath(os.path.abspath(index_path))
    with _INDEX_LOCKS_GUARD:
        return _INDEX_LOCKS.setdefault(key, threading.RLock())


@dataclass(frozen=True)
class SessionEntry:
    """One indexed session: its key, id and shard path relative to the index's folder."""

    checkpoint_key: str
    session_id: str
    shard: str


class SessionFile:
    """A session file: the index and its shards folder.

    ``SessionFile(path)`` opens (or, with ``create=True``, creates) the index at ``path`` and checks
    that it is a session file of this format version; it never overwrites anything else.
    ``add(data)`` writes a shard and indexes it; ``entries()`` lists what is indexed; ``open()``
    returns the index as an ``h5py.File`` for reading.
    """

    def __init__(self, path: str | os.PathLike, create: bool = False):
        self.path = Path(path)
        self.shards_dir = shards_dir_for(self.path)
        #: indexed sessions whose stored link does not point into this index's shards folder (the index and
        #: its folder were moved or renamed together); reading does not need the links, ``repair()`` rewrites them
        self.stale_links = 0
        #: the index file's identity when this object last read or wrote it (``_reload`` skips an unchanged file)
        self._index_stamp: tuple | None = None
        with index_lock(self.path):
            if self.path.exists():
                self._reload()
            elif create:
                self._check_writable()
                self._entries = {}
                self._write_index()
            else:
                raise SessionFileError(f"{self.path} does not exist: record sessions with "
                                       f"`python agents/collect.py --output {self.path}`")

    # reading --------------------------------------------------------------------------------------------

    @staticmethod
    def _read_index(path: Path) -> tuple[dict[tuple[str, str], SessionEntry], int]:
        if path.is_dir():
            raise SessionFileError(f"{path} is a folder, not a session file: give a file path such as "
                                   f"{path / 'sessions.h5'}")
        if not h5py.is_hdf5(path):
            raise SessionFileError(f"{path} is not an HDF5 file (nothing was changed): choose another output "
                                   "path, or move that file away")
        try:
            with h5py.File(path, "r") as index:
                found = index.attrs.get("format")
                version = index.attrs.get("format_version")
                if found != FORMAT_NAME:
                    raise SessionFileError(f"{path} is an HDF5 file but not an SGAPS session file (format "
                                           f"{found!r}, expected {FORMAT_NAME!r}; nothing was changed): choose "
                                           "another output path")
                if version != FORMAT_VERSION:
                    raise SessionFileError(f"{path} is an SGAPS session file of format version {version}, but this "
                                           f"code reads version {FORMAT_VERSION} (nothing was changed): use the "
                                           "SGAPS version that wrote it, or record into a new file")
                entries, stale = {}, 0
                for key in index:
                    for session_id in index[key]:
                        link = index[key].get(session_id, getlink=True)
                        if isinstance(link, h5py.ExternalLink):
                            # the shard is where this index's own shards folder keeps it, whatever the link says
                            # (an index renamed with its folder keeps links to the old name)
                            shard = shard_file(path, key, session_id).relative_to(path.parent).as_posix()
                            stale += link.filename != shard
                            entries[(key, session_id)] = SessionEntry(key, session_id, shard)
                return entries, stale
        except SessionFileError:
            raise
        except (OSError, KeyError, RuntimeError) as error:
            raise SessionFileError(f"{path} could not be read as a session file ({error}); it may be corrupt. "
                                   "Nothing was changed: record into another path") from error

    def _reload(self) -> None:
        """Re-read the index from disk (call with ``index_lock`` held, before changing it): another
        ``SessionFile`` of this index, in another thread, may have added sessions since this one read it."""
        stamp = self._stamp()
        if stamp is not None and stamp != self._index_stamp:
            self._entries, self.stale_links = self._read_index(self.path)
            self._index_stamp = stamp

    def _stamp(self) -> tuple | None:
        """What identifies one version of the index file (every write renames a new file over it), or None."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns

    def entries(self) -> list[SessionEntry]:
        """Indexed sessions, sorted by checkpoint key and session id."""
        return [self._entries[key] for key in sorted(self._entries)]

    def __contains__(self, key_and_id: tuple[str, str]) -> bool:
        return tuple(key_and_id) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def open(self) -> h5py.File:
        """The index as a read-only ``h5py.File``; sessions are at ``file[key][session_id]`` (through the
        index's links: after moving the index with its shards folder, run ``repair()`` once to rewrite them)."""
        return h5py.File(self.path, "r")

    def damaged(self) -> list[tuple[SessionEntry, str]]:
        """``(entry, what is wrong)`` of every indexed session whose shard is missing or damaged."""
        found = []
        for entry in self.entries():
            problem = shard_problem(self.shard_path(entry.checkpoint_key, entry.session_id))
            if problem is not None:
                found.append((entry, problem))
        return found

    def repair(self) -> dict[str, Any]:
        """Drop the sessions whose shards are missing or damaged from the index (their shards are left where
        they are, for inspection) and rewrite every link to this index's shards folder.

        Returns ``{"dropped": [(entry, problem), ...], "relinked": n}``; rerunning the recorder's command
        records the dropped sessions again.
        """
        with index_lock(self.path):
            self._reload()
            dropped = self.damaged()
            relinked = self.stale_links
            if dropped or relinked:
                for entry, _ in dropped:
                    del self._entries[(entry.checkpoint_key, entry.session_id)]
                self._write_index()
                self.stale_links = 0
        return {"dropped": dropped, "relinked": relinked}

    # writing --------------------------------------------------------------------------------------------

    def _check_writable(self) -> None:
        parent = self.path.parent if str(self.path.parent) else Path(".")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SessionFileError(f"cannot create the folder {parent} for {self.path} ({error.strerror}): "
                                   "choose a writable output path") from error
        if not os.access(parent, os.W_OK | os.X_OK):
            raise SessionFileError(f"cannot write into {parent}: choose a writable output path")

    def shard_path(self, checkpoint_key: str, session_id: str) -> Path:
        return shard_file(self.path, check_name("checkpoint key", checkpoint_key),
                          check_name("session id", session_id))

    def _write_index(self) -> None:
        """Rewrite the index atomically from ``self._entries`` (callers hold ``index_lock`` and ``_reload()``
        first, so that the entries written include every other writer's)."""
        try:
            handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        except OSError as error:
            raise SessionFileError(f"cannot write the index {self.path} ({error.strerror}; nothing was changed): "
                                   "choose a writable output path, or make its folder writable") from error
        os.close(handle)
        try:
            with h5py.File(temporary, "w") as index:
                index.attrs["format"] = FORMAT_NAME
                index.attrs["format_version"] = FORMAT_VERSION
                index.attrs["package_version"] = _package_version()
                index.attrs["updated"] = _now()
                index.attrs["shards"] = self.shards_dir.name
                for entry in self.entries():
                    group = index.require_group(entry.checkpoint_key)
                    group[entry.session_id] = h5py.ExternalLink(entry.shard, "/" + SESSION_GROUP)
            with open(temporary, "rb+") as stream:
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._index_stamp = self._stamp()

    def _entry_for(self, checkpoint_key: str, session_id: str) -> SessionEntry:
        shard = self.shard_path(checkpoint_key, session_id).relative_to(self.path.parent)
        return SessionEntry(checkpoint_key, session_id, shard.as_posix())

    def add(self, data: SessionData) -> SessionEntry:
        """Write ``data`` as a shard and index it. An already indexed (key, id) is an error.

        The shard is written without the index lock (other threads keep adding meanwhile); only the index
        update holds it."""
        with index_lock(self.path):
            self._reload()
            if (data.checkpoint_key, data.session_id) in self._entries:
                raise ValueError(f"session {data.checkpoint_key}/{data.session_id} is already in {self.path}")
        write_shard(self.shard_path(data.checkpoint_key, data.session_id), data)
        return self.index_written(data.checkpoint_key, data.session_id)

    def index_written(self, checkpoint_key: str, session_id: str) -> SessionEntry:
        """Index a shard that is already complete on disk (written by ``write_shard``, e.g. by a worker)."""
        entry = self._entry_for(checkpoint_key, session_id)
        with index_lock(self.path):
            self._reload()
            self._entries[(checkpoint_key, session_id)] = entry
            self._write_index()
        return entry

    def recover(self) -> list[SessionEntry]:
        """Index complete shards that a killed recorder wrote but did not index; remove stale temporaries."""
        with index_lock(self.path):
            self._reload()
            return self._recover()

    def _recover(self) -> list[SessionEntry]:
        found = []
        if not self.shards_dir.exists():
            return found
        for stale in self.shards_dir.glob("*/.*.tmp"):
            try:
                stale.unlink(missing_ok=True)
            except OSError as error:
                raise SessionFileError(f"cannot remove the unfinished shard {stale} ({error.strerror}): make "
                                       f"{self.shards_dir} writable, or record into another path") from error
        for shard in sorted(self.shards_dir.glob("*/*.h5")):
            key, session_id = shard.parent.name, shard.stem
            if (key, session_id) not in self._entries and _ID_PATTERN.match(key) and shard_problem(shard) is None:
                self._entries[(key, session_id)] = self._entry_for(key, session_id)
                found.append(self._entries[(key, session_id)])
        if found:
            self._write_index()
        return found


def session_file_paths(paths: str | os.PathLike | list) -> list[Path]:
    """One path or a list of paths to session files, checked to exist, as ``Path`` objects."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(path) for path in paths]
    if not paths:
        raise ValueError("no session files given: pass a path or a list of paths to session files (index .h5)")
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"session file {path} does not exist: record sessions with "
                                    f"`python agents/collect.py --output {path}`")
    return paths


def new_session_id() -> str:
    """A random session id, for sessions recorded outside ``collect.py``'s deterministic naming."""
    return uuid.uuid4().hex[:12]


# --- splits and per-session seeds -------------------------------------------------------------------------

#: The splits sessions fall into, by a hash of their name.
SPLITS = ("train", "val", "test")
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def split_unit(checkpoint_key: str, session_id: str, split_seed: int = 0) -> float:
    """A number in [0, 1) fixed by ``(checkpoint_key, session_id, split_seed)`` alone (SHA-256 based)."""
    digest = hashlib.sha256(f"{checkpoint_key}\x00{session_id}\x00{int(split_seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0 ** 64


def session_seed(checkpoint_key: str, session_id: str, *extra: int) -> int:
    """A seed fixed by a session's name (and ``extra`` integers) alone: stable across processes, unlike ``hash()``."""
    digest = hashlib.sha256("\x00".join([checkpoint_key, session_id, *map(str, extra)]).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def check_fractions(split_fractions: Sequence[float]) -> tuple[float, float, float]:
    """``(train, val, test)`` fractions as floats, or a ValueError unless they are three non-negative numbers summing to 1."""
    fractions = tuple(float(value) for value in split_fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split_fractions must be three non-negative numbers (train, val, test) summing to 1, "
                         f"got {split_fractions!r}")
    return fractions  # type: ignore[return-value]


def split_of(checkpoint_key: str, session_id: str, split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
             split_seed: int = 0) -> str:
    """``"train"``, ``"val"`` or ``"test"``: the split a session belongs to (independent of every other session)."""
    train, val, _ = check_fractions(split_fractions)
    unit = split_unit(checkpoint_key, session_id, split_seed)
    if unit < train:
        return "train"
    if unit < train + val:
        return "val"
    return "test"


# --- reading sessions: the one reader -------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedSession:
    """One indexed session of a session file, read on demand by rows.

    Every reader of recorded sessions (datasets, the training stream, evaluations, level priors, the
    recorder's resume) goes through this class, so that how a session is found, opened and decoded
    lives in one place. Each method opens the session's shard, reads and closes it; hold ``group()``
    open to read many pieces of one session at once.
    """

    path: Path
    """the session file's index"""
    checkpoint_key: str
    session_id: str

    @property
    def name(self) -> str:
        """``"checkpoint_key/session_id"``: the session's path inside the index."""
        return f"{self.checkpoint_key}/{self.session_id}"

    def split(self, split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS, split_seed: int = 0) -> str:
        return split_of(self.checkpoint_key, self.session_id, split_fractions, split_seed)

    def seed(self, *extra: int) -> int:
        """A seed fixed by this session's name and ``extra`` (see :func:`session_seed`)."""
        return session_seed(self.checkpoint_key, self.session_id, *extra)

    @property
    def shard_path(self) -> Path:
        """The shard file holding this session, in the shards folder beside the index."""
        return shard_file(self.path, self.checkpoint_key, self.session_id)

    def problem(self) -> str | None:
        """None when the session's shard is complete, else what is wrong with it."""
        return shard_problem(self.shard_path)

    @contextlib.contextmanager
    def group(self) -> Iterator[h5py.Group]:
        """The session's HDF5 group (read-only), open for the ``with`` block."""
        try:
            shard = h5py.File(self.shard_path, "r")
        except OSError as error:
            raise SessionFileError(f"session {self.name} of {self.path} cannot be read: {self.problem() or error}. "
                                   f"Run `python experiments/check_sessions.py {self.path} --repair`, then rerun "
                                   "the recording command to record it again") from error
        with shard:
            yield shard[SESSION_GROUP]

    def open_shard(self, cache_bytes: int = 8 << 20) -> h5py.File:
        """The shard file holding this session, opened read-only for many reads (close it when done);
        the session is its ``[SESSION_GROUP]``. ``cache_bytes`` is HDF5's chunk cache: 8 MiB holds a few
        chunks of frames, so consecutive rows are decompressed once."""
        return h5py.File(self.shard_path, "r", rdcc_nbytes=int(cache_bytes))

    def attrs(self) -> dict[str, Any]:
        with self.group() as group:
            return attrs_of(group)

    def __len__(self) -> int:
        """Rows (steps + 1: row 0 is the reset observation)."""
        with self.group() as group:
            return int(group["state"].shape[0])

    @property
    def has_frames(self) -> bool:
        with self.group() as group:
            return "frames" in group

    def states(self, rows: slice | np.ndarray = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """``(state (T, D), state_mask (T, D))`` float32 of the given rows."""
        with self.group() as group:
            return group["state"][rows], group["state_mask"][rows]

    def pixels(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """The observations' sampled pixels ``(T, N, 2 + C)`` as the agent saw them, bit-exact."""
        with self.group() as group:
            return session_pixels(group, rows)

    def buttons(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """``(T,)`` int16 button index of the step that produced each row (-1 for the reset row)."""
        with self.group() as group:
            return group["buttons"][rows]

    def frame_indices(self, rows: slice | np.ndarray = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """``(indices (T, H, W) uint8, palette (P, 3) uint8)``: the stored encoding, ``rgb = palette[indices]``."""
        with self.group() as group:
            self._check_frames(group)
            return group["frames"][rows], group["palette"][:]

    def frames(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """True frames ``(T, H, W, 3)`` uint8 RGB of the given rows."""
        with self.group() as group:
            self._check_frames(group)
            return frames_rgb(group, rows)

    def frame_values(self, rows: slice | np.ndarray = slice(None), color: str = "rgb") -> np.ndarray:
        """True frames in a colour mode's values ``(T, H, W, C)`` float32 in [0, 1] (see ``coords.frame_values``)."""
        return frame_values(self.frames(rows), color)

    def reconstructions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps (K,) int64, images (K, H, W, C) uint8)``: the reconstructions stored with the session (a
        server's, see ``sgaps_env.session_journal``) and the row of each; ``values = images / 255``.
        Empty arrays (K = 0) when the session has none."""
        with self.group() as group:
            if "reconstructions" in group:
                return group["reconstruction_steps"][:], group["reconstructions"][:]
            height, width = (int(size) for size in group.attrs.get("resolution", (FRAME_HEIGHT, FRAME_WIDTH)))
            channels = int(group["values"].shape[-1])
            return np.zeros(0, dtype=np.int64), np.zeros((0, height, width, channels), dtype=np.uint8)

    def _check_frames(self, group: h5py.Group) -> None:
        if "frames" not in group:
            raise ValueError(f"session {self.name} in {self.path} was recorded without the true frames: record "
                             "with `python agents/collect.py --store-frames` to train or evaluate reconstructions")


def list_sessions(paths, split: str | None = None, split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                  split_seed: int = 0, need_frames: bool = False) -> list[RecordedSession]:
    """Every indexed session of the session files at ``paths`` (one path or a list) that lies in ``split``
    (None: all), sorted by file, then checkpoint key and session id.

    A session whose shard is missing or damaged is skipped with one :class:`DamagedSessionWarning` naming
    the session and the shard; the others are read as usual.

    ``need_frames=True`` raises a ValueError naming the sessions recorded without true frames.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {SPLITS} or None for every session")
    check_fractions(split_fractions)
    sessions = []
    for path in session_file_paths(paths):
        session_file = SessionFile(path)
        for entry in session_file.entries():
            if split is not None and split_of(entry.checkpoint_key, entry.session_id, split_fractions,
                                              split_seed) != split:
                continue
            session = RecordedSession(session_file.path, entry.checkpoint_key, entry.session_id)
            problem = session.problem()
            if problem is not None:
                warnings.warn(f"skipping session {session.name} of {session_file.path}: {problem} "
                              f"({session.shard_path}). Rerun the recording command to record it again, or run "
                              f"`python experiments/check_sessions.py {session_file.path} --repair` to drop it",
                              DamagedSessionWarning, stacklevel=2)
                continue
            sessions.append(session)
    if need_frames:
        missing = [session.name for session in sessions if not session.has_frames]
        if missing:
            raise ValueError(f"{len(missing)} session(s) have no true frames (e.g. {missing[:3]}): record with "
                             "`python agents/collect.py --store-frames`, or leave those files out")
    return sessions


def read_sessions(paths, split: str | None = None, max_sessions: int | None = None,
                  split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                  split_seed: int = 0) -> Iterator[RecordedSession]:
    """:func:`list_sessions` as an iterator, at most ``max_sessions`` of them."""
    yield from list_sessions(paths, split, split_fractions, split_seed)[:max_sessions]
