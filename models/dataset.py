"""A torch ``Dataset`` over recorded sessions: one item per recorded row (frame) of one or many session files.

    from models.dataset import SessionDataset, collate_sparse
    train = SessionDataset(["data/sessions.h5"], split="train", history=2)
    item = train[0]
    item["pixels"]           # (N, 2 + C) float32: the sampled pixels (u, v, value...) as observed
    item["state"]            # (D,) float32 and item["state_mask"] (D,) float32
    item["frame"]            # (3, H, W) float32 RGB in [0, 1]: the true frame (ground truth)
    item["frame_gray"]       # (1, H, W) float32 BT.601 luma in [0, 1]
    item["previous_frames"]  # (k, 3, H, W) the k rows before, oldest first (history=k > 0 only)
    item["previous_valid"]   # (k,) bool: False where the row would lie before the session's start
    item["session"], item["row"]  # int64 scalars: index into ``train.sessions`` and row within the session

Splits are by session, never by frame: a hash of ``(checkpoint_key, session_id, split_seed)``
puts each session in train, val or test (``sgaps_env.session_file.split_of``, the split's one owner),
so appending sessions to a file never moves an existing session to another split.

Re-sampling (``resample=``) reads the pixels again from the TRUE frame at other coordinates, with the
colour mode the session was recorded with, deterministically for a ``(resample_seed, index)`` pair:
``"random:500"``, ``("stratified", (100, 1000))`` (a random budget per item; batch those with
``collate_sparse``), ``Resample("uniform_grid", 256)`` or any callable
``(rng, frame_rgb_uint8, row_info) -> (M, 2) coords``.

h5py handles are not fork-safe, so the dataset opens nothing it keeps while being built: every
process (the main one, each DataLoader worker) opens the shard files it reads on first use, keyed
by its process id, and keeps at most ``max_open_files`` of them open.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, extract_pixels, frame_values, make_pattern, validate_coords
from sgaps_env.session_file import (DEFAULT_SPLIT_FRACTIONS, SESSION_GROUP, SPLITS, RecordedSession, attrs_of, check_fractions,
                                   frames_rgb, list_sessions, session_file_paths, session_pixels)

#: ``(rng, frame_rgb_uint8 (H, W, 3), row_info) -> (M, 2) float coords in [0, 1]``
ResampleFn = Callable[[np.random.Generator, np.ndarray, dict], np.ndarray]


# --- re-sampling ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resample:
    """Re-sample every item at a fixed pattern (``sgaps_env.coords.PATTERNS``) with ``count`` pixels,
    or with a count drawn uniformly from ``count = (low, high)`` (both included) per item."""

    pattern: str
    count: int | tuple[int, int]

    def __post_init__(self):
        make_pattern(self.pattern, 1)  # unknown pattern names fail here
        counts = self.count if isinstance(self.count, tuple) else (self.count, self.count)
        if len(counts) != 2 or not all(isinstance(c, (int, np.integer)) for c in counts) \
                or not 1 <= counts[0] <= counts[1]:
            raise ValueError(f"resample count must be a positive int or a (min, max) pair with 1 <= min <= max, "
                             f"got {self.count!r}")

    def __call__(self, rng: np.random.Generator, frame: np.ndarray, row_info: dict) -> np.ndarray:
        low, high = self.count if isinstance(self.count, tuple) else (self.count, self.count)
        count = int(rng.integers(low, high + 1)) if high > low else int(low)
        return make_pattern(self.pattern, count, rng, frame.shape[0], frame.shape[1])


_SPEC = re.compile(r"^([A-Za-z_]+):(\d+)(?:-(\d+))?$")


def parse_resample(spec: Any) -> ResampleFn | None:
    """``None``, a callable, a ``Resample``, ``(pattern, count)``, ``(pattern, (min, max))``,
    ``"pattern:count"`` or ``"pattern:min-max"`` -> a re-sampling callable (or None)."""
    if spec is None or isinstance(spec, Resample):
        return spec
    if isinstance(spec, str):
        match = _SPEC.match(spec)
        if not match:
            raise ValueError(f"resample {spec!r}: expected 'PATTERN:COUNT' or 'PATTERN:MIN-MAX', e.g. 'random:500'")
        name, low, high = match.groups()
        return Resample(name, int(low) if high is None else (int(low), int(high)))
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str):
        count = spec[1]
        return Resample(spec[0], tuple(int(c) for c in count) if isinstance(count, (tuple, list)) else int(count))
    if callable(spec):
        return spec
    raise ValueError(f"resample must be None, a callable (rng, frame, row_info) -> coords, a Resample, "
                     f"(pattern, count), (pattern, (min, max)) or 'pattern:count', got {spec!r}")


# --- the dataset ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionInfo:
    """One session of the dataset: where it is and what it holds."""

    file: int  # index into SessionDataset.paths
    checkpoint_key: str
    session_id: str
    recorded: RecordedSession  # the session in its file (opens its shard)
    rows: int
    color: str
    height: int
    width: int
    has_frames: bool
    state_dim: int
    split: str


def _index_rows(index) -> dict[tuple[str, str], np.ndarray]:
    """An index (a ``CleanIndex``, a path to one, or ``(checkpoint_key, session_id, row)`` triples) ->
    sorted unique rows per session."""
    if isinstance(index, (str, os.PathLike)):
        from models.cleaning import CleanIndex

        index = CleanIndex.load(index)
    if hasattr(index, "rows_by_session"):
        return {key: np.unique(np.asarray(rows, dtype=np.int64)) for key, rows in index.rows_by_session().items()}
    grouped: dict[tuple[str, str], list[int]] = {}
    for item in index:
        checkpoint_key, session_id, row = item
        grouped.setdefault((str(checkpoint_key), str(session_id)), []).append(int(row))
    return {key: np.unique(np.asarray(rows, dtype=np.int64)) for key, rows in grouped.items()}


class SessionDataset(Dataset):
    """Rows of recorded sessions as dicts of torch tensors (see the module docstring for the keys).

    Arguments:
        paths: a session file (the index ``.h5`` written by ``agents/collect.py``) or a list of them.
        split: ``"train"``, ``"val"``, ``"test"``, or None for every session.
        split_fractions: the (train, val, test) shares of sessions, summing to 1.
        split_seed: changes which sessions land in which split.
        history: the number of previous frames returned with each item (``previous_frames``).
        resample: re-sample the pixels from the true frame instead of returning the observed ones:
            a callable ``(rng, frame_rgb_uint8, row_info) -> (M, 2) coords`` or a spec such as
            ``"random:500"``, ``("stratified", (100, 1000))``, ``Resample(...)`` (see ``parse_resample``).
            ``row_info`` holds ``session``, ``row``, ``checkpoint_key``, ``session_id``, ``color``,
            ``state``, ``state_mask`` and the observed ``pixels``.
        index: a cleaned index (``models.cleaning.CleanIndex``, a path to its ``.npz``, or
            ``(checkpoint_key, session_id, row)`` triples): only those rows are items. History frames
            are still the true previous rows, whether or not the index kept them.
        checkpoint_keys: only sessions under these checkpoint keys.
        load_frames: return the true frames (needs sessions recorded with frames); False returns
            pixels and state only (re-sampling still reads the frames).
        resample_seed: the seed of re-sampling; item ``i`` uses ``np.random.default_rng((resample_seed, i))``.
        max_open_files: shard files each process keeps open at most (least recently used are closed).
    """

    def __init__(self, paths, split: str | None = "train", split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                 split_seed: int = 0, history: int = 0, resample=None, index=None,
                 checkpoint_keys: Iterable[str] | None = None, load_frames: bool = True, resample_seed: int = 0,
                 max_open_files: int = 64):
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None (every session), got {split!r}")
        if not isinstance(history, (int, np.integer)) or history < 0:
            raise ValueError(f"history must be a non-negative int (previous frames per item), got {history!r}")
        if max_open_files < 1:
            raise ValueError(f"max_open_files must be at least 1, got {max_open_files}")
        self.paths = session_file_paths(paths)
        self.split = split
        self.split_fractions = check_fractions(split_fractions)
        self.split_seed = int(split_seed)
        self.history = int(history)
        self.resample = parse_resample(resample)
        self.resample_seed = int(resample_seed)
        self.load_frames = bool(load_frames)
        self.max_open_files = int(max_open_files)
        wanted_keys = None if checkpoint_keys is None else set(checkpoint_keys)
        needs_frames = self.load_frames or self.resample is not None

        self.sessions: list[SessionInfo] = []
        every_session = [(number, session) for number, path in enumerate(self.paths) for session in list_sessions(path)]
        total = len(every_session)
        for file_number, session in every_session:
            if wanted_keys is not None and session.checkpoint_key not in wanted_keys:
                continue
            which = session.split(self.split_fractions, self.split_seed)
            if split is not None and which != split:
                continue
            with session.group() as group:
                attrs = attrs_of(group)
                config = attrs.get("env_config") or {}
                has_frames = "frames" in group
                height, width = group["frames"].shape[1:] if has_frames else \
                    tuple(attrs.get("resolution", (FRAME_HEIGHT, FRAME_WIDTH)))
                self.sessions.append(SessionInfo(
                    file=file_number, checkpoint_key=session.checkpoint_key,
                    session_id=session.session_id, recorded=session,
                    rows=len(group["buttons"]), color=config.get("color", "gray"), height=int(height),
                    width=int(width), has_frames=has_frames, state_dim=int(group["state"].shape[1]), split=which))
        where = ", ".join(str(path) for path in self.paths)
        if total == 0:
            raise ValueError(f"no sessions in {where}: record some with `python agents/collect.py --output PATH`")
        if not self.sessions:
            keys = f" under checkpoint keys {sorted(wanted_keys)}" if wanted_keys is not None else ""
            raise ValueError(f"none of the {total} session(s) in {where}{keys} is in split {split!r} "
                             f"(fractions {self.split_fractions}, split_seed {self.split_seed}): record more "
                             "sessions, or change split_fractions / split_seed / checkpoint_keys")
        if needs_frames:
            missing = [info for info in self.sessions if not info.has_frames]
            if missing:
                raise ValueError(
                    f"{len(missing)} session(s) were recorded without frames (collect.py --no-store-frames), "
                    f"e.g. {missing[0].checkpoint_key}/{missing[0].session_id}, but "
                    f"{'re-sampling' if self.resample is not None else 'load_frames=True'} needs the true frames: "
                    "pass load_frames=False (and no resample), or record with frames")
        dims = {info.state_dim for info in self.sessions}
        if len(dims) > 1:
            raise ValueError(f"the sessions have state vectors of different lengths {sorted(dims)}: record them "
                             "with the same max_state_dim, or use one dataset per length")

        # which rows are items: every row, or the rows the index names
        if index is None:
            lengths = np.array([info.rows for info in self.sessions], dtype=np.int64)
            self._session_of = np.repeat(np.arange(len(self.sessions), dtype=np.int32), lengths)
            self._row_of = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])
        else:
            self._select_index(index, {(session.checkpoint_key, session.session_id) for _, session in every_session})
        if len(self._session_of) == 0:
            raise ValueError(f"the index keeps no rows of the {len(self.sessions)} session(s) in split {split!r}")
        self._pid: int | None = None
        self._open: OrderedDict[int, h5py.File] = OrderedDict()

    def _select_index(self, index, present: set[tuple[str, str]]) -> None:
        """Keep the rows ``index`` names; ``present`` are the sessions of the files before any filter."""
        wanted = _index_rows(index)
        by_name: dict[tuple[str, str], int] = {}
        duplicates = set()
        for number, info in enumerate(self.sessions):
            name = (info.checkpoint_key, info.session_id)
            if name in by_name:
                duplicates.add(name)
            by_name[name] = number
        used = [name for name in wanted if name in by_name]
        ambiguous = duplicates.intersection(used)
        if ambiguous:
            name = sorted(ambiguous)[0]
            raise ValueError(f"session {name[0]}/{name[1]} is in more than one of the given files, so the index "
                             "cannot say which one it means: give the files one at a time")
        # sessions the index names but the (unfiltered) files do not hold are an error: a stale or foreign index
        unknown = [name for name in wanted if name not in present]
        if unknown:
            raise ValueError(f"the index names {len(unknown)} session(s) that are not in "
                             f"{', '.join(map(str, self.paths))}, e.g. {unknown[0][0]}/{unknown[0][1]}: "
                             "was it made from another session file?")
        sessions, rows = [], []
        for number, info in enumerate(self.sessions):
            selected = wanted.get((info.checkpoint_key, info.session_id))
            if selected is None or len(selected) == 0:
                continue
            if selected[0] < 0 or selected[-1] >= info.rows:
                raise ValueError(f"the index names row {int(selected[-1] if selected[-1] >= info.rows else selected[0])}"
                                 f" of session {info.checkpoint_key}/{info.session_id}, which has {info.rows} rows")
            sessions.append(np.full(len(selected), number, dtype=np.int32))
            rows.append(selected.astype(np.int32))
        self._session_of = np.concatenate(sessions) if sessions else np.zeros(0, dtype=np.int32)
        self._row_of = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int32)

    # --- bookkeeping ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._session_of)

    def locate(self, index: int) -> tuple[int, int]:
        """``(session, row)`` of item ``index``."""
        return int(self._session_of[index]), int(self._row_of[index])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pid"], state["_open"] = None, OrderedDict()
        return state

    def _group(self, session: int) -> h5py.Group:
        """The session's group, from a shard file this process opened itself (LRU of max_open_files)."""
        pid = os.getpid()
        if self._pid != pid:  # a new process (a DataLoader worker): never touch the handles of another one
            self._pid, self._open = pid, OrderedDict()
        handle = self._open.get(session)
        if handle is None:
            while len(self._open) >= self.max_open_files:
                self._open.popitem(last=False)[1].close()
            handle = self.sessions[session].recorded.open_shard()
            self._open[session] = handle
        else:
            self._open.move_to_end(session)
        return handle[SESSION_GROUP]

    def close(self) -> None:
        """Close the files this process opened (they reopen on the next read)."""
        if self._pid == os.getpid():
            for handle in self._open.values():
                handle.close()
        self._open = OrderedDict()

    # --- items -----------------------------------------------------------------------------------------

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        session, row = self.locate(index)
        info = self.sessions[session]
        group = self._group(session)
        state = group["state"][row]
        state_mask = group["state_mask"][row]
        item: dict[str, torch.Tensor] = {}

        frames = None
        if self.load_frames or self.resample is not None:
            first = max(0, row - self.history) if self.load_frames else row
            frames = frames_rgb(group, slice(first, row + 1))  # (rows, H, W, 3) uint8
        frame = None if frames is None else frames[-1]

        if self.resample is None:
            pixels = session_pixels(group, row)
        else:
            rng = np.random.default_rng((self.resample_seed, index))
            row_info = {"session": session, "row": row, "checkpoint_key": info.checkpoint_key,
                        "session_id": info.session_id, "color": info.color, "state": state, "state_mask": state_mask,
                        "pixels": session_pixels(group, row)}
            coords = np.asarray(self.resample(rng, frame, row_info))
            if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) == 0:
                raise ValueError(f"resample returned coords of shape {coords.shape}, expected (M, 2) with M >= 1")
            pixels = extract_pixels(frame, validate_coords(coords, len(coords)), info.color)
        item["pixels"] = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        item["state"] = torch.from_numpy(state)
        item["state_mask"] = torch.from_numpy(state_mask)

        if self.load_frames:
            item["frame"] = torch.from_numpy(np.ascontiguousarray(frame_values(frame, "rgb").transpose(2, 0, 1)))
            item["frame_gray"] = torch.from_numpy(np.ascontiguousarray(frame_values(frame, "gray").transpose(2, 0, 1)))
            if self.history:
                # oldest first; rows before the session's start repeat row 0 and are marked invalid
                wanted = np.arange(row - self.history, row)
                valid = wanted >= 0
                previous = frames[np.maximum(wanted, 0) - first]
                item["previous_frames"] = torch.from_numpy(
                    np.ascontiguousarray(frame_values(previous, "rgb").transpose(0, 3, 1, 2)))
                item["previous_valid"] = torch.from_numpy(valid)
        item["session"] = torch.tensor(session, dtype=torch.int64)
        item["row"] = torch.tensor(row, dtype=torch.int64)
        return item

    def __repr__(self) -> str:
        return (f"SessionDataset({len(self)} rows of {len(self.sessions)} session(s), split={self.split!r}, "
                f"history={self.history}, resample={self.resample!r})")


def collate_sparse(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batch items whose ``pixels`` differ in count: pad them with zeros to the largest count and add
    ``pixel_mask`` (B, M) bool, True for real pixels. Every other key is stacked as usual."""
    counts = [len(item["pixels"]) for item in batch]
    width = batch[0]["pixels"].shape[1]
    if any(item["pixels"].shape[1] != width for item in batch):
        raise ValueError("items have pixels with different numbers of columns (gray and rgb sessions mixed?)")
    pixels = torch.zeros((len(batch), max(counts), width), dtype=batch[0]["pixels"].dtype)
    mask = torch.zeros((len(batch), max(counts)), dtype=torch.bool)
    for number, (item, count) in enumerate(zip(batch, counts)):
        pixels[number, :count] = item["pixels"]
        mask[number, :count] = True
    rest = default_collate([{key: value for key, value in item.items() if key != "pixels"} for item in batch])
    return {"pixels": pixels, "pixel_mask": mask, **rest}


# --- clips held in memory (the masked autoencoders' training data) ----------------------------------------


class ClipBank:
    """Every frame of some recorded sessions in memory as palette indices (60 KB a frame), from which
    clips of ``frames`` consecutive frames are drawn at random, each session weighted by its clips.

        bank = ClipBank(["data/train_worlds.h5"], split="train", frames=2)
        clips = bank.draw(rng, 16)   # (16, 2, 3, 240, 256) float32 RGB in [0, 1]
    """

    def __init__(self, paths, split: str | None = "train", frames: int = 2, progress: bool = True,
                 max_sessions: int | None = None):
        from tqdm.auto import tqdm

        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames per clip must be a positive int, got {frames!r}")
        self.frames = frames
        sessions = list_sessions(paths, split, need_frames=True)[:max_sessions]
        self.indices: list[np.ndarray] = []
        self.palettes: list[np.ndarray] = []
        for session in tqdm(sessions, desc=f"loading {split or 'all'} frames", unit="session", disable=not progress):
            indices, palette = session.frame_indices()
            if len(indices) >= frames:
                self.indices.append(indices)
                self.palettes.append(palette)
        if not self.indices:
            raise ValueError(f"no session of {paths} (split {split!r}) has {frames} or more frames: record more with "
                             "`python agents/collect.py --store-frames`")
        self.clip_counts = np.array([len(i) - frames + 1 for i in self.indices])
        self._clip_ends = np.cumsum(self.clip_counts)  # one past each session's last clip, counted over sessions

    @property
    def sessions(self) -> int:
        return len(self.indices)

    def __len__(self) -> int:
        """Clips that can be drawn (every start row of every session)."""
        return int(self.clip_counts.sum())

    def draw(self, rng: np.random.Generator, count: int) -> torch.Tensor:
        """``count`` clips at random -> ``(count, frames, 3, H, W)`` float32 RGB in [0, 1]."""
        starts = rng.integers(len(self), size=count)
        sessions = np.searchsorted(self._clip_ends, starts, side="right")
        clips = np.empty((count, self.frames, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
        for n, (session, start) in enumerate(zip(sessions, starts)):
            row = start - (self._clip_ends[session] - self.clip_counts[session])
            clips[n] = self.palettes[session][self.indices[session][row:row + self.frames]]
        return torch.from_numpy(clips).permute(0, 1, 4, 2, 3).float().div_(255.0)
