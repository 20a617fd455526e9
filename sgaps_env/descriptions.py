"""Coordinate descriptions: the client's side of how a sampling policy's choice travels down the wire.

A sampling policy (``agents.policies``) does not send its ``N`` coordinates one by one: it sends a
compact *description* (a msgpack-able dict: a seed, a packed tier map, tile weights) and the client
regenerates the exact same coordinates with :func:`coords_from_description` from that and what it
knows itself (its own state vectors, :class:`ClientContext`). The policies compute their own
coordinates through the same function, so the two ends cannot disagree. This module needs neither
the agents nor the models package: a client regenerates coordinates with ``sgaps_env`` alone.

| ``k`` | fields | coordinates |
|---|---|---|
| `"fixed"` | `p` pattern index in ``PATTERN_ORDER``, `s` seed (random patterns only) | ``make_pattern`` with a generator seeded by ``s`` |
| `"patch"` | `s` | random ``PATCH_SIZE`` patches (:func:`patch_coords`) |
| `"ram"` | `s`, `c` config (:meth:`RamGuidedConfig.to_description`) | :func:`ram_guided_pixels` from the client's own state vectors |
| `"tiers"` | `s`, `g` grid side, `t` packed 2-bit tiers, `c` share and tier budgets in per mille | :func:`hierarchical_pixels` |
| `"tiles"` | `w` one byte per tile of a square grid | ``allocation_to_coords`` of the weights (deterministic) |
| `"blocks"` | `s`, `x` the level's block grid offset on screen, `t` packed 2-bit class of each block under the screen, `c` one weight (0-255) per block class, for the predicted sprite boxes and for the status bar; optionally `o` 1: the fast within-block order (:func:`_shuffled_by_region`) | :func:`block_weighted_pixels` |
| `"same"` | none | keep the previous frame's coordinates (:func:`coords_from_message` keeps them; :func:`coords_from_description` has nothing to regenerate) |

A description comes from the network, so :func:`coords_from_description` checks every field's
type and range, and every size it reads against ``count`` and the frame, before it allocates
anything; anything malformed raises ``ValueError`` (and only that).
"""
from __future__ import annotations

import reprlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from sgaps_env.coords import (FRAME_HEIGHT, FRAME_WIDTH, PATTERNS, RANDOM_PATTERNS, make_pattern, pixel_to_uv,
                              uv_to_pixel)
from sgaps_env.sprites import HUD_ROWS, box_mask, hud_digit_mask, predict_boxes
from sgaps_env.state import STATE_FIELDS
from sgaps_env.tiles import allocate_tile_counts, allocation_to_coords, tile_edges

#: ``PATTERNS`` names in a fixed order, so that a description sends a small index, not the name.
PATTERN_ORDER = tuple(sorted(PATTERNS))
#: Side of the square patches of the ``patch`` description (the patch grid is 15 x 16 on the NES frame).
PATCH_SIZE = 16
#: Seeds are integers in ``[0, SEED_LIMIT)``: what ``Generator.integers(SEED_LIMIT)`` draws.
SEED_LIMIT = 2 ** 32
#: Largest tile grid side: every tile needs at least one pixel.
MAX_TILES = min(FRAME_HEIGHT, FRAME_WIDTH)
#: Bounds of the RAM-guided configuration's pixel margin and look-ahead (frames) that a description may ask for.
MAX_MARGIN = 64
MAX_LOOKAHEAD = 60
#: Tiers of the hierarchical budget, most important first.
TIERS = ("critical", "important", "moderate", "optional")
KINDS = ("fixed", "patch", "ram", "tiers", "tiles", "blocks")
_FIELDS = {"fixed": ({"k", "p"}, {"s"}), "patch": ({"k", "s"}, set()), "ram": ({"k", "s", "c"}, set()),
           "tiers": ({"k", "s", "g", "t", "c"}, set()), "tiles": ({"k", "w"}, set()),
           "blocks": ({"k", "s", "x", "t", "c"}, {"o"})}


# --- what the client knows ----------------------------------------------------------------------------


@dataclass
class ClientContext:
    """What the client itself knows when it regenerates coordinates: the state vectors it sent for the
    frame just sampled and the one before (``None`` at the start of a session)."""

    state: np.ndarray | None = None
    state_mask: np.ndarray | None = None
    previous_state: np.ndarray | None = None
    previous_mask: np.ndarray | None = None

    def advance(self, state: np.ndarray, state_mask: np.ndarray) -> None:
        """A new frame was sampled with this state."""
        state, state_mask = np.asarray(state, np.float32), np.asarray(state_mask, np.float32)
        if state.ndim != 1 or state.shape != state_mask.shape or state.size < len(STATE_FIELDS):
            raise ValueError(f"state and state_mask must be 1-D vectors of the same length >= {len(STATE_FIELDS)} "
                             f"(the env's observation), got shapes {state.shape} and {state_mask.shape}")
        self.previous_state, self.previous_mask = self.state, self.state_mask
        self.state, self.state_mask = state.copy(), state_mask.copy()


# --- reading a description's fields, checked -------------------------------------------------------------


def _integer(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]`` (bools and floats are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"description field {name!r} must be an integer in [{low}, {high}], got "
                         f"{type(value).__name__} {_short(value)}")
    if not low <= value <= high:
        raise ValueError(f"description field {name!r} must be in [{low}, {high}], got {_short(value)}")
    return int(value)


def _integers(value: Any, name: str, length: int) -> list[int]:
    """A list (or tuple) of exactly ``length`` integers, checked before anything else is read."""
    if not isinstance(value, (list, tuple)) or len(value) != length:
        size = f"{len(value)} entries" if isinstance(value, (list, tuple)) else type(value).__name__
        raise ValueError(f"description field {name!r} must be a list of {length} integers, got {size}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise ValueError(f"description field {name!r} must hold integers only, got {type(item).__name__} "
                             f"{_short(item)}")
    return [int(item) for item in value]


def _bytes(value: Any, name: str, length: int | None = None, max_length: int | None = None) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError(f"description field {name!r} must be bytes, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise ValueError(f"description field {name!r} must be {length} bytes, got {len(value)}")
    if max_length is not None and len(value) > max_length:
        raise ValueError(f"description field {name!r} holds {len(value)} bytes, more than the {max_length} a "
                         f"{MAX_TILES}x{MAX_TILES} tile grid needs")
    return bytes(value)


def _seed_rng(description: dict[str, Any]) -> np.random.Generator:
    return np.random.default_rng(_integer(description["s"], "s", 0, SEED_LIMIT - 1))


_REPR = reprlib.Repr(maxlevel=2, maxlist=6, maxtuple=6, maxdict=4, maxset=4, maxstring=40, maxother=40, maxlong=40)


def _short(value: Any) -> str:
    """A repr for error messages that costs little however large ``value`` is."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<an integer of {value.bit_length()} bits>"  # str() of a huge int is slow (and refused past 4300 digits)
    if isinstance(value, (bytes, bytearray)) and len(value) > 16:
        return f"<{len(value)} bytes>"
    return _REPR.repr(value)


def check_count(count: Any) -> int:
    """``count`` as an int in ``[1, H * W]``, or a ValueError."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= FRAME_HEIGHT * FRAME_WIDTH:
        raise ValueError(f"count must be an integer in [1, {FRAME_HEIGHT * FRAME_WIDTH}] pixels, got {_short(count)}")
    return int(count)


# --- fills shared by the described samplers --------------------------------------------------------------


def _pixels_to_coords(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return pixel_to_uv(np.asarray(rows, np.int64), np.asarray(cols, np.int64), FRAME_HEIGHT, FRAME_WIDTH)


def _spread_fill(count: int, taken: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` more distinct pixels, well spread (a stratified draw) and not in ``taken (H, W)``, which
    is updated. Points of the draw that land on taken pixels are replaced by random free ones."""
    if count <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = uv_to_pixel(make_pattern("stratified", count, rng), FRAME_HEIGHT, FRAME_WIDTH)
    flat = rows.astype(np.int64) * FRAME_WIDTH + cols
    flat = flat[~taken.reshape(-1)[flat]]
    flat = np.unique(flat)
    missing = count - len(flat)
    if missing > 0:
        free = np.flatnonzero(~taken.reshape(-1))
        free = np.setdiff1d(free, flat, assume_unique=True)
        flat = np.concatenate([flat, rng.choice(free, size=missing, replace=False)])
    taken.reshape(-1)[flat] = True
    return flat // FRAME_WIDTH, flat % FRAME_WIDTH


def _inside(mask: np.ndarray, count: int, taken: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` distinct random pixels of ``mask (H, W)`` not yet ``taken`` (updated)."""
    flat = np.flatnonzero(mask.reshape(-1) & ~taken.reshape(-1))
    chosen = rng.choice(flat, size=min(count, len(flat)), replace=False) if len(flat) else flat
    taken.reshape(-1)[chosen] = True
    return chosen // FRAME_WIDTH, chosen % FRAME_WIDTH


def _seeded_allocation(weights: np.ndarray, count: int, tiles: int, taken: np.ndarray,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` pixels split over a ``tiles x tiles`` grid in proportion to ``weights`` (largest
    remainder, capped at each tile's pixels), placed at random distinct pixels inside each tile."""
    counts = allocate_tile_counts(weights, count, tiles)
    row_edges, col_edges = tile_edges(tiles)
    all_rows, all_cols = [], []
    for tile in np.flatnonzero(counts):
        r, c = divmod(int(tile), tiles)
        height, width = int(row_edges[r + 1] - row_edges[r]), int(col_edges[c + 1] - col_edges[c])
        flat = rng.choice(height * width, size=int(counts[tile]), replace=False)
        all_rows.append(flat // width + row_edges[r])
        all_cols.append(flat % width + col_edges[c])
    rows, cols = np.concatenate(all_rows), np.concatenate(all_cols)
    taken[rows, cols] = True
    return rows, cols


def patch_coords(count: int, rng: np.random.Generator) -> np.ndarray:
    """Whole ``PATCH_SIZE`` patches of the patch grid at random, in raster order inside each patch; the
    last patch is cut short so that exactly ``count`` pixels are taken."""
    grid_rows, grid_cols = FRAME_HEIGHT // PATCH_SIZE, FRAME_WIDTH // PATCH_SIZE
    patches = -(-count // (PATCH_SIZE * PATCH_SIZE))
    chosen = rng.choice(grid_rows * grid_cols, size=patches, replace=False)
    inner_rows, inner_cols = np.divmod(np.arange(PATCH_SIZE * PATCH_SIZE), PATCH_SIZE)
    rows = (chosen[:, None] // grid_cols * PATCH_SIZE + inner_rows[None]).reshape(-1)[:count]
    cols = (chosen[:, None] % grid_cols * PATCH_SIZE + inner_cols[None]).reshape(-1)[:count]
    return _pixels_to_coords(rows, cols)


# --- the RAM-guided choice ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RamGuidedConfig:
    """How the RAM-guided policy splits its budget."""

    sprite_share: float = 0.95
    """share of the budget inside the predicted sprite boxes"""
    sprite_density: float = 1.0
    """at most this fraction of the box pixels is sampled; the rest of the share goes to the spread"""
    hud_share: float = 0.02
    """share of the budget on the status-bar digits (score, coins, timer)"""
    margin: int = 2
    """pixels added around each predicted box"""
    lookahead: int = 1
    """frames ahead the boxes are predicted (1 + link latency in frames)"""

    def __post_init__(self):
        if not (0 <= self.sprite_share <= 1 and 0 <= self.hud_share <= 1 and self.sprite_share + self.hud_share <= 1):
            raise ValueError(f"sprite_share={self.sprite_share} and hud_share={self.hud_share} must be in [0, 1] with a "
                             "sum <= 1 (the rest is spread over the frame)")
        if not 0 < self.sprite_density <= 1:
            raise ValueError(f"sprite_density must be in (0, 1], got {self.sprite_density}")
        if not 0 <= self.margin <= MAX_MARGIN or not 0 <= self.lookahead <= MAX_LOOKAHEAD:
            raise ValueError(f"margin must be in [0, {MAX_MARGIN}] pixels and lookahead in [0, {MAX_LOOKAHEAD}] frames, "
                             f"got {self.margin} and {self.lookahead}")

    def to_description(self) -> list[int]:
        """Per-mille shares and pixel counts: small integers msgpack packs in a byte or two."""
        return [round(self.sprite_share * 1000), round(self.sprite_density * 1000), round(self.hud_share * 1000),
                int(self.margin), int(self.lookahead)]

    @classmethod
    def from_description(cls, values: Any) -> "RamGuidedConfig":
        """The config a ``ram`` description's ``c`` field describes (checked: ValueError if malformed)."""
        sprite, density, hud, margin, lookahead = _integers(values, "c", 5)
        for name, value in (("sprite share", sprite), ("sprite density", density), ("hud share", hud)):
            if not 0 <= value <= 1000:
                raise ValueError(f"description field 'c': the {name} is in per mille, [0, 1000], got {value}")
        if not 0 <= margin <= MAX_MARGIN or not 0 <= lookahead <= MAX_LOOKAHEAD:
            raise ValueError(f"description field 'c': margin must be in [0, {MAX_MARGIN}] and lookahead in "
                             f"[0, {MAX_LOOKAHEAD}], got {margin} and {lookahead}")
        return cls(sprite / 1000, density / 1000, hud / 1000, margin, lookahead)


def ram_guided_pixels(count: int, config: RamGuidedConfig, context: ClientContext,
                      rng: np.random.Generator) -> np.ndarray:
    """The RAM-guided choice: random pixels in the sprite boxes predicted ``lookahead`` frames ahead
    (up to ``sprite_density`` of their pixels), a few on the status-bar digits, the rest stratified."""
    taken = np.zeros((FRAME_HEIGHT, FRAME_WIDTH), bool)
    parts = []
    if context.state is not None:
        boxes = predict_boxes(context.state, context.state_mask, context.previous_state, context.previous_mask,
                              steps=config.lookahead, margin=config.margin)
        sprites = box_mask(boxes)
        budget = min(round(config.sprite_share * count), int(config.sprite_density * sprites.sum()))
        parts.append(_inside(sprites, budget, taken, rng))
    parts.append(_inside(hud_digit_mask(), round(config.hud_share * count), taken, rng))
    placed = sum(len(rows) for rows, _ in parts)
    parts.append(_spread_fill(count - placed, taken, rng))
    return _pixels_to_coords(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


# --- the hierarchical (tiered) choice --------------------------------------------------------------------


@dataclass(frozen=True)
class HierarchyConfig:
    """The seed's hierarchical budget: tiles ranked by importance fall into four tiers by area, and the
    importance share of the budget is split between the tiers."""

    tier_area: tuple[float, float, float, float] = (0.1, 0.2, 0.3, 0.4)
    """fraction of the tiles in each tier (critical, important, moderate, optional)"""
    tier_budget: tuple[float, float, float, float] = (0.4, 0.3, 0.2, 0.1)
    """fraction of the importance budget each tier gets (spread evenly over its tiles)"""
    importance_share: float = 0.6
    """the hybrid: this share by importance, the rest stratified over the whole frame"""
    tiles: int = 16
    """side of the tile grid the tiers are decided on (16 -> 15 x 16-pixel tiles)"""

    def __post_init__(self):
        for name in ("tier_area", "tier_budget"):
            values = getattr(self, name)
            if len(values) != 4 or min(values) < 0 or abs(sum(values) - 1) > 1e-6:
                raise ValueError(f"{name} must be four fractions >= 0 summing to 1 ({', '.join(TIERS)}), got {values}")
        if not 0 <= self.importance_share <= 1:
            raise ValueError(f"importance_share must be in [0, 1], got {self.importance_share}")
        if isinstance(self.tiles, bool) or not isinstance(self.tiles, (int, np.integer)) or not 1 <= self.tiles <= MAX_TILES:
            raise ValueError(f"tiles must be an integer in [1, {MAX_TILES}], got {self.tiles!r}")


def packed_tier_bytes(tiles: int) -> int:
    """Bytes of a packed ``tiles x tiles`` tier map (four 2-bit tiers a byte)."""
    return -(-tiles * tiles // 4)


def pack_tiers(tiers: np.ndarray) -> bytes:
    """``(K, K)`` tiers 0..3 -> ``packed_tier_bytes(K)`` bytes, four tiers a byte, low bits first."""
    flat = np.asarray(tiers).reshape(-1).astype(np.uint8)
    if flat.size and flat.max() > 3:
        raise ValueError(f"tiers are 0..{len(TIERS) - 1} ({', '.join(TIERS)}), got {int(flat.max())}")
    flat = np.concatenate([flat, np.zeros(-len(flat) % 4, np.uint8)]).reshape(-1, 4)
    return (flat[:, 0] | flat[:, 1] << 2 | flat[:, 2] << 4 | flat[:, 3] << 6).astype(np.uint8).tobytes()


def unpack_tiers(packed: bytes, tiles: int) -> np.ndarray:
    """The ``(tiles, tiles)`` uint8 tiers of :func:`pack_tiers`; ``packed`` must be exactly the right length."""
    if len(packed) != packed_tier_bytes(tiles):
        raise ValueError(f"a tier map for a {tiles}x{tiles} grid is {packed_tier_bytes(tiles)} bytes (four 2-bit tiers "
                         f"a byte), got {len(packed)}")
    return unpack_two_bits(packed, tiles * tiles).reshape(tiles, tiles)


def unpack_two_bits(packed: bytes, count: int) -> np.ndarray:
    """The first ``count`` 2-bit values of :func:`pack_tiers`'s packing (four a byte, low bits first), uint8."""
    data = np.frombuffer(packed, np.uint8)
    return np.stack([data & 3, data >> 2 & 3, data >> 4 & 3, data >> 6 & 3], axis=1).reshape(-1)[:count]


def hierarchical_pixels(count: int, tiers: np.ndarray, config: HierarchyConfig,
                        rng: np.random.Generator) -> np.ndarray:
    """The importance share spread over the tiers (each tier's budget evenly over its tiles, at random
    pixels inside them), the rest stratified over the frame."""
    taken = np.zeros((FRAME_HEIGHT, FRAME_WIDTH), bool)
    flat = tiers.reshape(-1)
    sizes = np.bincount(flat, minlength=4).astype(np.float64)
    per_tile = np.divide(np.asarray(config.tier_budget), sizes, out=np.zeros(4), where=sizes > 0)
    important = round(config.importance_share * count)
    parts = []
    if important > 0:
        parts.append(_seeded_allocation(per_tile[flat], important, config.tiles, taken, rng))
    parts.append(_spread_fill(count - important, taken, rng))
    return _pixels_to_coords(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


# --- the block-weighted choice: the level's 16x16 blocks, each weighted by its class ------------------------

#: Side of a level block in pixels (SMB's metatile): the grid of the ``blocks`` description follows the level.
LEVEL_BLOCK = 16
#: Block rows below the status bar and block columns a screen can touch (a partial column on either side).
GRID_ROWS = (FRAME_HEIGHT - HUD_ROWS) // LEVEL_BLOCK
GRID_COLUMNS = FRAME_WIDTH // LEVEL_BLOCK + 1
#: Classes a block of the ``blocks`` description may be in (2 bits each); their meaning is the sender's
#: (``models.tile_reconstructor.KNOWLEDGE_CLASSES`` for the uncertainty policy): the client only weighs them.
BLOCK_CLASSES = 4
#: The ``c`` field: one weight per block class, then the predicted sprite boxes', then the status bar's.
BLOCK_WEIGHTS = BLOCK_CLASSES + 2
#: Margin (pixels) and look-ahead (frames) of the sprite boxes the client predicts for a ``blocks`` description.
BLOCK_SPRITE_MARGIN, BLOCK_SPRITE_LOOKAHEAD = 2, 1


@dataclass(frozen=True)
class BlockPlan:
    """What a ``blocks`` description says: where the level's block grid sits on the next frame and how
    much each pixel is worth.

    ``offset`` is the level's scroll inside a block (camera x mod 16): block column ``j`` of ``classes``
    covers screen columns ``16 j - offset .. 16 j - offset + 15``. ``classes`` is ``(GRID_ROWS,
    GRID_COLUMNS)`` uint8 in ``[0, BLOCK_CLASSES)``; ``weights`` is ``BLOCK_WEIGHTS`` integers in
    [0, 255]: per class, then inside the predicted sprite boxes (which override the block's), then on
    the status bar. Only their ratios matter; all zero is a uniform draw. ``fast_order`` (``"o": 1``) draws
    the order inside each block from 32-bit keys sorted row by row (:func:`_shuffled_by_region`) instead of
    sorting the whole frame's float keys at once, and solves the chances on the few weight levels
    (:func:`_fast_block_draw`): 1.4-2 ms per plan instead of about 4.6 here. The two draws follow the same
    distribution but give other pixels for one seed, so the offline evaluations keep the first (their
    published numbers replay exactly) and the live server uses the fast one on both ends.
    """

    offset: int
    classes: np.ndarray
    weights: tuple[int, ...]
    fast_order: bool = False

    def __post_init__(self):
        classes = np.asarray(self.classes)
        if classes.shape != (GRID_ROWS, GRID_COLUMNS) or classes.size and (classes.min() < 0 or classes.max() >= BLOCK_CLASSES):
            raise ValueError(f"classes must be ({GRID_ROWS}, {GRID_COLUMNS}) integers in [0, {BLOCK_CLASSES}), got "
                             f"shape {classes.shape}")
        if not 0 <= self.offset < LEVEL_BLOCK:
            raise ValueError(f"offset is the scroll inside a block, in [0, {LEVEL_BLOCK}), got {self.offset}")
        if len(self.weights) != BLOCK_WEIGHTS or min(self.weights) < 0 or max(self.weights) > 255:
            raise ValueError(f"weights are {BLOCK_WEIGHTS} integers in [0, 255] ({BLOCK_CLASSES} block classes, sprite "
                             f"boxes, status bar), got {self.weights}")
        object.__setattr__(self, "classes", classes.astype(np.uint8))
        object.__setattr__(self, "weights", tuple(int(w) for w in self.weights))

    def to_description(self, seed: int) -> dict[str, Any]:
        description = {"k": "blocks", "s": int(seed), "x": int(self.offset), "t": pack_tiers(self.classes),
                       "c": list(self.weights)}
        if self.fast_order:
            description["o"] = 1
        return description

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> "BlockPlan":
        """The plan of a checked ``blocks`` description's fields (ValueError if malformed)."""
        offset = _integer(description["x"], "x", 0, LEVEL_BLOCK - 1)
        packed = _bytes(description["t"], "t", length=-(-GRID_ROWS * GRID_COLUMNS // 4))
        weights = _integers(description["c"], "c", BLOCK_WEIGHTS)
        if min(weights) < 0 or max(weights) > 255:
            raise ValueError(f"description field 'c' holds {BLOCK_WEIGHTS} weights in [0, 255], got {weights}")
        classes = unpack_two_bits(packed, GRID_ROWS * GRID_COLUMNS).reshape(GRID_ROWS, GRID_COLUMNS)
        fast_order = _integer(description.get("o", 0), "o", 0, 1) == 1
        return cls(offset, classes, tuple(weights), fast_order)


_ROWS, _COLS = np.divmod(np.arange(FRAME_HEIGHT * FRAME_WIDTH), FRAME_WIDTH)


@lru_cache(maxsize=LEVEL_BLOCK)
def block_regions(offset: int) -> tuple[np.ndarray, np.ndarray]:
    """``(block, region)`` per pixel, raster order, for a grid scrolled by ``offset``: ``block`` is the flat
    index into ``classes`` (-1 on the status bar); ``region`` numbers every block and every 16x16 square of the
    status bar, so that a draw can be spread region by region."""
    level = _ROWS >= HUD_ROWS
    block_row = (_ROWS - HUD_ROWS) // LEVEL_BLOCK
    block_col = (_COLS + offset) // LEVEL_BLOCK
    block = np.where(level, block_row * GRID_COLUMNS + block_col, -1)
    hud_region = GRID_ROWS * GRID_COLUMNS + (_ROWS // LEVEL_BLOCK) * GRID_COLUMNS + _COLS // LEVEL_BLOCK
    region = np.where(level, block, hud_region)
    block.setflags(write=False)
    region.setflags(write=False)
    return block, region


@lru_cache(maxsize=LEVEL_BLOCK)
def _region_slots(offset: int) -> np.ndarray:
    """``(regions, largest region)`` pixel indices of each region of :func:`block_regions` (rows in region
    order, raster order inside a row), -1 past a region's end."""
    _, region = block_regions(offset)
    by_region = np.argsort(region, kind="stable")
    _, sizes = np.unique(region, return_counts=True)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rows = np.repeat(np.arange(len(sizes)), sizes)
    slots = np.full((len(sizes), sizes.max()), -1, np.int64)
    slots[rows, np.arange(region.size) - starts[rows]] = by_region
    slots.setflags(write=False)
    return slots


def _shuffled_by_region(offset: int, rng: np.random.Generator) -> np.ndarray:
    """Every pixel index once: region after region, in a random order inside each region.

    A region's order sorts random 32-bit keys whose lowest 8 bits are replaced by the pixel's place in its row,
    so no two keys of a row are equal and every sort algorithm (the client's and the server's CPU may differ)
    gives the same order; rows of at most 256 keys sort vectorised, about a tenth of the time of sorting the
    frame's 61,440 float keys at once, which was most of a plan's time."""
    slots = _region_slots(offset)
    keys = rng.integers(0, 1 << 32, slots.shape, dtype=np.uint32)
    keys &= np.uint32(0xFFFFFF00)
    keys |= _COLUMN_OF_SLOT[: slots.shape[1]]
    keys[slots < 0] = np.uint32(0xFFFFFFFF)  # past a region's end (always the last places of a row): dropped
    order = np.take_along_axis(slots, np.argsort(keys, axis=1), axis=1).reshape(-1)
    return order[order >= 0]


_COLUMN_OF_SLOT = np.arange(256, dtype=np.uint32)


def inclusion_probabilities(weights: np.ndarray, count: int) -> np.ndarray:
    """Per-pixel chances ``min(1, a * weights)`` summing to ``count`` (``a`` found by water-filling), so that a
    draw of ``count`` distinct pixels follows the weights wherever they do not ask for more than every pixel.
    Zero weights get chance 0 unless the positive ones cannot hold ``count`` pixels; then the rest is uniform."""
    weights = np.asarray(weights, np.float64)
    positive = weights > 0
    if positive.sum() <= count:  # every weighted pixel, then an even share of the others
        chances = positive.astype(np.float64)
        rest = weights.size - int(positive.sum())
        if rest:
            chances[~positive] = (count - positive.sum()) / rest
        return chances
    return np.minimum(1.0, weights * _water_level(np.sort(weights[positive])[::-1], count))


def _water_level(ordered: np.ndarray, count: int) -> float:
    """The scale ``a`` of :func:`inclusion_probabilities`, from the positive weights heaviest first (more than
    ``count`` of them)."""
    tail = np.cumsum(ordered[::-1])[::-1]  # tail[k]: the weight left when the k heaviest pixels are taken whole
    full = np.arange(count + 1)
    scales = (count - full) / tail[full]
    # the fewest heaviest pixels at chance 1 after which no other pixel's scaled weight passes 1
    return scales[np.argmax(ordered[full] * scales <= 1.0)]


def _inclusion_from_levels(levels: np.ndarray, table: np.ndarray, count: int) -> np.ndarray:
    """:func:`inclusion_probabilities` of ``weights = table[levels]``, bit for bit, for a small ``table``: the
    weights sorted are the table's values repeated by how often each level occurs, so no pixel-wide sort is
    needed (it was most of a plan's time)."""
    weights = table[levels]
    if not weights.any() or (weights > 0).sum() <= count:
        return inclusion_probabilities(weights if weights.any() else np.ones_like(weights), count)
    values, where = np.unique(table, return_inverse=True)
    occurrences = np.bincount(where, weights=np.bincount(levels, minlength=len(table))).astype(np.int64)
    keep = values > 0
    ordered = np.repeat(values[keep][::-1], occurrences[keep][::-1])
    return np.minimum(1.0, weights * _water_level(ordered, count))


def block_weighted_pixels(count: int, plan: BlockPlan, context: ClientContext,
                          rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct pixels, each pixel's chance in proportion to its weight: its block's class weight,
    the sprite weight inside the boxes predicted from the client's own states, the status bar's weight on
    the status bar. A systematic draw over the pixels grouped by block (random order inside a block) places
    within one of the expected number of samples in every block."""
    block, region = block_regions(plan.offset)
    # each pixel's level: its block's class, BLOCK_CLASSES inside a predicted sprite box, + 1 on the status bar
    levels = np.where(block >= 0, plan.classes.reshape(-1)[np.maximum(block, 0)], BLOCK_CLASSES + 1)
    if context.state is not None:
        boxes = predict_boxes(context.state, context.state_mask, context.previous_state, context.previous_mask,
                              steps=BLOCK_SPRITE_LOOKAHEAD, margin=BLOCK_SPRITE_MARGIN)
        levels[box_mask(boxes).reshape(-1) & (block >= 0)] = BLOCK_CLASSES
    if plan.fast_order:
        return _fast_block_draw(count, plan.offset, levels, np.asarray(plan.weights, np.float64), rng)
    chances = _inclusion_from_levels(levels, np.asarray(plan.weights, np.float64), count)
    order = np.argsort(region + rng.random(region.size), kind="stable")
    chances = chances[order]
    cumulative = np.cumsum(chances)
    cumulative *= count / cumulative[-1]  # no float drift: exactly count units
    start = 1e-6 + (1 - 2e-6) * rng.random()  # the draw's points sit at start, start + 1, ...
    points_below = np.ceil(cumulative - start).astype(np.int64)
    picked = np.flatnonzero(np.diff(points_below, prepend=0) > 0)
    if len(picked) != count:  # a rounding tie at a unit boundary: settle it on the likeliest pixels
        taken = np.zeros(order.size, bool)
        taken[picked] = True
        ranked = np.argsort(-(chances + taken * 2.0), kind="stable")
        picked = np.sort(ranked[:count])
    pixels = order[picked]
    return _pixels_to_coords(_ROWS[pixels], _COLS[pixels])


def _level_chances(levels: np.ndarray, table: np.ndarray, count: int) -> np.ndarray:
    """Each level's inclusion chance, ``min(1, a * table)`` with ``a`` water-filled over the levels' pixel counts
    so that the chances sum to ``count`` (:func:`inclusion_probabilities`, solved on the few levels)."""
    occurrences = np.bincount(levels, minlength=len(table)).astype(np.float64)
    weights = table if (table[occurrences > 0] > 0).any() else np.ones_like(table)
    positive = (occurrences > 0) & (weights > 0)
    if occurrences[positive].sum() <= count:  # every weighted pixel, then an even share of the others
        rest = occurrences[~positive].sum()
        return np.where(positive, 1.0, (count - occurrences[positive].sum()) / rest if rest else 0.0)
    heaviest_first = np.flatnonzero(positive)[np.argsort(-weights[positive], kind="stable")]
    for saturated in range(len(heaviest_first)):
        open_levels = heaviest_first[saturated:]
        scale = (count - occurrences[heaviest_first[:saturated]].sum()) / (occurrences[open_levels]
                                                                          * weights[open_levels]).sum()
        if scale * weights[open_levels[0]] <= 1.0:
            break
    return np.where(positive, np.minimum(1.0, weights * scale), 0.0)


def _fast_block_draw(count: int, offset: int, levels: np.ndarray, table: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """The systematic draw of :func:`block_weighted_pixels` for a plan with ``fast_order``: chances solved on the
    levels, the within-block order of :func:`_shuffled_by_region`, the points placed by binary search."""
    order = _shuffled_by_region(offset, rng)
    cumulative = np.cumsum(_level_chances(levels, table, count)[levels[order]])
    cumulative *= count / cumulative[-1]  # no float drift: exactly count units
    start = 1e-6 + (1 - 2e-6) * rng.random()  # the draw's points sit at start, start + 1, ...
    # point k falls to the first pixel whose cumulative chance passes it; a chance is at most 1, so no pixel
    # holds two points
    picked = np.minimum(np.searchsorted(cumulative, start + np.arange(count), side="right"), order.size - 1)
    if len(np.unique(picked)) != count:  # a rounding tie at a unit boundary: the next free pixels instead
        picked = np.unique(picked)
        free = np.setdiff1d(np.arange(order.size), picked)
        picked = np.concatenate([picked, free[:count - len(picked)]])
    pixels = order[picked]
    return _pixels_to_coords(_ROWS[pixels], _COLS[pixels])


# --- coordinates from a description (the one function both sides run) ------------------------------------


def _check_fields(description: Any) -> str:
    """The description's kind, after checking that it is a dict with exactly that kind's fields."""
    if not isinstance(description, dict):
        raise ValueError(f"a coordinate description is a dict with a kind 'k', got {type(description).__name__}")
    if "k" not in description:
        raise ValueError(f"a coordinate description needs a kind 'k' (one of {', '.join(KINDS)}), got keys "
                         f"{_short(sorted(map(str, description))[:8])}")
    kind = description["k"]
    if kind == "same":
        raise ValueError("the description 'same' means: keep the previous coordinates; the caller keeps them, "
                         "there is nothing to regenerate")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise ValueError(f"unknown coordinate description kind {_short(kind)}: expected one of {', '.join(KINDS)} "
                         "(or 'same': keep the previous coordinates)")
    required, optional = _FIELDS[kind]
    missing = required - description.keys()
    unknown = description.keys() - required - optional
    if missing or unknown:
        raise ValueError(f"a {kind!r} description has the fields {sorted(required)}"
                         + (f" and optionally {sorted(optional)}" if optional else "")
                         + (f"; missing {sorted(missing)}" if missing else "")
                         + (f"; unknown {_short(sorted(map(str, unknown))[:8])}" if unknown else ""))
    return kind


def coords_from_description(description: dict[str, Any], count: int, context: ClientContext | None = None) -> np.ndarray:
    """Regenerate the ``(count, 2)`` float32 coordinates a policy described (what the client runs).

    See the module docstring for the kinds and their fields. Raises ``ValueError`` (nothing else)
    for a malformed description: not a dict, an unknown kind, a missing or unknown field, a field of
    the wrong type, a seed outside ``[0, SEED_LIMIT)``, a grid larger than the frame, packed bytes of
    the wrong length, or a ``count`` outside ``[1, H * W]``. Every size is checked before anything
    is allocated.
    """
    count = check_count(count)
    if context is not None and not isinstance(context, ClientContext):
        raise ValueError(f"context must be a ClientContext or None, got {type(context).__name__}")
    kind = _check_fields(description)
    if kind == "fixed":
        pattern = PATTERN_ORDER[_integer(description["p"], "p", 0, len(PATTERN_ORDER) - 1)]
        if pattern in RANDOM_PATTERNS:
            if "s" not in description:
                raise ValueError(f"the {pattern!r} pattern is a random draw: its description needs a seed 's'")
            return make_pattern(pattern, count, _seed_rng(description))
        if "s" in description:
            _integer(description["s"], "s", 0, SEED_LIMIT - 1)
        return make_pattern(pattern, count)
    if kind == "patch":
        return patch_coords(count, _seed_rng(description))
    if kind == "ram":
        config = RamGuidedConfig.from_description(description["c"])
        return ram_guided_pixels(count, config, context or ClientContext(), _seed_rng(description))
    if kind == "tiers":
        tiles = _integer(description["g"], "g", 1, MAX_TILES)
        share, *budget = _integers(description["c"], "c", 1 + len(TIERS))
        if not 0 <= share <= 1000 or min(budget) < 0 or sum(budget) != 1000:
            raise ValueError(f"description field 'c' is the importance share in per mille ([0, 1000]) and the "
                             f"{len(TIERS)} tier budgets in per mille (>= 0, summing to 1000), got {[share, *budget]}")
        tiers = unpack_tiers(_bytes(description["t"], "t", length=packed_tier_bytes(tiles)), tiles)
        config = HierarchyConfig(tier_budget=tuple(b / 1000 for b in budget), importance_share=share / 1000,
                                 tiles=tiles)
        return hierarchical_pixels(count, tiers, config, _seed_rng(description))
    if kind == "blocks":
        return block_weighted_pixels(count, BlockPlan.from_description(description), context or ClientContext(),
                                     _seed_rng(description))
    weights = _bytes(description["w"], "w", max_length=MAX_TILES * MAX_TILES)
    tiles = int(round(np.sqrt(len(weights))))
    if len(weights) == 0 or tiles * tiles != len(weights):
        raise ValueError(f"description field 'w' holds one byte per tile of a square K x K grid (1 <= K <= "
                         f"{MAX_TILES}), got {len(weights)} bytes")
    return allocation_to_coords(np.frombuffer(weights, np.uint8).astype(np.float64), count, tiles)


def coords_from_message(message, count: int, context: ClientContext, previous: np.ndarray | None) -> np.ndarray:
    """The ``(count, 2)`` coordinates a ``sgaps_env.wire.UVCoordinates`` message asks for, as a client expands
    it: explicit coordinates as they are, ``{"k": "same"}`` the ``previous`` ones, any other description by
    :func:`coords_from_description` from the client's own ``context``. ``ValueError`` naming the frame for a
    message that does not give ``count`` coordinates."""
    if message.description is None:
        if len(message.coords) != count:
            raise ValueError(f"frame {message.frame_id}: the server sent {len(message.coords)} coordinates, but the "
                             f"session samples {count} pixels a frame (its SessionStartAck)")
        return message.coords
    if message.description.get("k") == "same":
        if previous is None:
            raise ValueError(f"frame {message.frame_id}: the server said 'same coordinates as before', but there "
                             "were none before (the first UVCoordinates of a session must give them)")
        return previous
    try:
        return coords_from_description(message.description, count, context)
    except ValueError as error:
        raise ValueError(f"frame {message.frame_id}: the coordinate description cannot be expanded ({error})") from None
