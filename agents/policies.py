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
| `uncertainty` | adaptive | each level block under the next screen by what the tile reconstructor's memory knows of it (confirmed, guessed, uncertain, unseen), the predicted sprite boxes and the status bar by their own weights (``UncertaintyPolicy``) |
| `learned` | learned | the uncertainty policy's weights corrected frame by frame by a stable-baselines3 policy trained by `experiments/train_sampler.py` on `agents.sampler_env.SamplerReplayEnv` (worlds 1-4) |
| `oracle` | evaluation only | the pixels where the current reconstruction, moved by the camera, is furthest from the TRUE next frame: it reads the future, so it is an upper bound, not a policy |

**What goes down the wire.** Coordinates are not sent one by one: each policy (but the oracle)
describes its choice compactly in ``policy.description`` (a msgpack-able dict: a seed, a quantised
tier map, a block class map and its weights) and the client regenerates the exact same coordinates with
``coords_from_description(description, count, context)`` from that and what it knows itself (its own
state vectors). The policy computes its coordinates through the same function, so the two cannot
disagree. That function and everything it needs (``ClientContext``, the RAM-guided and tiered fills,
the tier packing) live in ``sgaps_env.descriptions``: a client regenerates coordinates without this
package. The oracle's description is ``None``: its coordinates must be sent explicitly.

**What a policy sees.** ``observation`` is the env's (``pixels``, ``state``, ``state_mask``) of the
frame just sampled; ``info`` may carry ``"reconstruction"`` (the server's reconstruction of it) and,
for the oracle only, ``"next_frame"`` (the true ``(H, W, 3)`` uint8 frame about to be sampled).
Policies draw from their own generator, seeded by ``reset(seed)``. ``uncertainty`` and ``learned`` also
read the memory of the session's ``TileReconstructor`` (passed at construction), after it reconstructed
the frame.

The mask-update scheduler (``MaskUpdateScheduler``, ``ScheduledPolicy``) decides on which frames a
policy chooses new coordinates; on the others the previous coordinates are reused and nothing needs
to be sent down (description ``{"k": "same"}``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sgaps_env.coords import FRAME_WIDTH, PATTERNS, RANDOM_PATTERNS, color_for, frame_values, pixel_to_uv
from sgaps_env.descriptions import (BLOCK_CLASSES, BLOCK_SPRITE_LOOKAHEAD, BLOCK_SPRITE_MARGIN, BLOCK_WEIGHTS,
                                    GRID_COLUMNS, GRID_ROWS, LEVEL_BLOCK, PATTERN_ORDER, SEED_LIMIT,
                                    BlockPlan, ClientContext, HierarchyConfig, RamGuidedConfig, check_count,
                                    coords_from_description, pack_tiers)
from sgaps_env.sampler import PatternSampler
from sgaps_env.sprites import HUD_ROWS, box_mask, camera_velocity, camera_x, predict_boxes
from sgaps_env.tiles import tile_edges

#: Where ``experiments/train_sampler.py`` puts the trained sampler that ships with the repository.
DEFAULT_SAMPLER = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "sampler-blocks-worlds1-4.zip"
#: Every policy ``make_policy`` builds, in the order reports list them.
POLICY_NAMES = ("uniform_grid", "checkerboard", "random", "stratified", "patch", "importance", "ram", "uncertainty",
                "learned", "oracle")
FAMILIES = {"uniform_grid": "fixed", "checkerboard": "fixed", "random": "fixed", "stratified": "fixed",
            "patch": "fixed", "importance": "adaptive", "ram": "adaptive", "uncertainty": "adaptive", "learned": "learned",
            "oracle": "oracle (reads the true next frame)"}


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


# --- the policies ------------------------------------------------------------------------------------


class _DescribedPolicy:
    """Common machinery: a generator seeded by ``reset``, the client's context, and coordinates that
    always come out of :func:`coords_from_description`."""

    name = "policy"
    family = "fixed"
    needs_truth = False

    def __init__(self, count: int):
        self.count = check_count(count)
        self.description: dict[str, Any] | None = None
        self._rng = np.random.default_rng()
        self.reset(None)

    def _seed(self) -> int:
        return int(self._rng.integers(SEED_LIMIT))

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode: ``seed`` restarts the generator; None continues it (so a multi-episode
        rollout is fixed by its first seed, as with ``PatternSampler``)."""
        if seed is not None:
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

    def next_description(self, observation: dict[str, np.ndarray], info: dict[str, Any]) -> dict[str, Any]:
        """:meth:`next_coords` without expanding the description: a server sends it at once and expands it
        (:meth:`described_coords`) while the client samples, off the reply's path. The same coordinates."""
        self.context.advance(observation["state"], observation["state_mask"])
        self.description = self._describe(observation, info)
        return self.description

    def described_coords(self) -> np.ndarray:
        """The coordinates of the last description, from the context it was made in (call it before the next
        frame is seen)."""
        return coords_from_description(self.description, self.count, self.context)

    def _describe(self, observation, info) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(count={self.count})"


class FixedPolicy(_DescribedPolicy):
    """A fixed pattern of ``sgaps_env.coords.PATTERNS`` as ``sgaps_env.sampler.PatternSampler`` plays it
    (``random`` and ``stratified`` are redrawn every frame unless ``redraw=False``), described for the
    wire: the pattern's index and, for a random draw, the seed it is drawn with."""

    family = "fixed"

    def __init__(self, pattern: str, count: int, redraw: bool | None = None):
        self.sampler = PatternSampler(pattern, count, redraw)  # checks the pattern; owns whether it is redrawn
        self.pattern, self.name = pattern, pattern
        super().__init__(count)

    def reset(self, seed: int | None = None) -> np.ndarray:
        self._episode_seed = None
        return super().reset(seed)

    def _describe(self, observation, info) -> dict[str, Any]:
        description = {"k": "fixed", "p": PATTERN_ORDER.index(self.pattern)}
        if self.pattern in RANDOM_PATTERNS:
            if self._episode_seed is None or self.sampler.redraw:
                self._episode_seed = self._seed()
            description["s"] = self._episode_seed
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
        return {"k": "fixed", "p": PATTERN_ORDER.index("stratified"), "s": self._seed()}

    def observe(self, observation, info) -> None:
        super().observe(observation, info)
        self.analyzer.observe(observation["pixels"], observation["state"], observation["state_mask"])

    def _describe(self, observation, info) -> dict[str, Any]:
        self.last_maps = self.analyzer.analyze(observation["pixels"], observation["state"], observation["state_mask"])
        config = self.config
        return {"k": "tiers", "s": self._seed(), "g": config.tiles,
                "t": pack_tiers(tier_map(self.last_maps.combined, config)),
                "c": [round(config.importance_share * 1000), *[round(b * 1000) for b in config.tier_budget]]}


#: The uncertainty policy's weights: per knowledge class of a block (``models.tile_reconstructor.KNOWLEDGE_CLASSES``:
#: confirmed, guessed, uncertain, unseen), then inside the predicted sprite boxes, then on the status bar.
UNCERTAINTY_WEIGHTS = (5, 128, 128, 255, 128, 5)


def next_camera(state: np.ndarray, previous_state: np.ndarray | None, lookahead: float = 1) -> int:
    """Where the camera's left edge will be ``lookahead`` frames after ``state``'s (level x, >= 0): the last step's
    scroll again each frame (0: where it is now; fractions round to the nearest pixel)."""
    return max(0, int(round(camera_x(state) + lookahead * camera_velocity(state, previous_state))))


class UncertaintyPolicy(_DescribedPolicy):
    """Spends the budget where the level-agnostic reconstructor knows least about the next frame: each level
    block under the next screen (camera predicted from the last scroll) weighs by what the reconstructor's
    memory knows of it (``TileReconstructor.block_knowledge``: confirmed, guessed, uncertain, never sampled),
    the sprite boxes predicted from the state by their own weight, the status bar (drawn from the state) by
    its own. Described as a ``blocks`` plan (``sgaps_env.descriptions.BlockPlan``): 64-75 bytes down.

    ``reconstructor`` is the server's ``TileReconstructor`` of this session (the one reconstructing the frames
    this policy samples): the policy reads its memory after each frame's reconstruction. ``lookahead`` is how
    many frames ahead the camera is predicted (1: the next frame; more for a link with latency; 0: no motion
    compensation).
    """

    name, family = "uncertainty", "adaptive"

    def __init__(self, count: int, reconstructor, weights: tuple[int, ...] = UNCERTAINTY_WEIGHTS,
                 lookahead: float = 1.0, fast_order: bool = False):
        if not callable(getattr(reconstructor, "block_knowledge", None)):
            raise ValueError(f"the uncertainty policy reads the memory of a TileReconstructor (block_knowledge); got "
                             f"{type(reconstructor).__name__}: evaluate it with --reconstructor tiles")
        if not 0.0 <= lookahead <= 16.0:
            raise ValueError(f"lookahead is 0-16 frames ahead of the last state, got {lookahead}")
        self.reconstructor, self.lookahead, self.fast_order = reconstructor, float(lookahead), bool(fast_order)
        self.weights = BlockPlan(0, np.zeros((GRID_ROWS, GRID_COLUMNS), np.uint8), tuple(weights)).weights
        super().__init__(count)

    def plan(self, state: np.ndarray, previous_state: np.ndarray | None) -> BlockPlan:
        """The blocks under the next screen, classed by the reconstructor's memory after ``state``'s frame."""
        camera = next_camera(state, previous_state, self.lookahead)
        return BlockPlan(camera % LEVEL_BLOCK, self.reconstructor.block_knowledge(state, camera), self.weights,
                         self.fast_order)

    def _first_description(self) -> dict[str, Any]:
        unseen = np.full((GRID_ROWS, GRID_COLUMNS), BLOCK_CLASSES - 1, np.uint8)
        return BlockPlan(0, unseen, self.weights, self.fast_order).to_description(self._seed())

    def _describe(self, observation, info) -> dict[str, Any]:
        return self.plan(self.context.state, self.context.previous_state).to_description(self._seed())


#: Range of the learned policy's action: it multiplies each of the uncertainty policy's weights by ``64 ** a``,
#: ``a`` in [-1, 1].
WEIGHT_RANGE = 64.0
#: Range of the learned policy's last action: the camera is predicted ``1 + 2 a`` frames ahead (at least 0).
LOOKAHEAD_RANGE = 2.0
#: A learned sampler's action: the plan's ``BLOCK_WEIGHTS`` weights, then the camera's lookahead.
SAMPLER_ACTIONS = BLOCK_WEIGHTS + 1
#: Scalars after the maps in :func:`plan_features`: the last scroll (px / 16), the block grid's offset (/ 16), the
#: predicted sprite boxes (/ 8), the share of the screen's blocks never sampled and of those named on few samples,
#: and how unfamiliar the session's levels are to the codebook (``TileReconstructor.novelty``, each x 4): the
#: share of checked guesses that failed, the share of sampled blocks no codebook block matches.
PLAN_SCALARS = 7
#: Scale of the novelty scalars in :func:`plan_features` (their values are mostly below 0.3).
NOVELTY_SCALE = 4.0
#: Size of :func:`plan_features`: one-hot knowledge classes and the sprite-box cover, per block, then the scalars.
PLAN_FEATURES = (BLOCK_CLASSES + 1) * GRID_ROWS * GRID_COLUMNS + PLAN_SCALARS


def clip_action(action: np.ndarray) -> np.ndarray:
    """A learned sampler's action as the plan reads it: flat float64, NaN as 0, clipped to [-1, 1]."""
    return np.clip(np.nan_to_num(np.asarray(action, np.float64).reshape(-1)), -1.0, 1.0)


def action_to_weights(action: np.ndarray, base: tuple[int, ...] = UNCERTAINTY_WEIGHTS) -> tuple[int, ...]:
    """A learned action, ``BLOCK_WEIGHTS`` values in [-1, 1] -> the ``blocks`` plan's weights: ``base`` (the
    uncertainty policy's) each times ``64 ** a``, scaled so that the largest is 255, rounded, at least 1. An action
    of zeros is the uncertainty policy: the learned policy is a correction to it, frame by frame."""
    action = clip_action(action)
    if action.shape != (BLOCK_WEIGHTS,):
        raise ValueError(f"a learned sampler's action is {BLOCK_WEIGHTS} weights in [-1, 1] ({BLOCK_CLASSES} "
                         f"knowledge classes, sprite boxes, status bar), got shape {action.shape}")
    base = np.asarray(base, np.float64)
    if base.shape != (BLOCK_WEIGHTS,) or not (base > 0).all():
        raise ValueError(f"base weights are {BLOCK_WEIGHTS} positive numbers, got {tuple(base)}")
    weights = base * WEIGHT_RANGE ** action
    return tuple(int(w) for w in np.clip(np.round(weights * 255 / weights.max()), 1, 255))


def action_to_plan(action: np.ndarray, base: tuple[int, ...] = UNCERTAINTY_WEIGHTS,
                   base_lookahead: float = 1.0) -> tuple[tuple[int, ...], float]:
    """A learned sampler's action, ``SAMPLER_ACTIONS`` values in [-1, 1] -> ``(weights, lookahead)``: the first
    ``BLOCK_WEIGHTS`` correct the plan's weights (:func:`action_to_weights`), the last moves the camera prediction
    ``LOOKAHEAD_RANGE`` frames either way of ``base_lookahead`` (at least 0 frames ahead). Zeros are the uncertainty
    policy."""
    action = clip_action(action)
    if action.shape != (SAMPLER_ACTIONS,):
        raise ValueError(f"a learned sampler's action is {SAMPLER_ACTIONS} values in [-1, 1] ({BLOCK_WEIGHTS} weights "
                         f"and the camera's lookahead), got shape {action.shape}")
    return action_to_weights(action[:BLOCK_WEIGHTS], base), max(0.0, base_lookahead + LOOKAHEAD_RANGE * action[-1])


def plan_features(reconstructor, state: np.ndarray, state_mask: np.ndarray, previous_state: np.ndarray | None,
                  previous_mask: np.ndarray | None) -> np.ndarray:
    """What the server knows when it plans the next frame's samples, as the learned policy sees it:
    ``(PLAN_FEATURES,)`` float32 = the knowledge class of each block under the next screen, one-hot
    ``(BLOCK_CLASSES, GRID_ROWS, GRID_COLUMNS)``; the share of each block inside the predicted sprite boxes
    ``(GRID_ROWS, GRID_COLUMNS)``; then the :data:`PLAN_SCALARS` scalars."""
    camera = next_camera(state, previous_state)
    offset = camera % LEVEL_BLOCK
    knowledge = reconstructor.block_knowledge(state, camera)
    onehot = (knowledge[None] == np.arange(BLOCK_CLASSES)[:, None, None]).astype(np.float32)
    boxes = predict_boxes(state, state_mask, previous_state, previous_mask, steps=BLOCK_SPRITE_LOOKAHEAD,
                          margin=BLOCK_SPRITE_MARGIN)
    cover = np.zeros((GRID_ROWS, GRID_COLUMNS), np.float32)
    if boxes:
        level = box_mask(boxes)[HUD_ROWS:].astype(np.float32)
        padded = np.zeros((GRID_ROWS * LEVEL_BLOCK, GRID_COLUMNS * LEVEL_BLOCK), np.float32)
        padded[:, offset:offset + FRAME_WIDTH] = level
        cover = padded.reshape(GRID_ROWS, LEVEL_BLOCK, GRID_COLUMNS, LEVEL_BLOCK).mean(axis=(1, 3))
    failed_guesses, unmatched = reconstructor.novelty()
    scalars = [camera_velocity(state, previous_state) / 16, offset / 16, min(2.0, len(boxes) / 8),
               float(onehot[BLOCK_CLASSES - 1].mean()), float(onehot[1].mean()),
               min(2.0, NOVELTY_SCALE * failed_guesses), min(2.0, NOVELTY_SCALE * unmatched)]
    return np.concatenate([onehot.reshape(-1), cover.reshape(-1), np.asarray(scalars, np.float32)])


class LearnedPolicy(UncertaintyPolicy):
    """The uncertainty policy with its weights corrected frame by frame by a stable-baselines3 policy, from what
    the server knows (:func:`plan_features`, :func:`action_to_plan`), and its camera prediction's lookahead; trained by ``experiments/train_sampler.py``
    on worlds 1-4 (``agents.sampler_env.SamplerReplayEnv``). Same ``blocks`` description, same reconstructor
    memory."""

    name, family = "learned", "learned"

    def __init__(self, count: int, path: str | Path, reconstructor, deterministic: bool = True, model=None,
                 fast_order: bool = False):
        """``model``: the PPO already loaded from ``path`` (a server shares one among its sessions; it is only read)."""
        from stable_baselines3 import PPO

        path = Path(path)
        if model is None and not path.is_file():
            raise ValueError(f"no sampler model at {path}: train one with `python experiments/train_sampler.py` "
                             f"(it writes runs/sampler/final_model.zip) or use the shipped {DEFAULT_SAMPLER}")
        self.path, self.deterministic = path, deterministic
        self.model = PPO.load(path, device="cpu") if model is None else model
        if self.model.observation_space.shape != (PLAN_FEATURES,) or self.model.action_space.shape != (SAMPLER_ACTIONS,):
            raise ValueError(f"{path} maps observations of shape {self.model.observation_space.shape} to actions of "
                             f"shape {self.model.action_space.shape}, not ({PLAN_FEATURES},) plan features to "
                             f"({SAMPLER_ACTIONS},) block weights and lookahead: it is not a sampler trained by "
                             "experiments/train_sampler.py on this version")
        trained = getattr(self.model, "sgaps_sampler", None)
        if not isinstance(trained, dict) or trained.get("weight_range") != WEIGHT_RANGE \
                or trained.get("lookahead_range") != LOOKAHEAD_RANGE or len(trained.get("base_weights", ())) != BLOCK_WEIGHTS:
            raise ValueError(f"{path} does not say which weights its actions correct (model.sgaps_sampler, written by "
                             "experiments/train_sampler.py) or was trained with another weight range: retrain it")
        self.base_weights = tuple(int(w) for w in trained["base_weights"])
        super().__init__(count, reconstructor, self.base_weights, fast_order=fast_order)

    def _describe(self, observation, info) -> dict[str, Any]:
        context = self.context
        features = plan_features(self.reconstructor, context.state, context.state_mask, context.previous_state,
                                 context.previous_mask)
        action, _ = self.model.predict(features, deterministic=self.deterministic)
        self.weights, self.lookahead = action_to_plan(action, self.base_weights)
        return super()._describe(observation, info)


class OraclePolicy(_DescribedPolicy):
    """EVALUATION ONLY: samples the ``count`` pixels where the current reconstruction, shifted by the
    predicted camera scroll, differs most from the true next frame (``info["next_frame"]``) — so every
    sample lands on the largest remaining error. It reads the future; it is an upper bound for
    greedy error-driven sampling, not something a server could run. Its coordinates cannot be
    described: ``description`` is ``None`` and the wire carries them explicitly."""

    name, family, needs_truth = "oracle", "oracle (reads the true next frame)", True

    def _first_description(self) -> dict[str, Any]:
        return {"k": "fixed", "p": PATTERN_ORDER.index("stratified"), "s": self._seed()}

    def next_coords(self, observation, info) -> np.ndarray:
        from models.importance import shift_with_camera

        if "next_frame" not in info or "reconstruction" not in info:
            raise ValueError("the oracle reads the true next frame: pass info['next_frame'] (uint8 (H, W, 3)) and "
                             "info['reconstruction']; it runs in offline evaluation only (experiments/evaluate_policies.py)")
        previous = self.context.state
        self.context.advance(observation["state"], observation["state_mask"])
        scroll = camera_velocity(observation["state"], previous) if previous is not None else 0
        reconstruction = np.asarray(info["reconstruction"], np.float32)
        truth = frame_values(np.asarray(info["next_frame"]), color_for(reconstruction.shape[-1]))
        error = np.abs(shift_with_camera(reconstruction, scroll, fill=np.nan) - truth).sum(axis=2)
        error = np.nan_to_num(error, nan=3.0)
        # random tie-break, so that equal errors (e.g. all zero) are not taken in raster order
        order = np.lexsort((self._rng.random(error.size), -error.reshape(-1)))[:self.count]
        self.description = None
        return pixel_to_uv(order // FRAME_WIDTH, order % FRAME_WIDTH)


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
                analyzer=None, ram_config: RamGuidedConfig | None = None, reconstructor=None, fast_order: bool = False):
    """The policy called ``name`` (one of ``POLICY_NAMES``) with a budget of ``count`` pixels.

    ``learned_path`` is the sampler ``.zip`` the ``learned`` policy loads (default: the shipped one);
    ``analyzer`` an ``models.importance.ImportanceAnalyzer`` for ``importance`` (a new one on the shipped SPT
    otherwise); ``reconstructor`` the session's ``TileReconstructor``, whose memory ``uncertainty`` and
    ``learned`` read; ``fast_order`` their blocks' faster within-block order (``BlockPlan.fast_order``, what the
    live server uses).
    """
    if name in ("uncertainty", "learned") and reconstructor is None:
        raise ValueError(f"the {name!r} policy reads the memory of the session's TileReconstructor: pass "
                         "reconstructor=TileReconstructor(load_codebook()[0]), the one that reconstructs its frames")
    if name in PATTERNS:
        return FixedPolicy(name, count)
    if name == "patch":
        return PatchPolicy(count)
    if name == "ram":
        return RamGuidedPolicy(count, ram_config)
    if name == "importance":
        return ImportancePolicy(count, analyzer)
    if name == "uncertainty":
        return UncertaintyPolicy(count, reconstructor, fast_order=fast_order)
    if name == "learned":
        return LearnedPolicy(count, DEFAULT_SAMPLER if learned_path is None else learned_path, reconstructor,
                             fast_order=fast_order)
    if name == "oracle":
        return OraclePolicy(count)
    raise ValueError(f"unknown sampling policy {name!r}: expected one of {POLICY_NAMES}")
