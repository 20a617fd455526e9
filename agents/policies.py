"""Sampling policies: from what has been seen so far, choose the next frame's N pixel coordinates.

Every policy implements ``sgaps_env.sampler.Sampler`` (``reset(seed) -> (N, 2)`` for the first frame,
``next_coords(observation, info) -> (N, 2)`` for the frame after ``observation``), so the recorder,
the environment and the offline evaluation take any of them. ``make_policy(name, count)`` builds
one by name:

| name | family | what it samples |
|---|---|---|
| `uniform_grid`, `checkerboard` | fixed | the same regular pattern every frame |
| `random`, `stratified` | fixed | a fresh uniform / jittered-grid draw every frame |
| `patch` | fixed | whole 16x16 patches at random (MAE-style), as many pixels as the budget |
| `importance` | adaptive | the SPT's importance map (0.4 MC dropout + 0.3 attention + 0.3 temporal error, see `models.importance`), tiered into critical / important / moderate / optional tiles, 60% of the budget by tier and 40% stratified, shifted by the predicted camera motion |
| `ram` | adaptive | the sprite boxes the state vector gives, moved to where the objects will be next frame, and the status-bar digits; the rest stratified |
| `learned` | learned | a stable-baselines3 policy trained by `experiments/train_sampler.py` on `SamplerLearningWrapper` (tile weights) |
| `oracle` | evaluation only | the pixels where the current reconstruction, moved by the camera, is furthest from the TRUE next frame: it reads the future, so it is an upper bound, not a policy |

**What goes down the wire.** Coordinates are not sent one by one: each policy (but the oracle)
describes its choice compactly in ``policy.description`` (a msgpack-able dict: a seed, a quantised
tier map, tile weights) and the client regenerates the exact same coordinates with
``coords_from_description(description, count, context)`` from that and what it knows itself (its own
state vectors). The policy computes its coordinates through the same function, so the two cannot
disagree. The oracle's description is ``None``: its coordinates must be sent explicitly.

**What a policy sees.** ``observation`` is the env's (``pixels``, ``state``, ``state_mask``) of the
frame just sampled; ``info`` may carry ``"reconstruction"`` (the server's reconstruction of it) and,
for the oracle only, ``"next_frame"`` (the true ``(H, W, 3)`` uint8 frame about to be sampled).
Policies draw from their own generator, seeded by ``reset(seed)``.

The mask-update scheduler (``MaskUpdateScheduler``, ``ScheduledPolicy``) decides on which frames a
policy chooses new coordinates; on the others the previous coordinates are reused and nothing needs
to be sent down (description ``{"k": "same"}``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sgaps_env.coords import (FRAME_HEIGHT, FRAME_WIDTH, PATTERNS, RANDOM_PATTERNS, frame_values, make_pattern,
                              pixel_to_uv, uv_to_pixel)
from sgaps_env.sprites import box_mask, camera_velocity, hud_digit_mask, predict_boxes
from sgaps_env.wrappers import allocate_tile_counts, allocation_to_coords, tile_edges

#: Every policy ``make_policy`` builds, in the order reports list them.
POLICY_NAMES = ("uniform_grid", "checkerboard", "random", "stratified", "patch", "importance", "ram", "learned",
                "oracle")
FAMILIES = {"uniform_grid": "fixed", "checkerboard": "fixed", "random": "fixed", "stratified": "fixed",
            "patch": "fixed", "importance": "adaptive", "ram": "adaptive", "learned": "learned",
            "oracle": "oracle (reads the true next frame)"}
#: ``PATTERNS`` names in a fixed order, so that a description sends a small index, not the name.
_PATTERN_ORDER = tuple(sorted(PATTERNS))
PATCH_SIZE = 16
_SEED_LIMIT = 2 ** 32


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
        self.previous_state, self.previous_mask = self.state, self.state_mask
        self.state, self.state_mask = np.asarray(state).copy(), np.asarray(state_mask).copy()


# --- coordinates from a description (the one function both sides run) ------------------------------------


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


def _patch_coords(count: int, rng: np.random.Generator) -> np.ndarray:
    """Whole ``PATCH_SIZE`` patches of the patch grid at random, in raster order inside each patch; the
    last patch is cut short so that exactly ``count`` pixels are taken."""
    grid_rows, grid_cols = FRAME_HEIGHT // PATCH_SIZE, FRAME_WIDTH // PATCH_SIZE
    patches = -(-count // (PATCH_SIZE * PATCH_SIZE))
    chosen = rng.choice(grid_rows * grid_cols, size=patches, replace=False)
    inner_rows, inner_cols = np.divmod(np.arange(PATCH_SIZE * PATCH_SIZE), PATCH_SIZE)
    rows = (chosen[:, None] // grid_cols * PATCH_SIZE + inner_rows[None]).reshape(-1)[:count]
    cols = (chosen[:, None] % grid_cols * PATCH_SIZE + inner_cols[None]).reshape(-1)[:count]
    return _pixels_to_coords(rows, cols)


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

    def to_description(self) -> list[int]:
        """Per-mille shares and pixel counts: small integers msgpack packs in a byte or two."""
        return [round(self.sprite_share * 1000), round(self.sprite_density * 1000), round(self.hud_share * 1000),
                int(self.margin), int(self.lookahead)]

    @classmethod
    def from_description(cls, values: list[int]) -> "RamGuidedConfig":
        sprite, density, hud, margin, lookahead = values
        return cls(sprite / 1000, density / 1000, hud / 1000, int(margin), int(lookahead))


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


#: Tiers of the hierarchical budget, most important first.
TIERS = ("critical", "important", "moderate", "optional")


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


def tier_map(importance: np.ndarray, config: HierarchyConfig) -> np.ndarray:
    """``(tiles, tiles)`` int tier (0 critical .. 3 optional) of each tile, by its mean importance."""
    row_edges, col_edges = tile_edges(config.tiles)
    means = np.add.reduceat(np.add.reduceat(importance, row_edges[:-1], axis=0), col_edges[:-1], axis=1)
    means = means / np.outer(np.diff(row_edges), np.diff(col_edges))
    order = np.argsort(-means.reshape(-1), kind="stable")
    bounds = np.round(np.cumsum(config.tier_area) * order.size).astype(int)
    tiers = np.empty(order.size, np.uint8)
    tiers[order] = np.searchsorted(bounds, np.arange(order.size), side="right")
    return np.minimum(tiers, 3).reshape(config.tiles, config.tiles)


def _pack_tiers(tiers: np.ndarray) -> bytes:
    flat = tiers.reshape(-1).astype(np.uint8)
    flat = np.concatenate([flat, np.zeros(-len(flat) % 4, np.uint8)]).reshape(-1, 4)
    return (flat[:, 0] | flat[:, 1] << 2 | flat[:, 2] << 4 | flat[:, 3] << 6).astype(np.uint8).tobytes()


def _unpack_tiers(packed: bytes, tiles: int) -> np.ndarray:
    data = np.frombuffer(packed, np.uint8)
    flat = np.stack([data & 3, data >> 2 & 3, data >> 4 & 3, data >> 6 & 3], axis=1).reshape(-1)
    if flat.size < tiles * tiles:
        raise ValueError(f"a tier map for a {tiles}x{tiles} grid needs {tiles * tiles} tiers, got {flat.size}")
    return flat[:tiles * tiles].reshape(tiles, tiles)


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


def quantise_weights(weights) -> bytes:
    """Tile weights (only ratios matter) -> one byte each, the largest as 255 (all zero -> all zero)."""
    array = np.clip(np.nan_to_num(np.asarray(weights, np.float64).reshape(-1)), 0.0, None)
    top = array.max() if array.size else 0.0
    return (np.round(array / top * 255) if top > 0 else np.zeros_like(array)).astype(np.uint8).tobytes()


def coords_from_description(description: dict[str, Any], count: int, context: ClientContext | None = None) -> np.ndarray:
    """Regenerate the ``(count, 2)`` coordinates a policy described (what the client runs).

    | ``k`` | fields | coordinates |
    |---|---|---|
    | `"fixed"` | `p` pattern index, `s` seed | ``make_pattern`` with a generator seeded by ``s`` |
    | `"patch"` | `s` | random 16x16 patches |
    | `"ram"` | `s`, `c` config | :func:`ram_guided_pixels` from the client's own state vectors |
    | `"tiers"` | `s`, `g` grid side, `t` packed 2-bit tiers, `c` config | :func:`hierarchical_pixels` |
    | `"tiles"` | `w` one byte per tile | ``allocation_to_coords`` of the weights (deterministic) |
    """
    if not isinstance(description, dict) or "k" not in description:
        raise ValueError(f"a coordinate description is a dict with a kind 'k', got {description!r}")
    kind = description["k"]
    rng = np.random.default_rng(description.get("s"))
    if kind == "fixed":
        return make_pattern(_PATTERN_ORDER[description["p"]], count, rng)
    if kind == "patch":
        return _patch_coords(count, rng)
    if kind == "ram":
        return ram_guided_pixels(count, RamGuidedConfig.from_description(description["c"]), context or ClientContext(),
                                 rng)
    if kind == "tiers":
        share, *budget = description["c"]
        tiles = int(description["g"])
        config = HierarchyConfig(tier_budget=tuple(b / 1000 for b in budget), importance_share=share / 1000,
                                 tiles=tiles)
        return hierarchical_pixels(count, _unpack_tiers(description["t"], tiles), config, rng)
    if kind == "tiles":
        weights = np.frombuffer(description["w"], np.uint8).astype(np.float64)
        tiles = int(round(np.sqrt(weights.size)))
        return allocation_to_coords(weights, count, tiles)
    raise ValueError(f"unknown coordinate description kind {kind!r}: expected fixed, patch, ram, tiers or tiles "
                     "(or 'same': keep the previous coordinates)")


# --- the policies ------------------------------------------------------------------------------------


class _DescribedPolicy:
    """Common machinery: a generator seeded by ``reset``, the client's context, and coordinates that
    always come out of :func:`coords_from_description`."""

    name = "policy"
    family = "fixed"
    needs_truth = False

    def __init__(self, count: int):
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= FRAME_HEIGHT * FRAME_WIDTH:
            raise ValueError(f"count must be an integer in [1, {FRAME_HEIGHT * FRAME_WIDTH}] pixels, got {count!r}")
        self.count = int(count)
        self.description: dict[str, Any] | None = None
        self.reset(None)

    def _seed(self) -> int:
        return int(self._rng.integers(_SEED_LIMIT))

    def reset(self, seed: int | None = None) -> np.ndarray:
        self._rng = np.random.default_rng(seed)
        self.context = ClientContext()
        return self._emit(self._first_description())

    def _first_description(self) -> dict[str, Any]:
        return self._describe(None, {})

    def _emit(self, description: dict[str, Any]) -> np.ndarray:
        self.description = description
        return coords_from_description(description, self.count, self.context)

    def observe(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        """See a frame without choosing coordinates (the scheduler kept the previous ones)."""
        self.context.advance(observation["state"], observation["state_mask"])

    def next_coords(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        self.context.advance(observation["state"], observation["state_mask"])
        return self._emit(self._describe(observation, info))

    def _describe(self, observation, info) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(count={self.count})"


class FixedPolicy(_DescribedPolicy):
    """A fixed pattern of ``sgaps_env.coords.PATTERNS``; ``random`` and ``stratified`` redraw every frame."""

    family = "fixed"

    def __init__(self, pattern: str, count: int):
        if pattern not in PATTERNS:
            raise ValueError(f"unknown sampling pattern {pattern!r}: expected one of {sorted(PATTERNS)}")
        self.pattern, self.name = pattern, pattern
        super().__init__(count)

    def _describe(self, observation, info) -> dict[str, Any]:
        description = {"k": "fixed", "p": _PATTERN_ORDER.index(self.pattern)}
        if self.pattern in RANDOM_PATTERNS:
            description["s"] = self._seed()
        return description


class PatchPolicy(_DescribedPolicy):
    """MAE-style: whole 16x16 patches chosen at random every frame, as many pixels as the budget."""

    name, family = "patch", "fixed"

    def _describe(self, observation, info) -> dict[str, Any]:
        return {"k": "patch", "s": self._seed()}


class RamGuidedPolicy(_DescribedPolicy):
    """Spends the budget where the state vector says things move: see :func:`ram_guided_pixels`."""

    name, family = "ram", "adaptive"

    def __init__(self, count: int, config: RamGuidedConfig | None = None):
        self.config = config or RamGuidedConfig()
        super().__init__(count)

    def _describe(self, observation, info) -> dict[str, Any]:
        return {"k": "ram", "s": self._seed(), "c": self.config.to_description()}


class ImportancePolicy(_DescribedPolicy):
    """The seed's importance-based sampler on the SPT (``models.importance``), through the hierarchical
    budget and the 60/40 hybrid. The first frame of a session is stratified (nothing seen yet)."""

    name, family = "importance", "adaptive"

    def __init__(self, count: int, analyzer=None, config: HierarchyConfig | None = None):
        from models.importance import ImportanceAnalyzer

        self.analyzer = analyzer if analyzer is not None else ImportanceAnalyzer()
        self.config = config or HierarchyConfig()
        self.last_maps = None
        super().__init__(count)

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.analyzer.reset()
        self.last_maps = None
        return super().reset(seed)

    def _first_description(self) -> dict[str, Any]:
        return {"k": "fixed", "p": _PATTERN_ORDER.index("stratified"), "s": self._seed()}

    def observe(self, observation, info) -> None:
        super().observe(observation, info)
        self.analyzer.observe(observation["pixels"], observation["state"], observation["state_mask"])

    def _describe(self, observation, info) -> dict[str, Any]:
        self.last_maps = self.analyzer.analyze(observation["pixels"], observation["state"], observation["state_mask"])
        config = self.config
        return {"k": "tiers", "s": self._seed(), "g": config.tiles,
                "t": _pack_tiers(tier_map(self.last_maps.combined, config)),
                "c": [round(config.importance_share * 1000), *[round(b * 1000) for b in config.tier_budget]]}


class LearnedPolicy(_DescribedPolicy):
    """A stable-baselines3 policy trained by ``experiments/train_sampler.py``: it sees the cleaned
    observation (as ``SamplerLearningWrapper`` gives it) and outputs tile weights, sent as one byte
    each. The first frame is the uniform allocation, as in the wrapper."""

    name, family = "learned", "learned"

    def __init__(self, count: int, path: str | Path, deterministic: bool = True):
        from stable_baselines3 import PPO

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no sampler model at {path}: train one with `python experiments/train_sampler.py` "
                             "(it writes runs/sampler/final_model.zip)")
        self.path, self.deterministic = path, deterministic
        self.model = PPO.load(path, device="cpu")
        shape = self.model.action_space.shape
        self.tiles = int(round(np.sqrt(shape[0]))) if len(shape) == 1 else 0
        if self.tiles * self.tiles != (shape[0] if len(shape) == 1 else -1):
            raise ValueError(f"{path} outputs actions of shape {shape}, not K*K tile weights: it is not a sampler "
                             "trained on SamplerLearningWrapper")
        self.pixel_shape = tuple(self.model.observation_space["pixels"].shape)
        if self.pixel_shape[0] != count:
            raise ValueError(f"{path} was trained with {self.pixel_shape[0]} pixels per frame, not {count}: evaluate it "
                             f"at its own budget or train one with --sample-count {count}")
        super().__init__(count)

    def _first_description(self) -> dict[str, Any]:
        return {"k": "tiles", "w": bytes(self.tiles * self.tiles)}

    def _describe(self, observation, info) -> dict[str, Any]:
        from sgaps_env.wrappers import clean_observation

        action, _ = self.model.predict(clean_observation(observation), deterministic=self.deterministic)
        return {"k": "tiles", "w": quantise_weights(action)}


class OraclePolicy(_DescribedPolicy):
    """EVALUATION ONLY: samples the ``count`` pixels where the current reconstruction, shifted by the
    predicted camera scroll, differs most from the true next frame (``info["next_frame"]``) — so every
    sample lands on the largest remaining error. It reads the future; it is an upper bound for
    greedy error-driven sampling, not something a server could run. Its coordinates cannot be
    described: ``description`` is ``None`` and the wire carries them explicitly."""

    name, family, needs_truth = "oracle", "oracle (reads the true next frame)", True

    def _first_description(self) -> dict[str, Any]:
        return {"k": "fixed", "p": _PATTERN_ORDER.index("stratified"), "s": self._seed()}

    def next_coords(self, observation, info) -> np.ndarray:
        from models.importance import shift_with_camera

        if "next_frame" not in info or "reconstruction" not in info:
            raise ValueError("the oracle reads the true next frame: pass info['next_frame'] (uint8 (H, W, 3)) and "
                             "info['reconstruction']; it runs in offline evaluation only (experiments/evaluate_policies.py)")
        previous = self.context.state
        self.context.advance(observation["state"], observation["state_mask"])
        scroll = camera_velocity(observation["state"], previous) if previous is not None else 0
        reconstruction = np.asarray(info["reconstruction"], np.float32)
        truth = frame_values(np.asarray(info["next_frame"]), "gray" if reconstruction.shape[-1] == 1 else "rgb")
        error = np.abs(shift_with_camera(reconstruction, scroll, fill=np.nan) - truth).sum(axis=2)
        error = np.nan_to_num(error, nan=3.0)
        # random tie-break, so that equal errors (e.g. all zero) are not taken in raster order
        order = np.lexsort((self._rng.random(error.size), -error.reshape(-1)))[:self.count]
        self.description = None
        return _pixels_to_coords(order // FRAME_WIDTH, order % FRAME_WIDTH)


# --- the mask-update scheduler -----------------------------------------------------------------------


SCHEDULES = ("fixed", "interval", "quality", "adaptive")


@dataclass(frozen=True)
class MaskUpdateScheduler:
    """When a policy chooses new coordinates (the seed's mask-update strategies):

    | strategy | a new mask on frame t when |
    |---|---|
    | `fixed` | never after the first: the first frame's coordinates are kept |
    | `interval` | ``t % interval == 0`` |
    | `quality` | the last frame's quality ``metric`` fell below ``threshold`` |
    | `adaptive` | either of the two |
    """

    strategy: str = "interval"
    interval: int = 4
    threshold: float = 0.95
    metric: str = "ssim"

    def __post_init__(self):
        if self.strategy not in SCHEDULES:
            raise ValueError(f"unknown mask-update strategy {self.strategy!r}: expected one of {SCHEDULES}")
        if self.interval < 1:
            raise ValueError(f"interval must be >= 1 frame, got {self.interval}")

    def should_update(self, frame_index: int, quality: dict[str, float] | None = None) -> bool:
        if self.strategy == "fixed":
            return False
        on_interval = frame_index % self.interval == 0
        if self.strategy == "interval":
            return on_interval
        if quality is None or self.metric not in quality:
            raise ValueError(f"the {self.strategy!r} schedule needs the last frame's quality: pass "
                             f"info['quality'] = {{{self.metric!r}: value}}")
        poor = quality[self.metric] < self.threshold
        return poor if self.strategy == "quality" else (poor or on_interval)


class ScheduledPolicy:
    """A policy whose coordinates change only when ``scheduler`` says so; in between it still sees
    every frame (``observe``) and sends nothing new (``description == {"k": "same"}``). The frame index
    counts frames sampled since ``reset``; ``info["quality"]`` feeds quality-based schedules."""

    def __init__(self, policy, scheduler: MaskUpdateScheduler):
        self.policy, self.scheduler = policy, scheduler
        self.count, self.family, self.needs_truth = policy.count, policy.family, policy.needs_truth
        tag = {"fixed": "fixed", "interval": f"every{scheduler.interval}", "quality": f"{scheduler.metric}<{scheduler.threshold:g}",
               "adaptive": f"every{scheduler.interval}|{scheduler.metric}<{scheduler.threshold:g}"}[scheduler.strategy]
        self.name = f"{policy.name}@{tag}"
        self.description = None

    def reset(self, seed: int | None = None) -> np.ndarray:
        self._frame = 0
        self._coords = self.policy.reset(seed)
        self.description = self.policy.description
        return self._coords.copy()

    def next_coords(self, observation, info) -> np.ndarray:
        self._frame += 1
        if self.scheduler.should_update(self._frame, info.get("quality")):
            self._coords = self.policy.next_coords(observation, info)
            self.description = self.policy.description
        else:
            self.policy.observe(observation, info)
            self.description = {"k": "same"}
        return self._coords.copy()


# --- by name -------------------------------------------------------------------------------------


def make_policy(name: str, count: int, *, learned_path: str | Path | None = None,
                analyzer=None, ram_config: RamGuidedConfig | None = None):
    """The policy called ``name`` (one of ``POLICY_NAMES``) with a budget of ``count`` pixels.

    ``learned_path`` is the sampler ``.zip`` the ``learned`` policy loads; ``analyzer`` an
    ``models.importance.ImportanceAnalyzer`` for ``importance`` (a new one on the shipped SPT otherwise).
    """
    if name in PATTERNS:
        return FixedPolicy(name, count)
    if name == "patch":
        return PatchPolicy(count)
    if name == "ram":
        return RamGuidedPolicy(count, ram_config)
    if name == "importance":
        return ImportancePolicy(count, analyzer)
    if name == "learned":
        if learned_path is None:
            raise ValueError("the learned policy needs the model file: pass learned_path (the .zip "
                             "experiments/train_sampler.py writes, e.g. runs/sampler/final_model.zip)")
        return LearnedPolicy(count, learned_path)
    if name == "oracle":
        return OraclePolicy(count)
    raise ValueError(f"unknown sampling policy {name!r}: expected one of {POLICY_NAMES}")
