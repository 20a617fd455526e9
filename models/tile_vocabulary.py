"""The game's tile vocabulary: palette-normalised 8x8 background tiles, counted on worlds 1-4.

The NES draws the background from 8x8 tiles of one pattern table, with a 4-colour palette per 16x16
block, and the level scrolls by ``camera_x`` (state vector). A frame's background tiles therefore
start at level x multiples of 8, i.e. at screen column ``(-camera_x) % 8``, and at rows multiple of 8.
A tile's *shape* is its 64 pixels with each colour replaced by its rank of first appearance (row
by row), so the same tile drawn with another palette has the same shape; a block with more than four
colours (a sprite over the background) has none.

Measured with ``python experiments/tile_vocabulary.py``: the shapes of a few thousand frames of
worlds 1-4 cover nearly every tile instance of the held-out worlds 5-8, and two thirds of those are
a single flat colour. That is what lets a level-agnostic reconstructor name most tiles of an unseen
level from a few samples each. Build vocabularies from worlds 1-4 only (``sgaps_env.worlds``).

    vocabulary = TileVocabulary.from_session_files(["data/train.h5"])
    shapes, valid = frame_tiles(frame, camera_x)        # (rows, cols, 64) ranks, (rows, cols) bool
    vocabulary.known(shapes[valid]).mean()                # share of this frame's tiles it knows
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from tqdm.auto import tqdm

from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH
from sgaps_env.session_file import list_sessions
from sgaps_env.sprites import HUD_ROWS
from sgaps_env.state import field_ints
from sgaps_env.worlds import check_training_sessions, held_out_rows

#: Edge of a background tile in pixels.
TILE = 8
#: Colours a background tile can hold (one palette).
TILE_COLOURS = 4
#: Tile rows below the status bar (the status bar does not scroll).
TILE_ROWS = (FRAME_HEIGHT - HUD_ROWS) // TILE


def frame_tiles(frame: np.ndarray, camera_x: int) -> tuple[np.ndarray, np.ndarray]:
    """The background tiles of one frame, on the level's tile grid.

    ``frame (H, W, 3) uint8`` RGB, ``camera_x`` its camera (level x of screen column 0) ->
    ``(shapes (TILE_ROWS, C, 64) uint8, valid (TILE_ROWS, C) bool)``: every whole tile below the
    status bar (``C`` is 32, or 31 when the camera is not on a tile boundary); ``shapes`` holds colour
    ranks 0-3 by first appearance, ``valid`` is False for tiles with more than ``TILE_COLOURS`` colours.
    """
    if frame.dtype != np.uint8 or frame.shape != (FRAME_HEIGHT, FRAME_WIDTH, 3):
        raise ValueError(f"frame must be uint8 {(FRAME_HEIGHT, FRAME_WIDTH, 3)}, got {frame.dtype} {frame.shape}")
    first_column = (-int(camera_x)) % TILE
    columns = (FRAME_WIDTH - first_column) // TILE
    body = frame[HUD_ROWS:HUD_ROWS + TILE_ROWS * TILE, first_column:first_column + columns * TILE].astype(np.int32)
    codes = (body[..., 0] << 16) | (body[..., 1] << 8) | body[..., 2]
    blocks = codes.reshape(TILE_ROWS, TILE, columns, TILE).transpose(0, 2, 1, 3).reshape(TILE_ROWS, columns, TILE * TILE)
    return canonical_shapes(blocks)


def canonical_shapes(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(..., 64)`` colour codes -> ``(shapes (..., 64) uint8 ranks by first appearance, valid (...) bool)``."""
    flat = blocks.reshape(-1, blocks.shape[-1])
    shapes = np.zeros(flat.shape, np.uint8)
    remaining = np.ones(flat.shape, bool)
    for rank in range(TILE_COLOURS):
        # the first pixel not yet ranked defines the next colour
        first = np.argmax(remaining, axis=1)
        has_more = remaining[np.arange(len(flat)), first]
        colour = flat[np.arange(len(flat)), first]
        same = remaining & (flat == colour[:, None]) & has_more[:, None]
        shapes[same] = rank
        remaining &= ~same
    valid = ~remaining.any(axis=1)
    shapes[~valid] = 0
    return shapes.reshape(blocks.shape), valid.reshape(blocks.shape[:-1])


class TileVocabulary:
    """Tile shapes and how often each was seen."""

    def __init__(self, counts: Counter | None = None):
        self.counts: Counter = counts if counts is not None else Counter()

    def __len__(self) -> int:
        return len(self.counts)

    def add(self, shapes: np.ndarray) -> None:
        """Count ``shapes (K, 64)``."""
        self.counts.update(bytes(shape) for shape in np.asarray(shapes, np.uint8).reshape(-1, TILE * TILE))

    def known(self, shapes: np.ndarray) -> np.ndarray:
        """``(K,)`` bool: which of ``shapes (K, 64)`` the vocabulary holds."""
        return np.array([bytes(shape) in self.counts
                         for shape in np.asarray(shapes, np.uint8).reshape(-1, TILE * TILE)], bool)

    @classmethod
    def from_session_files(cls, paths, split: str | None = "train", max_steps_per_session: int | None = None,
                           skip_held_out: bool = False, progress: bool = True) -> "TileVocabulary":
        """Count the valid tiles of every recorded frame of the sessions in ``split``.

        Worlds 1-4 only: a session with frames of worlds 5-8 is a ValueError before anything is counted,
        or, with ``skip_held_out``, a session that starts in worlds 5-8 is left out (a file that holds
        both groups, as evaluation files do).
        """
        sessions = [session for session in list_sessions(paths, split) if session.has_frames]
        rows = slice(0, max_steps_per_session)
        if skip_held_out:
            sessions = [session for session in sessions if not held_out_rows(session.states(slice(0, 1))[0])[0]]
        check_training_sessions(sessions, rows)
        vocabulary = cls()
        for session in tqdm(sessions, desc="tile vocabulary", unit="session", disable=not progress):
            for frame, camera in zip(session.frames(rows), field_ints(session.states(rows)[0], "camera_x")):
                shapes, valid = frame_tiles(frame, int(camera))
                vocabulary.add(shapes[valid])
        return vocabulary


def colour_codes(values: np.ndarray) -> np.ndarray:
    """``(..., C)`` uint8 (or values in [0, 1]) -> ``(...)`` int32 colour codes, the channels' 8-bit values packed."""
    array = np.asarray(values)
    if array.dtype != np.uint8:
        array = np.clip(np.round(array * 255.0), 0, 255).astype(np.int32)
    array = array.astype(np.int32)
    codes = array[..., 0]
    for channel in range(1, array.shape[-1]):
        codes = (codes << 8) | array[..., channel]
    return codes


def code_values(codes: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of :func:`colour_codes`: ``(...)`` int codes -> ``(..., channels)`` float32 in [0, 1]."""
    codes = np.asarray(codes, np.int64)
    shifts = 8 * np.arange(channels - 1, -1, -1)
    return (((codes[..., None] >> shifts) & 255) / 255.0).astype(np.float32)

