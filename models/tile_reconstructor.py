"""The level-agnostic reconstructor: every 16x16 block of the background named from a codebook counted on worlds 1-4.

Super Mario Bros draws its background from 8x8 tiles of one pattern table, one palette per 16x16 block,
and builds its levels from 16x16 metatiles, scrolled by the state's ``camera_x`` (``models.tile_vocabulary``).
Blocks and tiles repeat across the whole game: the coloured 16x16 blocks of worlds 1-4 cover about 95% of
the block instances of the held-out worlds 5-8, so a level never seen is still made of known blocks, and a
few samples of a block name it. The codebook (:class:`TileCodebook`, counted by :class:`CodebookCounter`,
built by ``experiments/build_codebook.py``, shipped as ``models/checkpoints/tiles-smb1-worlds1-4.npz``):

| part | what it holds | what it decodes |
|---|---|---|
| blocks | coloured 16x16 blocks on the level's grid, sprite boxes left out, with their frequency | a block of the level |
| tiles, shapes | coloured 8x8 tiles; their palette-normalised shapes | a block no counted block explains, tile by tile; a shape's unsampled colours come from the block's and its neighbours' samples |
| status bar | its tiles per position, or per digit value where the state's timer, score, coins, world or stage decides the tile (positions found from the frames), or per palette rotation step (the blinking coin) | the status bar |
| sprites | per pose (``sgaps_env.sprites``), the exact appearances the sprite showed (its pixels in the template window) and how often | each sprite at its RAM position, as the appearance of its pose that best explains the samples in its box |
| fire bars | per spin step (the state's) and bar length, the exact appearances of the balls around the pivot and how often | each fire bar, as the appearance of its spin step that best explains the samples in its square; samples its balls may cover never enter the level's memory |

Pixels that blink with the palette rotation (the faces of ?-blocks, coins) are counted as one :data:`ROTATING`
code wherever a level pixel showed the rotating colour of two or more rotation steps (:func:`blinking_pixels`),
so a blinking block is one codebook entry, not six; a sample showing its step's rotating colour may be such a
pixel (:data:`MAYBE_ROTATING`), and blinking pixels are drawn in the colour of the frame's step (the state's
``color_rotation``). Counted this way the codebook scored +1.2 dB on worlds 1-4 recordings no codebook was
counted from (``data/tune_worlds.h5``: 34.30 against 33.12 dB, 500 random pixels).

Per session the reconstructor keeps, per level area, the colour of every background pixel sampled outside the
RAM sprite boxes in level coordinates (pages of 16 block columns, at most ``max_pages``), and per block the
codebook blocks that still match its samples (candidates only shrink; a sample that contradicts an older one
means the block changed, so its older samples are dropped). A block is drawn as its most probable match (or,
with ``top_k`` > 1, the posterior mean of the ``top_k`` most probable), their prior being the mixture of their
frequency on worlds 1-4 and their share of this session's decodes (a level reuses its own blocks:
``session_weight``), times a factor for having followed the same neighbour above or to the left earlier in the
session (a level repeats its own block pairs: ``pair_weight``); the posterior's entropy over the candidates is
kept per block, for sampling policies. Blocks never sampled copy the nearest decoded block, preferring their own
row (sky continues sky). Then each sprite is drawn as the appearance of its pose that best explains the samples
in its window, and this frame's samples are pasted exactly. Level areas are :func:`sgaps_env.sprites.area_key`
(world, stage, area number and area type, so a stage's sub-areas are apart). Nothing is fitted to a level:
worlds 5-8 never enter a codebook (``sgaps_env.worlds``).
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from models.baselines import _check_pixels
from models.memory import StagePriors
from models.npz_files import read_npz, write_npz
from models.tile_vocabulary import TILE, TILE_COLOURS, canonical_shapes, code_values, colour_codes
from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, frame_values, uv_to_pixel
from sgaps_env.sprites import (APPEARANCE_CONTEXTS, AREA_TYPES, ENEMY_TYPES, FIREBAR_PIVOT_BALL, FIREBAR_SPINS,
                               HUD_DIGIT_SLOTS, HUD_ROWS, LONG_FIREBAR, PLAYER_POSES, POSE_COUNT, ROTATION_COLOURS,
                               ROTATION_PHASES, TEMPLATE_SIZE, SpriteBox, appearance_context, area_key, area_type,
                               box_mask, camera_x, hud_digits, lingering_boxes, rotation_phase, sprite_boxes,
                               template_windows, with_motion)
from sgaps_env.state import STATE_INDEX, field_int
from sgaps_env.worlds import check_training_states

#: Margin (pixels) around the RAM sprite boxes inside which samples never enter the tile memory.
SPRITE_MARGIN = 2

#: Edge of a block: the NES gives each 16x16 block one palette, and SMB builds its levels from 16x16 metatiles.
BLOCK = 16
BLOCK_PIXELS = BLOCK * BLOCK
#: Block rows below the status bar.
BLOCK_ROWS = (FRAME_HEIGHT - HUD_ROWS) // BLOCK
SCREEN_BLOCK_COLUMNS = FRAME_WIDTH // BLOCK
#: Posterior of a block's best candidate above which samples that agree with it need no new decode.
CERTAIN = 0.999
#: Probability that a sample inside a sprite's template window disagrees with the sprite's true appearance (another
#: object over it): each disagreeing sample multiplies an appearance's prior by it.
SPRITE_MISS_PROBABILITY = 0.01
#: Share of a level area's status-bar samples a colour needs for the status bar's tiles to prefer tiles drawn in it.
HUD_COMMON_SHARE = 0.01
#: Appearances kept per sprite pose (the most frequent), and the sightings one needs to be kept.
SPRITE_APPEARANCES = 32
SPRITE_MIN_SIGHTINGS = 3
#: Options a block's posterior entropy is taken over.
ENTROPY_OPTIONS = 8
#: Atlas pixels trusted as known (``LevelPrior.confidence``: 255 = every training frame agreed).
ATLAS_CONFIDENCE = 192
#: Block columns of one page of a level's memory.
PAGE_BLOCKS = 16
#: What :meth:`TileReconstructor.block_knowledge` says of a level block: named from the codebook with certainty on
#: at least :data:`CONFIRMING_SAMPLES` samples; named with certainty on fewer; sampled, but several codebook blocks
#: still match or none does (decoded tile by tile); never sampled in this session. On worlds 5-8 at 500 random
#: pixels a block named on 2-7 samples is wrong 10% of the time, on 16-31 samples 1.8%.
KNOWLEDGE_CLASSES = ("confirmed", "guessed", "uncertain", "unseen")
CONFIRMING_SAMPLES = 16

#: Code of a background pixel that blinks with the palette rotation (a ?-block's face, a coin): codebooks hold it
#: where a pixel showed the rotating colour of two or more rotation steps, and it is drawn in this frame's colour.
ROTATING = 1 << 24
#: Flag on a sample whose colour is the rotating colour of its frame's step: that colour, or a blinking pixel.
MAYBE_ROTATING = 1 << 25


def plain_codes(codes: np.ndarray) -> np.ndarray:
    """Sample codes without the :data:`MAYBE_ROTATING` flag (-1, unknown, stays -1)."""
    codes = np.asarray(codes)
    return np.where(codes >= 0, codes & ~MAYBE_ROTATING, codes)


def agreeing(drawn: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Elementwise: whether codebook pixels ``drawn`` can have shown samples ``codes`` (broadcast): the same colour,
    or a blinking pixel where the sample showed its step's rotating colour."""
    codes = np.asarray(codes)
    maybe = (codes >= 0) & ((codes & MAYBE_ROTATING) != 0)
    if not maybe.any():  # plain colours: agreeing is being equal
        return drawn == codes
    return (drawn == plain_codes(codes)) | ((drawn == ROTATING) & maybe)


def merge_samples(old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A pixel's stored code ``old`` (-1: none) and its new sample ``new`` -> ``(stored, clash)``: two samples of
    different rotating colours make the pixel :data:`ROTATING`; a plain sample of the same colour makes it that
    colour; ``clash`` where they cannot both be true (the block changed)."""
    plain_old, plain_new = plain_codes(old), plain_codes(new)
    same = plain_old == plain_new
    new_maybe = (new & MAYBE_ROTATING) != 0
    old_maybe = (old >= 0) & ((old & MAYBE_ROTATING) != 0)
    blink = ~same & ((old == ROTATING) | old_maybe) & new_maybe
    stored = np.where(same, np.where(old_maybe & new_maybe, new, plain_new), ROTATING)
    stored = np.where(old < 0, new, np.where(same | blink, stored, new))
    return stored, (old >= 0) & ~same & ~blink


#: ``block pixel index -> (tile 0-3, pixel in tile)``: a block's four 8x8 tiles, row by row.
_rows, _cols = np.divmod(np.arange(BLOCK_PIXELS), BLOCK)
TILE_OF_PIXEL = (_rows // TILE) * 2 + _cols // TILE
PIXEL_IN_TILE = (_rows % TILE) * TILE + _cols % TILE
#: ``(4, 64)`` the block pixel indices of each tile.
TILE_PIXELS = np.stack([np.flatnonzero(TILE_OF_PIXEL == t)[np.argsort(PIXEL_IN_TILE[TILE_OF_PIXEL == t])]
                        for t in range(4)])


def _log_frequencies(counts: np.ndarray) -> np.ndarray:
    return np.log(counts / counts.sum()).astype(np.float32)


@dataclass
class TileCodebook:
    """What the background looks like, counted on worlds 1-4 (colours as :func:`colour_codes`):

    - ``blocks (Kb, 256) int32`` whole coloured 16x16 blocks, ``block_log_prior (Kb,)``;
    - ``tiles (Kt, 64) int32`` whole coloured 8x8 tiles, ``tile_log_prior (Kt,)``, for blocks never counted;
    - ``shapes (N, 64) uint8`` palette-normalised tile shapes, ``shape_log_prior (N,)``, for tiles drawn in
      colours never counted."""

    blocks: np.ndarray
    block_log_prior: np.ndarray
    tiles: np.ndarray
    tile_log_prior: np.ndarray
    shapes: np.ndarray
    shape_log_prior: np.ndarray
    hud_tiles: np.ndarray | None = None
    """``(M, 64) int32`` coloured status-bar tiles, each under ``hud_keys (M,) int32``: the tile position
    (0-127, row by row) for fixed text, or ``HUD_DIGIT_KEY + value`` for a digit's glyph"""
    hud_keys: np.ndarray | None = None
    hud_log_prior: np.ndarray | None = None
    hud_digit_slot: np.ndarray | None = None
    """``(128,) int8``: which of :func:`status_digits` each status-bar tile position shows (-1: fixed text)"""
    sprite_appearances: np.ndarray | None = None
    """``(A, 40, 24) int32`` exact sprite appearances in their pose's template window: colour codes, -1 where the
    background shows through; sorted by ``sprite_poses (A,) int32``, each with ``sprite_log_prior (A,)``, the log
    of its share of its pose's sightings"""
    sprite_poses: np.ndarray | None = None
    sprite_log_prior: np.ndarray | None = None
    sprite_context_log_prior: np.ndarray | None = None
    """``(A, APPEARANCE_CONTEXTS) float32``: the log of an appearance's share of its pose's sightings in each
    :func:`sgaps_env.sprites.appearance_context` (animation phase x moving direction x motion since the step
    before; smoothed towards ``sprite_log_prior``); None: that prior alone"""
    firebar_keys: np.ndarray | None = None
    """``(F,) int32`` sorted :func:`firebar_key` s of the exact fire-bar appearances, each with ``firebar_log_prior
    (F,)`` (the log of its share of its key's sightings) and its opaque pixels in ``firebar_pixels (P, 4) int32``:
    rows ``(appearance, dy, dx, colour code)``, offsets from the pivot's centre, by appearance"""
    firebar_log_prior: np.ndarray | None = None
    firebar_pixels: np.ndarray | None = None

    @staticmethod
    def _ranked(counts, dtype, min_count: int) -> tuple[np.ndarray, np.ndarray]:
        items = sorted(((count, key) for key, count in counts.items() if count >= min_count), key=lambda i: -i[0])
        if not items:
            raise ValueError(f"nothing was seen {min_count} times: count the tiles of more frames")
        return (np.stack([np.frombuffer(key, dtype) for _, key in items]),
                _log_frequencies(np.array([count for count, _ in items], np.float64)))

    @classmethod
    def from_counts(cls, block_counts, tile_counts, shape_counts, min_count: int = 2, hud=None,
                    sprites: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                    firebars: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> "TileCodebook":
        """From counters of ``bytes`` keys: coloured blocks (256 int32 codes), coloured tiles (64 int32 codes)
        and shapes (64 uint8 ranks); what was seen fewer than ``min_count`` times is left out. ``hud`` is
        ``(hud_tiles, hud_keys, hud_log_prior, hud_digit_slot)``, ``sprites``
        ``(sprite_appearances, sprite_poses, sprite_log_prior, sprite_context_log_prior)``
        (:meth:`SpriteAppearances.appearances`),
        ``firebars`` ``(firebar_keys, firebar_log_prior, firebar_pixels)`` (:meth:`FirebarAppearances.appearances`)."""
        return cls(*cls._ranked(block_counts, np.int32, min_count), *cls._ranked(tile_counts, np.int32, min_count),
                   *cls._ranked(shape_counts, np.uint8, min_count), *(hud or (None,) * 4),
                   *(sprites or (None, None, None, None)), *(firebars or (None, None, None)))


#: Status-bar tile positions (4 rows of 32) and the key of a digit glyph in :attr:`TileCodebook.hud_keys`.
HUD_TILES = (HUD_ROWS // TILE) * (FRAME_WIDTH // TILE)
HUD_DIGIT_KEY = HUD_TILES


#: The last of :func:`status_digits` is the status bar coin's colour: the palette rotation step it blinks with, and the
#: area type, which sets its palette (a castle's coin is grey where a ground level's is orange).
ROTATION_SLOT = HUD_DIGIT_SLOTS + 2
COIN_COLOURINGS = ROTATION_PHASES * AREA_TYPES
#: Key of a blinking status-bar tile at position ``p`` and coin colouring ``c`` (:func:`status_digits`):
#: ``HUD_ROTATION_KEY + p * COIN_COLOURINGS + c``.
HUD_ROTATION_KEY = HUD_DIGIT_KEY + 10


def status_digits(state: np.ndarray) -> np.ndarray:
    """``(14,)`` what the status bar shows: the digits of the timer (3), score (6), coins (2), world and stage,
    then the coin's colouring, ``area type * 6 + palette rotation step``; -1 where the state lacks it (not playing)."""
    phase = rotation_phase(state)
    coin = -1 if phase is None else area_type(state) * ROTATION_PHASES + phase
    if state[STATE_INDEX["timer"]] < 0:
        return np.array([-1] * ROTATION_SLOT + [coin], np.int64)
    return np.concatenate([hud_digits(state) % 10, [(field_int(state, "world") + 1) % 10,
                                                    (field_int(state, "stage") + 1) % 10, coin]])


def status_keys(slots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``(HUD_TILES,)`` the codebook key of each status-bar tile, given its ``slots`` (``hud_digit_slot``) and
    :func:`status_digits` ``values``; -1 where the value it depends on is unknown."""
    positions = np.arange(HUD_TILES)
    value = values[np.maximum(slots, 0)]
    keyed = np.where(slots == ROTATION_SLOT, HUD_ROTATION_KEY + positions * COIN_COLOURINGS + value,
                     HUD_DIGIT_KEY + value)
    return np.where(slots < 0, positions, np.where(value >= 0, keyed, -1))


def hud_tiles(codes: np.ndarray) -> np.ndarray:
    """``(H, W)`` colour codes -> ``(HUD_TILES, 64)`` the status bar's tiles, row by row."""
    rows, columns = HUD_ROWS // TILE, FRAME_WIDTH // TILE
    return codes[:HUD_ROWS].reshape(rows, TILE, columns, TILE).transpose(0, 2, 1, 3).reshape(HUD_TILES, TILE * TILE)


def _void_rows(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    return array.view(np.dtype((np.void, array.dtype.itemsize * array.shape[1]))).ravel()


def _count_rows(counter: Counter, rows: np.ndarray) -> None:
    """Add each row of ``rows (n, P)`` to ``counter`` keyed by its bytes."""
    if len(rows):
        unique, counts = np.unique(_void_rows(rows), return_counts=True)
        for row, count in zip(unique.tolist(), counts.tolist()):
            counter[bytes(row)] += count


def level_cells(codes: np.ndarray, camera: int, size: int) -> np.ndarray:
    """The whole ``size`` x ``size`` cells of a frame's level (below the status bar) on the level's own grid:
    ``codes (H, W)`` -> ``(cells, size * size)``, row by row."""
    return _grid(codes[HUD_ROWS:], (-int(camera)) % size, size)


def _grid(array: np.ndarray, first_column: int, size: int) -> np.ndarray:
    """``(rows * size, W)`` -> ``(rows * K, size * size)``: the whole size x size cells from ``first_column``."""
    rows, columns = array.shape[0] // size, (array.shape[1] - first_column) // size
    cells = array[:rows * size, first_column:first_column + columns * size]
    return cells.reshape(rows, size, columns, size).transpose(0, 2, 1, 3).reshape(rows * columns, size * size)


def blinking_pixels(codes: np.ndarray, states: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Per level area of one session (its frames' colour codes ``codes (T, H, W)``, :func:`colour_codes`),
    ``(BLOCK_ROWS * 16, level width) bool``: the level pixels that blink with the
    palette rotation, i.e. showed the rotating colour of their frame's step (``ROTATION_COLOURS``) for two or more
    different colours. A static pixel of one of those colours shows it at every step, so it never qualifies."""
    rotating = colour_codes(ROTATION_COLOURS)
    colour_bit = {colour: 1 << i for i, colour in enumerate(sorted(set(rotating.tolist())))}
    seen: dict[str, np.ndarray] = {}
    for frame, state, mask in zip(codes, states, masks):
        phase = rotation_phase(state, mask)
        if phase is None:
            continue
        camera, key = max(0, camera_x(state)), area_key(state)
        body = frame[HUD_ROWS:HUD_ROWS + BLOCK_ROWS * BLOCK]
        shown = (body == rotating[phase]) & ~box_mask(sprite_boxes(state, mask), margin=SPRITE_MARGIN)[
            HUD_ROWS:HUD_ROWS + BLOCK_ROWS * BLOCK]
        bits = seen.get(key, np.zeros((BLOCK_ROWS * BLOCK, 0), np.uint8))
        if bits.shape[1] < camera + FRAME_WIDTH:
            bits = seen[key] = np.pad(bits, ((0, 0), (0, camera + FRAME_WIDTH - bits.shape[1])))
        bits[:, camera:camera + FRAME_WIDTH] |= shown.astype(np.uint8) * np.uint8(colour_bit[int(rotating[phase])])
    return {key: np.isin(bits, list(colour_bit.values()), invert=True) & (bits > 0) for key, bits in seen.items()}


class CodebookCounter:
    """Counts what a :class:`TileCodebook` holds from frames of worlds 1-4: coloured 16x16 blocks and 8x8 tiles
    on the level's grid outside the RAM sprite boxes, the status bar's tiles with the digits the state says
    they show, and the sprites' appearances."""

    def __init__(self):
        self.blocks, self.tiles = Counter(), Counter()
        self.sprites = SpriteAppearances()
        self.firebars = FirebarAppearances()
        self._hud_hashes: list[np.ndarray] = []  # per frame (HUD_TILES,) int64, -1 under a sprite
        self._hud_digits: list[np.ndarray] = []  # per frame (13,)
        self._hud_tiles: dict[int, bytes] = {}
        self._hash = np.random.default_rng(0).integers(1, 2 ** 31, TILE * TILE, dtype=np.int64)

    def add(self, frames: np.ndarray, states: np.ndarray, masks: np.ndarray, previous_states: np.ndarray | None = None,
            previous_masks: np.ndarray | None = None) -> None:
        """Count one session's ``frames (T, H, W, 3) uint8`` with their ``states, masks (T, D)`` and, when given, the
        states of the steps just before them ``previous_states, previous_masks (T, D)`` (a mask of zeros where
        there was none), which say how the sprites moved (:func:`sgaps_env.sprites.with_motion`)."""
        check_training_states(states, "a session given to CodebookCounter")
        session_codes = colour_codes(frames)
        blinking = blinking_pixels(session_codes, states, masks)
        rotating = colour_codes(ROTATION_COLOURS)
        backgrounds = session_backgrounds(session_codes, states, masks)
        blocks, tiles = [], []
        for step, (codes, state, mask) in enumerate(zip(session_codes, states, masks)):
            previous = (None, None) if previous_states is None else (previous_states[step], previous_masks[step])
            self.sprites.add(codes, state, mask, backgrounds, previous)
            self.firebars.add(codes, state, mask, backgrounds)
            boxes = sprite_boxes(state, mask)
            sprites = box_mask(boxes, margin=SPRITE_MARGIN)
            camera = max(0, camera_x(state))
            codes, sprites = _behind_firebars(codes, sprites, boxes, backgrounds.get(area_key(state)), camera_x(state))
            phase = rotation_phase(state, mask)
            if phase is not None and area_key(state) in blinking:
                body = codes[HUD_ROWS:HUD_ROWS + BLOCK_ROWS * BLOCK]
                blinks = blinking[area_key(state)][:, camera:camera + FRAME_WIDTH] & (body == rotating[phase])
                body[blinks] = ROTATING
            for size, found in ((BLOCK, blocks), (TILE, tiles)):
                first = (-camera) % size
                cells = _grid(codes[HUD_ROWS:], first, size)
                found.append(cells[~_grid(sprites[HUD_ROWS:], first, size).any(axis=1)])
            status = hud_tiles(codes)
            hashes = status.astype(np.int64) @ self._hash
            hashes[hud_tiles(sprites).any(axis=1)] = -1
            for code, tile in zip(hashes.tolist(), status):
                if code >= 0 and code not in self._hud_tiles:
                    self._hud_tiles[code] = tile.astype(np.int32).tobytes()
            self._hud_hashes.append(hashes)
            self._hud_digits.append(status_digits(state))
        _count_rows(self.blocks, np.concatenate(blocks))
        _count_rows(self.tiles, np.concatenate(tiles))

    def _digit_slots(self, hashes: np.ndarray, digits: np.ndarray, min_gain: float = 0.5) -> np.ndarray:
        """``(HUD_TILES,) int8``: the digit slot whose value best predicts each status-bar tile (-1: none does)."""
        def entropy(keys: np.ndarray) -> float:
            _, counts = np.unique(keys, return_counts=True)
            share = counts / counts.sum()
            return float(-(share * np.log2(share)).sum())

        slots = np.full(HUD_TILES, -1, np.int8)
        # whether a tile blinks is asked of the rotation step alone: the coin colouring's area type would
        # "predict" every tile (it sets the status bar's background colour), and a tile keyed by it would forget
        # its samples at every rotation step
        predictors = digits.copy()
        predictors[:, ROTATION_SLOT] = np.where(digits[:, ROTATION_SLOT] >= 0, digits[:, ROTATION_SLOT] % ROTATION_PHASES,
                                                -1)
        for tile in range(HUD_TILES):
            use = (digits[:, 0] >= 0) & (digits[:, ROTATION_SLOT] >= 0) & (hashes[:, tile] >= 0)
            if use.sum() < 20:
                continue
            seen = hashes[use, tile]
            base = entropy(seen)
            # H(tile | digit) = H(tile, digit) - H(digit)
            conditional = [entropy(seen * 64 + predictors[use, slot]) - entropy(predictors[use, slot])
                           for slot in range(digits.shape[1])]
            best = int(np.argmin(conditional))
            if base - conditional[best] >= min_gain:
                slots[tile] = best
        # a tile that follows a digit must draw that digit's glyph: the one the timer's tiles draw for it
        # (the timer changes every second, so its glyphs are certain); this drops chance correlations
        timer = [tile for tile in range(HUD_TILES) if 0 <= slots[tile] < 3]
        glyphs = {value: self._glyph(hashes[:, timer], digits[:, slots[timer]] == value) for value in range(10)}
        for tile in np.flatnonzero((slots >= 3) & (slots < ROTATION_SLOT)):
            shown = [value for value in range(10) if (digits[:, slots[tile]] == value).sum() >= 5]
            agree = [self._glyph(hashes[:, [tile]], digits[:, [slots[tile]]] == value) == glyphs[value]
                     for value in shown]
            if not shown or np.mean(agree) < 0.8:
                slots[tile] = -1
        return slots

    def _glyph(self, hashes: np.ndarray, where: np.ndarray) -> bytes | None:
        """The shape most often drawn by status-bar tiles ``hashes (frames, k)`` where ``where (frames, k)``."""
        chosen = hashes[where & (hashes >= 0)]
        if len(chosen) == 0:
            return None
        values, counts = np.unique(chosen, return_counts=True)
        tile = np.frombuffer(self._hud_tiles[int(values[np.argmax(counts)])], np.int32)
        return canonical_shapes(tile[None])[0][0].tobytes()

    def codebook(self, min_count: int = 2) -> TileCodebook:
        """The codebook of everything counted (shapes are the tiles' palette-normalised shapes)."""
        keys = list(self.tiles)
        shapes, valid = canonical_shapes(np.stack([np.frombuffer(key, np.int32) for key in keys]))
        shape_counts = Counter()
        for shape, ok, key in zip(shapes, valid, keys):
            if ok:
                shape_counts[shape.tobytes()] += self.tiles[key]
        hashes, digits = np.stack(self._hud_hashes), np.stack(self._hud_digits)
        slots = self._digit_slots(hashes, digits)
        keys = np.stack([status_keys(slots, values) for values in digits])  # (frames, HUD_TILES)
        seen = (hashes >= 0) & (keys >= 0)
        hud_counts = Counter(zip(keys[seen].tolist(), hashes[seen].tolist()))
        entries = [(key, code, count) for (key, code), count in hud_counts.items() if count >= min_count]
        hud_keys = np.array([key for key, _, _ in entries], np.int32)
        counts = np.array([count for _, _, count in entries], np.float64)
        totals = {key: counts[hud_keys == key].sum() for key in set(hud_keys.tolist())}
        hud_log_prior = np.log(counts / np.array([totals[key] for key in hud_keys.tolist()])).astype(np.float32)
        hud = (np.stack([np.frombuffer(self._hud_tiles[code], np.int32) for _, code, _ in entries]), hud_keys,
               hud_log_prior, slots)
        return TileCodebook.from_counts(self.blocks, self.tiles, shape_counts, min_count, hud=hud,
                                        sprites=self.sprites.appearances(), firebars=self.firebars.appearances())


def session_backgrounds(codes: np.ndarray, states: np.ndarray, masks: np.ndarray,
                        max_colours: int = 32) -> dict[str, np.ndarray]:
    """Per level area of one session, ``(H - HUD_ROWS, level width) int32``: the colour code each level pixel showed
    most often outside the RAM sprite boxes in ``codes (T, H, W)`` (-1 where it never showed outside them; fire bars'
    discs are not left out: :func:`sgaps_env.sprites.lingering_boxes`)."""
    votes: dict[str, np.ndarray] = {}
    palettes: dict[str, dict[int, int]] = {}
    for frame, state, mask in zip(codes, states, masks):
        camera, key = camera_x(state), area_key(state)
        if camera < 0:
            continue
        body = frame[HUD_ROWS:]
        palette = palettes.setdefault(key, {})
        shown, inverse = np.unique(body, return_inverse=True)
        for code in shown.tolist():
            if code not in palette and len(palette) < max_colours:
                palette[code] = len(palette)
        ids = np.array([palette.get(code, -1) for code in shown.tolist()], np.int64)[inverse.reshape(body.shape)]
        counts = votes.get(key)
        if counts is None or counts.shape[1] < camera + FRAME_WIDTH:
            grown = np.zeros((body.shape[0], camera + FRAME_WIDTH + 4 * FRAME_WIDTH, max_colours), np.uint16)
            if counts is not None:
                grown[:, :counts.shape[1]] = counts
            counts = votes[key] = grown
        rows, cols = np.nonzero((ids >= 0) & ~box_mask(lingering_boxes(sprite_boxes(state, mask)),
                                                       margin=SPRITE_MARGIN)[HUD_ROWS:])
        counts[rows, cols + camera, ids[rows, cols]] += 1
    backgrounds = {}
    for key, counts in votes.items():
        colours = np.zeros(max_colours, np.int32)
        for code, index in palettes[key].items():
            colours[index] = code
        backgrounds[key] = np.where(counts.any(axis=2), colours[counts.argmax(axis=2)], -1)
    return backgrounds


def _behind_firebars(codes: np.ndarray, sprites: np.ndarray, boxes: list[SpriteBox], background: np.ndarray | None,
                     camera: int) -> tuple[np.ndarray, np.ndarray]:
    """A frame's ``codes (H, W)`` and ``sprites (H, W) bool`` (where it is not background) with the fire bars' squares
    shown as the session's background (:func:`session_backgrounds`) wherever that is known and no other sprite is:
    the blocks a bar spins over, its pivot with the ball that never leaves it, are counted as the frames would show
    them without its moving balls."""
    squares = box_mask([box for box in boxes if box.kind == "firebar"])
    if background is None or camera < 0 or not squares.any():
        return codes, sprites
    behind = np.full((FRAME_HEIGHT - HUD_ROWS, FRAME_WIDTH), -1, np.int32)
    seen = background[:, camera:camera + FRAME_WIDTH]
    behind[:, :seen.shape[1]] = seen
    shown = squares[HUD_ROWS:] & (behind >= 0) & ~box_mask(lingering_boxes(boxes), margin=SPRITE_MARGIN)[HUD_ROWS:]
    codes = codes.copy()
    codes[HUD_ROWS:][shown] = behind[shown]
    sprites = sprites.copy()
    sprites[HUD_ROWS:][shown] = False
    return codes, sprites


def _background_behind(background: np.ndarray, camera: int, top: int, left: int, height: int,
                       width: int) -> np.ndarray | None:
    """The session background (:func:`session_backgrounds`, one level area's) behind the screen window at ``(top,
    left)`` of ``height x width``, or None when the window reaches past the level's part of the screen or over
    background never seen: a window whose every pixel can be told from the background."""
    if top < HUD_ROWS or left < 0 or top + height > FRAME_HEIGHT or left + width > FRAME_WIDTH:
        return None
    behind = background[top - HUD_ROWS:top - HUD_ROWS + height, camera + left:camera + left + width]
    return behind if behind.shape == (height, width) and (behind >= 0).all() else None


class SpriteAppearances:
    """Counts, per sprite pose, the exact appearances frames of worlds 1-4 show: the template window's pixels
    inside the object's RAM box that differ from the session's background there (:func:`session_backgrounds`),
    the rest -1. A window reaching past the screen or over background never seen is not counted."""

    def __init__(self):
        self.counts: dict[int, Counter] = {}
        self.context_counts: dict[int, Counter] = {}  # per pose, (appearance, appearance context) -> sightings

    def add(self, codes: np.ndarray, state: np.ndarray, mask: np.ndarray, backgrounds: dict[str, np.ndarray],
            previous: tuple[np.ndarray | None, np.ndarray | None] = (None, None)) -> None:
        """Count the appearances of the sprites of one frame's ``codes (H, W)``; ``previous`` is the state and mask
        of the step before (their motion, :func:`sgaps_env.sprites.with_motion`), or Nones."""
        background = backgrounds.get(area_key(state))
        camera = camera_x(state)
        if background is None or camera < 0:
            return
        height, width = TEMPLATE_SIZE
        rows, cols = np.mgrid[0:height, 0:width]
        boxes = with_motion(sprite_boxes(state, mask), state, *previous)
        for box, (pose, top, left) in zip(boxes, template_windows(boxes)):
            behind = _background_behind(background, camera, top, left, height, width)
            if box.kind == "firebar" or behind is None:  # fire bars: FirebarAppearances
                continue
            window = codes[top:top + height, left:left + width]
            inside = (rows + top >= box.y0) & (rows + top < box.y1) & (cols + left >= box.x0) & (cols + left < box.x1)
            appearance = np.where(inside & (window != behind), window, -1).astype(np.int32).tobytes()
            self.counts.setdefault(pose, Counter())[appearance] += 1
            self.context_counts.setdefault(pose, Counter())[appearance, appearance_context(box, state, mask)] += 1

    def appearances(self, per_pose: int = SPRITE_APPEARANCES, min_sightings: int = SPRITE_MIN_SIGHTINGS,
                    context_smoothing: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(appearances (A, 40, 24) int32, poses (A,) int32, log_prior (A,) float32, context_log_prior
        (A, APPEARANCE_CONTEXTS) float32)``: each pose's ``per_pose`` most frequent appearances seen at least
        ``min_sightings`` times, by pose; log_prior is the log of an appearance's share of the kept sightings of its
        pose, context_log_prior the same in each :func:`sgaps_env.sprites.appearance_context`, with
        ``context_smoothing`` pseudo-sightings spread by log_prior."""
        found, poses, priors, context_priors = [], [], [], []
        for pose in sorted(self.counts):
            kept = [(key, count) for key, count in self.counts[pose].most_common(per_pose) if count >= min_sightings]
            if not kept:
                continue
            counts = np.array([count for _, count in kept], np.float64)
            share = counts / counts.sum()
            by_context = np.array([[self.context_counts[pose][key, context] for context in range(APPEARANCE_CONTEXTS)]
                                   for key, _ in kept], np.float64)  # (K, contexts)
            smoothed = by_context + context_smoothing * share[:, None]
            found += [np.frombuffer(key, np.int32).reshape(TEMPLATE_SIZE) for key, _ in kept]
            poses += [pose] * len(kept)
            priors.append(np.log(share))
            context_priors.append(np.log(smoothed / smoothed.sum(axis=0, keepdims=True)))
        if not found:
            return (np.zeros((0, *TEMPLATE_SIZE), np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32),
                    np.zeros((0, APPEARANCE_CONTEXTS), np.float32))
        return (np.stack(found), np.array(poses, np.int32), np.concatenate(priors).astype(np.float32),
                np.concatenate(context_priors).astype(np.float32))


#: :func:`firebar_key` s: per area type, short and long bars, each spin step.
FIREBAR_KEYS = AREA_TYPES * 2 * FIREBAR_SPINS
#: Range of a fire-bar pixel's row or column offset in the reconstructor's sorted index of appearance pixels.
_FIREBAR_SPAN = 2 * max(FRAME_HEIGHT, FRAME_WIDTH)


def firebar_key(state: np.ndarray, box: SpriteBox, spin: int | None = None) -> int:
    """The key of a fire bar's appearances: area type (it sets the palette), short or long bar, and spin step
    (``spin``, else the box's). Where the balls are is a function of the spin step and the bar's length alone, so a
    fast bar or one turning the other way (types 0x1C, 0x1E: worlds 5-8 have them, worlds 1-4 do not) shows the
    appearances counted on the others."""
    long = (box.pose - PLAYER_POSES) % ENEMY_TYPES == LONG_FIREBAR
    return (area_type(state) * 2 + int(long)) * FIREBAR_SPINS + (box.spin if spin is None else spin)


def firebar_window(box: SpriteBox) -> tuple[int, int, int]:
    """``(centre row, centre column, reach)`` of a fire bar's window: its pivot's centre, and how far its balls go."""
    return box.y + 4, box.x + 4, (box.x1 - box.x0) // 2


class FirebarAppearances:
    """Counts, per fire bar's :func:`firebar_key` (its spin step from the state), the exact appearances frames of
    worlds 1-4 show in the square its balls can reach: the pixels there that differ from the session's background
    (:func:`session_backgrounds`), except those in other sprites' boxes. A fire bar's balls sweep a disc far larger
    than the sprite template window, and where they are is a function of the spin step, so its appearances are
    kept by spin step, each as its opaque pixels, with the whole 8x8 of the ball at the pivot (it never moves, so the
    background shows it too, :data:`sgaps_env.sprites.FIREBAR_PIVOT_BALL`). A square reaching past the level's part
    of the screen, or over background never seen, is not counted."""

    def __init__(self):
        self.counts: dict[int, Counter] = {}

    def add(self, codes: np.ndarray, state: np.ndarray, mask: np.ndarray, backgrounds: dict[str, np.ndarray]) -> None:
        """Count the fire bars of one frame's ``codes (H, W)``."""
        background = backgrounds.get(area_key(state))
        camera = camera_x(state)
        if background is None or camera < 0:
            return
        boxes = sprite_boxes(state, mask)
        for box in boxes:
            if box.kind != "firebar" or box.spin < 0:
                continue
            row, col, reach = firebar_window(box)
            top, left, size = row - reach, col - reach, 2 * reach
            behind = _background_behind(background, camera, top, left, size, size)
            if behind is None:
                continue
            window = codes[top:top + size, left:left + size]
            others = box_mask([other for other in boxes if other is not box], margin=SPRITE_MARGIN)
            # the pivot's ball never moves, so the background shows it too: all its pixels are the bar's
            ball_top, ball_left, ball_height, ball_width = FIREBAR_PIVOT_BALL
            pivot = np.zeros((size, size), bool)
            pivot[box.y + ball_top - top:box.y + ball_top + ball_height - top,
                  box.x + ball_left - left:box.x + ball_left + ball_width - left] = True
            own = ((window != behind) | pivot) & ~others[top:top + size, left:left + size]
            dy, dx = np.nonzero(own)
            pixels = np.stack([dy - reach, dx - reach, window[dy, dx]], axis=1).astype(np.int32)
            self.counts.setdefault(firebar_key(state, box), Counter())[pixels.tobytes()] += 1

    def appearances(self, per_key: int = SPRITE_APPEARANCES, min_sightings: int = SPRITE_MIN_SIGHTINGS
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(keys (F,) int32, log_prior (F,) float32, pixels (P, 4) int32)``: each key's ``per_key`` most frequent
        appearances seen at least ``min_sightings`` times, by key, as :attr:`TileCodebook.firebar_keys` holds them."""
        keys, priors, pixels = [], [], []
        for key in sorted(self.counts):
            kept = [(found, count) for found, count in self.counts[key].most_common(per_key) if count >= min_sightings]
            if not kept:
                continue
            counts = np.array([count for _, count in kept], np.float64)
            for found, _ in kept:
                opaque = np.frombuffer(found, np.int32).reshape(-1, 3)
                pixels.append(np.concatenate([np.full((len(opaque), 1), len(keys), np.int32), opaque], axis=1))
                keys.append(key)
            priors.append(np.log(counts / counts.sum()))
        if not keys:
            return np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros((0, 4), np.int32)
        return (np.array(keys, np.int32), np.concatenate(priors).astype(np.float32),
                np.concatenate(pixels).astype(np.int32))


def luma_codes(codes: np.ndarray) -> np.ndarray:
    """24-bit RGB colour codes -> the 8-bit codes of their BT.601 luma, as grey sessions see them."""
    codes = np.asarray(codes)
    rgb = code_values(np.where(codes == ROTATING, 0, codes), 3) * 255.0
    return np.where(codes == ROTATING, ROTATING, colour_codes(frame_values(np.round(rgb).astype(np.uint8), "gray")))


def luma_codebook(codebook: TileCodebook) -> TileCodebook:
    """The codebook as a grey session sees it (every colour code replaced by its luma's)."""
    appearances = codebook.sprite_appearances
    if appearances is not None:
        appearances = np.where(appearances >= 0, luma_codes(np.maximum(appearances, 0)), -1).astype(np.int32)
    firebar_pixels = codebook.firebar_pixels
    if firebar_pixels is not None and len(firebar_pixels):
        firebar_pixels = firebar_pixels.copy()
        firebar_pixels[:, 3] = luma_codes(firebar_pixels[:, 3])
    return replace(codebook, sprite_appearances=appearances, firebar_pixels=firebar_pixels,
                   **{name: luma_codes(getattr(codebook, name)) for name in ("blocks", "tiles", "hud_tiles")})


def consistent_shapes(shapes: np.ndarray, positions: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """``(K,)`` bool: which of ``shapes (K, 64)`` explain pixels ``positions (m,)`` having ``colours (m,)``.

    A shape explains them when pixels of one colour fall on one rank and pixels of different colours on
    different ranks (the palette maps ranks to colours one to one)."""
    distinct, first, inverse = np.unique(colours, return_index=True, return_inverse=True)
    if len(distinct) > TILE_COLOURS:
        return np.zeros(len(shapes), bool)
    ranks = shapes[:, positions]  # (K, m)
    anchor_ranks = ranks[:, first]  # (K, u): the rank of each colour's first pixel
    ok = (ranks == anchor_ranks[:, inverse]).all(axis=1)
    for i in range(len(distinct)):
        for j in range(i + 1, len(distinct)):
            ok &= anchor_ranks[:, i] != anchor_ranks[:, j]
    return ok


def matching(options: np.ndarray, positions: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``(K,)`` bool: which ``options (K, P)`` can have shown samples ``codes (m,)`` at ``positions (m,)``
    (:func:`agreeing`)."""
    return agreeing(options[:, positions], codes).all(axis=1)


#: The codebook's arrays: name -> (dtype, shape with None for any length). Codes are 24-bit RGB colour codes.
_CODEBOOK_ARRAYS: dict[str, tuple[np.dtype, tuple]] = {
    "blocks": (np.int32, (None, BLOCK_PIXELS)), "block_log_prior": (np.float32, (None,)),
    "tiles": (np.int32, (None, TILE * TILE)), "tile_log_prior": (np.float32, (None,)),
    "shapes": (np.uint8, (None, TILE * TILE)), "shape_log_prior": (np.float32, (None,)),
    "hud_tiles": (np.int32, (None, TILE * TILE)), "hud_keys": (np.int32, (None,)),
    "hud_log_prior": (np.float32, (None,)), "hud_digit_slot": (np.int8, (HUD_TILES,)),
    "sprite_appearances": (np.int32, (None, *TEMPLATE_SIZE)), "sprite_poses": (np.int32, (None,)),
    "sprite_log_prior": (np.float32, (None,)), "sprite_context_log_prior": (np.float32, (None, APPEARANCE_CONTEXTS)),
    "firebar_keys": (np.int32, (None,)),
    "firebar_log_prior": (np.float32, (None,)), "firebar_pixels": (np.int32, (None, 4)),
}
#: Largest codebook file read (bytes): the shipped one is a few MB.
MAX_CODEBOOK_BYTES = 64 * 2 ** 20
#: The shipped codebook, counted on worlds 1-4 (``experiments/build_codebook.py``).
DEFAULT_CODEBOOK = Path(__file__).resolve().parent / "checkpoints" / "tiles-smb1-worlds1-4.npz"
#: The shipped level atlas of worlds 1-4 (``experiments/build_atlas.py``), optional.
DEFAULT_ATLAS = Path(__file__).resolve().parent / "checkpoints" / "atlas-smb1-worlds1-4.npz"


def save_codebook(path: str | Path, codebook: TileCodebook, metadata: dict) -> None:
    """Write ``codebook`` and JSON-able ``metadata`` (the split, the command, the sessions) as a compressed npz."""
    arrays = {name: getattr(codebook, name) for name in _CODEBOOK_ARRAYS}
    missing = [name for name, array in arrays.items() if array is None]
    if missing:
        raise ValueError(f"the codebook lacks {missing}: build it with CodebookCounter.codebook()")
    write_npz(path, arrays, metadata)


def load_codebook(path: str | Path = DEFAULT_CODEBOOK) -> tuple[TileCodebook, dict]:
    """Read a codebook written by :func:`save_codebook`, checking every array's dtype, shape and range first."""
    path = Path(path)
    arrays, metadata = read_npz(path, "tile codebook", "python experiments/build_codebook.py", MAX_CODEBOOK_BYTES,
                                8 * MAX_CODEBOOK_BYTES)
    if set(arrays) != set(_CODEBOOK_ARRAYS):
        raise ValueError(f"{path} holds {sorted(arrays)}, expected {sorted(_CODEBOOK_ARRAYS)}: rebuild it with "
                         "`python experiments/build_codebook.py`")
    for name, (dtype, shape) in _CODEBOOK_ARRAYS.items():
        array = arrays[name]
        if array.dtype != dtype or array.ndim != len(shape) \
                or any(size is not None and size != have for size, have in zip(shape, array.shape)):
            raise ValueError(f"{path}: {name} is {array.dtype} {array.shape}, expected {np.dtype(dtype)} "
                             f"{tuple('any' if size is None else size for size in shape)}")
    for units, prior in (("blocks", "block_log_prior"), ("tiles", "tile_log_prior"), ("shapes", "shape_log_prior"),
                         ("hud_tiles", "hud_log_prior"), ("hud_tiles", "hud_keys")):
        if len(arrays[units]) != len(arrays[prior]) or len(arrays[units]) == 0:
            raise ValueError(f"{path}: {units} and {prior} differ in length (or are empty)")
    if not len(arrays["sprite_appearances"]) == len(arrays["sprite_poses"]) == len(arrays["sprite_log_prior"]) \
            == len(arrays["sprite_context_log_prior"]):
        raise ValueError(f"{path}: sprite_appearances, sprite_poses, sprite_log_prior and sprite_context_log_prior "
                         "differ in length")
    poses = arrays["sprite_poses"]
    if poses.size and (poses.min() < 0 or poses.max() >= POSE_COUNT or (np.diff(poses) < 0).any()):
        raise ValueError(f"{path}: sprite_poses must be sorted sprite poses in 0..{POSE_COUNT - 1}")
    keys, firebar_pixels = arrays["firebar_keys"], arrays["firebar_pixels"]
    if len(keys) != len(arrays["firebar_log_prior"]):
        raise ValueError(f"{path}: firebar_keys and firebar_log_prior differ in length")
    if keys.size and (keys.min() < 0 or keys.max() >= FIREBAR_KEYS or (np.diff(keys) < 0).any()):
        raise ValueError(f"{path}: firebar_keys must be sorted fire-bar keys in 0..{FIREBAR_KEYS - 1}")
    if firebar_pixels.size and (firebar_pixels[:, 0].min() < 0 or firebar_pixels[:, 0].max() >= len(keys)
                                or (np.diff(firebar_pixels[:, 0]) < 0).any()
                                or np.abs(firebar_pixels[:, 1:3]).max() > max(FRAME_HEIGHT, FRAME_WIDTH)
                                or firebar_pixels[:, 3].min() < 0 or firebar_pixels[:, 3].max() >= 2 ** 24):
        raise ValueError(f"{path}: firebar_pixels must be rows (appearance, dy, dx, colour code), by appearance, "
                         "with offsets inside a frame and 24-bit colour codes")
    for name in ("blocks", "tiles", "hud_tiles", "sprite_appearances"):
        codes = arrays[name]
        colours = codes[codes != ROTATING] if name in ("blocks", "tiles") else codes
        colours = colours[colours != -1] if name == "sprite_appearances" else colours
        if colours.size and (colours.min() < 0 or colours.max() >= 2 ** 24):
            raise ValueError(f"{path}: {name} holds values that are not 24-bit colour codes")
    if arrays["shapes"].max() >= TILE_COLOURS:
        raise ValueError(f"{path}: shapes hold ranks beyond {TILE_COLOURS - 1}")
    slots = arrays["hud_digit_slot"]
    if slots.min() < -1 or slots.max() > ROTATION_SLOT:
        raise ValueError(f"{path}: hud_digit_slot holds slots outside -1..{ROTATION_SLOT}")
    keys = arrays["hud_keys"]
    if keys.min() < 0 or keys.max() >= HUD_ROTATION_KEY + HUD_TILES * COIN_COLOURINGS:
        raise ValueError(f"{path}: hud_keys outside the status bar's keys")
    for name in ("block_log_prior", "tile_log_prior", "shape_log_prior", "hud_log_prior", "sprite_log_prior",
                 "sprite_context_log_prior", "firebar_log_prior"):
        if arrays[name].size and not (np.isfinite(arrays[name]).all() and arrays[name].max() <= 0):
            raise ValueError(f"{path}: {name} must hold finite log-probabilities")
    return TileCodebook(**arrays), metadata


class _Dictionary:
    """A growing set of whole coloured units (blocks or tiles) with counts: a session's own vocabulary."""

    def __init__(self, size: int):
        self.keys: dict[bytes, int] = {}
        self.items = np.zeros((0, size), np.int32)
        self.counts = np.zeros(0, np.float64)

    def add(self, item: np.ndarray) -> None:
        index = self.keys.get(item.tobytes())
        if index is None:
            index = self.keys[item.tobytes()] = len(self.counts)
            self.items = np.concatenate([self.items, item[None].astype(np.int32)])
            self.counts = np.append(self.counts, 0.0)
        self.counts[index] += 1.0


class _BlockGrid:
    """Memory of one canvas (a level area's page, or the status bar), per 16x16 block: the colour code of
    each sampled pixel (-1: never sampled), the step it was sampled at, the candidate blocks, and the decode
    (``decoded``: rendered pixels, NaN where nothing is known; ``entropy`` of the block's posterior)."""

    def __init__(self, rows: int, columns: int, channels: int, top_k: int):
        self.known = np.full((rows, columns, BLOCK_PIXELS), -1, np.int32)
        self.when = np.zeros((rows, columns, BLOCK_PIXELS), np.int32)
        self.decoded = np.full((rows, columns, BLOCK_PIXELS, channels), np.nan, np.float32)
        self.entropy = np.zeros((rows, columns), np.float32)
        self.certain = np.zeros((rows, columns), bool)
        # no codebook block matches the samples (decoded tile by tile): more samples cannot change that
        self.unmatched = np.zeros((rows, columns), bool)
        self.best_index = np.full((rows, columns), -1, np.int64)  # the codebook block drawn first (-1: none)
        self.tile_unmatched = np.zeros((rows, columns, 4), bool)  # the same for its tiles and the codebook's tiles
        # per (row, column, tile) of a block decoded tile by tile: the codebook tiles and the shapes that still fit
        self.tile_candidates: dict[tuple[int, int, int], np.ndarray] = {}
        self.shape_fits: dict[tuple[int, int, int], np.ndarray] = {}
        # what each block's decode adds to the session's block counts: codebook indices and posterior
        self.given = np.full((rows, columns, 2, top_k), -1, np.int32)
        self.given_weight = np.zeros((rows, columns, 2, top_k), np.float64)
        self.candidates: dict[tuple[int, int], np.ndarray] = {}
        self.misses: dict[tuple[int, int], np.ndarray] = {}  # per candidate, the samples it does not explain


class TileReconstructor:
    """Reconstructs frames of any level from its samples, the state and a tile codebook (see the module).

    | argument | default | meaning |
    |---|---|---|
    | ``codebook`` | | a :class:`TileCodebook` (:func:`load_codebook`) |
    | ``atlas`` | None | a level atlas (``models.memory.StagePriors``): pages of the levels it knows start from it |
    | ``max_pages`` | 256 | pages (16 block columns) of level memory kept, least recently used dropped |
    | ``session_weight`` | 0.8 | weight of the session's own block usage in a candidate's prior (the rest: worlds 1-4) |
    | ``top_k`` | 1 | a block is drawn as the posterior mean of its ``top_k`` most probable candidates |
    | ``settle_samples`` | 24 | samples a tile needs before its decode joins the session's own tiles |
    | ``use_blocks`` | True | False decodes tile by tile only (the ablation) |
    | ``pair_weight`` | 100 | how much a candidate gains from having followed, in this session, the block named above (or left of) this one: its prior times 1 + ``pair_weight`` x its share of those followers. 0: off |
    | ``stray_probability`` | 0 | chance that a sample is a stray pixel no block explains (an object without a RAM box); above 0, candidates may miss one sample at that cost. 0: exact matches, and one stray pixel is forgotten only when no block matches |
    | ``sprite_miss_probability`` | 0.01 | chance that a sample in a sprite's window disagrees with its true appearance (another object over it): each disagreeing sample multiplies an appearance's prior by it. 1: the samples are ignored and every sprite is drawn as its pose's most frequent appearance |
    """

    name = "tiles"
    stateful = True  # the memory must see every frame of the session

    def __init__(self, codebook: TileCodebook, atlas: StagePriors | None = None, max_pages: int = 256,
                 session_weight: float = 0.8, top_k: int = 1, settle_samples: int = 24, use_blocks: bool = True,
                 stray_probability: float = 0.0, pair_weight: float = 100.0,
                 sprite_miss_probability: float = SPRITE_MISS_PROBABILITY):
        if not 0.0 <= session_weight <= 1.0 or top_k < 1 or max_pages < 2 or settle_samples < 1 \
                or not 0.0 <= stray_probability < 1.0 or not 0.0 <= pair_weight < float("inf") \
                or not 0.0 < sprite_miss_probability <= 1.0:
            raise ValueError(f"TileReconstructor needs 0 <= session_weight <= 1, top_k >= 1, max_pages >= 2, "
                             f"settle_samples >= 1, 0 <= stray_probability < 1, a finite pair_weight >= 0 and "
                             f"0 < sprite_miss_probability <= 1; got {session_weight}, {top_k}, {max_pages}, "
                             f"{settle_samples}, {stray_probability}, {pair_weight}, {sprite_miss_probability}")
        self.codebook = codebook
        self.atlas = atlas
        self.use_blocks = use_blocks
        self.max_pages = max_pages
        self.session_weight, self.top_k, self.settle_samples = session_weight, top_k, settle_samples
        self.stray_probability = stray_probability
        self.pair_weight = pair_weight
        self.sprite_miss_probability = sprite_miss_probability
        self._prepared_by_channels: dict[int, dict] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the session."""
        self.channels: int | None = None
        self._book = self.codebook  # in the colours of the session (luma codes for grey sessions)
        self._block_prior = np.exp(self.codebook.block_log_prior.astype(np.float64))
        self._tile_prior = np.exp(self.codebook.tile_log_prior.astype(np.float64))
        self._hud_known = np.full((HUD_TILES, TILE * TILE), -1, np.int32)
        self._hud_key = np.full(HUD_TILES, -2, np.int64)
        self._hud_decoded: np.ndarray | None = None
        self._hud_best = np.full((HUD_TILES, TILE * TILE), -1, np.int32)  # the most probable tile's codes
        self._hud_certain = np.zeros(HUD_TILES, bool)
        self._hud_colours: dict[int, int] = {}  # status-bar samples per colour code, in this level area
        self._hud_area: str | None = None  # the level area the status bar's colours (and atlas start) belong to
        self._pages: OrderedDict[tuple[str, int], _BlockGrid] = OrderedDict()
        self._step = 0
        # the session's own statistics: how much of each codebook block and tile its decodes hold (each
        # decode's posterior, replaced when the block is decoded again), and tiles no codebook entry explains
        self._block_usage = np.zeros(len(self._book.blocks), np.float64)
        self._tile_usage = np.zeros(len(self._book.tiles), np.float64)
        self._session_tiles = _Dictionary(TILE * TILE)
        # (side, codebook block named above or left) -> {codebook block named below or right of it: times}
        self._pairs: dict[tuple[int, int], dict[int, int]] = {}
        self._previous: tuple[np.ndarray | None, np.ndarray | None] = (None, None)  # the last step's state and mask
        # how far the session's levels are from the codebook: guessed blocks (named with certainty on fewer than
        # CONFIRMING_SAMPLES samples) that later samples checked, and those whose new samples contradicted them
        self._guesses_checked = 0
        self._guesses_failed = 0

    # --- memory ------------------------------------------------------------------------------------

    def _values(self, codes: np.ndarray) -> np.ndarray:
        """``(...)`` codes -> ``(..., C + 1)`` float32: the colour, and 1 in the last channel where the pixel blinks
        with the palette rotation (:data:`ROTATING`; drawn in the frame's rotating colour)."""
        codes = np.asarray(codes)
        blinks = codes == ROTATING
        colours = code_values(np.where(blinks, 0, codes), self.channels)
        return np.concatenate([colours, blinks[..., None].astype(np.float32)], axis=-1)

    def _page(self, key: str, page: int) -> _BlockGrid:
        grid = self._pages.get((key, page))
        if grid is None:
            while len(self._pages) >= self.max_pages:
                self._pages.popitem(last=False)
            grid = self._pages[(key, page)] = _BlockGrid(BLOCK_ROWS, PAGE_BLOCKS, self.channels + 1, self.top_k)
            self._from_atlas(grid, key, page)
        else:
            self._pages.move_to_end((key, page))
        return grid

    def _from_atlas(self, grid: _BlockGrid, key: str, page: int) -> None:
        """Start a new page of a level the atlas knows from the atlas's background (its pixels where the training
        frames agreed), as if sampled before the session began."""
        prior = self.atlas.get(key) if self.atlas is not None else None
        start = page * PAGE_BLOCKS * BLOCK
        if prior is None or start >= prior.width:
            return
        span = min(PAGE_BLOCKS * BLOCK, prior.width - start)
        palette = self._atlas_palette(prior)
        codes = np.full((BLOCK_ROWS * BLOCK, PAGE_BLOCKS * BLOCK), -1, np.int32)
        trusted = prior.confidence[:, start:start + span] >= ATLAS_CONFIDENCE
        codes[:, :span] = np.where(trusted, palette[prior.index[:, start:start + span]], -1)
        grid.known[:] = codes.reshape(BLOCK_ROWS, BLOCK, PAGE_BLOCKS, BLOCK).transpose(0, 2, 1, 3).reshape(
            BLOCK_ROWS, PAGE_BLOCKS, BLOCK_PIXELS)
        grid.when[:] = -1
        nothing = np.zeros(0, np.int64)
        for row, column in np.argwhere((grid.known >= 0).any(axis=2)):
            self._update_block(grid, int(row), int(column), nothing, nothing.astype(np.int32))

    def _atlas_palette(self, prior) -> np.ndarray:
        """``(P,)`` the colour codes of an atlas level's palette, in this session's colours (luma for grey)."""
        palette = colour_codes(prior.palette)
        return luma_codes(palette) if self.channels == 1 else palette

    def _learn(self, key: str, rows: np.ndarray, cols: np.ndarray, codes: np.ndarray) -> None:
        """Write samples of level area ``key`` into their blocks and re-decode the blocks they touched.

        ``rows, cols`` are level pixel rows (below the status bar) and level x."""
        block_rows, block_cols = rows // BLOCK, cols // BLOCK
        positions = (rows % BLOCK) * BLOCK + cols % BLOCK
        pages = block_cols // PAGE_BLOCKS
        for page in np.unique(pages).tolist():
            grid = self._page(key, page)
            mine = pages == page
            r, c, p, k = block_rows[mine], block_cols[mine] % PAGE_BLOCKS, positions[mine], codes[mine]
            # a block decoded with certainty needs no new decode while its samples agree with it: write those
            # at once, and decode only the blocks with a sample that surprised them
            surprised = np.zeros(grid.certain.shape, bool)
            surprised[r, c] = True
            agrees = grid.certain[r, c] & agreeing(self._book.blocks[grid.best_index[r, c], p], k)
            surprised[r[agrees], c[agrees]] = False
            surprised[r[~agrees], c[~agrees]] = True
            self._check_guesses(grid, r, c, agrees)
            quiet = ~surprised[r, c]
            grid.known[r[quiet], c[quiet], p[quiet]] = k[quiet]
            grid.when[r[quiet], c[quiet], p[quiet]] = self._step
            loud = np.flatnonzero(~quiet)
            keys = c[loud] * BLOCK_ROWS + r[loud]
            order = loud[np.argsort(keys, kind="stable")]
            starts = np.flatnonzero(np.r_[True, (c[order] * BLOCK_ROWS + r[order])[1:]
                                          != (c[order] * BLOCK_ROWS + r[order])[:-1]]) if len(order) else []
            for members in np.split(order, starts[1:]) if len(order) else []:
                self._update_block(grid, int(r[members[0]]), int(c[members[0]]), p[members], k[members])

    def _check_guesses(self, grid: _BlockGrid, r: np.ndarray, c: np.ndarray, agrees: np.ndarray) -> None:
        """Count the guessed blocks this step's samples ``(r, c)`` land on (named with certainty on fewer than
        :data:`CONFIRMING_SAMPLES` samples), and those a sample contradicts (``~agrees``): what
        :meth:`novelty` reports."""
        hits = np.flatnonzero(grid.certain[r, c])
        if not len(hits):
            return
        guessed = (grid.known[r[hits], c[hits]] >= 0).sum(axis=1) < CONFIRMING_SAMPLES
        blocks = r[hits] * PAGE_BLOCKS + c[hits]
        self._guesses_checked += len(np.unique(blocks[guessed]))
        self._guesses_failed += len(np.unique(blocks[guessed & ~agrees[hits]]))

    def novelty(self) -> tuple[float, float]:
        """How unfamiliar the session's levels are to the codebook, from what it sampled so far (both in [0, 1]):

        - the share of checked guesses that failed: of the blocks named with certainty on few samples that later
          samples landed on, those the samples contradicted (with a prior of 1 failure in 20 checks, so that a
          session's first checks do not swing it).
        - the share of the sampled level blocks in memory that no codebook block matches (decoded tile by tile).

        After 100 frames of the uncertainty policy at 500 px (8 sessions each): 0.047 and 0.026 on worlds 5-8
        with the shipped codebook of worlds 1-4, 0.028 and 0.000 on worlds 1-4 with it, 0.142 and 0.158 on
        worlds 2-4 with a codebook of world 1 only.
        """
        failed = (self._guesses_failed + 1.0) / (self._guesses_checked + 20.0)
        sampled = unmatched = 0
        for grid in self._pages.values():
            seen = (grid.known >= 0).any(axis=2)
            sampled += int(seen.sum())
            unmatched += int((grid.unmatched & seen).sum())
        return float(failed), unmatched / sampled if sampled else 0.0

    def _update_block(self, grid: _BlockGrid, row: int, column: int, positions: np.ndarray,
                      codes: np.ndarray) -> None:
        known, when = grid.known[row, column], grid.when[row, column]
        if (known[positions] < 0).all():  # samples of pixels not sampled before (the usual case): nothing to merge
            merged, changed = codes, False
        else:
            merged, clash = merge_samples(known[positions], codes)
            changed = bool(clash.any())
        if changed:  # the block changed (a brick broke, a coin was taken): keep what was seen since
            known[when < self._step] = -1
            grid.tile_unmatched[row, column] = False
            for tile in range(4):
                grid.tile_candidates.pop((row, column, tile), None)
                grid.shape_fits.pop((row, column, tile), None)
            merged = codes
        known[positions], when[positions] = merged, self._step
        codes = merged
        blocks = self._book.blocks
        candidates = grid.candidates.get((row, column))
        misses = grid.misses.get((row, column))
        agree = None  # (codebook blocks, sampled pixels): which blocks agree with each sample, when computed
        tolerant = self.stray_probability > 0
        was_unmatched = bool(grid.unmatched[row, column]) and not changed
        if not self.use_blocks or was_unmatched:  # the ablation (tile by tile only), or no block matched before
            candidates = misses = np.zeros(0, np.int64)
        elif (candidates is None or changed) and not tolerant and ((known >= 0) & (known < ROTATING)).all():
            # every pixel known in plain colours (an atlas page): only the block equal to it matches
            found = self._block_index.get(known.astype(np.int32).tobytes())
            candidates = np.array([] if found is None else [found], np.int64)
            misses = np.zeros(len(candidates), np.int64)
        elif candidates is None or changed:
            sampled = np.flatnonzero(known >= 0)
            agree = agreeing(blocks[:, sampled], known[sampled])
            misses = len(sampled) - agree.sum(axis=1)
            candidates = np.flatnonzero(misses <= (1 if tolerant else 0))
            misses = misses[candidates]
        else:  # the older samples already agree with every candidate (but for its counted misses)
            if grid.certain[row, column] and agreeing(blocks[candidates[0], positions], codes).all():
                return  # one block holds nearly all the posterior and the new samples confirm it
            if grid.certain[row, column]:  # samples written while it was certain have not filtered the others
                positions = np.flatnonzero(known >= 0)
                codes = known[positions]
                misses = np.zeros(len(candidates), np.int64)
            new_misses = misses + (~agreeing(blocks[candidates[:, None], positions], codes)).sum(axis=1)
            if (new_misses == misses).all() and len(candidates):
                return  # the samples rule nothing out: the decode stands
            keep = new_misses <= (1 if tolerant else 0)
            candidates, misses = candidates[keep], new_misses[keep]
        if len(candidates) == 0 and self.use_blocks and not was_unmatched and not tolerant:
            candidates = self._near_misses(known, agree)
            misses = np.zeros(len(candidates), np.int64)
        if len(candidates) == 0 and self.use_blocks and grid.certain[row, column] and not changed:
            # a block named with certainty that this step's samples contradict changed (a ?-block was hit,
            # a coin taken) even where no older sample sits: name it again from this step's samples
            fresh = np.flatnonzero((when == self._step) & (known >= 0))
            candidates = np.flatnonzero(matching(blocks, fresh, known[fresh]))
            misses = np.zeros(len(candidates), np.int64)
            if len(candidates):
                known[when < self._step] = -1
        if len(candidates):
            self._forget_usage(grid, row, column, 0)
            weights = self._weights(self._block_prior[candidates], self._block_usage[candidates])
            if self.pair_weight:
                weights = weights * self._pair_factor(grid, row, column, candidates)
            if tolerant:  # each sample a candidate does not explain is a stray pixel, at that probability
                weights = weights * self.stray_probability ** misses
            top, posterior = self._decode_options(grid.decoded[row, column], self._block_values, candidates,
                                                  weights, grid, row, column)
            # keep the candidates most probable first, so that a certain block is checked against its best
            candidates = np.concatenate([candidates[top], np.delete(candidates, top)])
            grid.candidates[(row, column)] = candidates
            grid.misses[(row, column)] = np.concatenate([misses[top], np.delete(misses, top)])
            grid.unmatched[row, column] = False
            grid.certain[row, column] = posterior[0] > CERTAIN
            if grid.best_index[row, column] != candidates[0]:
                grid.best_index[row, column] = candidates[0]
                self._count_pairs(grid, row, column, int(candidates[0]))
            self._give_usage(grid, row, column, 0, candidates[:len(top)], posterior, self._block_usage)
            return
        grid.candidates.pop((row, column), None)
        grid.misses.pop((row, column), None)
        grid.unmatched[row, column] = True
        grid.certain[row, column] = False
        self._forget_usage(grid, row, column, 0)
        # a block already decoded tile by tile re-decodes only the tiles that got samples
        tiles = np.unique(TILE_OF_PIXEL[positions]).tolist() if was_unmatched else range(4)
        entropy = 0.0
        for tile in tiles:
            entropy += self._decode_tile(grid, row, column, tile)
        grid.entropy[row, column] = entropy

    def _near_misses(self, known: np.ndarray, agree: np.ndarray | None = None) -> np.ndarray:
        """Codebook blocks that match a block's samples ``known (256,)`` but for a few stray pixels (the edge of a
        sprite outside its box, a score that pops up, debris): those pixels are forgotten and the blocks that
        match the rest returned; none when every block misses more than one sample. ``agree`` (blocks, sampled
        pixels in order) is :func:`agreeing` of every codebook block with the samples, when already computed."""
        sampled = np.flatnonzero(known >= 0)
        if len(sampled) == 0:
            return np.zeros(0, np.int64)
        if agree is None:
            agree = agreeing(self._book.blocks[:, sampled], known[sampled])
        misses = len(sampled) - agree.sum(axis=1)
        fewest = int(misses.min())
        if fewest > 1:
            return np.zeros(0, np.int64)
        kept = agree[int(np.argmin(misses))]
        known[sampled[~kept]] = -1
        return np.flatnonzero(agree[:, kept].all(axis=1))

    @staticmethod
    def _named_neighbours(grid: _BlockGrid, row: int, column: int) -> list[tuple[int, int]]:
        """``(side, codebook index)`` of the neighbours above (side 0) and to the left (side 1, same page) that
        are named from the codebook."""
        named = []
        if row > 0 and grid.best_index[row - 1, column] >= 0:
            named.append((0, int(grid.best_index[row - 1, column])))
        if column > 0 and grid.best_index[row, column - 1] >= 0:
            named.append((1, int(grid.best_index[row, column - 1])))
        return named

    def _pair_factor(self, grid: _BlockGrid, row: int, column: int, candidates: np.ndarray) -> np.ndarray:
        """``(K,)`` factor on the candidates' prior: 1 plus ``pair_weight`` times each candidate's share of the
        blocks this session has named below (or right of) the block named above (or left of) this one."""
        factor = np.ones(len(candidates))
        for side, neighbour in self._named_neighbours(grid, row, column):
            followers = self._pairs.get((side, neighbour))
            if followers:
                total = sum(followers.values()) + 1.0
                for follower, times in followers.items():  # a block has few followers, and candidates are many
                    factor[candidates == follower] += self.pair_weight * times / total
        return factor

    def _count_pairs(self, grid: _BlockGrid, row: int, column: int, named: int) -> None:
        for side, neighbour in self._named_neighbours(grid, row, column):
            followers = self._pairs.setdefault((side, neighbour), {})
            followers[named] = followers.get(named, 0) + 1

    def _weights(self, prior: np.ndarray, usage: np.ndarray) -> np.ndarray:
        """Prior weights of codebook candidates: their frequency on worlds 1-4 mixed with their share of this
        session's decodes (a level reuses its own blocks)."""
        total = usage.sum()
        session = usage / total if total > 0 else 0.0
        return (1.0 - self.session_weight) * prior + self.session_weight * session

    def _forget_usage(self, grid: _BlockGrid, row: int, column: int, slot: int) -> None:
        usage = self._block_usage if slot == 0 else self._tile_usage
        given = grid.given[row, column, slot]
        np.subtract.at(usage, given[given >= 0], grid.given_weight[row, column, slot][given >= 0])
        grid.given[row, column, slot] = -1

    def _give_usage(self, grid: _BlockGrid, row: int, column: int, slot: int, indices: np.ndarray,
                    posterior: np.ndarray, usage: np.ndarray) -> None:
        count = len(indices)
        grid.given[row, column, slot, :count] = indices
        grid.given_weight[row, column, slot, :count] = posterior
        np.add.at(usage, indices, posterior)

    def _decode_options(self, out: np.ndarray, values: np.ndarray, options: np.ndarray, weights: np.ndarray,
                        grid: _BlockGrid | None, row: int, column: int) -> tuple[np.ndarray, np.ndarray]:
        """Write into ``out (P, C)`` the posterior mean of the ``top_k`` most probable options, ``values[options]``
        ``(K, P, C)`` with prior ``weights (K,)``; returns their positions in ``options`` and their posterior (and
        records the entropy on ``grid``)."""
        keep = max(self.top_k, ENTROPY_OPTIONS)
        ranked = np.argpartition(-weights, keep - 1)[:keep] if len(weights) > keep else np.arange(len(weights))
        ranked = ranked[np.argsort(-weights[ranked], kind="stable")]
        if grid is not None:  # the uncertainty over the most probable options, whatever is drawn
            spread = weights[ranked] / weights[ranked].sum()
            grid.entropy[row, column] = float(-(spread * np.log(np.maximum(spread, 1e-12))).sum())
        top = ranked[:self.top_k]
        posterior = weights[top] / weights[top].sum()
        if len(top) == 1:  # the most probable option alone (top_k = 1): its values as they are
            out[:] = values[options[top[0]]]
        else:
            out[:] = np.einsum("k,kpc->pc", posterior, values[options[top]])
        return top, posterior

    def _decode_tile(self, grid: _BlockGrid, row: int, column: int, tile: int) -> float:
        """Decode one 8x8 tile of a block no counted block explains; returns its posterior entropy."""
        pixels = TILE_PIXELS[tile]
        known = grid.known[row, column, pixels]
        out = grid.decoded[row, column, pixels]
        sampled = np.flatnonzero(known >= 0)
        if len(sampled) == 0:
            out[:] = np.nan
            grid.decoded[row, column, pixels] = out
            return 0.0
        tiles = self._book.tiles
        candidates = np.zeros(0, np.int64)
        before = grid.tile_candidates.pop((row, column, tile), None)  # candidates only shrink, as for blocks
        if before is not None:
            candidates = before[matching(tiles[before], sampled, known[sampled])]
        elif not grid.tile_unmatched[row, column, tile]:  # (more samples cannot make a codebook tile match)
            candidates = np.flatnonzero(matching(tiles, sampled, known[sampled]))
        grid.tile_unmatched[row, column, tile] = len(candidates) == 0
        if len(candidates):
            grid.tile_candidates[(row, column, tile)] = candidates
            weights = self._weights(self._tile_prior[candidates], self._tile_usage[candidates])
            top, posterior = self._decode_options(out, self._tile_values, candidates, weights, None, 0, 0)
            np.add.at(self._tile_usage, candidates[top], posterior / 4.0)
            grid.decoded[row, column, pixels] = out
            return 0.0
        session = np.flatnonzero(matching(self._session_tiles.items, sampled, known[sampled]))
        if len(session):
            counts = self._session_tiles.counts[session]
            self._decode_options(out, self._values(self._session_tiles.items[session]), np.arange(len(session)),
                                counts, None, 0, 0)
            grid.decoded[row, column, pixels] = out
            return 0.0
        known = plain_codes(known)
        shapes = self._book.shapes
        before = grid.shape_fits.pop((row, column, tile), None)
        if before is not None:
            fits = before[consistent_shapes(shapes[before], sampled, known[sampled])]
        else:
            fits = np.flatnonzero(consistent_shapes(shapes, sampled, known[sampled]))
        if len(fits):
            grid.shape_fits[(row, column, tile)] = fits
        if len(fits) == 0:  # more than four colours: a sprite's edge, or the tile changed; show the samples
            grid.decoded[row, column, pixels] = np.where(known[:, None] >= 0, self._values(known), np.nan)
            return 0.0
        shape = shapes[fits[0]]  # sorted by frequency
        rank_colour = np.full(TILE_COLOURS, -1, np.int64)
        rank_colour[shape[sampled]] = known[sampled]
        missing = np.flatnonzero(rank_colour[:shape.max() + 1] < 0)
        if len(missing):  # colour unsampled ranks with the block's (then its neighbours') other colours
            around = plain_codes(grid.known[max(0, row - 1):row + 2, max(0, column - 1):column + 2].ravel())
            own = plain_codes(grid.known[row, column])
            ranked = []
            for pool in (own[own >= 0], around[around >= 0]):
                colours, counts = np.unique(pool[~np.isin(pool, rank_colour)], return_counts=True)
                ranked += [c for c in colours[np.argsort(-counts)].tolist() if c not in ranked]
            for rank in missing:
                rank_colour[rank] = ranked.pop(0) if ranked else known[sampled[0]]
        decoded = rank_colour[shape]
        grid.decoded[row, column, pixels] = self._values(decoded)
        if len(missing) == 0 and len(sampled) >= self.settle_samples // 2:
            self._session_tiles.add(decoded.astype(np.int32))
        return 0.0

    # --- rendering ---------------------------------------------------------------------------------

    @staticmethod
    def _fill_unknown(blocks: np.ndarray) -> np.ndarray:
        """``(R, K, 256, C)``: blocks never sampled (all NaN) copy the nearest decoded block, preferring their
        row; NaN pixels left inside decoded blocks take their block's mean."""
        unknown = np.isnan(blocks[..., 0]).all(axis=2)
        if not unknown.all() and unknown.any():
            _, (near_rows, near_cols) = ndimage.distance_transform_edt(unknown, sampling=(3.0, 1.0),
                                                                       return_indices=True)
            blocks = blocks[near_rows, near_cols]
        holes = np.isnan(blocks[..., 0])
        partial = holes.any(axis=2)
        if partial.any():
            some, missing = blocks[partial], holes[partial]  # (n, 256, C), (n, 256)
            seen = (~missing).sum(axis=1)
            means = np.where(missing[..., None], 0.0, some).sum(axis=1) / np.maximum(seen, 1)[:, None]
            means[seen == 0] = 0.0
            blocks[partial] = np.where(missing[..., None], means[:, None, :], some)
        return blocks

    def _screen_blocks(self, key: str, camera: int) -> np.ndarray:
        """The level's decoded blocks under the screen: ``(BLOCK_ROWS, 17, 256, C + 1)`` (:meth:`_values`)."""
        first = camera // BLOCK
        columns = SCREEN_BLOCK_COLUMNS + 1
        blocks = np.empty((BLOCK_ROWS, columns, BLOCK_PIXELS, self.channels + 1), np.float32)
        for i in range(columns):
            grid = self._page(key, (first + i) // PAGE_BLOCKS)
            blocks[:, i] = grid.decoded[:, (first + i) % PAGE_BLOCKS]
        return blocks

    def block_knowledge(self, state: np.ndarray, camera: int) -> np.ndarray:
        """What the memory knows of the level blocks under a screen whose left edge is level x ``camera``, in
        ``state``'s level area: ``(BLOCK_ROWS, SCREEN_BLOCK_COLUMNS + 1)`` uint8 indices into
        :data:`KNOWLEDGE_CLASSES` (column 0 is the block holding level x ``camera``). Reads the memory only:
        pages never sampled stay unseen and are not created."""
        key, first = area_key(state), max(0, int(camera)) // BLOCK
        knowledge = np.full((BLOCK_ROWS, SCREEN_BLOCK_COLUMNS + 1), KNOWLEDGE_CLASSES.index("unseen"), np.uint8)
        for i in range(SCREEN_BLOCK_COLUMNS + 1):
            grid = self._pages.get((key, (first + i) // PAGE_BLOCKS))
            if grid is None:
                continue
            column = (first + i) % PAGE_BLOCKS
            samples = (grid.known[:, column] >= 0).sum(axis=1)
            named = np.where(samples >= CONFIRMING_SAMPLES, 0, 1)
            knowledge[:, i] = np.where(grid.certain[:, column], named, np.where(samples > 0, 2, 3))
        return knowledge

    @staticmethod
    def _pixels(blocks: np.ndarray, tile: int = BLOCK) -> np.ndarray:
        """``(R, K, tile * tile, C)`` -> ``(R * tile, K * tile, C)``."""
        rows, columns, _, channels = blocks.shape
        return blocks.reshape(rows, columns, tile, tile, channels).transpose(0, 2, 1, 3, 4).reshape(
            rows * tile, columns * tile, channels)

    # --- the status bar ----------------------------------------------------------------------------

    def _status_bar_from_atlas(self, key: str) -> None:
        """On entering a level area the atlas knows, start the status bar's fixed tiles (all but the digits and
        the blinking coin, which follow the state) from the atlas's, as if sampled before: its background
        colour differs between areas (sky, black), and the first frames' few samples cannot tell it."""
        self._hud_area = key
        prior = self.atlas.get(key) if self.atlas is not None else None
        if prior is None or prior.hud_index.shape != (HUD_ROWS, FRAME_WIDTH):
            return
        codes = np.where(prior.hud_confidence >= ATLAS_CONFIDENCE, self._atlas_palette(prior)[prior.hud_index], -1)
        fixed = np.flatnonzero(self._book.hud_digit_slot < 0) if self._book.hud_digit_slot is not None \
            else np.arange(HUD_TILES)
        self._hud_known[fixed] = hud_tiles(codes.astype(np.int32))[fixed]
        for tile in fixed.tolist():
            self._decode_status_tile(tile)

    def _learn_status_bar(self, rows: np.ndarray, cols: np.ndarray, codes: np.ndarray, state: np.ndarray) -> None:
        """Write status-bar samples into its tiles and re-decode the tiles that got samples or now show
        another digit (a tile's samples are forgotten when the state says its digit changed)."""
        book = self._book
        slots = book.hud_digit_slot if book.hud_digit_slot is not None else np.full(HUD_TILES, -1, np.int8)
        keys = status_keys(slots, status_digits(state))
        dirty = keys != self._hud_key
        self._hud_known[dirty & (slots >= 0)] = -1
        self._hud_key = keys
        tiles = (rows // TILE) * (FRAME_WIDTH // TILE) + cols // TILE
        positions = (rows % TILE) * TILE + cols % TILE
        self._hud_known[tiles, positions] = codes
        for code in codes.tolist():
            self._hud_colours[code] = self._hud_colours.get(code, 0) + 1
        # a tile decoded with certainty needs no new decode while its samples agree with it
        surprised = np.zeros(HUD_TILES, bool)
        surprised[tiles[self._hud_best[tiles, positions] != codes]] = True
        sampled = np.zeros(HUD_TILES, bool)
        sampled[tiles] = True
        dirty |= sampled & (surprised | ~self._hud_certain)
        for tile in np.flatnonzero(dirty):
            self._decode_status_tile(int(tile))

    def _status_colour_weights(self, tiles: np.ndarray) -> np.ndarray:
        """``(K,)``: how well the colours of status-bar ``tiles (K, 64)`` fit this level area's status bar: the
        product over each tile's colours of the colour's share of the area's status-bar samples, relative to
        ``HUD_COMMON_SHARE`` and capped at 1 (floored at 1e-3: a colour never sampled here is unlikely, not
        impossible). A colour seen on a sprite's edge a few times barely counts; the tile's background must be
        the area's (sky, black)."""
        total = sum(self._hud_colours.values())
        fit = {code: min(1.0, max(1e-3, count / (HUD_COMMON_SHARE * total))) for code, count in self._hud_colours.items()}
        return np.array([np.prod([fit.get(colour, 1e-3) for colour in set(tile.tolist())]) for tile in tiles])

    def _decode_status_tile(self, tile: int) -> None:
        """A status-bar tile: the posterior mean over the codebook's tiles for its position (or its digit) that
        match its samples, preferring tiles drawn in colours the status bar has shown; else its samples."""
        book = self._book
        known = self._hud_known[tile]
        sampled = np.flatnonzero(known >= 0)
        options = np.zeros(0, np.int64)
        if book.hud_keys is not None and self._hud_key[tile] >= 0:
            options = np.flatnonzero(book.hud_keys == self._hud_key[tile])
            options = options[matching(book.hud_tiles[options], sampled, known[sampled])]
        if len(options):
            weights = np.exp(book.hud_log_prior[options].astype(np.float64))
            if self._hud_colours:
                weights = weights * self._status_colour_weights(book.hud_tiles[options])
            top, posterior = self._decode_options(self._hud_decoded[tile], self._hud_values, options, weights,
                                                  None, 0, 0)
            self._hud_best[tile] = book.hud_tiles[options[top[0]]]
            self._hud_certain[tile] = posterior[0] > CERTAIN
            return
        self._hud_certain[tile] = False
        if len(sampled):
            colours, counts = np.unique(known[sampled], return_counts=True)
            fill = code_values(colours[np.argmax(counts)], self.channels)
        elif self._hud_colours:
            fill = code_values(max(self._hud_colours, key=self._hud_colours.get), self.channels)
        else:
            fill = np.full(self.channels, np.nan, np.float32)
        self._hud_decoded[tile] = np.where(known[:, None] >= 0, code_values(known, self.channels), fill)

    def _prepared(self, channels: int) -> dict:
        """The codebook in a session's colours, as values to draw (computed once per colour mode, kept across
        :meth:`reset`); ``self.channels`` is already ``channels``."""
        if channels not in self._prepared_by_channels:
            book = luma_codebook(self.codebook) if channels == 1 else self.codebook
            rotation = colour_codes(ROTATION_COLOURS)
            prepared = {"_book": book, "_block_values": self._values(book.blocks),
                        "_block_index": {block.tobytes(): index for index, block in enumerate(book.blocks.astype(np.int32))},
                        "_tile_values": self._values(book.tiles), "_hud_values": code_values(book.hud_tiles, channels),
                        "_rotation_codes": luma_codes(rotation) if channels == 1 else rotation}
            prepared["_rotation_values"] = code_values(prepared["_rotation_codes"], channels)
            if book.sprite_appearances is not None:
                appearances = book.sprite_appearances
                prepared["_sprite_values"] = code_values(np.maximum(appearances, 0), channels)
                starts = np.searchsorted(book.sprite_poses, np.arange(POSE_COUNT + 1))
                prepared["_sprite_range"] = np.stack([starts[:-1], starts[1:]], axis=1)
            if book.firebar_keys is not None:
                pixels = book.firebar_pixels
                prepared["_firebar_starts"] = np.searchsorted(pixels[:, 0], np.arange(len(book.firebar_keys) + 1))
                prepared["_firebar_values"] = code_values(pixels[:, 3], channels)
                # one sorted index over every appearance's pixels: (appearance, dy, dx) -> position
                prepared["_firebar_index"] = (pixels[:, 0].astype(np.int64) * _FIREBAR_SPAN + pixels[:, 1]
                                              + _FIREBAR_SPAN // 2) * _FIREBAR_SPAN + pixels[:, 2] + _FIREBAR_SPAN // 2
            self._prepared_by_channels[channels] = prepared
        return self._prepared_by_channels[channels]

    def reconstruct(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> np.ndarray:
        """``(N, 2 + C)`` samples and ``(D,)`` state -> ``(H, W, C)`` float32 frame."""
        pixels = _check_pixels(pixels, self.channels)
        if not np.isfinite(pixels).all():
            raise ValueError("pixels hold NaN or infinite values: pass the observation's pixels unchanged")
        if self.channels is None:
            self.channels = pixels.shape[1] - 2
            self.__dict__.update(self._prepared(self.channels))
            self._hud_decoded = np.full((HUD_TILES, TILE * TILE, self.channels), np.nan, np.float32)
        rows, cols = uv_to_pixel(pixels[:, :2], FRAME_HEIGHT, FRAME_WIDTH)
        values = pixels[:, 2:]
        codes = colour_codes(values)
        camera, key = max(0, camera_x(state)), area_key(state)
        boxes = with_motion(sprite_boxes(state, state_mask), state, *self._previous)
        self._previous = (np.array(state, np.float32), np.array(state_mask, np.float32))
        firebars, others = self._firebar_options(boxes, state), lingering_boxes(boxes)
        sprites = box_mask(others, margin=SPRITE_MARGIN) | self._firebar_cover(firebars)
        static = ~sprites[rows, cols]
        hud = static & (rows < HUD_ROWS)
        if key != self._hud_area:  # the status bar's background colour belongs to the area (sky, black)
            self._hud_colours = {}
            self._status_bar_from_atlas(key)
        self._learn_status_bar(rows[hud], cols[hud], codes[hud], state)
        body = static & (rows >= HUD_ROWS)
        phase = rotation_phase(state, state_mask)
        level_codes = codes[body]
        if phase is not None:  # a sample of this step's rotating colour may be a blinking pixel
            level_codes = np.where(level_codes == self._rotation_codes[phase], level_codes | MAYBE_ROTATING,
                                   level_codes)
        self._learn(key, rows[body] - HUD_ROWS, cols[body] + camera, level_codes)
        self._step += 1

        image = np.empty((FRAME_HEIGHT, FRAME_WIDTH, self.channels), np.float32)
        image[:HUD_ROWS] = self._pixels(self._hud_decoded.reshape(HUD_ROWS // TILE, FRAME_WIDTH // TILE, TILE * TILE,
                                                                 self.channels), tile=TILE)
        offset = camera % BLOCK
        level = self._pixels(self._fill_unknown(self._screen_blocks(key, camera)))[:, offset:offset + FRAME_WIDTH]
        image[HUD_ROWS:] = level[..., :self.channels]
        blinking = level[..., self.channels] > 0.5
        if blinking.any():
            image[HUD_ROWS:][blinking] = self._rotation_values[1 if phase is None else phase]
        if np.isnan(image).any():  # nothing decoded at all yet
            image[np.isnan(image[..., 0])] = values.mean(axis=0)
        self._draw_firebars(image, firebars, rows, cols, codes)
        self._draw_sprites(image, others, rows, cols, codes, state, state_mask)
        image[rows, cols] = values
        return image

    def _firebar_options(self, boxes: list[SpriteBox], state: np.ndarray) -> list[tuple[SpriteBox, int, int]]:
        """``(box, first, last)`` per fire bar: the codebook's appearances ``first:last`` it may show (those of its
        spin step; of every step when the state lacks it; none when the codebook has none)."""
        keys = self._book.firebar_keys
        options = []
        for box in boxes:
            if box.kind != "firebar":
                continue
            if keys is None or not len(keys):
                options.append((box, 0, 0))
                continue
            low, high = (firebar_key(state, box), firebar_key(state, box)) if box.spin >= 0 else \
                (firebar_key(state, box, 0), firebar_key(state, box, FIREBAR_SPINS - 1))
            first, last = np.searchsorted(keys, [low, high + 1])
            options.append((box, int(first), int(last)))
        return options

    def _firebar_cover(self, firebars: list[tuple[SpriteBox, int, int]]) -> np.ndarray:
        """``(H, W) bool``: where the fire bars may show a ball this frame, so samples there are not background: the
        pixels any appearance of a bar's spin step covers, or its whole square when the codebook has none."""
        cover = np.zeros((FRAME_HEIGHT, FRAME_WIDTH), bool)
        for box, first, last in firebars:
            if first == last:
                cover |= box_mask([box])
                continue
            rr, cc, _ = self._firebar_on_screen(box, first, last)
            cover[rr, cc] = True
        return cover

    def _firebar_on_screen(self, box: SpriteBox, first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, which)``: the screen pixels of fire-bar appearances ``first:last`` placed at ``box``'s pivot,
        those on screen only; ``which`` selects them from the appearances' rows of ``firebar_pixels``."""
        start, stop = self._firebar_starts[first], self._firebar_starts[last]
        pixels = self._book.firebar_pixels[start:stop]
        row, col, _ = firebar_window(box)
        rr, cc = pixels[:, 1] + row, pixels[:, 2] + col
        shown = np.flatnonzero((rr >= 0) & (rr < FRAME_HEIGHT) & (cc >= 0) & (cc < FRAME_WIDTH))
        return rr[shown], cc[shown], start + shown

    def _draw_firebars(self, image: np.ndarray, firebars: list[tuple[SpriteBox, int, int]], rows: np.ndarray,
                       cols: np.ndarray, codes: np.ndarray) -> None:
        """Draw each fire bar as the appearance (of its spin step) that best explains this frame's samples in its
        square, as :meth:`_appearance` chooses a sprite's."""
        span = _FIREBAR_SPAN
        for box, first, last in firebars:
            if first == last:
                continue
            row, col, reach = firebar_window(box)
            inside = (np.abs(rows - row + 0.5) < reach) & (np.abs(cols - col + 0.5) < reach)
            log_prior = self._book.firebar_log_prior[first:last].astype(np.float64)
            chosen = first + int(np.argmax(log_prior))
            if inside.any() and self.sprite_miss_probability < 1.0:
                local = (rows[inside] - row + span // 2) * span + cols[inside] - col + span // 2  # (m,)
                wanted = np.arange(first, last, dtype=np.int64)[:, None] * span * span + local[None]  # (K, m)
                found = np.minimum(np.searchsorted(self._firebar_index, wanted), len(self._firebar_index) - 1)
                opaque = self._firebar_index[found] == wanted
                predicted = np.where(opaque, self._book.firebar_pixels[found, 3],
                                     colour_codes(image[rows[inside], cols[inside]])[None])
                misses = (predicted != codes[inside][None]).sum(axis=1)
                chosen = first + int(np.argmax(log_prior + np.log(self.sprite_miss_probability) * misses))
            rr, cc, which = self._firebar_on_screen(box, chosen, chosen + 1)
            image[rr, cc] = self._firebar_values[which]

    def _draw_sprites(self, image: np.ndarray, boxes: list[SpriteBox], rows: np.ndarray, cols: np.ndarray,
                      codes: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> None:
        """Draw each sprite over the background as the appearance of its pose that best explains this frame's
        samples ``rows, cols, codes (N,)`` in its template window given its
        :func:`sgaps_env.sprites.appearance_context` (:meth:`_appearance`); the player last, on top."""
        if self._book.sprite_appearances is None:
            return
        height, width = TEMPLATE_SIZE
        windows = sorted(zip(template_windows(boxes), boxes), key=lambda pair: -pair[0][0])
        for (pose, top, left), box in windows:
            window_rows = slice(max(0, top), min(FRAME_HEIGHT, top + height))
            window_cols = slice(max(0, left), min(FRAME_WIDTH, left + width))
            first, last = self._sprite_range[pose]
            if window_rows.start >= window_rows.stop or window_cols.start >= window_cols.stop or first == last:
                continue
            inside = (rows >= window_rows.start) & (rows < window_rows.stop) & (cols >= window_cols.start) \
                & (cols < window_cols.stop)
            chosen = first + self._appearance(image, first, last, top, left, rows[inside], cols[inside], codes[inside],
                                              appearance_context(box, state, state_mask))
            window = (slice(window_rows.start - top, window_rows.stop - top),
                      slice(window_cols.start - left, window_cols.stop - left))
            own = self._book.sprite_appearances[chosen][window] >= 0
            image[window_rows, window_cols][own] = self._sprite_values[chosen][window][own]

    def _appearance(self, image: np.ndarray, first: int, last: int, top: int, left: int, rows: np.ndarray,
                    cols: np.ndarray, codes: np.ndarray, context: int = 0) -> int:
        """Which of the codebook's appearances ``first:last`` (one pose's) to draw at window ``(top, left)``: the
        most probable given samples ``rows, cols, codes (m,)`` in the window, an appearance predicting its own
        colour where it is opaque and ``image``'s (the background drawn so far) where it is not; its prior is its
        share of its pose's sightings in appearance context ``context``."""
        by_context = self._book.sprite_context_log_prior
        log_prior = (self._book.sprite_log_prior[first:last] if by_context is None
                     else by_context[first:last, context]).astype(np.float64)
        if not len(rows) or self.sprite_miss_probability >= 1.0:
            return int(np.argmax(log_prior))
        predicted = self._book.sprite_appearances[first:last, rows - top, cols - left]  # (K, m)
        predicted = np.where(predicted >= 0, predicted, colour_codes(image[rows, cols])[None])
        misses = (predicted != codes[None]).sum(axis=1)
        return int(np.argmax(log_prior + np.log(self.sprite_miss_probability) * misses))
