"""Temporal memory in world coordinates, and the per-level prior learned from training sessions.

A Super Mario Bros frame below the status bar is a window ``[camera_x, camera_x + 256)`` onto a
level that does not change much, so what has been seen is kept where it lives in the level:

- **long-term static memory** (:class:`MemoryBank`): one canvas per level area, indexed by world
  x = camera x + screen x, with a confidence per pixel. A sampled pixel outside the sprite boxes
  moves the canvas towards its value (EMA, fully where nothing was known) and sets the confidence
  to 1; a reconstruction fills pixels still below ``reconstruction_confidence``. The status bar
  (rows ``< HUD_ROWS``) is fixed on screen and has its own screen-space canvas.
- **short-term dynamic memory**: the samples of the last ``dynamic_frames`` frames, scroll
  compensated, with their age: what moved recently, sprites included.
- **stage prior** (:class:`StagePriors`): the per-pixel mode of the training frames of each level
  area with the sprite boxes left out, and how often the mode was seen there. A new session of a
  known level starts its static memory from it; an unknown level starts empty.

Everything is numpy on frames in [0, 1] with ``C`` channels (1 = luma, 3 = RGB); colours come from
uint8 RGB through :func:`sgaps_env.coords.frame_values`, the one conversion.

A session's memory is bounded: a level canvas is kept as pages of :data:`PAGE_WIDTH` columns made when
the camera first shows them (so memory follows what was seen, not how far the camera jumped), at most
``MemoryConfig.max_pages`` pages are kept over all levels, and at most ``MemoryConfig.max_levels``
level areas keep a status bar and prior data; the least recently seen are forgotten first. A camera
beyond the ``camera_x`` field's range (:data:`MAX_LEVEL_WIDTH`) is refused.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, fields
from typing import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from models.npz_files import read_npz, write_npz
from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, color_for, frame_values
from sgaps_env.session_file import list_sessions
from sgaps_env.state import STATE_FIELDS, STATE_INDEX, STATE_SCALE
from sgaps_env.sprites import (HUD_DIGIT_SLOTS, HUD_ROWS, ROTATION_PHASES, area_key, box_mask, camera_x, hud_digits,
                               legacy_area_key, lingering_boxes, rotation_phase, sprite_boxes)
from sgaps_env.worlds import check_training_sessions, check_training_states

#: ``LevelPrior.digit_index`` value of a digit the training frames never showed.
DIGIT_UNSEEN = 255

#: Margin (pixels) around the RAM-given sprite boxes inside which samples never enter the static memory.
SPRITE_MARGIN = 2


#: The widest level canvas a session can need: the largest camera x the state's ``camera_x`` field can
#: hold, plus one screen.
MAX_LEVEL_WIDTH = int(round(STATE_FIELDS[STATE_INDEX["camera_x"]].high * STATE_SCALE["camera_x"])) + FRAME_WIDTH

#: Columns of one page of a level canvas (one NES name-table page).
PAGE_WIDTH = 256


def _channels(rgb_uint8: np.ndarray, channels: int) -> np.ndarray:
    """``(..., 3)`` uint8 RGB -> ``(..., channels)`` float32 in [0, 1]."""
    return frame_values(rgb_uint8, color_for(channels))


# --- the stage prior ------------------------------------------------------------------------------------


@dataclass
class LevelPrior:
    """One level area's background: ``index (H - HUD_ROWS, W)`` into ``palette (K, 3)`` uint8 RGB below the
    status bar, ``hud_index (HUD_ROWS, 256)`` for the status bar (its colours differ between levels), and
    ``confidence``/``hud_confidence`` of the same shapes in uint8 (255 = every training frame agreed, 0 = never seen)."""

    index: np.ndarray
    palette: np.ndarray
    confidence: np.ndarray
    hud_index: np.ndarray
    hud_confidence: np.ndarray
    rotation_rows: np.ndarray
    """(P,) int16 frame rows of the pixels whose colour follows the palette rotation (rows < HUD_ROWS: status bar)"""
    rotation_cols: np.ndarray
    """(P,) int16 their level x (screen x in the status bar)"""
    rotation_index: np.ndarray
    """(P, ROTATION_PHASES) uint8 their palette index at each rotation step"""
    digit_rows: np.ndarray
    """(Q,) int16 status-bar pixels whose colour a digit of the state decides (timer, score, coins)"""
    digit_cols: np.ndarray
    digit_slot: np.ndarray
    """(Q,) uint8 which digit (sgaps_env.sprites.hud_digits order)"""
    digit_index: np.ndarray
    """(Q, 10) uint8 their palette index for each digit value; DIGIT_UNSEEN where training never showed it"""

    @property
    def width(self) -> int:
        return self.index.shape[1]

    def rgb(self) -> np.ndarray:
        return self.palette[self.index]

    def hud_rgb(self) -> np.ndarray:
        return self.palette[self.hud_index]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"index": self.index, "palette": self.palette, "confidence": self.confidence,
                "hud_index": self.hud_index, "hud_confidence": self.hud_confidence,
                "rotation_rows": self.rotation_rows, "rotation_cols": self.rotation_cols,
                "rotation_index": self.rotation_index, "digit_rows": self.digit_rows, "digit_cols": self.digit_cols,
                "digit_slot": self.digit_slot, "digit_index": self.digit_index}


class StagePriors:
    """The level priors of a set of sessions, by :func:`sgaps_env.sprites.area_key`."""

    def __init__(self, levels: dict[str, LevelPrior] | None = None):
        self.levels = dict(levels or {})

    def __contains__(self, key: str) -> bool:
        return key in self.levels

    def __len__(self) -> int:
        return len(self.levels)

    def get(self, key: str) -> "LevelPrior | None":
        """The prior of level area ``key`` (:func:`sgaps_env.sprites.area_key`), or None. Checkpoints made before
        area keys named the area type hold ``"W-S-A"`` keys: those serve every sub-area of their stage's area."""
        found = self.levels.get(key)
        return found if found is not None else self.levels.get(legacy_area_key(key))

    def nbytes(self) -> int:
        return sum(array.nbytes for prior in self.levels.values() for array in prior.arrays().values())

    # checkpoints hold plain tensors so that ``torch.load(..., weights_only=True)`` reads them
    def to_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        return {key: {name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in prior.arrays().items()}
                for key, prior in self.levels.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, dict[str, torch.Tensor]]) -> "StagePriors":
        """The priors of a checkpoint, each checked (names, dtypes, shapes, palette indices) before use."""
        empty = {"rotation_rows": np.zeros(0, np.int16), "rotation_cols": np.zeros(0, np.int16),
                 "rotation_index": np.zeros((0, ROTATION_PHASES), np.uint8),
                 "digit_rows": np.zeros(0, np.int16), "digit_cols": np.zeros(0, np.int16),
                 "digit_slot": np.zeros(0, np.uint8), "digit_index": np.zeros((0, 10), np.uint8)}  # older priors
        if not isinstance(tensors, dict):
            raise ValueError(f"stage priors must be a dict of level key -> dict of tensors, got {type(tensors).__name__}")
        levels = {}
        for key, value in tensors.items():
            if not isinstance(key, str) or not isinstance(value, dict) \
                    or not all(isinstance(tensor, torch.Tensor) for tensor in value.values()):
                raise ValueError(f"stage prior {key!r} must map a level key (str) to a dict of tensors")
            unknown = sorted(map(str, set(value) - set(_PRIOR_ARRAYS)))
            missing = sorted(set(_PRIOR_ARRAYS) - set(value) - set(empty))
            if unknown or missing:
                raise ValueError(f"stage prior {key!r} has unknown arrays {unknown} and lacks {missing}: expected "
                                 f"{sorted(_PRIOR_ARRAYS)} (a checkpoint from another sgaps version?)")
            arrays = {**empty, **{name: tensor.numpy() for name, tensor in value.items()}}
            _check_prior(key, arrays)
            levels[key] = LevelPrior(**arrays)
        return cls(levels)

    def save(self, path, metadata: dict) -> None:
        """Write the priors as a separately shipped level atlas: a compressed npz of each level's arrays
        (``"<level key>/<array>"``) and JSON ``metadata`` (the split, the command, the sessions)."""
        write_npz(path, {f"{key}/{name}": array for key, prior in self.levels.items()
                         for name, array in prior.arrays().items()}, metadata)

    @classmethod
    def load(cls, path) -> tuple["StagePriors", dict]:
        """``(priors, metadata)`` from :meth:`save`'s file; sizes are checked before anything is read, and every
        level's arrays (names, dtypes, shapes, palette indices) before it is used."""
        arrays, metadata = read_npz(path, "level atlas", "python experiments/build_atlas.py", MAX_ATLAS_BYTES,
                                    16 * MAX_ATLAS_BYTES)
        levels: dict[str, dict[str, torch.Tensor]] = {}
        for name, array in arrays.items():
            key, _, field = name.partition("/")
            levels.setdefault(key, {})[field] = torch.from_numpy(array)
        return cls.from_tensors(levels), metadata

    @classmethod
    def build(cls, sessions: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], progress: bool = True,
              total: int | None = None, first_sightings: int | None = None) -> "StagePriors":
        """Memorise levels from sessions given as ``(frame_indices (T, H, W) uint8, palette (P, 3) uint8 RGB,
        state (T, D), state_mask (T, D))`` (the session file's own frame encoding).

        ``first_sightings``: a session votes for a level pixel only the first that many times it shows it (outside
        the sprite boxes), so the atlas holds the level as it starts (a ?-block before it is hit, a coin before it
        is taken) rather than as the players left it; None for every frame."""
        if first_sightings is not None and (isinstance(first_sightings, bool) or not isinstance(first_sightings, int)
                                            or first_sightings < 1):
            raise ValueError(f"first_sightings must be a whole number of at least 1 (or None for every frame), got "
                             f"{first_sightings!r}")
        # key -> (H, W, colours * ROTATION_PHASES) uint16 votes; rows < HUD_ROWS hold the status bar
        votes: dict[str, np.ndarray] = {}
        # key -> (HUD_ROWS, W, digit slots, 10, colours) uint16 votes of the status bar given each digit's value
        digit_votes: dict[str, np.ndarray] = {}
        hud_r, hud_c = (a.ravel() for a in np.indices((HUD_ROWS, FRAME_WIDTH)))
        colours: dict[int, int] = {}
        for frame_indices, palette, states, masks in tqdm(sessions, desc="level priors", unit="session",
                                                          total=total, disable=not progress):
            check_training_states(states, "a session given to StagePriors.build")
            palette = np.asarray(palette, np.int64)
            keys = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
            global_ids = np.array([colours.setdefault(int(k), len(colours)) for k in keys], dtype=np.int64)
            ids = global_ids[frame_indices]
            sightings: dict[str, np.ndarray] = {}  # level -> (H - HUD_ROWS, width) times this session showed a pixel
            for frame_ids, state, mask in zip(ids, states, masks):
                if round(float(state[_GAME_MODE]) * 3) != 1:
                    continue
                level, camera = area_key(state), camera_x(state)
                if camera < 0:  # 4-4's maze rewinding the level: the screen is not on the level's canvas
                    continue
                phase = rotation_phase(state, mask) or 0
                counts = votes.get(level)
                # the level up to this screen, then the status bar's 256 columns
                needed = (FRAME_HEIGHT, camera + 2 * FRAME_WIDTH, len(colours) * ROTATION_PHASES)
                if counts is None or any(n > have for n, have in zip(needed, counts.shape)):
                    have = counts.shape if counts is not None else (0, 0, 0)
                    grown = np.zeros((FRAME_HEIGHT, max(needed[1], have[1] + 1024),
                                      max(needed[2], have[2], 16 * ROTATION_PHASES)), dtype=np.uint16)
                    if counts is not None:
                        # keep the status bar's votes in the last 256 columns
                        grown[:, :have[1] - FRAME_WIDTH, :have[2]] = counts[:, :-FRAME_WIDTH]
                        grown[:HUD_ROWS, -FRAME_WIDTH:, :have[2]] = counts[:HUD_ROWS, -FRAME_WIDTH:]
                    counts = votes[level] = grown
                keep = ~box_mask(lingering_boxes(sprite_boxes(state, mask)), margin=SPRITE_MARGIN)
                r, c = np.nonzero(keep)
                # each (row, column) occurs once per frame, so plain fancy-index += counts correctly
                world = np.where(r < HUD_ROWS, c, c + camera)
                hud = r < HUD_ROWS
                digits = digit_votes.get(level)
                if digits is None or digits.shape[-1] < len(colours):
                    grown = np.zeros((HUD_ROWS, FRAME_WIDTH, HUD_DIGIT_SLOTS, 10, max(32, len(colours))), np.uint16)
                    if digits is not None:
                        grown[..., :digits.shape[-1]] = digits
                    digits = digit_votes[level] = grown
                hud_ids = frame_ids[:HUD_ROWS].ravel()
                for digit_slot, value in enumerate(hud_digits(state) % 10):
                    digits[hud_r, hud_c, digit_slot, value, hud_ids] += 1
                slot = frame_ids[r, c] * ROTATION_PHASES + phase
                body = ~hud
                if first_sightings is not None:
                    seen = sightings.get(level)
                    if seen is None or seen.shape[1] < counts.shape[1]:
                        grown = np.zeros((FRAME_HEIGHT - HUD_ROWS, counts.shape[1]), np.int32)
                        if seen is not None:
                            grown[:, :seen.shape[1]] = seen
                        seen = sightings[level] = grown
                    body_rows, body_cols = r[body] - HUD_ROWS, world[body]
                    fresh = seen[body_rows, body_cols] < first_sightings
                    seen[body_rows, body_cols] = np.minimum(seen[body_rows, body_cols] + 1, first_sightings)
                    body[np.flatnonzero(body)[~fresh]] = False
                counts[r[body], world[body], slot[body]] += 1
                counts[r[hud], c[hud] + counts.shape[1] - FRAME_WIDTH, slot[hud]] += 1
        palette_all = np.zeros((max(len(colours), 1), 3), dtype=np.uint8)
        for key, i in colours.items():
            palette_all[i] = [(key >> 16) & 255, (key >> 8) & 255, key & 255]
        levels = {}
        for key, counts in votes.items():
            # the status bar's votes live in the last 256 columns of its first rows (world x never gets there)
            width = counts.shape[1]
            used_width = int(np.flatnonzero(counts[HUD_ROWS:, :width - FRAME_WIDTH].sum(axis=(0, 2)))[-1]) + 1
            by_phase = counts.reshape(FRAME_HEIGHT, width, -1, ROTATION_PHASES)
            body, hud = by_phase[HUD_ROWS:, :used_width], by_phase[:HUD_ROWS, width - FRAME_WIDTH:]
            levels[key] = _mode_prior(body, hud, digit_votes[key], palette_all)
        return cls(levels)

    @classmethod
    def from_session_files(cls, paths, split: str | None = "train", max_steps_per_session: int | None = None,
                           progress: bool = True, first_sightings: int | None = None) -> "StagePriors":
        """Build from the frames of session files (only sessions in ``split``; see
        ``sgaps_env.session_file.split_of``). Sessions recorded without frames are left out. A session
        with frames of worlds 5-8 is a ValueError before anything is built (``sgaps_env.worlds``)."""
        sessions = list_sessions(paths, split)
        rows = slice(0, max_steps_per_session)
        check_training_sessions(sessions, rows)

        def encoded():
            for session in sessions:
                if session.has_frames:
                    yield (*session.frame_indices(rows), *session.states(rows))

        return cls.build(encoded(), progress=progress, total=len(sessions), first_sightings=first_sightings)


#: Largest level atlas file read (bytes).
MAX_ATLAS_BYTES = 64 * 2 ** 20

#: A level prior's arrays: name -> (dtype, shape with None for any length; -1: the level's width).
_PRIOR_ARRAYS: dict[str, tuple[np.dtype, tuple]] = {
    "index": (np.uint8, (FRAME_HEIGHT - HUD_ROWS, -1)), "palette": (np.uint8, (None, 3)),
    "confidence": (np.uint8, (FRAME_HEIGHT - HUD_ROWS, -1)), "hud_index": (np.uint8, (HUD_ROWS, FRAME_WIDTH)),
    "hud_confidence": (np.uint8, (HUD_ROWS, FRAME_WIDTH)), "rotation_rows": (np.int16, (None,)),
    "rotation_cols": (np.int16, (None,)), "rotation_index": (np.uint8, (None, ROTATION_PHASES)),
    "digit_rows": (np.int16, (None,)), "digit_cols": (np.int16, (None,)), "digit_slot": (np.uint8, (None,)),
    "digit_index": (np.uint8, (None, 10)),
}


def _check_prior(key: str, arrays: dict[str, np.ndarray]) -> None:
    """A ValueError unless ``arrays`` make a level prior that :class:`MemoryBank` can index safely."""
    width = arrays["index"].shape[1] if arrays["index"].ndim == 2 else -1
    for name, (dtype, shape) in _PRIOR_ARRAYS.items():
        array = arrays[name]
        expected = tuple(width if size == -1 else size for size in shape)
        if array.dtype != dtype or array.ndim != len(shape) \
                or any(size is not None and size != have for size, have in zip(expected, array.shape)):
            raise ValueError(f"stage prior {key!r}: {name} is {array.dtype} {tuple(array.shape)}, expected "
                             f"{np.dtype(dtype)} {tuple('any' if size is None else size for size in expected)}")
    if not 1 <= width <= MAX_LEVEL_WIDTH:
        raise ValueError(f"stage prior {key!r} is {width} pixels wide: a level is 1 to {MAX_LEVEL_WIDTH}")
    colours = len(arrays["palette"])
    for name in ("index", "hud_index", "rotation_index"):
        if arrays[name].size and int(arrays[name].max()) >= colours:
            raise ValueError(f"stage prior {key!r}: {name} points past its {colours}-colour palette")
    seen = arrays["digit_index"][arrays["digit_index"] != DIGIT_UNSEEN]
    if seen.size and int(seen.max()) >= colours:
        raise ValueError(f"stage prior {key!r}: digit_index points past its {colours}-colour palette")
    rotation, digits = len(arrays["rotation_rows"]), len(arrays["digit_rows"])
    if {len(arrays["rotation_cols"]), len(arrays["rotation_index"])} != {rotation} \
            or {len(arrays["digit_cols"]), len(arrays["digit_slot"]), len(arrays["digit_index"])} != {digits}:
        raise ValueError(f"stage prior {key!r}: the rotation or digit arrays differ in length")
    for rows, cols, in_hud in ((arrays["rotation_rows"], arrays["rotation_cols"], False),
                               (arrays["digit_rows"], arrays["digit_cols"], True)):
        if len(rows) and (rows.min() < 0 or rows.max() >= (HUD_ROWS if in_hud else FRAME_HEIGHT)
                          or cols.min() < 0 or cols.max() >= max(width, FRAME_WIDTH)):
            raise ValueError(f"stage prior {key!r}: rotating or digit pixels lie outside the level")
    if digits and int(arrays["digit_slot"].max()) >= HUD_DIGIT_SLOTS:
        raise ValueError(f"stage prior {key!r}: a digit slot is beyond the {HUD_DIGIT_SLOTS} status-bar digits")


def _mode_of(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    total = votes.sum(axis=-1, dtype=np.int64)
    mode = votes.argmax(axis=-1)
    agreement = np.where(total > 0, votes.max(axis=-1) / np.maximum(total, 1), 0.0)
    # a pixel seen once is weak evidence; full confidence needs agreement over several frames
    confidence = np.round(agreement * np.minimum(total, 4) / 4.0 * 255).astype(np.uint8)
    return mode, confidence


def _rotating(votes: np.ndarray, mode: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels whose most common colour depends on the rotation step: ``(rows, cols, (P, phases) colour ids)``.

    ``votes`` is ``(H, W, colours, phases)``; a step never seen at a pixel takes the overall mode."""
    per_phase = votes.argmax(axis=2)  # (H, W, phases)
    seen = votes.sum(axis=2) >= 2
    per_phase = np.where(seen, per_phase, mode[..., None])
    rows, cols = np.nonzero((per_phase != per_phase[..., :1]).any(axis=-1))
    return rows, cols, per_phase[rows, cols]


def _digit_pixels(votes: np.ndarray, min_votes: int = 20, min_gain: float = 0.05):
    """Status-bar pixels better predicted by one digit's value than by nothing: ``(rows, cols, slot, (Q, 10) ids)``.

    ``votes`` is ``(HUD_ROWS, W, slots, 10, colours)``. A value never seen with the slot gets id -1."""
    per_value = votes.sum(axis=-1)  # (R, W, slots, 10)
    total = per_value.sum(axis=-1)[..., 0]  # (R, W): every frame voted once per slot
    base = votes.sum(axis=3).max(axis=-1)[..., 0] / np.maximum(total, 1)  # accuracy of one colour
    explained = votes.max(axis=-1).sum(axis=-1) / np.maximum(total, 1)[..., None]  # (R, W, slots)
    gain = explained - base[..., None]
    slot = gain.argmax(axis=-1)
    rows, cols = np.nonzero((gain.max(axis=-1) > min_gain) & (total >= min_votes))
    chosen = slot[rows, cols]
    ids = votes[rows, cols, chosen].argmax(axis=-1)  # (Q, 10)
    ids = np.where(per_value[rows, cols, chosen] >= 2, ids, -1)
    return rows, cols, chosen, ids


def _mode_prior(body_votes: np.ndarray, hud_votes: np.ndarray, digit_votes: np.ndarray,
                palette_all: np.ndarray) -> LevelPrior:
    """``*_votes`` are ``(rows, cols, colours, ROTATION_PHASES)``; ``digit_votes`` see :func:`_digit_pixels`."""
    mode, confidence = _mode_of(body_votes.sum(axis=-1))
    hud_mode, hud_confidence = _mode_of(hud_votes.sum(axis=-1))
    body_rows, body_cols, body_ids = _rotating(body_votes, mode)
    hud_rows, hud_cols, hud_ids = _rotating(hud_votes, hud_mode)
    rotation_ids = np.concatenate([hud_ids, body_ids]).astype(np.int64)
    digit_rows, digit_cols, digit_slot, digit_ids = _digit_pixels(digit_votes)
    used = np.union1d(np.union1d(np.unique(mode), np.unique(hud_mode)), np.unique(rotation_ids))
    used = np.union1d(used, np.unique(digit_ids[digit_ids >= 0])).astype(np.int64)
    remap = np.zeros(len(palette_all), dtype=np.uint8)
    remap[used] = np.arange(len(used), dtype=np.uint8)
    digit_index = np.where(digit_ids >= 0, remap[np.maximum(digit_ids, 0)], DIGIT_UNSEEN).astype(np.uint8)
    return LevelPrior(remap[mode], palette_all[used].copy(), confidence, remap[hud_mode], hud_confidence,
                      np.concatenate([hud_rows, body_rows + HUD_ROWS]).astype(np.int16),
                      np.concatenate([hud_cols, body_cols]).astype(np.int16),
                      remap[rotation_ids].reshape(-1, ROTATION_PHASES),
                      digit_rows.astype(np.int16), digit_cols.astype(np.int16), digit_slot.astype(np.uint8),
                      digit_index.reshape(-1, 10))


_GAME_MODE = STATE_INDEX["game_mode"]


# --- the per-session memory -----------------------------------------------------------------------------


@dataclass
class MemoryConfig:
    """How a :class:`MemoryBank` learns from samples and reconstructions."""

    ema: float = 0.75
    """weight of a new sample where the static memory was already confident (1 = overwrite)"""
    reconstruction_confidence: float = 0.3
    """confidence given to pixels filled from a reconstruction (never above a sampled pixel's 1)"""
    dynamic_frames: int = 4
    """frames of recent samples kept in the short-term dynamic memory"""
    prior_confidence: float = 0.9
    """scale of the stage prior's confidence when it seeds the static memory"""
    use_prior: bool = True
    """start known levels from the stage prior (False: every session starts from nothing)"""
    confirm_above: float = 0.01
    """a sample contradicting a pixel at least this confident is written only once a second sample
    confirms it (> 1: never hold back, the behaviour before this option)"""
    confirm_tolerance: float = 2.0 / 255.0
    """largest difference (any channel) counted as agreement"""
    max_levels: int = 8
    """level areas remembered in one session; a new area beyond this forgets the least recently seen one"""
    max_pages: int = 128
    """level-canvas pages (PAGE_WIDTH columns each, about 0.85 MB in RGB) kept over all areas of a session:
    a whole level is 13-20 pages; beyond this the least recently seen page is forgotten"""

    def __post_init__(self):
        for name, (low, high) in _MEMORY_LIMITS.items():
            value = getattr(self, name)
            kind = int if isinstance(low, int) else float
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or (kind is int and not float(value).is_integer()) or not low <= value <= high:
                raise ValueError(f"MemoryConfig.{name} must be {'an int' if kind is int else 'a number'} in "
                                 f"[{low}, {high}], got {value!r}")
        if not isinstance(self.use_prior, (bool, np.bool_)):
            raise ValueError(f"MemoryConfig.use_prior must be True or False, got {self.use_prior!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "MemoryConfig":
        """A config from a checkpoint's ``memory`` entry: known keys only, each within its range."""
        if not isinstance(values, dict):
            raise ValueError(f"a memory config must be a dict of MemoryConfig fields, got {type(values).__name__}")
        unknown = sorted(map(str, set(values) - {f.name for f in fields(cls)}))
        if unknown:
            raise ValueError(f"unknown MemoryConfig fields {unknown}: expected only {sorted(_MEMORY_FIELDS)} (a "
                             "checkpoint from a newer sgaps, or not an SPT checkpoint)")
        return cls(**values)


#: Inclusive ranges of MemoryConfig's numeric fields (an int bound means the field is an int).
_MEMORY_LIMITS: dict[str, tuple] = {"ema": (0.0, 1.0), "reconstruction_confidence": (0.0, 1.0),
                                    "dynamic_frames": (1, 64), "prior_confidence": (0.0, 1.0),
                                    "confirm_above": (0.0, 1e9), "confirm_tolerance": (0.0, 1.0),
                                    "max_levels": (1, 64), "max_pages": (2, 4096)}
_MEMORY_FIELDS = (*_MEMORY_LIMITS, "use_prior")


class MemoryBank:
    """Per-session temporal memory of one colour mode (``channels`` 1 or 3); see the module docstring.

    Per step: :meth:`view` before reconstructing, :meth:`update` after.
    """

    def __init__(self, channels: int, priors: StagePriors | None = None, config: MemoryConfig | None = None,
                 height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH):
        if channels not in (1, 3):
            raise ValueError(f"MemoryBank channels must be 1 (luma) or 3 (RGB), got {channels}")
        self.channels, self.height, self.width = channels, height, width
        self.priors = priors or StagePriors()
        self.config = config or MemoryConfig()
        self.reset()

    def reset(self) -> None:
        """Forget the session (keeps the priors)."""
        # level key -> (status-bar value (HUD, W, C), its confidence), least recently used first
        self._levels: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        # (level key, page) -> (value (H - HUD, PAGE_WIDTH, C), confidence): columns [page * PAGE_WIDTH, ...)
        # of the level, least recently used first
        self._pages: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        # level key -> (rows, cols, colours (P, ROTATION_PHASES, C)) of the prior's palette-rotating pixels
        self._rotations: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        # level key -> (rows, cols, slot, colours (Q, 10, C), seen (Q, 10)) of the prior's digit pixels
        self._digits: dict[str, tuple[np.ndarray, ...]] = {}
        self._recent: deque[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = deque(maxlen=self.config.dynamic_frames)
        # (canvas, level key) -> {pixel index: a sample that contradicted a confident pixel, not yet confirmed}
        self._pending: dict[tuple[str, str], dict[int, np.ndarray]] = {}

    def _forget(self, key: str) -> None:
        """Drop everything kept for level area ``key``."""
        self._levels.pop(key, None)
        for page in [page for page in self._pages if page[0] == key]:
            del self._pages[page]
        self._rotations.pop(key, None)
        self._digits.pop(key, None)
        self._pending.pop(("hud", key), None)
        self._pending.pop(("level", key), None)

    def _level(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Level area ``key``'s status bar ``(value (HUD, W, C), confidence (HUD, W))``, made (from its prior,
        if any) when the area is first seen; the least recently seen area is forgotten beyond ``max_levels``."""
        level = self._levels.get(key)
        if level is not None:
            self._levels.move_to_end(key)
            return level
        while len(self._levels) >= self.config.max_levels:
            self._forget(next(iter(self._levels)))
        hud_value = np.zeros((HUD_ROWS, self.width, self.channels), np.float32)
        hud_confidence = np.zeros((HUD_ROWS, self.width), np.float32)
        prior = self._prior(key)
        if prior is not None:
            scale = self.config.prior_confidence / 255.0
            if prior.hud_index.shape == (HUD_ROWS, self.width):
                hud_value[:] = _channels(prior.hud_rgb(), self.channels)
                hud_confidence[:] = prior.hud_confidence * scale
            if len(prior.digit_rows):
                seen = prior.digit_index != DIGIT_UNSEEN
                colours = _channels(prior.palette[np.where(seen, prior.digit_index, 0)], self.channels)
                self._digits[key] = (prior.digit_rows.astype(np.int64), prior.digit_cols.astype(np.int64),
                                     prior.digit_slot.astype(np.int64), colours, seen)
            if len(prior.rotation_rows):
                self._rotations[key] = (prior.rotation_rows.astype(np.int64), prior.rotation_cols.astype(np.int64),
                                        _channels(prior.palette[prior.rotation_index], self.channels))
        level = self._levels[key] = (hud_value, hud_confidence)
        return level

    def _prior(self, key: str) -> LevelPrior | None:
        return self.priors.get(key) if self.config.use_prior else None

    def _page(self, key: str, page: int) -> tuple[np.ndarray, np.ndarray]:
        """Columns ``[page * PAGE_WIDTH, (page + 1) * PAGE_WIDTH)`` of level ``key``: ``(value, confidence)``,
        made from the level's prior (or empty) when first needed."""
        found = self._pages.get((key, page))
        if found is not None:
            self._pages.move_to_end((key, page))
            return found
        while len(self._pages) >= self.config.max_pages:
            self._pages.popitem(last=False)
        body = self.height - HUD_ROWS
        value = np.zeros((body, PAGE_WIDTH, self.channels), np.float32)
        confidence = np.zeros((body, PAGE_WIDTH), np.float32)
        prior = self._prior(key)
        start = page * PAGE_WIDTH
        if prior is not None and start < prior.width:
            span = min(PAGE_WIDTH, prior.width - start)
            value[:, :span] = _channels(prior.rgb()[:, start:start + span], self.channels)
            confidence[:, :span] = prior.confidence[:, start:start + span] * (self.config.prior_confidence / 255.0)
        found = self._pages[(key, page)] = (value, confidence)
        return found

    def _window_pages(self, key: str, camera: int) -> list[tuple[slice, np.ndarray, np.ndarray, slice]]:
        """The pages under the screen at ``camera``: ``(screen columns, page value, page confidence, page columns)``."""
        if camera + self.width > MAX_LEVEL_WIDTH:
            raise ValueError(f"a camera x of {camera} pixels is beyond the camera_x field's range "
                             f"(at most {MAX_LEVEL_WIDTH - self.width}): pass the state vector the environment gives")
        parts = []
        for page in range(camera // PAGE_WIDTH, (camera + self.width - 1) // PAGE_WIDTH + 1):
            low, high = max(camera, page * PAGE_WIDTH), min(camera + self.width, (page + 1) * PAGE_WIDTH)
            value, confidence = self._page(key, page)
            parts.append((slice(low - camera, high - camera), value, confidence,
                          slice(low - page * PAGE_WIDTH, high - page * PAGE_WIDTH)))
        return parts

    def _window(self, key: str, camera: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the level canvas under the screen: ``(value (H - HUD, W, C), confidence (H - HUD, W))``."""
        body = self.height - HUD_ROWS
        value = np.empty((body, self.width, self.channels), np.float32)
        confidence = np.empty((body, self.width), np.float32)
        for screen, page_value, page_confidence, columns in self._window_pages(key, camera):
            value[:, screen], confidence[:, screen] = page_value[:, columns], page_confidence[:, columns]
        return value, confidence

    def _store_window(self, key: str, camera: int, value: np.ndarray, confidence: np.ndarray) -> None:
        """Write an edited :meth:`_window` back into the level's pages."""
        for screen, page_value, page_confidence, columns in self._window_pages(key, camera):
            page_value[:, columns], page_confidence[:, columns] = value[:, screen], confidence[:, screen]

    def view(self, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The static memory seen from this frame's camera: ``(canvas (H, W, C), confidence (H, W))`` copies."""
        camera, key = max(0, camera_x(state)), area_key(state)
        hud_value, hud_confidence = self._level(key)
        canvas = np.empty((self.height, self.width, self.channels), np.float32)
        trust = np.empty((self.height, self.width), np.float32)
        canvas[:HUD_ROWS], trust[:HUD_ROWS] = hud_value, hud_confidence
        canvas[HUD_ROWS:], trust[HUD_ROWS:] = self._window(key, camera)
        self._rotate(canvas, key, camera, rotation_phase(state))
        self._draw_digits(canvas, key, state)
        return canvas, trust

    def _draw_digits(self, canvas: np.ndarray, key: str, state: np.ndarray) -> None:
        """Draw the status bar's timer, score and coin digits the state says it shows, in the glyphs the
        training frames showed for them (values never seen are left as the memory has them)."""
        digits = self._digits.get(key)
        if digits is None or state[STATE_INDEX["timer"]] < 0:
            return
        rows, cols, slots, colours, seen = digits
        values = (hud_digits(state) % 10)[slots]
        known = seen[np.arange(len(rows)), values]
        canvas[rows[known], cols[known]] = colours[np.flatnonzero(known), values[known]]

    def _rotate(self, canvas: np.ndarray, key: str, camera: int, phase: int | None) -> None:
        """Give the palette-rotating pixels (?-blocks, coins) this frame's rotation colour, where the canvas still
        holds one of their rotation colours (a hit block stops rotating, and its samples say so)."""
        rotation = self._rotations.get(key)
        if rotation is None or phase is None:
            return
        rows, cols, colours = rotation
        screen = np.where(rows < HUD_ROWS, cols, cols - camera)
        inside = (screen >= 0) & (screen < self.width)
        rows, screen, colours = rows[inside], screen[inside], colours[inside]
        current = canvas[rows, screen]  # (P, C)
        rotating = (np.abs(colours - current[:, None]).max(axis=-1) < 1e-3).any(axis=-1)
        canvas[rows[rotating], screen[rotating]] = colours[rotating, phase]

    def dynamic(self, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Recent samples moved to this frame's screen: ``(values (H, W, C), freshness (H, W))``, freshness 1
        for the previous frame's samples down to ``1/dynamic_frames`` for the oldest, 0 where none fell."""
        values = np.zeros((self.height, self.width, self.channels), np.float32)
        freshness = np.zeros((self.height, self.width), np.float32)
        camera, level = max(0, camera_x(state)), area_key(state)
        frames = self.config.dynamic_frames
        for age, (rows, cols, sample_values, then) in enumerate(reversed(self._recent)):
            if then[1] != level:
                continue
            shifted = np.where(rows >= HUD_ROWS, cols + then[0] - camera, cols)
            inside = (shifted >= 0) & (shifted < self.width)
            weight = 1.0 - age / frames
            r, c = rows[inside], shifted[inside]
            newer = freshness[r, c] < weight
            values[r[newer], c[newer]] = sample_values[inside][newer]
            freshness[r[newer], c[newer]] = weight
        return values, freshness

    def _confirmed(self, canvas: tuple[str, str], index: np.ndarray, known: np.ndarray, confidence: np.ndarray,
                   values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which samples may be written: ``(write (n,), confirmed (n,))`` bool.

        A sample that contradicts a confident memory pixel (``confidence >= confirm_above``, e.g. the
        stage prior) is held back until a later sample of the same pixel says the same: one-off
        sightings (score pop-ups, debris, the edge of a sprite outside its box) would otherwise be
        burnt into the memory and shown until the pixel happens to be sampled again. ``confirmed``
        marks held-back values now seen twice, which overwrite the memory.
        """
        tolerance = self.config.confirm_tolerance
        differs = np.abs(known - values).max(axis=1) > tolerance
        guarded = differs & (confidence >= self.config.confirm_above)
        write, confirmed = ~guarded, np.zeros(len(values), bool)
        pending = self._pending.setdefault(canvas, {})
        for i in np.flatnonzero(~differs):  # agrees with the memory: any pending contradiction was a one-off
            pending.pop(int(index[i]), None)
        for i in np.flatnonzero(guarded):
            slot = int(index[i])
            before = pending.pop(slot, None)
            if before is not None and np.abs(before - values[i]).max() <= tolerance:
                write[i] = confirmed[i] = True
            else:
                pending[slot] = values[i].copy()
        if len(pending) > 1_000_000:  # a very long session: forget the oldest half
            for slot in list(pending)[:len(pending) // 2]:
                del pending[slot]
        return write, confirmed

    def update(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, state: np.ndarray,
               state_mask: np.ndarray, reconstruction: np.ndarray | None = None) -> None:
        """Learn from this frame's samples (``rows, cols (N,)`` int, ``values (N, C)``) and, optionally,
        its reconstruction ``(H, W, C)``."""
        rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
        values = np.asarray(values, np.float32).reshape(len(rows), self.channels)
        camera, key = max(0, camera_x(state)), area_key(state)
        sprites = box_mask(sprite_boxes(state, state_mask), self.height, self.width, margin=SPRITE_MARGIN)
        hud_value, hud_confidence = self._level(key)
        level_value, level_confidence = self._window(key, camera)
        static = ~sprites[rows, cols]
        hud = static & (rows < HUD_ROWS)
        r, c = rows[hud], cols[hud]
        write, confirmed = self._confirmed(("hud", key), r * self.width + c, hud_value[r, c], hud_confidence[r, c],
                                           values[hud])
        hud_value[r[write], c[write]] = values[hud][write]
        hud_confidence[r[write], c[write]] = 1.0
        body = static & (rows >= HUD_ROWS)
        r, c = rows[body] - HUD_ROWS, cols[body]
        # pending contradictions are keyed by world x * body height + row: they stay put as the camera moves
        write, confirmed = self._confirmed(("level", key), (c + camera) * (self.height - HUD_ROWS) + r,
                                           level_value[r, c], level_confidence[r, c], values[body])
        r, c, body_values = r[write], c[write], values[body][write]
        rate = np.maximum(self.config.ema, 1.0 - level_confidence[r, c])[:, None]
        rate[confirmed[write]] = 1.0
        level_value[r, c] += rate * (body_values - level_value[r, c])
        level_confidence[r, c] = 1.0
        if reconstruction is not None:
            floor = self.config.reconstruction_confidence
            fill = (level_confidence < floor) & ~sprites[HUD_ROWS:]
            level_value[fill] = reconstruction[HUD_ROWS:][fill]
            level_confidence[fill] = floor
            hud_fill = (hud_confidence < floor) & ~sprites[:HUD_ROWS]
            hud_value[hud_fill] = reconstruction[:HUD_ROWS][hud_fill]
            hud_confidence[hud_fill] = floor
        self._store_window(key, camera, level_value, level_confidence)
        self._recent.append((rows.copy(), cols.copy(), values.copy(), (camera, key)))
